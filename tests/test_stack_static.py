"""The docker-compose stack, checked without a Docker engine: every file it mounts exists, every host and
port the configs name (Prometheus' scrape targets and Alertmanager, the agent's OTLP endpoint and
probe targets, Grafana's datasource, the demo's agent URL) is a compose service listening there,
the agent's compose config parses, and the Alertmanager entrypoint renders the secrets exactly as
envsubst would. The Dockerfile and the Kubernetes example are in test_stack_deploy.py."""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
from pathlib import Path

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
ENTRYPOINT = ROOT / "deploy" / "compose" / "alertmanager-entrypoint.sh"
# the three secrets prometheus/alertmanager.yml's header names; the last two are ${...} placeholders
SECRETS = ("SLACK_WEBHOOK_URL", "ALERT_EMAIL_WEBHOOK", "ALERT_WEBHOOK_URL")
PLACEHOLDERS = SECRETS[1:]
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

def test_alertmanager_gets_its_config_templates_secrets_and_a_tmpfs() -> None:
    service = SERVICES["alertmanager"]
    entry = command_list(service["entrypoint"])
    assert host_path(COMPOSE, "alertmanager", entry[-1]) == ENTRYPOINT
    assert host_path(COMPOSE, "alertmanager", "/etc/alertmanager/alertmanager.yml") == ALERTMANAGER_YML
    config = yaml.safe_load(ALERTMANAGER_YML.read_text())
    for pattern in config["templates"]:
        assert glob.glob(str(host_path(COMPOSE, "alertmanager", pattern))), f"templates {pattern} finds nothing"
    targets = {s["target"]: s["source"] for s in service["secrets"]}
    assert set(targets) == {f"/etc/alertmanager/secrets/{name}" for name in SECRETS}
    for source in targets.values():
        assert source in COMPOSE["secrets"]
    assert "/run/alertmanager" in service["tmpfs"]
    assert flag_value(command_list(service["command"]), "--web.listen-address").endswith(":9093")
    assert 9093 in container_ports(service)


def render_with_entrypoint(tmp: Path, secrets: dict[str, str], shell: list[str],
                           path: str | None = None) -> subprocess.CompletedProcess:
    secrets_dir = tmp / "secrets"
    secrets_dir.mkdir(exist_ok=True)
    for name, value in secrets.items():
        (secrets_dir / name).write_text(value)
    stub = tmp / "alertmanager-stub"
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp}/args\n')
    stub.chmod(0o755)
    env = {"PATH": path or "/usr/local/bin:/usr/bin:/bin", "LOOM_AM_SECRETS_DIR": str(secrets_dir),
           "LOOM_AM_CONFIG_IN": str(ALERTMANAGER_YML), "LOOM_AM_CONFIG_OUT": str(tmp / "run" / "alertmanager.yml"),
           "LOOM_AM_BIN": str(stub)}
    return subprocess.run([*shell, str(ENTRYPOINT), "--storage.path=/alertmanager"], env=env,
                          capture_output=True, text=True, timeout=30)


def envsubst_reference(secrets: dict[str, str]) -> str:
    envsubst = shutil.which("envsubst")
    if envsubst is None:
        pytest.skip("envsubst (gettext-base) is not installed")
    env = {name: secrets[name].rstrip("\n") for name in PLACEHOLDERS}   # $(cat FILE) drops trailing newlines
    return subprocess.run([envsubst, " ".join(f"${{{n}}}" for n in PLACEHOLDERS)], input=ALERTMANAGER_YML.read_text(),
                          env=env, capture_output=True, text=True, check=True, timeout=30).stdout


TRICKY = {"SLACK_WEBHOOK_URL": "https://hooks.example/slack\n",
          "ALERT_EMAIL_WEBHOOK": "https://mail.example/hook?token=a&b=c\\d|e$HOME${ALERT_WEBHOOK_URL}\n\n",
          "ALERT_WEBHOOK_URL": "https://alerts.example/w/${NOT_A_SECRET}/&x=1"}


def busybox_path(tmp: Path) -> str:
    """A PATH where sh, awk, cat, mkdir and dirname are busybox's, as in the prom/alertmanager image."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed")
    bin_dir = tmp / "busybox-bin"
    bin_dir.mkdir()
    for applet in ("sh", "awk", "cat", "mkdir", "dirname"):
        (bin_dir / applet).symlink_to(busybox)
    return str(bin_dir)


@pytest.mark.slow
@pytest.mark.parametrize("shell", ["dash", "busybox"])
def test_the_entrypoint_renders_exactly_what_envsubst_renders(tmp_path: Path, shell: str) -> None:
    if shell == "dash":
        path, argv = None, ["/bin/sh"]
    else:
        path = busybox_path(tmp_path)
        argv = [f"{path}/sh"]
    result = render_with_entrypoint(tmp_path, TRICKY, argv, path)
    assert result.returncode == 0, result.stderr
    rendered = (tmp_path / "run" / "alertmanager.yml").read_text()
    assert rendered == envsubst_reference(TRICKY)
    assert "https://mail.example/hook?token=a&b=c\\d|e$HOME${ALERT_WEBHOOK_URL}'" in rendered
    assert (tmp_path / "args").read_text().split() == [f"--config.file={tmp_path}/run/alertmanager.yml",
                                                       "--storage.path=/alertmanager"]
    assert (tmp_path / "run" / "alertmanager.yml").stat().st_mode & 0o077 == 0


@pytest.mark.slow
def test_the_rendered_config_passes_amtool_with_the_example_secrets(tmp_path: Path) -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool (prometheus-alertmanager) is not installed")
    examples = {name: (COMPOSE_FILE.parent / COMPOSE["secrets"][source]["file"]).read_text()
                for name, source in (("SLACK_WEBHOOK_URL", "slack_webhook_url"),
                                     ("ALERT_EMAIL_WEBHOOK", "alert_email_webhook"),
                                     ("ALERT_WEBHOOK_URL", "alert_webhook_url"))}
    result = render_with_entrypoint(tmp_path, examples, ["/bin/sh"])
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "run" / "alertmanager.yml").read_text()
    text = text.replace("/etc/alertmanager/secrets", str(tmp_path / "secrets"))
    text = text.replace("/etc/alertmanager/templates", str(ROOT / "prometheus" / "alertmanager"))
    (tmp_path / "checked.yml").write_text(text)
    check = subprocess.run([amtool, "check-config", str(tmp_path / "checked.yml")], capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.slow
@pytest.mark.parametrize("missing", SECRETS)
def test_the_entrypoint_refuses_to_start_without_a_secret(tmp_path: Path, missing: str) -> None:
    secrets = {name: "https://example.invalid/x" for name in SECRETS if name != missing}
    result = render_with_entrypoint(tmp_path, secrets, ["/bin/sh"])
    assert result.returncode == 1
    assert f"secrets/{missing}: missing" in result.stderr
    assert not (tmp_path / "args").exists()


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
