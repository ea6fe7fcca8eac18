"""Minified JavaScript frames -> original file, line, column, function and source lines, with the
release's source maps from a directory (`sentry.source_maps_dir`).

Why Sentry's own `symbolic` (PyPI `symbolic`, Rust underneath): decoding VLQ mappings, index maps,
`sourcesContent` and the minified-name-to-original-function lookup is what Sentry runs in production
for the same SDK payloads; a decoder of our own would be slower and wrong at the edges.

Where a frame's map is looked for, in order (a client's text never leaves the directory):
1. by debug id: `debug_meta.images[] {type: "sourcemap", code_file, debug_id}` names the debug id of
   the frame's file (its `abs_path`, else `filename`). The map is `<dir>/<debug_id>.map` or
   `<dir>/<debug_id>.js.map`, else any `*.map` under the directory whose JSON carries that
   `debug_id` / `debugId` (what `sentry-cli sourcemaps inject` and Sentry's bundler plugins write).
   That index is built on first need and rebuilt on a miss at most every RESCAN_SECONDS.
2. by release and file name: the URL's path under the release's directory,
   `<dir>/<release>/<path>.map` (`https://cdn.example/_next/static/chunks/pay-3f2a.js` with release
   `web@2.3.1` -> `<dir>/web@2.3.1/_next/static/chunks/pay-3f2a.js.map`), as a build's output
   directory is copied there.
The minified file itself (`<map without .map>`), when beside its map, lets symbolic name the
original function of a mangled one.

Which frames: those with a line and a column whose file ends in .js, .mjs or .cjs. Each gets
`source_map`: `resolved`, or why it was left as it came (REASONS, a closed set; counted in
loom_agent_sentry_source_map_frames_total{outcome}). Resolved frames take the original file
(`abs_path` as the map names it, `filename` without the bundler's `webpack://<name>/` prefix),
1-based line and column, the original function when the map knows it, CONTEXT_LINES of source a side
from `sourcesContent`, and `in_app: false` when the source lies in node_modules.

Cost: a map is read and parsed once and kept (at most CACHE_MAPS, least recently used out); a file
larger than MAX_MAP_BYTES is refused. Reads block, so the route calls `resolve` in a worker thread.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
from symbolic.sourcemap import SourceMapView, SourceView

from agent.error_tracking.model import ErrorEvent, Frame

RESOLVED = "resolved"
REASONS = (RESOLVED, "no_source_map", "no_position", "unreadable_source_map", "no_mapping")
NO_MAP, NO_POSITION, UNREADABLE, NO_MAPPING = REASONS[1:]
CONTEXT_LINES = 5                     # as Sentry shows
LINE_MAX = 4096                       # a source line is cut here (the event limits' string length)
CACHE_MAPS = 32
MAX_MAP_BYTES = 64 * 1024 * 1024
MAX_INDEXED_FILES = 10_000
RESCAN_SECONDS = 30.0
_MINIFIED = re.compile(r"\.(?:m|c)?js$", re.IGNORECASE)
_BUNDLER_PREFIX = re.compile(r"^(?:webpack|turbopack|rollup|vite)://[^/]*/")
_DEBUG_ID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")


@dataclass(slots=True)
class _Map:
    view: SourceMapView
    minified: SourceView | None


def debug_images(payload: Any) -> dict[str, str]:
    """`debug_meta.images` of a Sentry event -> {code_file: debug id} of its source-map images."""
    meta = payload.get("debug_meta") if isinstance(payload, dict) else None
    images = meta.get("images") if isinstance(meta, dict) else None
    found: dict[str, str] = {}
    for image in images if isinstance(images, list) else ():
        if isinstance(image, dict) and image.get("type") == "sourcemap":
            code_file, debug_id = image.get("code_file"), image.get("debug_id")
            if isinstance(code_file, str) and isinstance(debug_id, str) and _DEBUG_ID.fullmatch(debug_id):
                found[code_file] = debug_id.replace("-", "").lower()
    return found


def _url_path(location: str) -> str:
    """The path of a frame's file: a URL's path (`app:///x.js`, `https://h/x.js?v=1`), or the text itself."""
    return unquote(urlsplit(location).path) if "://" in location else location.split("?", 1)[0]


def _inside(root: Path, *parts: str) -> Path | None:
    """root/parts, or None when the client's text would lead outside root."""
    candidate = root.joinpath(*(part.lstrip("/") for part in parts)).resolve()
    return candidate if candidate.is_relative_to(root) else None


