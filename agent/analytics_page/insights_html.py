"""The insights tab: the GET form (insights_form.py) and the three answers of the insights API's
functions (agent/analytics/trends.py, funnels.py, retention.py) drawn: the trend as a line chart, the
funnel as a bar chart of persons per step with conversion and time to convert, the retention as the
triangle table with each cell shaded by its percentage.
"""

from __future__ import annotations

from typing import Any

from agent.analytics_page.charts import Bar, Line, bar_rows, line_chart
from agent.analytics_page.insights_form import (
    INTERVALS,
    MATHS,
    MAX_STEPS,
    ORDERS,
    PERIODS,
    RANGES,
    WINDOWS,
    InsightsForm,
)
from agent.analytics_page.layout import esc, message, number, page, pct, seconds, section


def _select(name: str, value: str, choices: tuple[str, ...], label: str) -> str:
    options = "".join(f'<option{" selected" if c == value else ""}>{esc(c)}</option>' for c in choices)
    return f'<label>{esc(label)}<select name="{name}">{options}</select></label>'


def _text(name: str, value: str, label: str, placeholder: str = "") -> str:
    hint = f' placeholder="{esc(placeholder)}"' if placeholder else ""
    return (f'<label>{esc(label)}<input name="{name}" value="{esc(value)}" size="18" maxlength="200"'
            f' autocomplete="off"{hint}></label>')


def insights_form(f: InsightsForm) -> str:
    steps = list(f.steps) + ([""] if len(f.steps) < MAX_STEPS else [])
    step_inputs = "".join(_text("step", s, f"Step {i + 1}", "event name") for i, s in enumerate(steps))
    return ('<form class="insight" method="get" action="/analytics/insights">'
            f'<fieldset>{_select("range", f.range, RANGES, "Range")}</fieldset>'
            '<h3>Trend</h3><fieldset>'
            f'{_text("event", f.event, "Event")}{_select("math", f.math, MATHS, "Count")}'
            f'{_select("interval", f.interval, INTERVALS, "Interval")}'
            f'{_text("breakdown", f.breakdown, "Breakdown by property", "optional")}</fieldset>'
            f'<h3>Funnel</h3><fieldset>{step_inputs}{_select("window", f.window, WINDOWS, "Window")}'
            f'{_select("order", f.order, ORDERS, "Order")}</fieldset>'
            '<h3>Retention</h3><fieldset>'
            f'{_text("cohort", f.cohort, "Cohort event", "first seen")}'
            f'{_text("returning", f.returning, "Returning event", "any event")}'
            f'{_select("period", f.period, PERIODS, "Period")}'
            f'<label>Periods<input name="periods" type="number" min="2" max="12" value="{f.periods}"></label>'
            '<button class="primary">Show</button></fieldset></form>')


def bucket_label(iso: str, interval: str) -> str:
    """2026-12-03T14:00:00Z -> 12-03 (day, week), 12-03 14h (hour), 2026-12 (month)."""
    if interval == "month":
        return iso[:7]
    if interval == "hour":
        return f"{iso[5:10]} {iso[11:13]}h"
    return iso[5:10]


def trend_section(doc: dict[str, Any] | None, f: InsightsForm, error: str | None) -> str:
    title = f"Trend: {f.event} ({f.math.replace('_', ' ')} per {f.interval})"
    if doc is None:
        return section("trend", title, message("error", error or "no answer"))
    lines = []
    for result in doc.get("results", []):
        name = str(result.get("event"))
        if "breakdown_value" in result:
            value = result.get("breakdown_value")
            name = "other" if result.get("is_other") else ("(none)" if value is None else str(value))
        lines.append(Line(name, result.get("data", [])))
    labels = [bucket_label(b, doc.get("interval", f.interval)) for b in doc.get("buckets", [])]
    total = sum(int(r.get("total") or 0) for r in doc.get("results", []) if f.math == "total")
    note = f"{number(total)} events in the range (UTC buckets)" if f.math == "total" else "persons per bucket (UTC)"
    if not any(v for line in lines for v in line.values):
        return section("trend", title, '<p class="empty">No such events in this range.</p>', note)
    return section("trend", title, line_chart(lines, labels, title), note)


def funnel_section(doc: dict[str, Any] | None, f: InsightsForm, error: str | None) -> str:
    title = "Funnel: " + " → ".join(f.steps)
    if doc is None:
        return section("funnel", title, message("error", error or "no answer"))
    steps = doc.get("steps", [])
    bars = []
    for s in steps:
        text = f"{number(s.get('persons'))} · {pct(s.get('conversion_from_first'))}"
        if s.get("median_seconds_from_previous") is not None:
            text += f" · median {seconds(s.get('median_seconds_from_previous'))}"
        bars.append(Bar(f"{number(s.get('step'))}. {esc(s.get('event'))}", float(s.get("persons") or 0), text))
    note = (f"persons reaching each step within {esc(f.window)} of step 1 ({esc(f.order)}); conversion from "
            "step 1; median time from the previous step")
    if not steps or not steps[0].get("persons"):
        return section("funnel", title, '<p class="empty">Nobody did step 1 in this range.</p>', note)
    return section("funnel", title, bar_rows(bars, title), note)


def _heat(percentage: float) -> str:
    return f"r{max(0, min(10, round(percentage / 10)))}"


def retention_section(doc: dict[str, Any] | None, f: InsightsForm, error: str | None) -> str:
    cohort = f.cohort or "first seen"
    returning = f.returning or "any event"
    title = f"Retention: {cohort} → {returning} (by {f.period})"
    if doc is None:
        return section("retention", title, message("error", error or "no answer"))
    cohorts = doc.get("cohorts", [])
    width = max((len(c.get("values", [])) for c in cohorts), default=0)
    head = ("<tr><th>Cohort</th><th class=\"num\">Persons</th>"
            + "".join(f'<th class="num">{esc(f.period.capitalize())} {k}</th>' for k in range(width)) + "</tr>")
    rows = []
    for c in cohorts:
        cells = []
        for value in c.get("values", []):
            share = float(value.get("percentage") or 0)
            cells.append(f'<td class="{_heat(share)}">{pct(share)}<small>{number(value.get("persons"))}</small></td>')
        cells += ["<td></td>"] * (width - len(cells))
        rows.append(f'<tr><td class="cohort">{esc(str(c.get("date", ""))[:10])}</td>'
                    f'<td class="num">{number(c.get("persons"))}</td>{"".join(cells)}</tr>')
    note = f"persons by the {f.period} of their {'first ' if doc.get('type') == 'first_time' else ''}cohort event, " \
           f"and the share of them with a returning event each {f.period} after"
    body = (f'<div class="scroll"><table class="retention"><thead>{head}</thead><tbody>{"".join(rows)}</tbody>'
            "</table></div>")
    return section("retention", title, body, note)


def render_insights(f: InsightsForm, *, trend: dict[str, Any] | None, funnel: dict[str, Any] | None,
                    retention: dict[str, Any] | None, errors: dict[str, str], csrf: str,
                    form_error: str | None = None) -> str:
    """The insights page. `errors`: insight -> why it has no answer; `form_error`: a bad parameter (then
    no insight was asked)."""
    parts = [insights_form(f)]
    if form_error is not None:
        parts.append(message("error", form_error))
    else:
        parts += [trend_section(trend, f, errors.get("trends")), funnel_section(funnel, f, errors.get("funnel")),
                  retention_section(retention, f, errors.get("retention"))]
    return page("Insights · loom-agent", "".join(parts), tab="insights", csrf=csrf)
