"""The frame every analytics page shares: one HTML document with its CSS inline, no script, no font,
image or stylesheet to fetch (an air-gapped sidecar serves it whole), a viewport meta and a layout that
turns the tables into cards below 720 px, so it reads on a laptop and on a phone.

Everything printed goes through `esc()`: event names, property values, user and coach ids, release
names and target names are the application's (or an attacker's) data. The pages carry a Content-Security-
Policy that allows nothing but this one style block (by its hash) and forms posting to the agent itself,
so even a missed escape could run no script and load nothing.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math

from agent.analytics_page.style import CSS


def esc(value: object) -> str:
    """HTML-escape for text and for double-quoted attribute values."""
    return html.escape(str(value), quote=True)


STYLE_HASH = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; img-src data:; "
                           "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
PAGE_HEADERS = {"Cache-Control": "no-store", "Content-Security-Policy": CONTENT_SECURITY_POLICY,
                "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin", "X-Content-Type-Options": "nosniff"}

_CURRENT = ' aria-current="page"'
TABS = (("dashboard", "/analytics", "Dashboard"), ("insights", "/analytics/insights", "Insights"))


def page(title: str, body: str, *, tab: str | None = None, csrf: str | None = None) -> str:
    """The whole document: head, the header (tabs and sign-out when signed in), `body` in <main>."""
    nav = ""
    if tab is not None:
        links = "".join(f'<a href="{href}"{_CURRENT if name == tab else ""}>{label}</a>' for name, href, label in TABS)
        nav = f'<nav class="tabs">{links}<a href="/">Status</a></nav>'
    out = ""
    if csrf is not None:
        out = ('<form class="signout" method="post" action="/analytics/sign-out">'
               f'<input type="hidden" name="csrf" value="{esc(csrf)}"><button>Sign out</button></form>')
    return ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            '<meta name="color-scheme" content="light dark"><meta name="referrer" content="same-origin">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f'<header><h1>loom-agent analytics</h1>{nav}{out}</header><main>{body}</main></body></html>\n')


def number(value: object) -> str:
    """12,345; 3.5; – for none."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:,.2f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:,.1f}"
    return esc(value)


def pct(value: object) -> str:
    """A percentage the analytics give as 0-100: 12.5 %."""
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "–"
    return f"{value:.1f} %"


def ratio(value: object) -> str:
    """A ratio 0-1 as a percentage with two decimals, never 100.00 % unless it is 1."""
    if value is None or not isinstance(value, (int, float)):
        return "–"
    text = f"{value * 100:.2f}"
    if text == "100.00" and value < 1:
        text = "99.99"
    return f"{text} %"


def seconds(value: object) -> str:
    if value is None or not isinstance(value, (int, float)):
        return "–"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    if value < 3 * 86400:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} d"


def text_or_none(value: object, none: str = "(none)") -> str:
    """An identifier or property value, escaped; a missing one shown as `none`."""
    if value is None or value == "":
        return f'<span class="none">{esc(none)}</span>'
    return esc(value)


def section(ident: str, title: str, content: str, note: str = "") -> str:
    meta = f'<p class="meta">{note}</p>' if note else ""
    return f'<section id="{esc(ident)}"><h2>{esc(title)}</h2>{meta}{content}</section>'


def table(ident: str, headers: list[tuple[str, str]], rows: list[list[str]], empty: str, shown: int = 10) -> str:
    """A table whose cells are already HTML; headers are (label, css class). Below 720 px each row is a
    card, each cell labelled by its header (data-label). The first `shown` rows are in the table; the rest
    follow in a second one inside a <details> (opened without a script)."""
    if not rows:
        return f'<p class="empty">{esc(empty)}</p>'
    head = "".join(f'<th class="{cls}">{esc(label)}</th>' for label, cls in headers)

    def body(part: list[list[str]]) -> str:
        return "".join("<tr>" + "".join(f'<td class="{headers[i][1]}" data-label="{esc(headers[i][0])}">{cell}</td>'
                                        for i, cell in enumerate(row)) + "</tr>" for row in part)

    out = (f'<div class="scroll"><table class="data" id="{esc(ident)}"><thead><tr>{head}</tr></thead>'
           f"<tbody>{body(rows[:shown])}</tbody></table></div>")
    if len(rows) > shown:
        out += (f'<details class="more"><summary>{len(rows) - shown} more</summary><div class="scroll">'
                f'<table class="data" id="{esc(ident)}-more"><thead><tr>{head}</tr></thead>'
                f"<tbody>{body(rows[shown:])}</tbody></table></div></details>")
    return out


def message(kind: str, text: str) -> str:
    """An error or note box; `text` is escaped."""
    return f'<p class="{esc(kind)}" role="{"alert" if kind == "error" else "note"}">{esc(text)}</p>'
