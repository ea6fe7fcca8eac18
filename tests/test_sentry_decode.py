"""agent/sentry/decode.py: every Content-Encoding Sentry SDKs send, and a zip bomb in each refused
after a bounded amount of output (checked with tracemalloc: the peak stays within a few times the
limit, against 256 MiB were the bomb inflated; and in time)."""

from __future__ import annotations

import gzip
import io
import time
import tracemalloc
import zlib
from collections.abc import Callable

import brotli
import pytest
import zstandard

from agent.sentry.decode import STEP, DecodeError, decode_body

LIMIT = 1024 * 1024
BOMB_SIZE = 256 * 1024 * 1024            # zeros: each encoding shrinks them to well under 1 MB
PAYLOAD = b'{"event_id":"abc"}\n{"type":"event","length":2}\n{}\n' * 50


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def zstd_stream(data: bytes) -> bytes:
    """zstd as a streaming encoder writes it: no content size in the frame header."""
    out = io.BytesIO()
    with zstandard.ZstdCompressor(write_content_size=False).stream_writer(out, closefd=False) as writer:
        writer.write(data)
    return out.getvalue()


ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda data: gzip.compress(data, 6),
    "deflate": lambda data: zlib.compress(data, 6),
    "deflate-raw": raw_deflate,
    "br": lambda data: brotli.compress(data, quality=5),
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
    "zstd-stream": zstd_stream,
}


def header(name: str) -> str:
    return name.split("-")[0]


def decode_error(body: bytes, encoding: str | None, limit: int = LIMIT) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        decode_body(body, encoding, limit)
    return caught.value


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    zeros = bytes(BOMB_SIZE)
    made = {name: encode(zeros) for name, encode in ENCODERS.items()}
    assert all(len(bomb) < LIMIT for bomb in made.values())
    return made


@pytest.mark.parametrize("name", ENCODERS)
def test_each_encoding_decodes(name: str) -> None:
    assert decode_body(ENCODERS[name](PAYLOAD), header(name), LIMIT) == PAYLOAD


@pytest.mark.parametrize("encoding", [None, "", "identity", " Identity "])
def test_no_encoding_is_the_body_itself(encoding: str | None) -> None:
    assert decode_body(PAYLOAD, encoding, LIMIT) == PAYLOAD


def test_encoding_names_are_case_insensitive_and_chains_are_undone_last_first() -> None:
    assert decode_body(gzip.compress(PAYLOAD), "GZIP", LIMIT) == PAYLOAD
    assert decode_body(gzip.compress(PAYLOAD), "x-gzip", LIMIT) == PAYLOAD
    assert decode_body(brotli.compress(gzip.compress(PAYLOAD)), "gzip, br", LIMIT) == PAYLOAD


def test_concatenated_gzip_members_and_zstd_frames_are_all_read() -> None:
    assert decode_body(gzip.compress(b"ab") + gzip.compress(b"cd"), "gzip", LIMIT) == b"abcd"
    frames = zstandard.ZstdCompressor().compress(b"ab") + zstandard.ZstdCompressor().compress(b"cd")
    assert decode_body(frames, "zstd", LIMIT) == b"abcd"


def test_exactly_the_limit_passes_one_byte_more_is_413() -> None:
    for name, encode in ENCODERS.items():
        assert decode_body(encode(b"x" * 1000), header(name), 1000) == b"x" * 1000
        assert decode_error(encode(b"x" * 1001), header(name), 1000).status == 413, name
    assert decode_error(b"x" * 1001, None, 1000).status == 413


@pytest.mark.parametrize("name", ENCODERS)
def test_a_zip_bomb_is_413_after_bounded_output(bombs: dict[str, bytes], name: str) -> None:
    tracemalloc.start()
    started = time.monotonic()
    try:
        error = decode_error(bombs[name], header(name))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.status == 413 and "larger than" in error.message
    # the output is cut at limit + 1 bytes; buffers being resized and joined may hold it twice
    assert peak < 3 * LIMIT + 4 * STEP, f"{name}: {peak} bytes at the peak"
    assert time.monotonic() - started < 5, "the bomb was inflated further than the limit"


def test_a_bomb_split_over_many_small_gzip_members_is_still_bounded() -> None:
    member = gzip.compress(bytes(LIMIT // 4))
    error = decode_error(member * 8, "gzip")
    assert error.status == 413


def test_a_bomb_inside_a_chain_of_codings_is_bounded() -> None:
    inner = gzip.compress(bytes(64 * LIMIT))
    assert decode_error(brotli.compress(inner), "gzip, br").status == 413


@pytest.mark.parametrize("name", ENCODERS)
def test_a_truncated_stream_is_400(name: str) -> None:
    body = ENCODERS[name](PAYLOAD * 20)
    for cut in (len(body) // 2, len(body) - 3):
        error = decode_error(body[:cut], header(name))
        assert error.status == 400, (name, cut)


@pytest.mark.parametrize("name", ["gzip", "deflate", "br", "zstd"])
def test_garbage_is_400(name: str) -> None:
    assert decode_error(b"this is not compressed at all, just text", name).status == 400


def test_trailing_garbage_after_a_stream_is_400() -> None:
    assert decode_error(gzip.compress(PAYLOAD) + b"junk", "gzip").status == 400
    assert decode_error(zlib.compress(PAYLOAD) + b"junk", "deflate").status == 400
    assert decode_error(zstandard.ZstdCompressor().compress(PAYLOAD) + b"junk", "zstd").status == 400


def test_gzip_padding_with_zeros_is_tolerated() -> None:
    assert decode_body(gzip.compress(PAYLOAD) + bytes(16), "gzip", LIMIT) == PAYLOAD


def test_a_zstd_frame_asking_for_a_window_past_8_mib_is_refused() -> None:
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=27, write_content_size=0)
    out = io.BytesIO()
    with zstandard.ZstdCompressor(compression_params=params).stream_writer(out, closefd=False) as writer:
        writer.write(PAYLOAD)
    assert zstandard.get_frame_parameters(out.getvalue()).window_size == 128 * 1024 * 1024
    assert decode_error(out.getvalue(), "zstd").status == 400


@pytest.mark.parametrize("encoding", ["compress", "lz4", "gzip, br, zstd", "snappy"])
def test_an_unknown_encoding_or_a_long_chain_is_415(encoding: str) -> None:
    assert decode_error(PAYLOAD, encoding).status == 415


def test_an_empty_compressed_body_is_400_except_for_zstd_which_has_no_header_to_miss() -> None:
    for name in ("gzip", "deflate", "br"):
        assert decode_error(b"", name).status == 400, name
    assert decode_body(b"", "zstd", LIMIT) == b""
