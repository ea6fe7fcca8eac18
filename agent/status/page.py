"""The status page as one HTML document: inline CSS, no script, no font or image to fetch, so it
works from an air-gapped sidecar and on a phone (viewport meta; below 720 px the target table turns
into one card per target). It reloads itself every REFRESH_SECONDS (<meta http-equiv=refresh>).

Every value that reaches the page goes through `esc()`: target names and labels come from the config,
failure details from the network (a server's malformed status line is quoted back in one).
"""

from __future__ import annotations

import html
from collections.abc import Mapping

from agent.rules.detectors import iso_time
from agent.status.history import Failure
from agent.status.model import WINDOW_24H, StatusReport, TargetStatus, TargetUptime

REFRESH_SECONDS = 30


def esc(value: object) -> str:
    """HTML-escape for text and for double-quoted attribute values."""
    return html.escape(str(value), quote=True)


def render_page(report: StatusReport) -> str:
    counts = report.counts()
    parts = [_HEAD.format(refresh=REFRESH_SECONDS, css=_CSS),
             '<header><h1>loom-agent</h1><p class="meta">version ', esc(report.version), " · rendered ",
             _time(report.rendered_at, report.rendered_at), f" · reloads every {REFRESH_SECONDS} s</p>",
             '<p class="summary">',
             *(f'<span class="pill {state}">{counts[state]} {state}</span> ' for state in ("up", "down", "unknown")),
             "</p></header><main>",
             _targets_section(report), _anomalies_section(report), _failures_section(report),
             "</main>", _FOOTER, "</body></html>\n"]
    return "".join(parts)


def _targets_section(report: StatusReport) -> str:
    note = ""
    if report.uptime_error is not None:
        note = (f'<p class="note">24 h uptime unavailable (store: {esc(report.uptime_error)}); '
                "showing counts since start.</p>")
    elif report.uptime_source == "memory":
        note = ('<p class="note">No store is configured: uptime is counted since the agent started, '
                f"{_time(report.since, report.rendered_at)}.</p>")
    if not report.targets:
        return f'<section id="targets"><h2>Targets</h2>{note}<p class="empty">No targets are configured.</p></section>'
    rows = "".join(_target_row(t, report.rendered_at) for t in report.targets)
    return (f'<section id="targets"><h2>Targets</h2>{note}<table class="targets"><thead><tr><th>Target</th>'
            "<th>State</th><th>Latency</th><th>Uptime</th><th>Last probe</th><th>Last failure</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></section>")


def _target_row(t: TargetStatus, now: float) -> str:
    last_probe = "never" if t.last_probe_at is None else _time(t.last_probe_at, now)
    name = (f'<td class="name" data-label="Target"><strong>{esc(t.name)}</strong>'
            f'<span class="kind">{esc(t.kind)}</span>'
            f'<div class="sub endpoint">{esc(t.endpoint)}</div>{_labels(t.labels)}</td>')
    return "".join((f'<tr class="target {t.state}" data-target="{esc(t.name)}">', name,
                    _cell("State", f'<span class="state {t.state}">{t.state}</span>'),
                    _cell("Latency", _latency(t.last_latency), "num"),
                    _cell("Uptime", _uptime(t.uptime), "num"),
                    _cell("Last probe", last_probe),
                    _cell("Last failure", _failure_cell(t.last_failure, now), "failure"), "</tr>"))


def _cell(label: str, content: str, css_class: str = "") -> str:
    """One cell, its content wrapped in one block (the phone layout shows the label above it via ::before)."""
    attr = f' class="{css_class}"' if css_class else ""
    return f'<td data-label="{label}"{attr}><div>{content}</div></td>'


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    chips = "".join(f'<span class="label">{esc(key)}={esc(value)}</span>' for key, value in sorted(labels.items()))
    return f'<div class="labels">{chips}</div>'


def _failure_cell(failure: Failure | None, now: float) -> str:
    if failure is None:
        return '<span class="none">none</span>'
    return (f'<span class="reason">{esc(failure.reason)}</span> {_time(failure.at, now)}'
            f'<div class="detail">{esc(failure.detail)}</div>')


def _anomalies_section(report: StatusReport) -> str:
    if report.anomalies_evaluated_at is None:
        when = "not evaluated yet"
    else:
        when = f"evaluated {_time(report.anomalies_evaluated_at, report.rendered_at)}"
    if not report.anomalies:
        body = '<p class="empty">None active.</p>'
    else:
        items = "".join(f'<li class="anomaly {esc(a.severity)}"><span class="severity">{esc(a.severity)}</span> '
                        f"<strong>{esc(a.detector)}</strong> over {a.window_minutes} min</li>"
                        for a in report.anomalies)
        body = f'<ul class="anomalies">{items}</ul>'
    return (f'<section id="anomalies"><h2>Active anomalies</h2><p class="meta">{when}; details: '
            f'<code>GET /api/anomalies</code> (admin)</p>{body}</section>')


def _failures_section(report: StatusReport) -> str:
    if not report.failures:
        body = '<p class="empty">No failures since the agent started.</p>'
    else:
        items = "".join(f'<li class="failure-item"><strong>{esc(f.target)}</strong> '
                        f'<span class="reason">{esc(f.reason)}</span> {_time(f.at, report.rendered_at)}'
                        f'<div class="detail">{esc(f.detail)}</div></li>' for f in report.failures)
        body = f'<ol class="failures">{items}</ol>'
    return f'<section id="failures"><h2>Recent failures</h2>{body}</section>'


