"""Shared by the status page tests (tests/test_status_page.py, tests/test_status_page_browser.py):
a hostile HTTP server whose malformed status line carries markup into a failure's detail, and a
reader that turns the page (or Chromium's rendered DOM) into the text a person sees, per target."""

from __future__ import annotations

import contextlib
import html.parser
import socketserver
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

# what the hostile server answers: a status line an attacker controls, quoted back in the detail
HOSTILE_STATUS_LINE = 'HTTP/1.1 <script>alert("pwned")</script>'
HOSTILE_LABEL = '<img src=x onerror="alert(1)">&amp;'


class _HostileHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.rfile.readline()
        self.wfile.write(HOSTILE_STATUS_LINE.encode() + b"\r\nContent-Length: 0\r\n\r\n")


@contextlib.contextmanager
def hostile_http_server() -> Iterator[str]:
    """A server on 127.0.0.1:<port 0> answering every request with HOSTILE_STATUS_LINE; yields its URL."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _HostileHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class PageText:
    """The page as read by a person: each target row's text, each section's text, every element seen."""

    rows: dict[str, str] = field(default_factory=dict)          # data-target -> the row's text
    row_classes: dict[str, str] = field(default_factory=dict)   # data-target -> the row's class
    cells: dict[str, dict[str, str]] = field(default_factory=dict)   # data-target -> data-label -> text
    sections: dict[str, str] = field(default_factory=dict)      # section id -> its text
    title: str = ""
    text: str = ""                                              # all the visible text
    tags: set[str] = field(default_factory=set)
    urls: list[str] = field(default_factory=list)               # every href / src / action


class _Reader(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = PageText()
        self._row: str | None = None
        self._section: str | None = None
        self._cell: str | None = None
        self._in_title = False
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.page.tags.add(tag)
        self.page.urls += [value or "" for name, value in attrs if name in ("href", "src", "action")]
        if tag == "tr" and "data-target" in found:
            self._row = found["data-target"] or ""
            self.page.rows[self._row] = ""
            self.page.row_classes[self._row] = found.get("class") or ""
            self.page.cells[self._row] = {}
        elif tag == "td" and self._row is not None:
            self._cell = found.get("data-label") or ""
            self.page.cells[self._row][self._cell] = ""
        elif tag == "section":
            self._section = found.get("id") or ""
            self.page.sections[self._section] = ""
        elif tag == "title":
            self._in_title = True
        elif tag == "style":
            self._in_style = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None
        elif tag == "td":
            self._cell = None
        elif tag == "section":
            self._section = None
        elif tag == "title":
            self._in_title = False
        elif tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._row is not None:
            self.page.rows[self._row] += data + " "
            if self._cell is not None:
                self.page.cells[self._row][self._cell] += data + " "
        if self._section is not None:
            self.page.sections[self._section] += data + " "
        if self._in_title:
            self.page.title += data
        elif not self._in_style:
            self.page.text += data + " "


def png_pixels(data: bytes) -> tuple[int, int, set[tuple[int, int, int]]]:
    """(width, height, the set of RGB colours) of an 8-bit, non-interlaced RGB or RGBA PNG, as Chromium
    writes screenshots; enough to tell a styled page from a blank or unstyled one without Pillow."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    channels = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * channels
    previous, colours = bytearray(stride), set()
    for y in range(height):
        start = y * (stride + 1)
        line = _unfilter(raw[start], bytearray(raw[start + 1:start + 1 + stride]), previous, channels)
        colours.update(zip(line[0::channels], line[1::channels], line[2::channels]))
        previous = line
    return width, height, colours


def _unfilter(kind: int, line: bytearray, previous: bytearray, bpp: int) -> bytearray:
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up, corner = previous[i], previous[i - bpp] if i >= bpp else 0
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + up) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
    return line


def read_page(document: str) -> PageText:
    reader = _Reader()
    reader.feed(document)
    reader.close()
    page = reader.page
    page.rows = {name: " ".join(text.split()) for name, text in page.rows.items()}
    page.text = " ".join(page.text.split())
    page.sections = {name: " ".join(text.split()) for name, text in page.sections.items()}
    page.cells = {row: {label: " ".join(text.split()) for label, text in cells.items()}
                  for row, cells in page.cells.items()}
    return page
