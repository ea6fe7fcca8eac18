"""Undoing a request's Content-Encoding (gzip, deflate, br, zstd) within a hard bound on the output.

Why here and not in aiohttp: a zip bomb (a few KB that inflate to gigabytes) must be refused after
at most `limit` bytes of output, and Sentry SDKs send Brotli (sentry-python whenever the `brotli`
module is importable) and zstd, which the route must read as bytes with their encoding known.
The same bounded inflate exists for PostHog bodies in agent/api/posthog_wire.py (`zlib.decompressobj`
with `max_length = limit + 1`, too large when more output is pending); that module is under agent.api,
which this package must not import, so the approach is repeated here for every encoding:

- gzip (every member of a multi-member stream) and deflate (zlib-wrapped as RFC 9110 says, or raw
  deflate as some clients send it): zlib with `max_length`, so never more than `limit + 1` bytes;
- br: the `brotli` module's `Decompressor.process(output_buffer_limit=...)` in steps of `STEP` bytes,
  so the output held is at most `limit` plus one step (Brotli's buffer grows in blocks of up to
  about twice the step);
- zstd: the `zstandard` module's stream reader, read `STEP` bytes at a time up to `limit + 1`, with
  the window limited to 8 MiB as RFC 9659 requires of HTTP zstd (a hostile frame header cannot make
  the decoder allocate more); a stream that ends inside a frame is then found by a second, bounded
  pass (the reader itself returns a truncated frame's output silently).

Every failure is a `DecodeError` with the status to answer: 413 (larger than `limit` decompressed),
415 (an encoding not listed), 400 (a body that does not decode).
"""

from __future__ import annotations

import io
import zlib

import brotli
import zstandard

STEP = 64 * 1024
ZSTD_MAX_WINDOW = 8 * 1024 * 1024
ENCODINGS = ("gzip", "x-gzip", "deflate", "br", "zstd", "identity")
MAX_CODINGS = 2                           # "gzip, br" at most: a longer chain is no SDK's


class DecodeError(ValueError):
    """A body that will not be decoded: `status` 413 (too large), 415 (unknown encoding) or 400."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


def _too_large(limit: int) -> DecodeError:
    return DecodeError(f"the decompressed body is larger than {limit} bytes", 413)


def _inflate_member(inflater: zlib._Decompress, data: bytes, budget: int, limit: int, name: str) -> bytes:
    """One zlib/gzip/raw-deflate stream; never more than budget + 1 bytes of output."""
    try:
        out = inflater.decompress(data, budget + 1)
    except zlib.error:
        raise DecodeError(f"the body is not valid {name}") from None
    if len(out) > budget or inflater.unconsumed_tail:
        raise _too_large(limit)
    if not inflater.eof:
        raise DecodeError(f"the {name} stream is truncated")
    return out


def gunzip(data: bytes, limit: int) -> bytes:
    """A gzip body, every member (gzip streams may be concatenated), at most `limit` bytes."""
    parts: list[bytes] = []
    size = 0
    rest = data
    while True:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        out = _inflate_member(inflater, rest, limit - size, limit, "gzip")
        parts.append(out)
        size += len(out)
        rest = inflater.unused_data
        if not rest.strip(b"\x00"):           # gzip tools may pad with zeros
            return b"".join(parts)
        if not rest.startswith(b"\x1f\x8b"):
            raise DecodeError("the gzip stream has trailing data")


def _is_zlib_header(data: bytes) -> bool:
    return len(data) >= 2 and data[0] & 0x0F == 8 and data[0] >> 4 <= 7 and (data[0] << 8 | data[1]) % 31 == 0


def inflate(data: bytes, limit: int) -> bytes:
    """A `deflate` body: zlib-wrapped (RFC 9110), or raw deflate as some clients send it."""
    wbits = zlib.MAX_WBITS if _is_zlib_header(data) else -zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits=wbits)
    out = _inflate_member(inflater, data, limit, limit, "deflate")
    if inflater.unused_data:
        raise DecodeError("the deflate stream has trailing data")
    return out


def unbrotli(data: bytes, limit: int) -> bytes:
    """A Brotli body, at most `limit` bytes (see the module docstring for the step)."""
    decompressor = brotli.Decompressor()
    parts: list[bytes] = []
    size = 0
    pending = data
    try:
        while not decompressor.is_finished():
            out = decompressor.process(pending, output_buffer_limit=STEP)
            pending = b""
            size += len(out)
            if size > limit:
                raise _too_large(limit)
            parts.append(out)
            if not out and decompressor.can_accept_more_data():
                raise DecodeError("the br stream is truncated")
    except brotli.error:
        raise DecodeError("the body is not valid br") from None
    return b"".join(parts)


def unzstd(data: bytes, limit: int) -> bytes:
    """A zstd body (every frame), at most `limit` bytes, a window of at most 8 MiB."""
    decompressor = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
    try:
        with decompressor.stream_reader(io.BytesIO(data), read_across_frames=True) as reader:
            parts: list[bytes] = []
            size = 0
            while chunk := reader.read(min(STEP, limit + 1 - size)):
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                parts.append(chunk)
        _check_zstd_frames(decompressor, data)
    except zstandard.ZstdError:
        raise DecodeError("the body is not valid zstd") from None
    return b"".join(parts)


def _check_zstd_frames(decompressor: zstandard.ZstdDecompressor, data: bytes) -> None:
    """Every frame ends: the reader above returns a truncated frame's output without an error. This
    pass decodes the same input, whose output the reader has just bounded by `limit`."""
    rest = data
    while rest:
        frame = decompressor.decompressobj()
        frame.decompress(rest)
        if not frame.eof:
            raise DecodeError("the zstd stream is truncated")
        rest = frame.unused_data


def _codings(content_encoding: str | None) -> list[str]:
    names = [name.strip().lower() for name in (content_encoding or "").split(",")]
    names = [name for name in names if name and name != "identity"]
    if len(names) > MAX_CODINGS:
        raise DecodeError(f"at most {MAX_CODINGS} content codings are accepted", 415)
    for name in names:
        if name not in ENCODINGS:
            raise DecodeError(f"unsupported Content-Encoding (supported: {', '.join(ENCODINGS)})", 415)
    return names


_DECODERS = {"gzip": gunzip, "x-gzip": gunzip, "deflate": inflate, "br": unbrotli, "zstd": unzstd}


def decode_body(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The body with its Content-Encoding undone (codings applied in order are undone last first),
    at most `limit` bytes; raises DecodeError."""
    for name in reversed(_codings(content_encoding)):
        body = _DECODERS[name](body, limit)
    if len(body) > limit:
        raise _too_large(limit)
    return body
