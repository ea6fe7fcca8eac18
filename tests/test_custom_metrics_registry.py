"""The custom metric registry: the first use fixes a metric's shape, conflicts and limits are refused,
batches are all or nothing, tags pass privacy and the cardinality guard (agent/custom_metrics/registry.py)."""

from __future__ import annotations

import pytest

from agent.custom_metrics.config import CustomMetricsConfig
from agent.custom_metrics.registry import BatchRejected, CustomMetrics, MetricError, Sample
from agent.events.privacy import Privacy
from agent.events.privacy_config import PrivacyConfig
from agent.metrics.store import MetricStore

OP = {"counter": "inc", "gauge": "set", "distribution": "observe"}


def sample(name: str, kind: str = "counter", value: float = 1.0, unit: str = "none", **tags: str) -> Sample:
    return Sample(name, kind, unit, value, tuple(tags), tuple(tags.values()), OP[kind])


def registry(privacy: Privacy | None = None, **config) -> CustomMetrics:
    return CustomMetrics(CustomMetricsConfig(**config), MetricStore(), privacy)


def series(reg: CustomMetrics, name: str) -> dict:
    family = reg.store.get(name)
    assert family is not None, f"{name} is not registered"
    return dict(family.series)


def refused(reg: CustomMetrics, *samples: Sample) -> MetricError:
    with pytest.raises(MetricError) as caught:
        for s in samples:
            reg.record(s)
    return caught.value


def test_counters_gauges_and_distributions_are_recorded_in_base_units() -> None:
    reg = registry()
    reg.record(sample("conversions", type="trial_signup"))
    reg.record(sample("conversions", value=2, type="trial_signup"))
    reg.record(sample("active_sessions", "gauge", 7))
    reg.record(sample("active_sessions", "gauge", 5))
    reg.record(sample("checkout", "distribution", 250, "millisecond"))
    assert series(reg, "loom_app_conversions") == {("trial_signup",): 3.0}
    assert series(reg, "loom_app_active_sessions") == {(): 5.0}
    histogram = reg.store.get("loom_app_checkout_seconds")
    assert histogram.kind == "histogram" and histogram.unit == "seconds"
    assert histogram.series[()][-1] == pytest.approx(0.25)      # the sum, in seconds
    assert reg.registered == 3


def test_the_first_use_fixes_the_type() -> None:
    reg = registry()
    reg.record(sample("conversions", type="trial_signup"))
    err = refused(reg, sample("conversions", "gauge", 3, type="trial_signup"))
    assert (err.field, err.reason) == ("type", "conflict")
    assert str(err) == ("type: metric loom_app_conversions is a counter with labels [type]; got a gauge with labels "
                        "[type]. A metric keeps the type and tag names of its first use")
    assert series(reg, "loom_app_conversions") == {("trial_signup",): 1.0}


def test_the_first_use_fixes_the_tag_names_but_not_their_order() -> None:
    reg = registry()
    reg.record(sample("signups", plan="pro", source="ads"))
    reg.record(Sample("signups", "counter", "none", 1.0, ("source", "plan"), ("ads", "pro"), "inc"))
    assert series(reg, "loom_app_signups") == {("pro", "ads"): 2.0}       # labels sorted: plan, source
    for tags in ({"plan": "pro"}, {"plan": "pro", "source": "ads", "region": "eu"}, {}):
        err = refused(reg, sample("signups", **tags))
        assert (err.field, err.reason) == ("tags", "conflict")
        assert "is a counter with labels [plan, source]" in err.message


def test_a_name_that_would_write_another_familys_series_is_refused() -> None:
    reg = registry()
    reg.store.counter("loom_app_checkouts", "an events.mappings rule's counter")
    err = refused(reg, sample("checkouts"))
    assert err.reason == "conflict" and "the metric of the agent loom_app_checkouts" in err.message
    reg.record(sample("checkout", "distribution", 1.0))
    err = refused(reg, sample("checkout_count", "gauge", 3))       # loom_app_checkout_count is a histogram's
    assert err.reason == "conflict" and "the custom metric loom_app_checkout (a histogram)" in err.message
    assert reg.store.get("loom_app_checkout_count") is None


def test_max_metrics_refuses_new_names_and_keeps_the_registered_ones_working() -> None:
    reg = registry(max_metrics=2)
    reg.record(sample("a"))
    reg.record(sample("b"))
    err = refused(reg, sample("c"))
    assert err.reason == "limit" and "custom_metrics.max_metrics (2)" in err.message
    reg.record(sample("a"))
    assert series(reg, "loom_app_a") == {(): 2.0} and reg.store.get("loom_app_c") is None
    reg.reconfigure(CustomMetricsConfig(max_metrics=3, namespace="shop"))
    reg.record(sample("c"))
    assert reg.registered == 3 and reg.store.get("loom_app_c") is not None     # the namespace waits for a restart
    assert reg.store.get("loom_agent_custom_metrics").series == {(): 3.0}