class SourceMaps:
    """The source maps of one directory; thread-safe (the route resolves in worker threads)."""

    def __init__(self, directory: str):
        self.root = Path(directory).resolve()
        self._lock = threading.Lock()
        self._maps: OrderedDict[tuple[Path, float], _Map | None] = OrderedDict()
        self._index: dict[str, Path] = {}
        self._scanned_at: float | None = None

    # --- finding a map ------------------------------------------------------------------------------

    def _scan(self) -> None:
        """The debug-id index: every *.map under the directory that names its debug id."""
        index: dict[str, Path] = {}
        for count, path in enumerate(self.root.rglob("*.map")):
            if count >= MAX_INDEXED_FILES:
                break
            try:
                if path.stat().st_size > MAX_MAP_BYTES:
                    continue
                data = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue
            debug_id = data.get("debug_id") or data.get("debugId") if isinstance(data, dict) else None
            if isinstance(debug_id, str) and _DEBUG_ID.fullmatch(debug_id):
                index[debug_id.replace("-", "").lower()] = path
        self._index, self._scanned_at = index, time.monotonic()

    def _by_debug_id(self, debug_id: str) -> Path | None:
        for name in (f"{debug_id}.map", f"{debug_id}.js.map"):
            path = self.root / name
            if path.is_file():
                return path
        with self._lock:
            stale = self._scanned_at is None or time.monotonic() - self._scanned_at > RESCAN_SECONDS
            if debug_id not in self._index and stale:
                self._scan()
            return self._index.get(debug_id)

    def find(self, location: str, release: str | None, images: Mapping[str, str]) -> Path | None:
        debug_id = images.get(location)
        if debug_id is not None and (path := self._by_debug_id(debug_id)) is not None:
            return path
        if release is None:
            return None
        try:            # a NUL (`%00` in a URL) is a ValueError, a name past the file system's an OSError
            path = _inside(self.root, release, _url_path(location) + ".map")
            return path if path is not None and path.is_file() else None
        except (OSError, ValueError):
            return None

    def _load(self, path: Path) -> _Map | None:
        """The parsed map (and its minified file), cached by path and mtime; None when unreadable."""
        try:
            stat = path.stat()
        except OSError:
            return None
        key = (path, stat.st_mtime)
        with self._lock:
            if key in self._maps:
                self._maps.move_to_end(key)
                return self._maps[key]
        loaded: _Map | None = None
        if stat.st_size <= MAX_MAP_BYTES:
            try:
                view = SourceMapView.from_json_bytes(path.read_bytes())
                minified_path = path.with_suffix("")
                minified = SourceView.from_bytes(minified_path.read_bytes()) \
                    if minified_path.is_file() and minified_path.stat().st_size <= MAX_MAP_BYTES else None
                loaded = _Map(view, minified)
            except Exception:       # symbolic's ParseSourceMapError and friends, OSError: unreadable
                loaded = None
        with self._lock:
            self._maps[key] = loaded
            while len(self._maps) > CACHE_MAPS:
                self._maps.popitem(last=False)
        return loaded

    # --- resolving ----------------------------------------------------------------------------------

    def resolve_frame(self, frame: Frame, release: str | None, images: Mapping[str, str]) -> str | None:
        """Resolve one frame in place; its outcome (REASONS), or None for a frame that is not minified JS."""
        location = frame.abs_path or frame.filename
        if location is None or not _MINIFIED.search(_url_path(location)):
            return None
        if frame.lineno is None or frame.colno is None or frame.lineno < 1 or frame.colno < 1:
            frame.source_map = NO_POSITION
            return NO_POSITION
        path = self.find(location, release, images)
        loaded = None if path is None else self._load(path)
        outcome = NO_MAP if path is None else UNREADABLE if loaded is None else \
            _apply(loaded, frame, frame.lineno - 1, frame.colno - 1)
        frame.source_map = outcome
        return outcome

    def resolve(self, error: ErrorEvent, images: Mapping[str, str]) -> dict[str, int]:
        """Every frame of the error and its causes; {outcome: frames}."""
        outcomes: dict[str, int] = {}
        for frame in _frames(error):
            outcome = self.resolve_frame(frame, error.release, images)
            if outcome is not None:
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
        return outcomes


def _frames(error: ErrorEvent) -> Iterable[Frame]:
    yield from error.frames
    for cause in error.causes:
        yield from cause.frames


def _apply(loaded: _Map, frame: Frame, line: int, column: int) -> str:
    # browsers qualify a mangled name with its receiver ("HTMLButtonElement.o", "Object.t"): the minified
    # source knows the bare name only
    minified_name = frame.function.rsplit(".", 1)[-1] if frame.function else None
    token = loaded.view.lookup(line, column, minified_name, loaded.minified)
    if token is None or token.dst_line != line or token.src is None:
        return NO_MAPPING                   # symbolic answers the nearest token: on another line, not ours
    frame.abs_path = token.src
    frame.filename = _BUNDLER_PREFIX.sub("", token.src).removeprefix("./") or token.src
    frame.lineno, frame.colno = token.src_line + 1, token.src_col + 1
    if token.function_name:
        frame.function = token.function_name
    if "/node_modules/" in token.src:
        frame.in_app = False
    source = loaded.view.get_sourceview(token.src_id) if token.src_id is not None else None
    if source is not None and 0 <= token.src_line < len(source):
        first = max(0, token.src_line - CONTEXT_LINES)
        frame.pre_context = tuple(line[:LINE_MAX] for line in source[first:token.src_line])
        frame.context_line = source[token.src_line][:LINE_MAX]
        after = source[token.src_line + 1:token.src_line + 1 + CONTEXT_LINES]
        frame.post_context = tuple(line[:LINE_MAX] for line in after)
    return RESOLVED
