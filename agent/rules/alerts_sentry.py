"""Release health and cron monitoring, from what the Sentry SDKs send (agent/sentry/sessions.py and
crons.py): crash-free rates per release as recording rules with an alert on a drop, and missed and failed
cron runs.

Crash-free sessions follow Sentry's definition: 1 - crashed / started over the window, per job,
release and environment (summed over the agents of a job, so an application behind several sidecars
is one release). Users likewise, from the per-hour distinct users the agent counts. The alert needs
`min_sessions` started in the window, so a release seen by three testers is not an incident.

A cron run is missed when `time()` is past the monitor's next expected check-in plus its margin
(both gauges the agent sets at each check-in) by more than the grace; failed when its latest error or
timeout check-in is newer than its latest ok one (or there was never an ok one). Both take the
newest value over a job's agents: a job whose runs report to a different sidecar each time is one
monitor, and a sidecar that saw an old run does not make it look missed.
"""

from __future__ import annotations

from agent.rules.ruledef import Rule, alert, group, minutes, num, record, window_increase
from agent.rules.thresholds import CRITICAL_FACTOR, CronMonitors, ReleaseHealth, Thresholds

RATE_FOR_SECONDS = 300       # a crash-free rate must stay low for a while: one unlucky minute is not a release
BY = "job, release, environment"


def release_name(what: str, kind: str, window: str) -> str:
    return f"release:{what}:{kind}{window}"


def _sum(selector: str, window: str) -> str:
    return f"sum by ({BY}) (\n  {window_increase(selector, window)}\n)\n"


def _ratio(bad: str, total: str) -> str:
    # no crashed series yet for a release: 0 crashes, not "no ratio"
    return f"clamp_min(\n  1 - ({bad} or {total} * 0) / {total},\n  0\n)\n"


def release_health_group(d: ReleaseHealth) -> dict:
    window = minutes(d.window_minutes)
    started = release_name("loom_sessions_started", "increase", window)
    crashed = release_name("loom_sessions_crashed", "increase", window)
    ratio = release_name("loom_sessions_crash_free", "ratio", window)
    users = release_name("loom_session_users", "increase", window)
    crashed_users = release_name("loom_session_users_crashed", "increase", window)
    rules: list[Rule] = [
        record(started, _sum("loom_sessions_started_total", window)),
        record(crashed, _sum('loom_sessions_total{status="crashed"}', window)),
        record(ratio, _ratio(crashed, started)),
        record(users, _sum('loom_session_users_total{status="all"}', window)),
        record(crashed_users, _sum('loom_session_users_total{status="crashed"}', window)),
        record(release_name("loom_session_users_crash_free", "ratio", window), _ratio(crashed_users, users)),
    ]
    for severity, crash_rate in (("warning", 1 - d.crash_free_sessions),
                                 ("critical", (1 - d.crash_free_sessions) * CRITICAL_FACTOR)):
        level = 1 - crash_rate
        rules.append(alert(
            "LoomReleaseCrashFreeSessionsLow", f"{ratio} < {num(level)}\nand\n{started} >= {d.min_sessions}\n",
            RATE_FOR_SECONDS, severity,
            "Release {{ $labels.release }} ({{ $labels.environment }}) is {{ $value | humanizePercentage }} "
            "crash-free",
            f"{{{{ $value | humanizePercentage }}}} of the sessions of release {{{{ $labels.release }}}} in "
            f"{{{{ $labels.environment }}}} started in the last {window} did not crash (alert below "
            f"{num(level * 100)}%, with at least {d.min_sessions} sessions started)."))
    return group("loom-release-health", rules)


def _newest(selector: str) -> str:
    return f"max by (job, monitor) ({selector})"


def crons_group(d: CronMonitors) -> dict:
    expected = _newest("loom_cron_next_expected_timestamp_seconds + loom_cron_checkin_margin_seconds")
    failed = _newest('loom_cron_last_checkin_timestamp_seconds{status=~"error|timeout"}')
    ok = _newest('loom_cron_last_checkin_timestamp_seconds{status="ok"}')
    return group("loom-crons", [
        alert("LoomCronMissedRun", f"time() - {expected} > {d.missed_grace_seconds}\n", 0, "warning",
              "Cron monitor {{ $labels.monitor }} missed its run",
              "No check-in from cron monitor {{ $labels.monitor }} by its expected time: it is "
              "{{ $value | humanizeDuration }} past the expected run plus its margin (alert past "
              f"{d.missed_grace_seconds} s)."),
        alert("LoomCronRunFailed", f"({failed} > {ok})\nor\n({failed} unless {ok})\n", d.failed_for_seconds,
              "warning", "Cron monitor {{ $labels.monitor }} failed its last run",
              "The last finished run of cron monitor {{ $labels.monitor }} checked in with error or timeout, and "
              "no ok check-in came after it."),
    ])


def sentry_groups(t: Thresholds) -> list[dict]:
    return [release_health_group(t.release_health), crons_group(t.cron_monitors)]
