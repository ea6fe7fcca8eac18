"""The docker-compose stack, checked without a Docker engine: every file it mounts exists, every host and
port the configs name (Prometheus' scrape targets and Alertmanager, the agent's OTLP endpoint and
probe targets, Grafana's datasource, the demo's agent URL) is a compose service listening there,
the agent's compose config parses, and Alertmanager runs the committed config with every secret file it
reads mounted. The Dockerfile and the Kubernetes example are in test_stack_deploy.py."""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.__main__ import build_parser
from agent.config.load import load_config
from agent.demo.cli import PROBE_INTERVAL, PROBE_TIMEOUT
from agent.demo.targets import DemoTarget, DemoTargets
from agent.config.node import ConfigError
from tests.support.stack_files import (COMPOSE_FILE, ROOT, command_list, container_ports, flag_value, host_path,
                               interpolate, load_compose, service_mounts, split_url)

COMPOSE = load_compose()
SERVICES = COMPOSE["services"]
PROMETHEUS_YML = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
ALERTMANAGER_YML = ROOT / "prometheus" / "alertmanager.yml"
# the three secret files prometheus/alertmanager.yml's header names (Alertmanager reads each itself)
SECRETS = ("SLACK_WEBHOOK_URL", "ALERT_EMAIL_WEBHOOK_TOKEN", "ALERT_WEBHOOK_TOKEN")
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def agent_environment() -> dict[str, str]:
    return {key: str(value) for key, value in SERVICES["agent"].get("environment", {}).items()}


def agent_config_path() -> Path:
    args = command_list(SERVICES["agent"]["command"])
    path = host_path(COMPOSE, "agent", flag_value(args, "--config"))
    assert path is not None, f"the agent's --config is not a mounted file: {args}"
    return path


def compose_agent_config():
    return load_config(str(agent_config_path()), environ=agent_environment())


def assert_listens(service: str, port: int, what: str) -> None:
    assert service in SERVICES, f"{what}: {service!r} is not a compose service ({sorted(SERVICES)})"
    assert port in container_ports(SERVICES[service]), \
        f"{what}: service {service!r} does not expose port {port} ({sorted(container_ports(SERVICES[service]))})"


# ---- the compose file itself

def test_the_stack_has_every_service_of_the_issue() -> None:
    assert set(SERVICES) >= {"agent", "demo", "prometheus", "alertmanager", "grafana", "otel-collector"}


def test_every_variable_has_a_default_so_a_fresh_clone_starts() -> None:
    result = interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), {})
    assert result.without_default == (), f"variables with no default: {result.without_default}"


def test_every_image_is_pinned_to_a_version() -> None:
    for name, service in SERVICES.items():
        image = service["image"]
        if "build" in service:
            continue
        tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
        assert tag and tag != "latest" and any(c.isdigit() for c in tag), f"{name}: {image} is not pinned"


def test_every_file_the_stack_mounts_exists() -> None:
    checked = 0
    for name in SERVICES:
        for mount in service_mounts(COMPOSE, name):
            if mount.bind:
                assert Path(mount.source).exists(), f"{name}: mounts {mount.source}, which does not exist"
                checked += 1
            else:
                assert mount.source in COMPOSE.get("volumes", {}), f"{name}: undeclared volume {mount.source}"
    for secret, spec in COMPOSE.get("secrets", {}).items():
        assert (COMPOSE_FILE.parent / spec["file"]).is_file(), f"secret {secret}: {spec['file']} does not exist"
        checked += 1
    for name, service in SERVICES.items():
        if "build" in service:
            context = COMPOSE_FILE.parent / service["build"]["context"]
            assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file(), name
    assert checked >= 10


def compose_client() -> list[str] | None:
    """`docker compose` (the plugin) or Debian's docker-compose, whichever works here."""
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) and subprocess.run([*command, "version"], capture_output=True,
                                                       timeout=30).returncode == 0:
            return command
    return None


@pytest.mark.slow
def test_docker_compose_accepts_the_file_when_a_client_is_installed(tmp_path: Path) -> None:
    """Compose's own schema check, offline (`config` needs no engine)."""
    command = compose_client()
    if command is None:
        pytest.skip("no docker compose client here")
    result = subprocess.run([*command, "-f", str(COMPOSE_FILE), "config", "-q"], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path, env={"PATH": "/usr/local/bin:/usr/bin:/bin"})
    assert result.returncode == 0, result.stdout + result.stderr


# ---- Prometheus

def test_every_target_prometheus_scrapes_is_a_compose_service_listening_there() -> None:
    targets = [(job["job_name"], target) for job in PROMETHEUS_YML["scrape_configs"]
               for static in job.get("static_configs", []) for target in static["targets"]]
    assert ("loom-agent", "agent:9464") in targets
    for job, target in targets:
        host, port = split_url(target)
        assert_listens("prometheus" if host in LOOPBACK else host, port, f"scrape job {job}")


def test_prometheus_sends_alerts_to_the_compose_alertmanager() -> None:
    targets = [t for am in PROMETHEUS_YML["alerting"]["alertmanagers"] for s in am["static_configs"]
               for t in s["targets"]]
    assert targets
    for target in targets:
        assert_listens(*split_url(target), "alerting.alertmanagers")


