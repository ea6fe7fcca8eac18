"""PromQL text for the dashboards: selectors with the dashboard's variables, rates, quantiles, ratios.

Every selector carries `instance=~"$instance"` (one Grafana, several sidecar agents) plus the
matchers given, so a panel cannot forget the variable. Grafana fills `$__rate_interval` (at least
four scrape intervals) and `$__range` (the time picker's span).
"""

from __future__ import annotations

from agent.rules.alerts_events import increase_name
from agent.rules.ruledef import minutes

RATE = "$__rate_interval"
RANGE = "$__range"
INSTANCE = 'instance=~"$instance"'


def sel(metric: str, *matchers: str) -> str:
    """`metric{instance=~"$instance",<matchers>}`; a matcher is PromQL text: 'result="failure"'."""
    return f"{metric}{{{','.join((INSTANCE, *matchers))}}}"


def _by(labels: tuple[str, ...]) -> str:
    return f" by ({', '.join(labels)})" if labels else ""


def rate(metric: str, *matchers: str, by: tuple[str, ...] = (), window: str = RATE) -> str:
    """Per second, summed by `by`."""
    return f"sum{_by(by)} (rate({sel(metric, *matchers)}[{window}]))"


def per_minute(metric: str, *matchers: str, by: tuple[str, ...] = ()) -> str:
    """Per minute (product events are minutes apart, not seconds), summed by `by`."""
    return f"60 * {rate(metric, *matchers, by=by)}"


def total(metric: str, *matchers: str, by: tuple[str, ...] = (), window: str = RANGE) -> str:
    """How many over the dashboard's range, summed by `by`."""
    return f"sum{_by(by)} (increase({sel(metric, *matchers)}[{window}]))"


def ratio(numerator: str, denominator: str) -> str:
    """numerator / denominator, both already aggregated the same way."""
    return f"({numerator})\n/\n({denominator})"


def quantile(q: float, histogram: str, *matchers: str, by: tuple[str, ...] = (), window: str = RATE) -> str:
    """The q-quantile of a histogram family (its `_bucket` series), by `by`."""
    return (f"histogram_quantile({q:g}, sum by ({', '.join(('le', *by))}) "
            f"(rate({sel(histogram + '_bucket', *matchers)}[{window}])))")


def mean(histogram: str, *matchers: str, by: tuple[str, ...] = (), window: str = RATE) -> str:
    """The mean of a histogram family: sum / count over the window."""
    return ratio(rate(histogram + "_sum", *matchers, by=by, window=window),
                 rate(histogram + "_count", *matchers, by=by, window=window))


def buckets(histogram: str, *matchers: str) -> str:
    """Bucket increments per interval, for a heatmap."""
    return f"sum by (le) (increase({sel(histogram + '_bucket', *matchers)}[{RATE}]))"


def share(metric: str, part: str, *matchers: str, by: tuple[str, ...] = (), window: str = RATE) -> str:
    """The share (0-1) of `metric` whose labels also match `part`, by `by`."""
    return ratio(rate(metric, part, *matchers, by=by, window=window), rate(metric, *matchers, by=by, window=window))


def top(n: int, expr: str) -> str:
    return f"topk({n}, {expr})"


def num(value: float) -> str:
    """A threshold as PromQL text: 0.999, 14, never an exponent."""
    value = round(float(value), 10)
    return str(int(value)) if value.is_integer() else f"{value:.10f}".rstrip("0")


def recorded(what: str, window_minutes: int) -> str:
    """The loom-events recording rule counting `what` over an alert's window (per job, no instance):
    the name render-rules gives it for the window config.yaml sets, e.g. job:loom_login_failures:increase15m."""
    return increase_name(what, minutes(window_minutes))
