"""PostHog SDKs' request encodings, undone before the JSON is parsed.

posthog-js sends `?compression=gzip-js` (a gzip body, often as text/plain) or, for older
versions and `navigator.sendBeacon`, a form body `data=<base64 JSON>` (`?compression=base64`
or none). Server SDKs send plain JSON. LZ-string (`lz64`) is refused with a clear message.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Mapping
from urllib.parse import parse_qs


class PayloadError(ValueError):
    """The body cannot be decoded; `status` is the HTTP status to answer (400 or 413)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def decode_posthog_body(body: bytes, query: Mapping[str, str], content_type: str, limit: int) -> bytes:
    """The JSON bytes inside a PostHog request body; at most `limit` bytes after decompression."""
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
    inflater = zlib.decompressobj(wbits=47)           # gzip or zlib header, detected
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise PayloadError(f"invalid gzip body: {exc}") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise PayloadError(f"decompressed body is larger than {limit} bytes", 413)
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
    try:
        data = base64.b64decode(fields["data"][0] + "==", validate=False)
    except (binascii.Error, ValueError):
        raise PayloadError("the data field is not base64") from None
    if len(data) > limit:
        raise PayloadError(f"decoded body is larger than {limit} bytes", 413)
    return data