def test_prometheus_reads_the_repository_config_and_every_rule_file() -> None:
    args = command_list(SERVICES["prometheus"]["command"])
    config = flag_value(args, "--config.file")
    assert host_path(COMPOSE, "prometheus", config) == ROOT / "prometheus" / "prometheus.yml"
    config_dir = config.rsplit("/", 1)[0]
    for pattern in PROMETHEUS_YML["rule_files"]:
        in_container = pattern if pattern.startswith("/") else f"{config_dir}/{pattern}"
        on_host = host_path(COMPOSE, "prometheus", in_container)
        found = sorted(Path(p).name for p in glob.glob(str(on_host)))
        expected = sorted(p.name for p in (ROOT / "prometheus" / "rules").glob("*.yml"))
        assert found == expected and found, f"rule_files {pattern} finds {found} in the container"


# ---- Alertmanager

def secret_files(config: Any) -> set[str]:
    """Every file a part of the Alertmanager config reads a secret from (`*_file` keys)."""
    if isinstance(config, dict):
        return {v for k, v in config.items() if k.endswith("_file") and isinstance(v, str)} | \
            {f for v in config.values() for f in secret_files(v)}
    if isinstance(config, list):
        return {f for v in config for f in secret_files(v)}
    return set()


def test_alertmanager_runs_the_shipped_config_with_its_templates_and_every_secret_file() -> None:
    service = SERVICES["alertmanager"]
    assert "entrypoint" not in service                   # nothing renders the file: it runs as committed
    args = command_list(service["command"])
    assert host_path(COMPOSE, "alertmanager", flag_value(args, "--config.file")) == ALERTMANAGER_YML
    config = yaml.safe_load(ALERTMANAGER_YML.read_text())
    for pattern in config["templates"]:
        assert glob.glob(str(host_path(COMPOSE, "alertmanager", pattern))), f"templates {pattern} finds nothing"
    targets = {s["target"]: s["source"] for s in service["secrets"]}
    assert set(targets) == secret_files(config) == {f"/etc/alertmanager/secrets/{name}" for name in SECRETS}
    for source in targets.values():
        example = COMPOSE_FILE.parent / COMPOSE["secrets"][source]["file"]
        assert example.is_file() and example.read_text().strip(), example
    assert flag_value(args, "--web.listen-address").endswith(":9093")
    assert 9093 in container_ports(service)


