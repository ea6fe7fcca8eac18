"""The `custom_metrics:` block: defaults, every key, and one bad-config fixture per error message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.custom_metrics.config import DEFAULT_BUCKETS, CustomMetricsConfig, StatsdConfig, parse_custom_metrics
from agent.config.node import Node

BAD = sorted((Path(__file__).parent / "fixtures" / "bad_configs").glob("custom_metrics_*.yaml"))


def parse(block: Any) -> tuple[CustomMetricsConfig, list[str]]:
    errors: list[str] = []
    config = parse_custom_metrics(Node(block, "custom_metrics", errors))
    return config, errors


def test_defaults() -> None:
    config, errors = parse(None)
    assert errors == []
    assert config == CustomMetricsConfig()
    assert (config.namespace, config.max_metrics, config.series_limit) == ("loom_app", 1000, 2000)
    assert config.buckets == DEFAULT_BUCKETS == (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
    assert config.statsd == StatsdConfig(enabled=False, listen=("127.0.0.1", 8125))


def test_every_key() -> None:
    config, errors = parse({"namespace": "shop", "max_metrics": 50, "series_limit": 300, "buckets": [1, 5, 25],
                            "metric_buckets": {"shop_upload_size_bytes": [1024, 1048576]},
                            "statsd": {"enabled": True, "listen": "0.0.0.0:9125"}})
    assert errors == []
    assert (config.namespace, config.max_metrics, config.series_limit) == ("shop", 50, 300)
    assert config.buckets == (1.0, 5.0, 25.0)
    assert config.buckets_for("shop_upload_size_bytes") == (1024.0, 1048576.0)
    assert config.buckets_for("shop_other") == (1.0, 5.0, 25.0)
    assert config.statsd == StatsdConfig(enabled=True, listen=("0.0.0.0", 9125))


def test_an_empty_namespace_keeps_names_as_sent_and_port_zero_picks_a_free_port() -> None:
    config, errors = parse({"namespace": "", "statsd": {"listen": "127.0.0.1:0"}})
    assert errors == [] and config.namespace == "" and config.statsd.listen == ("127.0.0.1", 0)
    config, errors = parse({"statsd": {"listen": "[::1]:0"}})
    assert errors == [] and config.statsd.listen == ("::1", 0)


@pytest.mark.parametrize("namespace", ["loom", "loom_agent", "probe", "process", "python"])
def test_namespaces_of_the_agents_own_metrics_are_refused(namespace: str) -> None:
    _, errors = parse({"namespace": namespace})
    assert len(errors) == 1 and errors[0].startswith("custom_metrics.namespace: ")


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_custom_metrics_blocks_name_the_key(path: Path) -> None:
    expected = path.read_text().splitlines()[0].removeprefix("# error: ")
    assert parse(yaml.safe_load(path.read_text())["custom_metrics"])[1] == [expected]
