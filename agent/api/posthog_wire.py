"""PostHog SDKs' request encodings, undone before the JSON is parsed.

posthog-js sends gzip bodies as text/plain, since 1.398.2 WITHOUT `?compression=gzip-js`: a body that
starts with gzip's magic bytes 1f 8b is gunzipped whatever the query or content type says (JSON never
starts with them). Older versions send `?compression=gzip-js`, or, for `navigator.sendBeacon`, a form
body `data=<base64 JSON>` (`?compression=base64` or none). Server SDKs send plain JSON, posthog-python's
v1 mode `Content-Encoding: gzip` (aiohttp undoes it while read_body bounds the result). LZ-string
(`lz64`) is refused with a clear message. Every decompression is bounded by `limit` (a zip bomb is a 413).
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Mapping
from urllib.parse import parse_qs

from agent.sentry.decode import DecodeError, gunzip

GZIP_MAGIC = b"\x1f\x8b"


class PayloadError(ValueError):
    """The body cannot be decoded; `status` is the HTTP status to answer (400 or 413)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def decode_posthog_body(body: bytes, query: Mapping[str, str], content_type: str, limit: int) -> bytes:
    """The JSON bytes inside a PostHog request body; at most `limit` bytes after decompression."""
    if body[:2] == GZIP_MAGIC:
        return _gunzip(body, limit)
    compression = query.get("compression", "").lower()
    if compression == "gzip-js" or compression == "gzip":
        return _gunzip(body, limit)
    if compression == "lz64":
        raise PayloadError("compression lz64 is not supported; configure the SDK for gzip-js or none")
    if compression not in ("", "base64"):
        raise PayloadError(f"unknown compression {compression!r}")
    if content_type == "application/x-www-form-urlencoded" or compression == "base64":
        return _form_data(body, limit)
    return body


def _gunzip(body: bytes, limit: int) -> bytes:
    if body[:2] == GZIP_MAGIC:                        # every member, bounded (agent/sentry/decode.py)
        try:
            return gunzip(body, limit)
        except DecodeError as exc:
            raise PayloadError(f"invalid gzip body: {exc.message}" if exc.status != 413 else
                               f"decompressed body is larger than {limit} bytes", exc.status) from None
    inflater = zlib.decompressobj(wbits=47)           # a zlib header (gzip-js from old SDKs), detected
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise PayloadError(f"invalid gzip body: {exc}") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise PayloadError(f"decompressed body is larger than {limit} bytes", 413)
    if not inflater.eof:
        raise PayloadError("invalid gzip body: the stream is truncated")
    return data


def _form_data(body: bytes, limit: int) -> bytes:
    try:
        fields = parse_qs(body.decode("ascii"), strict_parsing=False)
    except UnicodeDecodeError:
        raise PayloadError("a form body must be ASCII (data=<base64>)") from None
    if "data" not in fields:
        if body.lstrip()[:1] in (b"{", b"["):          # plain JSON sent with the form content type
            return body
        raise PayloadError("a form body needs a data field (data=<base64 JSON>)")
    text = fields["data"][0].replace(" ", "+").strip()     # an unescaped '+' reads as a space
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise PayloadError("the data field is not base64") from None
    if len(data) > limit:
        raise PayloadError(f"decoded body is larger than {limit} bytes", 413)
    return data