@pytest.mark.slow
def test_the_shipped_config_passes_amtool_as_the_container_runs_it() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool (prometheus-alertmanager) is not installed")
    check = subprocess.run([amtool, "check-config", str(ALERTMANAGER_YML)], capture_output=True, text=True,
                           timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


# ---- the agent

def test_the_compose_agent_config_parses_and_listens_where_prometheus_scrapes() -> None:
    config = compose_agent_config()
    assert config.listen == ("0.0.0.0", 9464)
    # the file says the same as LOOM_AGENT_LISTEN, so reading either one tells the truth
    without_env = {k: v for k, v in agent_environment().items() if k != "LOOM_AGENT_LISTEN"}
    assert load_config(str(agent_config_path()), environ=without_env).listen == config.listen
    assert_listens("agent", config.listen[1], "the agent's listen port")


def test_the_compose_agent_config_is_refused_when_broken(tmp_path: Path) -> None:
    """The parse above can fail: the same file with a typo is rejected, naming the key."""
    broken = tmp_path / "config.yaml"
    broken.write_text(agent_config_path().read_text().replace("max_size_mb:", "max_size_mbs:"))
    with pytest.raises(ConfigError, match="store.max_size_mbs: unknown key"):
        load_config(str(broken), environ=agent_environment())


def test_the_agent_runs_the_mounted_config_and_keeps_its_store_on_the_volume() -> None:
    args = command_list(SERVICES["agent"]["command"])
    assert build_parser().parse_args(args).command == "run"
    store = compose_agent_config().store
    data = [m for m in service_mounts(COMPOSE, "agent") if not m.bind]
    assert any(store.path.startswith(m.target.rstrip("/") + "/") for m in data), \
        f"store.path {store.path} is not on a named volume ({data})"


def test_the_agent_exports_otlp_to_the_collectors_receiver() -> None:
    otlp = compose_agent_config().telemetry.otlp
    host, port = split_url(otlp.endpoint)
    assert_listens(host, port, "telemetry.otlp.endpoint")
    collector = yaml.safe_load(collector_config_path().read_text())
    protocol = "grpc" if otlp.protocol == "grpc" else "http"
    receiver = collector["receivers"]["otlp"]["protocols"][protocol]
    assert split_url(receiver["endpoint"])[1] == port
    assert receiver["endpoint"].startswith("0.0.0.0:"), "the collector must listen beyond its own loopback"


def demo_targets() -> dict[str, DemoTarget]:
    """The targets `demo --targets-listen 0.0.0.0:PORT --advertise HOST` serves, as the compose demo runs it."""
    args = command_list(SERVICES["demo"]["command"])
    port = int(flag_value(args, "--targets-listen").rsplit(":", 1)[1])
    servers = DemoTargets(Path("/nonexistent"), "0.0.0.0", port, flag_value(args, "--advertise"))
    targets = servers._targets(port, port + 1, port + 2, port + 3, Path("/nonexistent/cert.pem"))
    return {target.name: target for target in targets}


def test_every_probe_target_of_the_compose_config_is_reachable_in_the_stack() -> None:
    config = compose_agent_config()
    demo = demo_targets()
    assert len(config.targets) >= 4
    for target in config.targets:
        host, port = split_url(target.url or target.address)
        if host in LOOPBACK:
            assert port == config.listen[1], f"{target.name}: loopback is the agent's own container"
        elif target.name in demo and demo[target.name].state == "failing":
            assert host in SERVICES, f"target {target.name}: {host} is not a compose service"
        else:
            assert_listens(host, port, f"target {target.name}")


def test_the_compose_config_probes_exactly_the_targets_the_demo_serves() -> None:
    """The entries the demo prints for an agent it does not start, but for the TLS CA: the demo's
    certificate is made in its own container, so the compose agent probes without verifying."""
    listed = {t["name"]: t for t in yaml.safe_load(agent_config_path().read_text())["targets"]}
    demo = demo_targets()
    assert {"healthy", "slow", "flapping", "failing"} <= {t.state for t in demo.values()}
    for name, target in demo.items():
        expected = target.config(PROBE_INTERVAL, PROBE_TIMEOUT)
        if "tls" in expected and "ca_file" in expected["tls"]:
            expected["tls"] = {"verify": False}
        assert listed.get(name) == expected, f"target {name}: the compose config differs from the demo's"


def test_the_compose_thresholds_are_the_ones_the_rules_were_rendered_from() -> None:
    assert compose_agent_config().alerting == load_config(str(ROOT / "config.yaml"), environ={}).alerting


def test_the_demo_sends_to_the_agent_service_with_its_key() -> None:
    service = SERVICES["demo"]
    assert service["image"] == SERVICES["agent"]["image"]
    args = command_list(service["command"])
    parsed = build_parser().parse_args(args)
    assert parsed.command == "demo" and parsed.duration == "0"
    assert split_url(parsed.agent) == ("agent", 9464)
    assert parsed.targets_listen.startswith("0.0.0.0:"), "the agent's container must reach the targets"
    assert parsed.advertise == "demo"
    keys = agent_environment()["LOOM_AGENT_INGEST_API_KEYS"].split(",")
    assert service["environment"]["LOOM_AGENT_INGEST_API_KEYS"].split(",")[0] == keys[0]
    assert service["depends_on"]["agent"]["condition"] == "service_healthy"


# ---- Grafana and the collector

def test_grafana_datasource_points_at_the_compose_prometheus_with_the_fixed_uid() -> None:
    provisioning = host_path(COMPOSE, "grafana", "/etc/grafana/provisioning")
    assert provisioning == ROOT / "grafana" / "provisioning"
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert datasource["uid"] == "loom-prometheus" and datasource["type"] == "prometheus"
    assert_listens(*split_url(datasource["url"]), "the Grafana datasource")
    assert datasource["jsonData"]["timeInterval"] == PROMETHEUS_YML["global"]["scrape_interval"]


def test_the_dashboards_provider_reads_the_mounted_dashboards() -> None:
    provisioning = ROOT / "grafana" / "provisioning"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "loom.yml").read_text())["providers"]
    assert provider["type"] == "file"
    assert host_path(COMPOSE, "grafana", provider["options"]["path"]) == ROOT / "grafana" / "dashboards"


def test_every_dashboard_defaults_to_the_provisioned_datasource_and_the_home_one_exists() -> None:
    (datasource,) = yaml.safe_load((ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
                                   .read_text())["datasources"]
    dashboards = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
    assert dashboards
    for path in dashboards:
        variables = json.loads(path.read_text())["templating"]["list"]
        (variable,) = [v for v in variables if v["type"] == "datasource"]
        assert variable["query"] == datasource["type"], path.name
        assert variable["current"]["value"] == datasource["uid"], path.name
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path(COMPOSE, "grafana", home) in dashboards


def collector_config_path() -> Path:
    config = flag_value(command_list(SERVICES["otel-collector"]["command"]), "--config")
    path = host_path(COMPOSE, "otel-collector", config)
    assert path is not None and path.is_file(), config
    return path


def test_every_collector_pipeline_uses_components_it_defines() -> None:
    collector = yaml.safe_load(collector_config_path().read_text())
    pipelines = collector["service"]["pipelines"]
    assert {"traces", "metrics"} <= set(pipelines)
    for name, pipeline in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in collector[kind], f"pipeline {name}: {kind[:-1]} {component} is not defined"
    for extension in collector["service"].get("extensions", []):
        assert extension in collector["extensions"]
    for protocol in collector["receivers"]["otlp"]["protocols"].values():
        assert_listens("otel-collector", split_url(protocol["endpoint"])[1], "an OTLP receiver")
