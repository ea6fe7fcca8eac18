"""The dashboard tab: the document of GET /api/analytics/dashboard (agent/analytics/dashboard.py, same
definitions) as HTML: summary cards, the signup and onboarding funnels as bar charts, goal completion
and service uptime as bar charts, coach productivity and client engagement as tables; a range selector
(7d / 30d / 90d, plain links) and a release filter (a GET form over the releases the agent has seen).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from agent.analytics_page.charts import Bar, bar_rows
from agent.analytics_page.layout import esc, message, number, page, pct, ratio, seconds, section, table, text_or_none

RANGES = ("7d", "30d", "90d")
DEFAULT_RANGE = "30d"


def dashboard_url(range_: str, release: str | None) -> str:
    query = {"range": range_, **({"release": release} if release else {})}
    return "/analytics?" + urlencode(query)


def toolbar(range_: str, release: str | None, releases: Sequence[str]) -> str:
    links = "".join(f'<a href="{esc(dashboard_url(r, release))}"{_CURRENT if r == range_ else ""}>{r}</a>'
                    for r in RANGES)
    choices = list(releases)
    if release and release not in choices:
        choices.append(release)
    options = '<option value="">all releases</option>' + "".join(
        f'<option value="{esc(r)}"{" selected" if r == release else ""}>{esc(r)}</option>' for r in reversed(choices))
    return (f'<div class="toolbar"><nav class="ranges" aria-label="range">{links}</nav>'
            '<form method="get" action="/analytics" class="release">'
            f'<input type="hidden" name="range" value="{esc(range_)}">'
            f'<label>Release <select name="release">{options}</select></label> <button>Apply</button></form></div>')


_CURRENT = ' aria-current="true"'


def render_dashboard(doc: dict[str, Any] | None, *, range_: str, release: str | None, releases: Sequence[str],
                     csrf: str, error: str | None = None) -> str:
    """The dashboard page; `doc` None with `error`: the store could not answer (the message says why)."""
    parts = [toolbar(range_, release, releases)]
    if doc is None:
        parts.append(message("error", error or "no data"))
        return page("Analytics dashboard · loom-agent", "".join(parts), tab="dashboard", csrf=csrf)
    r = doc.get("range", {})
    scope = f" · release {esc(release)}" if release else ""
    parts.append(f'<p class="meta">{_instant(r.get("from"))} to {_instant(r.get("to"))} UTC{scope}</p>')
    parts += [summary_cards(doc["summary"]),
              '<div class="grid2">', *(funnel_section(f) for f in doc.get("funnelMetrics", [])), "</div>",
              '<div class="grid2">', goal_section(doc.get("goalCompletion", [])),
              uptime_section(doc.get("serviceUptime", [])), "</div>",
              coach_section(doc.get("coachProductivity", [])), client_section(doc.get("clientEngagement", []))]
    return page("Analytics dashboard · loom-agent", "".join(parts), tab="dashboard", csrf=csrf)


def _instant(iso: object) -> str:
    """2026-12-04T17:07:57.253Z -> 2026-12-04 17:07 (escaped: the range comes from the document)."""
    text = str(iso or "")
    return esc(f"{text[:10]} {text[11:16]}" if len(text) >= 16 and text[10:11] == "T" else text)


def _card(label: str, value: str, sub: str = "") -> str:
    extra = f'<div class="sub">{sub}</div>' if sub else ""
    return f'<div class="card"><div class="label">{esc(label)}</div><div class="value">{value}</div>{extra}</div>'


def _roles(by_role: dict[str, Any]) -> str:
    return ", ".join(f"{esc(role)} {number(n)}" for role, n in sorted(by_role.items()) if n)


def summary_cards(s: dict[str, Any]) -> str:
    goals, engagement, coaches = s.get("goals", {}), s.get("engagement", {}), s.get("coaches", {})
    cards = [
        _card("Total users", number(s.get("totalUsers"))),
        _card("Active users", number(s.get("activeUsers")), _roles(s.get("activeUsersByRole", {}))),
        _card("New users", number(s.get("newUsers")), _roles(s.get("newUsersByRole", {}))),
        _card("Sessions booked", number(s.get("totalSessions")), f"{number(s.get('cancelledSessions'))} cancelled"),
        _card("Sessions completed", number(s.get("completedSessions")),
              f"{pct(s.get('sessionCompletionRate'))} of booked"),
        _card("Goals", number(goals.get("total")),
              f"{number(goals.get('completed'))} completed ({pct(goals.get('completionRate'))})"),
        _card("Task completion", pct(engagement.get("taskCompletionRate")),
              f"engagement score {number(engagement.get('averageEngagementScore'))}"),
        _card("Active coaches", number(coaches.get("activeCoaches")),
              f"{number(coaches.get('averageSessionsPerCoach'))} sessions each"),
    ]
    return section("summary", "Summary", f'<div class="cards">{"".join(cards)}</div>')


def funnel_section(funnel: dict[str, Any]) -> str:
    steps = funnel.get("steps", [])
    if funnel.get("funnel") == "onboarding":
        bars = [Bar(text_or_none(s.get("step")), float(s.get("started") or 0),
                    f"{number(s.get('completed'))} / {number(s.get('started'))} · {pct(s.get('completionRate'))}",
                    inner=float(s.get("completed") or 0)) for s in steps]
        note = (f"started (light) and completed (dark) per step; {number(funnel.get('flowsCompleted'))} flows "
                "completed")
        title = "Onboarding funnel"
    else:
        bars = [Bar(text_or_none(s.get("step")), float(s.get("users") or 0),
                    f"{number(s.get('users'))} · {pct(s.get('conversionRate'))}") for s in steps]
        note = "visitors reaching each step; conversion from the previous step"
        title = "Signup funnel"
    ident = f"funnel-{funnel.get('funnel', 'other')}"
    body = bar_rows(bars, title) if bars else '<p class="empty">No funnel events in this range.</p>'
    return section(ident, title, body, note)


def goal_section(goals: list[dict[str, Any]]) -> str:
    bars = [Bar(text_or_none(g.get("category")), float(g.get("created") or 0),
                f"{number(g.get('completed'))} / {number(g.get('created'))} · {pct(g.get('completionRate'))}",
                inner=float(g.get("completed") or 0)) for g in goals[:12]]
    body = bar_rows(bars, "Goal completion") if bars else '<p class="empty">No goals in this range.</p>'
    more = f"; the 12 largest of {len(goals)} categories" if len(goals) > 12 else ""
    return section("goals", "Goal completion", body, f"created (light) and completed (dark) per category{more}")


def uptime_section(targets: list[dict[str, Any]]) -> str:
    bars = []
    for t in targets:
        up = t.get("uptimeRatio")
        text = f"{ratio(up)} · {number(t.get('probes'))} probes · avg {seconds(t.get('averageLatencySeconds'))}"
        bars.append(Bar(esc(t.get("target", "")), 100.0 * float(up or 0), text, bad=up is not None and up < 0.99))
    body = (bar_rows(bars, "Service uptime", scale=100.0) if bars
            else '<p class="empty">No probe results in this range.</p>')
    return section("uptime", "Service uptime", body, "share of successful probes per target")


def coach_section(coaches: list[dict[str, Any]]) -> str:
    headers = [("Coach", "id"), ("Completed", "num"), ("Booked", "num"), ("Cancelled", "num"), ("Clients", "num"),
               ("Rating", "num"), ("Resources", "num"), ("Tasks", "num")]
    rows = [[esc(c.get("coachId", "")), number(c.get("sessionsCompleted")), number(c.get("sessionsBooked")),
             number(c.get("sessionsCancelled")), number(c.get("clientsManaged")), number(c.get("averageRating")),
             number(c.get("resourcesCreated")), number(c.get("tasksManaged"))] for c in coaches]
    return section("coaches", "Coach productivity", table("coach-table", headers, rows, "No coaches in this range."),
                   "the 50 coaches with the most completed sessions")


def client_section(clients: list[dict[str, Any]]) -> str:
    headers = [("Client", "id"), ("Events", "num"), ("Resource views", "num"), ("Tasks created", "num"),
               ("Tasks completed", "num"), ("Task completion", "num"), ("Engagement", "num")]
    rows = [[esc(c.get("userId", "")), number(c.get("events")), number(c.get("resourceViews")),
             number(c.get("tasksCreated")), number(c.get("tasksCompleted")), pct(c.get("taskCompletionRate")),
             number(c.get("averageEngagementScore"))] for c in clients]
    return section("clients", "Client engagement", table("client-table", headers, rows, "No active clients in this "
                                                                                          "range."),
                   "the 50 most active users who are not coaches")
