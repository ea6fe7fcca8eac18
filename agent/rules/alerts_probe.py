"""The probe rules: target down, slow, certificate expiring; and the uptime SLO burn-rate alerts.

The probe alerts read the last probe's gauges, whose labels are `target` plus the target's static
labels (such as `service`): alerts keep them, so Alertmanager can route by service and inhibit
the latency alert of a target that is down.

The SLO alerts follow the multi-window, multi-burn-rate pattern of the SRE workbook: an alert
needs a long window (is the budget really burning?) and a short one (is it still burning now?).
The error ratio is failed probes over all probes, per target (`loom_probes_total{result}`).
"""

from __future__ import annotations

from agent.rules.ruledef import Rule, alert, duration, group, num, record
from agent.rules.thresholds import Probes, Slo

DAY = 86400
SLO_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
# (severity, long window, short window, burn rate): the workbook's page and ticket pairs
BURN_RATES = (
    ("critical", "1h", "5m", 14.4),
    ("critical", "6h", "30m", 6.0),
    ("warning", "1d", "2h", 3.0),
    ("warning", "3d", "6h", 1.0),
)
# the short window already proves the burn is current: `for` only rides out one bad evaluation
BURN_FOR_SECONDS = {"critical": 120, "warning": 900}


def error_ratio_name(window: str) -> str:
    return f"target:loom_probes_error_ratio:rate{window}"


def probe_group(probes: Probes) -> dict:
    return group("loom-probes", [
        alert("LoomProbeDown", 'probe_success{ip=""} == 0', probes.down_for_seconds, "critical",
              "Probe of {{ $labels.target }} is failing",
              f"Every probe of {{{{ $labels.target }}}} has failed for {duration(probes.down_for_seconds)}."),
        alert("LoomProbeHighLatency", f"probe_duration_seconds > {num(probes.latency_threshold_seconds)}",
              probes.latency_for_seconds, "warning",
              "Probe of {{ $labels.target }} is slow",
              "The last probe of {{ $labels.target }} took {{ $value | humanizeDuration }}, above "
              f"{num(probes.latency_threshold_seconds)}s for {duration(probes.latency_for_seconds)}."),
        *_certificate_alerts(probes),
    ])


def _certificate_alerts(probes: Probes) -> list[Rule]:
    out = []
    for severity, days in (("warning", probes.cert_warning_days), ("critical", probes.cert_critical_days)):
        out.append(alert(
            "LoomTLSCertificateExpiring",
            f"(probe_ssl_earliest_cert_expiry - time()) / {DAY} < {days}", 900, severity,
            "TLS certificate of {{ $labels.target }} expires soon",
            "The certificate chain presented by {{ $labels.target }} expires in "
            f"{{{{ $value | printf \"%.1f\" }}}} days (alert under {days} days)."))
    return out


def slo_group(slo: Slo) -> dict:
    budget = 1 - slo.uptime_objective
    rules: list[Rule] = [record(error_ratio_name(w), _error_ratio(w)) for w in SLO_WINDOWS]
    for severity in ("critical", "warning"):
        pairs = [b for b in BURN_RATES if b[0] == severity]
        expr = "\nor\n".join(_burn_condition(long, short, rate, budget) for _, long, short, rate in pairs)
        windows = ", ".join(f"{long}/{short} at {num(rate)}x" for _, long, short, rate in pairs)
        rules.append(alert(
            "LoomUptimeSLOBurnRate", expr + "\n", BURN_FOR_SECONDS[severity], severity,
            "{{ $labels.target }} is burning its uptime error budget",
            f"{{{{ $labels.target }}}} fails probes fast enough to spend the error budget of its "
            f"{num(slo.uptime_objective * 100)}% uptime objective {{{{ $value | printf \"%.1f\" }}}}x "
            f"faster than sustainable (alert on {windows})."))
    return group("loom-slo", rules)


def _error_ratio(window: str) -> str:
    rate = f"rate(loom_probes_total{{result=\"failure\"}}[{window}])"
    return (f"sum without (result) ({rate})\n"
            f"/\nsum without (result) (rate(loom_probes_total[{window}]))\n")


def _burn_condition(long: str, short: str, rate: float, budget: float) -> str:
    """Both windows above the burn rate; the value is the long window's burn rate."""
    return (f"(\n  {error_ratio_name(long)} / {num(budget)} > {num(rate)}\nand\n"
            f"  {error_ratio_name(short)} / {num(budget)} > {num(rate)}\n)")
