"""The Sentry benchmark's envelopes: one error event each, as the real sentry-python sends it.

`template()` runs the real sentry-sdk (PyPI) once, in this process, on a generated module of 29 distinct
functions (each with a few local variables) that call each other until the last raises; the SDK's own
envelope (the event with its 30 frames: the 29 and the caller that captures; their pre/context/post
source lines and local variables, breadcrumbs, contexts, the installed modules list, tags, user,
release) is captured by a transport that keeps it, and split around its event id (in the envelope
header and in the event).

`Bodies` then makes each request's body from that template in microseconds: a gzip stream whose
compressed parts are built once (raw deflate, each part its own compressor ended by a full flush) and
whose event ids are stored blocks, so every request carries a new event id (the agent drops an id it
has seen: a repeated one would measure the duplicate path) without compressing 20 KB per request.
"""

from __future__ import annotations

import importlib.util
import os
import struct
import sys
import tempfile
import uuid
import zlib
from pathlib import Path
from typing import Any

DEPTH = 29                # the generated functions; with the caller that captures, 30 frames
VARIANTS = 8              # distinct stack traces (one issue each), cycled through
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"     # deflate, no name, no mtime, unix


def _module_source(variant: int) -> str:
    """DEPTH functions step_<variant>_00.. of module `checkout_v<variant>`; the last raises a KeyError."""
    lines = [f'"""Generated for bench/sentry.py: a call chain of {DEPTH} functions."""', "", "import decimal", ""]
    for i in range(DEPTH):
        lines += [f"def step_{variant}_{i:02d}(order, depth={i}):",
                  f"    # step {i} of the checkout pipeline",
                  f"    total = decimal.Decimal('{i}.50') * order['quantity']",
                  f"    note = 'stage {i} for ' + order['sku']",
                  f"    flags = {{'retry': {i % 3 == 0}, 'stage': {i}}}"]
        if i == DEPTH - 1:
            lines += ["    return order['coupons'][note]                 # KeyError: the bug"]
        else:
            lines += [f"    return step_{variant}_{i + 1:02d}(order) + total"]
        lines += [""]
    return "\n".join(lines) + "\n"


def _capture(variant: int, directory: Path) -> bytes:
    """The envelope the real sentry-sdk sends for the KeyError of variant `variant` (uncompressed)."""
    import sentry_sdk
    from sentry_sdk.envelope import Envelope
    from sentry_sdk.transport import Transport

    path = directory / f"checkout_v{variant}.py"
    path.write_text(_module_source(variant))
    spec = importlib.util.spec_from_file_location(f"checkout_v{variant}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)

    kept: list[bytes] = []

    class Keep(Transport):
        def capture_envelope(self, envelope: Envelope) -> None:
            kept.append(envelope.serialize())

        def flush(self, timeout: float, callback: Any = None) -> None:
            return None

    sentry_sdk.init(dsn="http://0123456789abcdef0123456789abcdef@127.0.0.1:9/1", transport=Keep,
                    release="shop@4.12.0", environment="production", server_name="web-7",
                    auto_enabling_integrations=False, include_local_variables=True, max_breadcrumbs=100,
                    in_app_include=[f"checkout_v{variant}"], project_root=str(directory))
    try:
        with sentry_sdk.isolation_scope() as scope:
            scope.set_tag("feature", "checkout")
            scope.set_tag("region", "eu-west-1")
            scope.set_user({"id": f"user-{variant}", "email": "jane@example.com", "ip_address": "203.0.113.7"})
            scope.set_extra("cart_id", "c-1234")
            for n in range(12):                 # what a request handler leaves behind before it fails
                sentry_sdk.add_breadcrumb(category="http", message=f"GET /api/cart/{n}", level="info",
                                          data={"status_code": 200, "duration_ms": 12 + n})
            try:
                getattr(module, f"step_{variant}_00")({"quantity": 2, "sku": f"SKU-{variant}", "coupons": {}})
            except KeyError:
                sentry_sdk.capture_exception()
        sentry_sdk.flush()
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.init()
    events = [raw for raw in kept if b'"type":"event"' in raw]
    assert len(events) == 1, kept
    return events[0]


def template(variant: int) -> list[bytes]:
    """The envelope of `variant`, split around its event id: [before, between, ..., after]."""
    with tempfile.TemporaryDirectory(prefix="loom-sentry-bench-") as tmp:
        raw = _capture(variant, Path(tmp))
    header = raw.split(b"\n", 1)[0]
    import orjson

    event_id = orjson.loads(header)["event_id"].encode()
    parts = raw.split(event_id)
    assert len(parts) == 3, f"the event id appears {len(parts) - 1} times"   # the header and the event
    return parts


def _raw_deflate(data: bytes, final: bool) -> bytes:
    """`data` as raw deflate blocks on their own (no reference to anything before), byte-aligned."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_FINISH if final else zlib.Z_FULL_FLUSH)


def _stored(data: bytes) -> bytes:
    """A non-final stored deflate block (at a byte boundary: BFINAL 0, BTYPE 00, then LEN, NLEN)."""
    return b"\x00" + struct.pack("<HH", len(data), len(data) ^ 0xFFFF) + data


class Bodies:
    """gzip bodies of one-event envelopes, each with a new event id; `uncompressed` / `compressed` sizes."""

    def __init__(self, variants: int = VARIANTS):
        self.templates = [template(v) for v in range(variants)]
        self.deflated = [[_raw_deflate(part, final=(i == len(parts) - 1)) for i, part in enumerate(parts)]
                         for parts in self.templates]
        self.uncompressed = sum(len(p) for p in self.templates[0]) + 32 * (len(self.templates[0]) - 1)
        self.compressed = len(self.body(0))

    def body(self, n: int) -> bytes:
        """The n-th body: variant n % variants, a fresh event id."""
        parts, deflated = self.templates[n % len(self.templates)], self.deflated[n % len(self.templates)]
        event_id = uuid.UUID(int=(os.getpid() << 64) | n).hex.encode()
        stream, crc, size = [GZIP_HEADER], 0, 0
        for i, part in enumerate(parts):
            if i:
                stream.append(_stored(event_id))
                crc = zlib.crc32(event_id, crc)
                size += 32
            stream.append(deflated[i])
            crc = zlib.crc32(part, crc)
            size += len(part)
        stream.append(struct.pack("<II", crc, size & 0xFFFFFFFF))
        return b"".join(stream)


if __name__ == "__main__":                  # a look at the material: sizes, and one body decoded
    import gzip

    bodies = Bodies(2)
    text = gzip.decompress(bodies.body(1))
    print(f"{bodies.uncompressed:,} bytes, {bodies.compressed:,} gzip; first lines:")
    print(text[:600].decode())