def _time(at: float, now: float) -> str:
    """`<time>` with the UTC instant in its attribute and how long ago as its text."""
    stamp = iso_time(at)
    return f'<time datetime="{stamp}" title="{stamp}">{ago(now - at)}</time>'


def ago(seconds: float) -> str:
    if seconds < 1:
        return "just now"
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} d ago"


def _latency(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    ms = seconds * 1000
    if ms < 100:
        return f"{ms:.1f} ms"
    if ms < 10_000:
        return f"{ms:.0f} ms"
    return f"{seconds:.1f} s"


def _uptime(uptime: TargetUptime) -> str:
    window = "24 h" if uptime.window == WINDOW_24H else "since start"
    ratio = uptime.ratio
    if ratio is None:
        return f'–<div class="sub">{window}, no probes yet</div>'
    probes = "1 probe" if uptime.probes == 1 else f"{uptime.probes:,} probes"
    return f'{percent(ratio)}<div class="sub">{window}, {probes}</div>'


def percent(ratio: float) -> str:
    """99.95 %; never 100.00 % unless every probe succeeded."""
    text = f"{ratio * 100:.2f}"
    if text == "100.00" and ratio < 1:
        text = "99.99"
    return f"{text} %"


_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="refresh" content="{refresh}">
<meta name="color-scheme" content="light dark">
<title>loom-agent status</title><style>{css}</style></head><body>
"""

_FOOTER = ('<footer><a href="/metrics">/metrics</a> · <a href="/api/status">/api/status</a> (JSON) · '
           '<a href="/openapi.json">/openapi.json</a> · <a href="/-/healthy">/-/healthy</a> · '
           '<a href="/-/ready">/-/ready</a></footer>')

_CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#fff;--card:#f6f8fa;
--up:#1a7f37;--up-bg:#dafbe1;--down:#cf222e;--down-bg:#ffebe9;--unknown:#59636e;--unknown-bg:#eaeef2;
--warn:#9a6700;--warn-bg:#fff8c5}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9198a1;--line:#3d444d;--bg:#0d1117;
--card:#151b23;--up:#3fb950;--up-bg:#12261e;--down:#f85149;--down-bg:#2d1214;--unknown:#9198a1;
--unknown-bg:#212830;--warn:#d29922;--warn-bg:#272115}}
*{box-sizing:border-box}
body{margin:0 auto;max-width:1400px;padding:1rem;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--fg);background:var(--bg)}
h1{font-size:1.4rem;margin:0}h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
.meta,.sub,.note,.empty,footer,.none{color:var(--muted);font-size:.85rem}
.meta{margin:.2rem 0}.note{margin:.2rem 0 .6rem}
.pill,.state,.reason,.severity,.label,.kind{display:inline-block;border-radius:1rem;padding:0 .55rem;
font-size:.8rem;font-weight:600;white-space:nowrap}
.summary{margin:.6rem 0 0}
.up.pill,.state.up{color:var(--up);background:var(--up-bg)}
.down.pill,.state.down,.reason{color:var(--down);background:var(--down-bg)}
.unknown.pill,.state.unknown,.kind,.label{color:var(--unknown);background:var(--unknown-bg)}
.label,.kind{font-weight:500}.kind{margin-left:.4rem}
.labels{margin-top:.2rem;display:flex;flex-wrap:wrap;gap:.25rem}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;vertical-align:top;padding:.45rem .6rem;border-bottom:1px solid var(--line)}
th{font-size:.8rem;color:var(--muted);font-weight:600}
td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
.endpoint,.detail{overflow-wrap:anywhere;word-break:break-word}
.detail{font:.8rem/1.35 ui-monospace,SFMono-Regular,Menlo,monospace;color:var(--muted);margin-top:.15rem}
tr.down td:first-child{box-shadow:inset 3px 0 var(--down)}
tr.up td:first-child{box-shadow:inset 3px 0 var(--up)}
tr.unknown td:first-child{box-shadow:inset 3px 0 var(--unknown)}
ul.anomalies,ol.failures{list-style:none;padding:0;margin:0}
.anomalies li,.failures li{padding:.45rem 0;border-bottom:1px solid var(--line)}
.anomaly.critical .severity{color:var(--down);background:var(--down-bg)}
.anomaly.warning .severity{color:var(--warn);background:var(--warn-bg)}
code{font-size:.8rem}
footer{margin-top:2rem;padding-top:.6rem;border-top:1px solid var(--line)}
a{color:inherit}
@media (max-width:720px){
body{padding:.75rem}
table.targets,table.targets tbody{display:block;width:100%}
table.targets thead{display:none}
table.targets tr{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));column-gap:.6rem;background:var(--card);
border:1px solid var(--line);border-left-width:4px;border-radius:.6rem;margin:0 0 .6rem;padding:.35rem .7rem}
table.targets tr.down{border-left-color:var(--down)}
table.targets tr.up{border-left-color:var(--up)}
table.targets tr.unknown{border-left-color:var(--unknown)}
table.targets td{display:block;border:0;padding:.25rem 0;box-shadow:none!important}
table.targets td::before{content:attr(data-label);display:block;color:var(--muted);font-size:.7rem;font-weight:600;
text-transform:uppercase;letter-spacing:.03em}
table.targets td.name{grid-column:1/3}
table.targets td[data-label="State"]{grid-column:3;grid-row:1;justify-self:end}
table.targets td.name::before,table.targets td[data-label="State"]::before{content:none}
table.targets td.failure{grid-column:1/-1;border-top:1px solid var(--line)}
td.num{white-space:normal}
}
"""