def test_a_batch_is_planned_whole_and_records_nothing_when_any_sample_is_refused() -> None:
    reg = registry()
    reg.record(sample("existing"))
    batch = [(0, sample("fresh", "gauge", 1)), (1, sample("existing", "gauge", 1)), (2, sample("fresh", "counter")),
             (3, sample("x", unit="furlong"))]
    with pytest.raises(BatchRejected) as caught:
        reg.plan(batch)
    assert [(i, e.field, e.reason) for i, e in caught.value.errors] == [
        (1, "type", "conflict"), (2, "type", "conflict"), (3, "unit", "invalid")]
    assert "loom_app_fresh is a gauge" in caught.value.errors[1][1].message     # declared by item 0 of the batch
    assert reg.store.get("loom_app_fresh") is None and reg.registered == 1
    assert series(reg, "loom_app_existing") == {(): 1.0}
    assert reg.commit(reg.plan([(0, sample("fresh", "gauge", 4)), (1, sample("fresh", "gauge", 5))])) == 2
    assert series(reg, "loom_app_fresh") == {(): 5.0}


def test_the_limit_counts_the_names_a_batch_would_add() -> None:
    reg = registry(max_metrics=2)
    with pytest.raises(BatchRejected) as caught:
        reg.plan([(0, sample("a")), (1, sample("b")), (2, sample("c")), (3, sample("a"))])
    assert [(i, e.reason) for i, e in caught.value.errors] == [(2, "limit")]


def test_new_tag_values_past_the_series_limit_fold_to_other_and_are_counted() -> None:
    reg = registry(series_limit=3)
    for i in range(10):
        reg.record(sample("checkouts", plan=f"plan{i}"))
    assert series(reg, "loom_app_checkouts") == {("plan0",): 1.0, ("plan1",): 1.0, ("plan2",): 1.0, ("other",): 7.0}
    assert reg.store.overflow[("loom_app_checkouts", "plan")] == 7
    reg.reconfigure(CustomMetricsConfig(series_limit=5))
    reg.record(sample("checkouts", plan="plan3"))
    assert ("plan3",) in series(reg, "loom_app_checkouts")


def test_tag_values_pass_privacy_and_private_tags_are_masked() -> None:
    privacy = Privacy(PrivacyConfig(private_properties=("coupon",)), b"k" * 32)
    reg = registry(privacy)
    reg.record(sample("logins", source="alice@example.com", coupon="SPRING24"))
    (key,) = series(reg, "loom_app_logins")
    assert key[0] == "[private]"                                     # labels sorted: coupon, source
    assert key[1].startswith("email:") and "alice" not in key[1]


@pytest.mark.parametrize("tags, field, message", [
    ({"userId": "u1"}, "tags.userId", "identifies a person"),
    ({"email": "x"}, "tags.email", "identifies a person"),
    ({"session_id": "s"}, "tags.session_id", "identifies a person"),
    ({"api_token": "t"}, "tags.api_token", "names a secret"),
    ({"le": "0.5"}, "tags.le", "which Prometheus reserves"),
    ({"plan": "a", "Plan": "b"}, "tags.Plan", "is the label 'plan', like the tag 'plan'"),
    ({"1st": "a"}, "tags.1st", "must start with a letter"),
    ({f"t{i}": "v" for i in range(17)}, "tags", "at most 16 tags"),
])
def test_tags_that_cannot_be_labels_are_refused(tags: dict, field: str, message: str) -> None:
    reg = registry()
    err = refused(reg, Sample("signups", "counter", "none", 1.0, tuple(tags), tuple(tags.values()), "inc"))
    assert (err.field, err.reason) == (field, "invalid") and message in err.message
    assert reg.registered == 0


def test_a_value_too_large_in_base_units_is_refused_before_anything_is_registered() -> None:
    reg = registry()
    err = refused(reg, sample("uptime", "gauge", 1e308, "week"))
    assert err.field == "value" and "too large in base units" in err.message
    assert reg.registered == 0


def test_names_are_refused_naming_the_field() -> None:
    reg = registry()
    assert refused(reg, sample("9lives")).field == "name"
    assert refused(reg, sample("signups_total", "gauge", 1)).field == "name"
    assert refused(reg, sample("x", unit="parsec")).field == "unit"
