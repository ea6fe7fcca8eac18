"""OTLP/HTTP bodies into request messages: the content types, bounded decompression, OTLP's JSON.

- `application/x-protobuf`: parsed by protobuf's C runtime (upb). A truncated or otherwise invalid
  message (and a string that is not UTF-8) is a `DecodeError` with status 400.
- `application/json`: OTLP's JSON encoding is protobuf's JSON mapping with one deviation: trace and span
  ids (`traceId`, `spanId`, `parentSpanId`, in spans, links, log records and exemplars) are hex, not
  base64. They are turned into base64 before `json_format.ParseDict` (unknown fields ignored, as the
  spec asks of receivers); enums as names or integers and int64 as strings or numbers are protobuf's own
  rules. Anything else (wrong types, a bad id) is 400.
- `Content-Encoding: gzip` (or deflate) is inflated with zlib's `max_length`, so a gzip bomb costs at
  most `limit + 1` bytes before the 413; the same approach as agent/sentry/decode.py, repeated here
  because the receiver does not import the Sentry package.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError, Message

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
CONTENT_TYPES = (PROTOBUF, JSON)
_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})
_GZIP, _ZLIB, _RAW_DEFLATE = 16 + zlib.MAX_WBITS, zlib.MAX_WBITS, -zlib.MAX_WBITS
MAX_JSON_DEPTH = 64                    # AnyValue nests; a deeper body is refused before it costs recursion


class DecodeError(ValueError):
    """A body that is not a request: `status` 400 (malformed), 413 (too large) or 415 (media type)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status

    @property
    def reason(self) -> str:
        return {413: "too_large", 415: "unsupported_media_type"}.get(self.status, "malformed")


def media_type(content_type: str) -> str:
    """The type of a Content-Type header (parameters dropped); DecodeError 415 unless OTLP's."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind not in CONTENT_TYPES:
        raise DecodeError(f"Content-Type must be {PROTOBUF} or {JSON}, got {kind[:60]!r}", 415)
    return kind


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """`body` with its Content-Encoding undone, never more than `limit` bytes (else 413)."""
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return body
    if coding not in ("gzip", "x-gzip", "deflate"):
        raise DecodeError(f"Content-Encoding {coding[:40]!r} is not supported (gzip, deflate, identity)", 415)
    if coding == "deflate" and body[:1] and body[0] & 0x0F != 8:      # raw deflate, as some clients send it
        wbits = _RAW_DEFLATE
    else:
        wbits = _ZLIB if coding == "deflate" else _GZIP
    out: list[bytes] = []
    size, data = 0, body
    while True:                        # gzip may have several members
        inflater = zlib.decompressobj(wbits)
        try:
            chunk = inflater.decompress(data, limit - size + 1)
        except zlib.error:
            raise DecodeError(f"the body is not valid {coding}") from None
        size += len(chunk)
        if size > limit or inflater.unconsumed_tail:
            raise DecodeError(f"the decompressed body is larger than {limit} bytes", 413)
        if not inflater.eof:
            raise DecodeError(f"the {coding} stream is truncated")
        out.append(chunk)
        data = inflater.unused_data
        if not data or wbits != _GZIP:
            return b"".join(out)


def parse(body: bytes, kind: str, message_type: type[Message]) -> Any:
    """The request message of `body` (`kind` from media_type); DecodeError 400 when it is not one."""
    if kind == PROTOBUF:
        try:
            return message_type.FromString(body)
        except (ProtobufDecodeError, RuntimeWarning, ValueError) as exc:
            raise DecodeError(f"the body is not a valid {message_type.DESCRIPTOR.name}: {exc}") from None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"the body is not JSON: {str(exc)[:200]}") from None
    if not isinstance(document, dict):
        raise DecodeError(f"the body must be a JSON object ({message_type.DESCRIPTOR.name})")
    _hex_ids_to_base64(document, 0)
    message = message_type()
    try:
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise DecodeError(f"the body is not a valid {message_type.DESCRIPTOR.name}: {str(exc)[:300]}") from None
    return message


def _hex_ids_to_base64(node: Any, depth: int) -> None:
    """OTLP JSON's hex ids into protobuf JSON's base64 bytes, in place."""
    if depth > MAX_JSON_DEPTH:
        raise DecodeError(f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise DecodeError(f"{key} must be a hex string, got {value[:40]!r}") from None
            elif isinstance(value, (dict, list)):
                _hex_ids_to_base64(value, depth + 1)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, (dict, list)):
                _hex_ids_to_base64(item, depth + 1)


def to_json(message: Message) -> bytes:
    """A response message in OTLP JSON (no ids in responses, so protobuf's mapping is OTLP's)."""
    return json_format.MessageToJson(message, indent=None).encode()

