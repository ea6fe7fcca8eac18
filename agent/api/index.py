"""`/`: a small page listing the targets and their last result (no external assets)."""

from __future__ import annotations

import html
import time

from aiohttp import web

from agent import __version__
from agent.api import RUNTIME


async def index(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    rows = []
    for name, (target, result, when) in sorted(runtime.probe_metrics.last_results().items()):
        if result is None:
            state, detail, latency, age = "pending", "", "", ""
        else:
            state = "up" if result.success else "down"
            detail = "" if result.success else f"{result.reason.value}: {result.detail}"
            latency, age = f"{result.duration_seconds * 1000:.1f} ms", f"{time.time() - when:.0f} s ago"
        rows.append(f"<tr class={state}><td>{html.escape(name)}</td><td>{target.kind}</td>"
                    f"<td>{html.escape(target.url or target.address or 'system resolver')}</td>"
                    f"<td>{state}</td><td>{latency}</td><td>{age}</td><td>{html.escape(detail)}</td></tr>")
    body = _PAGE.format(version=__version__, rows="\n".join(rows) or "<tr><td colspan=7>no targets</td></tr>")
    return web.Response(text=body, content_type="text/html")


_PAGE = """<!doctype html>
<html lang=en><head><meta charset=utf-8><meta name=viewport content="width=device-width,initial-scale=1">
<title>loom-agent</title>
<style>body{{font-family:system-ui,sans-serif;margin:1rem}}table{{border-collapse:collapse;width:100%}}
td,th{{padding:.3rem .5rem;border-bottom:1px solid #ddd;text-align:left}}.up td:nth-child(4){{color:#176f2c}}
.down td:nth-child(4){{color:#b00020;font-weight:bold}}</style></head>
<body><h1>loom-agent {version}</h1>
<p><a href="/metrics">/metrics</a> · <a href="/probe?target=127.0.0.1:9464&amp;module=tcp_connect&amp;debug=true">/probe (debug)</a>
 · <a href="/-/healthy">/-/healthy</a> · <a href="/-/ready">/-/ready</a></p>
<table><thead><tr><th>target</th><th>kind</th><th>endpoint</th><th>state</th><th>latency</th><th>last probe</th>
<th>failure</th></tr></thead><tbody>
{rows}
</tbody></table></body></html>
"""


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
