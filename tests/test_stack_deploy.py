"""The agent's Dockerfile and the Kubernetes sidecar example, checked without Docker or a cluster:
the image is non-root with a healthcheck that really answers, its build stage copies only what exists
and yields a wheel carrying every data file; the manifests parse, run the agent non-root on a
read-only root with its store on an emptyDir, probe paths the agent serves, and set only variables
the agent reads."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.__main__ import build_parser
from agent.app.root import build_app
from agent.config.load import load_config, parse_config
from tests.support.procs import AgentProcess
from tests.support.stack_files import (ROOT, command_list, dockerfile_instructions, dockerignore_excludes, exec_form,
                               flag_value, load_compose, read_dockerignore, readme_environment_variables)

DOCKERFILE = dockerfile_instructions((ROOT / "Dockerfile").read_text())
FINAL_STAGE = max(i.stage for i in DOCKERFILE)
K8S_DIR = ROOT / "deploy" / "kubernetes"
AGENT_UID = 10001


def final(keyword: str) -> list[str]:
    return [i.args for i in DOCKERFILE if i.stage == FINAL_STAGE and i.keyword == keyword]


def healthcheck_command() -> list[str]:
    (args,) = final("HEALTHCHECK")
    command = exec_form(args.split(" CMD ", 1)[1])
    assert command, f"HEALTHCHECK should use the exec form (no shell needed): {args}"
    return command


def agent_get_paths() -> set[str]:
    app = build_app(parse_config("store: {driver: none}"))
    return {route.resource.canonical for route in app.router.routes() if route.method == "GET"}


# ---- Dockerfile

def test_the_image_is_multi_stage_on_python_slim() -> None:
    stages = [i.args.split()[0] for i in DOCKERFILE if i.keyword == "FROM"]
    assert len(stages) >= 2
    assert stages[-1].startswith("python:3.11-slim")


def test_the_image_runs_as_the_non_root_user_it_creates() -> None:
    (user,) = final("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) == AGENT_UID, f"USER {user}: numeric, so runAsNonRoot can verify it"
    created = " ".join(final("RUN"))
    assert f"--uid {AGENT_UID}" in created and f"chown {AGENT_UID}:{AGENT_UID} /data" in created


def test_the_image_exposes_the_agent_port_and_runs_the_agent() -> None:
    assert "9464" in " ".join(final("EXPOSE")).split()
    (entrypoint,) = final("ENTRYPOINT")
    assert exec_form(entrypoint) == ["python", "-m", "agent"]
    (cmd,) = final("CMD")
    args = exec_form(cmd)
    assert build_parser().parse_args(args).command == "run"
    assert flag_value(args, "--config") == "/etc/loom-agent/config.yaml"


def test_the_healthcheck_asks_an_endpoint_the_agent_serves() -> None:
    command = healthcheck_command()
    paths = re.findall(r"http://127\.0\.0\.1:\{port\}(/[^'\"]*)", " ".join(command))
    assert paths and set(paths) <= agent_get_paths(), paths


def test_every_copy_source_exists_and_is_in_the_build_context() -> None:
    ignore = read_dockerignore()
    stages = {i.args.split()[-1] for i in DOCKERFILE if i.keyword == "FROM" and " AS " in i.args.upper()}
    copies = [i.args.split() for i in DOCKERFILE if i.keyword in ("COPY", "ADD")]
    assert copies
    for words in copies:
        options = [w for w in words if w.startswith("--")]
        sources = [w for w in words if not w.startswith("--")][:-1]
        if any(o.startswith("--from=") for o in options):
            assert options[0].split("=", 1)[1] in stages
            continue
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
            assert not dockerignore_excludes(ignore, source), f"COPY {source}: excluded by .dockerignore"
    assert dockerignore_excludes(ignore, ".git/config") and dockerignore_excludes(ignore, "tests/support/procs.py")
    assert dockerignore_excludes(ignore, "agent/__pycache__/app.cpython-311.pyc")


@pytest.mark.slow
def test_the_build_stage_yields_a_wheel_with_every_data_file_of_the_agent(tmp_path: Path) -> None:
    """The first stage, reproduced: only what it COPYs, then `pip wheel`. A data file the package
    reads (the OpenAPI document, status page assets) but pyproject.toml does not ship would make the
    image differ from a checkout."""
    context = tmp_path / "context"
    context.mkdir()
    ignore = read_dockerignore()
    for words in (i.args.split() for i in DOCKERFILE if i.stage == 0 and i.keyword == "COPY"):
        for source in words[:-1]:
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, context / source, ignore=lambda d, names: [
                    n for n in names if dockerignore_excludes(ignore, os.path.relpath(Path(d) / n, ROOT))])
            else:
                shutil.copy2(ROOT / source, context / source)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
                             "-q", "-w", str(tmp_path / "wheels"), str(context)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (tmp_path / "wheels").glob("loom_agent-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    # node_modules: what `npm ci --prefix agent/replay` installs (the replay page's player), never shipped
    data_files = {str(p.relative_to(ROOT)) for p in (ROOT / "agent").rglob("*")
                  if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
                  and "node_modules" not in p.parts}
    assert "agent/api/openapi.json" in data_files
    assert data_files <= shipped, f"not in the wheel (pyproject.toml package-data): {sorted(data_files - shipped)}"
    assert "agent/__main__.py" in shipped


def run_healthcheck(command: list[str], listen: str) -> int:
    # the image's `python` is the interpreter running the tests here
    argv = [sys.executable if command[0] == "python" else command[0], *command[1:]]
    env = {"PATH": os.environ["PATH"], "LOOM_AGENT_LISTEN": listen}
    return subprocess.run(argv, env=env, capture_output=True, timeout=30).returncode


@pytest.mark.slow
def test_the_image_and_compose_healthchecks_pass_on_a_running_agent_and_fail_on_a_stopped_one(tmp_path: Path) -> None:
    compose = load_compose()
    compose_check = command_list(compose["services"]["agent"]["healthcheck"]["test"])
    assert compose_check[0] == "CMD"
    config = yaml.safe_load((ROOT / "deploy" / "compose" / "config.compose.yaml").read_text())
    config.pop("listen")
    config["telemetry"].pop("otlp")           # no collector here
    config["store"]["path"] = str(tmp_path / "loom-agent.db")
    agent = AgentProcess(tmp_path, config)
    try:
        listen = f"127.0.0.1:{agent.port}"
        assert run_healthcheck(healthcheck_command(), listen) == 0, agent.log()
        assert run_healthcheck(compose_check[1:], listen) == 0, agent.log()
    finally:
        agent.stop()
    assert run_healthcheck(healthcheck_command(), listen) != 0
    assert run_healthcheck(compose_check[1:], listen) != 0


# ---- Kubernetes

def manifests() -> dict[str, list[dict[str, Any]]]:
    return {p.name: [d for d in yaml.safe_load_all(p.read_text()) if d] for p in sorted(K8S_DIR.glob("*.yaml"))}


def one(kind: str) -> dict[str, Any]:
    (doc,) = [d for docs in manifests().values() for d in docs if d["kind"] == kind]
    return doc


def pod_spec() -> dict[str, Any]:
    return one("Deployment")["spec"]["template"]["spec"]


def agent_container() -> dict[str, Any]:
    (container,) = [c for c in pod_spec()["containers"] if "loom-agent" in c["image"]]
    return container


def agent_k8s_env() -> dict[str, str]:
    """The agent container's environment, secrets replaced by values of a valid length."""
    fake = {"LOOM_AGENT_HMAC_KEY": "k" * 40}
    return {e["name"]: e.get("value", fake.get(e["name"], "s" * 24)) for e in agent_container().get("env", [])}


def k8s_agent_config_text() -> str:
    args = agent_container()["args"]
    config_path = flag_value(args, "--config")
    mounts = {m["mountPath"]: m["name"] for m in agent_container()["volumeMounts"]}
    directory, key = config_path.rsplit("/", 1)
    volume = next(v for v in pod_spec()["volumes"] if v["name"] == mounts[directory])
    config_map = one("ConfigMap")
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    return config_map["data"][key]


def k8s_agent_config(tmp: Path):
    path = tmp / "config.yaml"
    path.write_text(k8s_agent_config_text())
    return load_config(str(path), environ=agent_k8s_env())


def test_every_manifest_parses_and_kustomize_lists_only_existing_files() -> None:
    docs = manifests()
    assert {"Deployment", "ConfigMap", "Service", "Secret", "ServiceMonitor"} <= \
        {d["kind"] for ds in docs.values() for d in ds}
    for name, items in docs.items():
        for doc in items:
            assert doc.get("apiVersion") and (doc["kind"] == "Kustomization" or doc["metadata"]["name"]), name
    kustomization = one("Kustomization")
    for resource in kustomization["resources"]:
        assert (K8S_DIR / resource).is_file(), resource
    assert "secret.example.yaml" not in kustomization["resources"]


@pytest.mark.parametrize("version", ["1.28.0", "latest"])
def test_every_core_manifest_matches_the_kubernetes_api_schema(version: str) -> None:
    """Strict: an unknown or misspelt field (readOnlyRootFilesytem) is an error, not silently ignored.
    The ServiceMonitor (a CRD) and the Kustomization have no schema there."""
    validator = pytest.importorskip("kubernetes_validate")
    version = validator.latest_version() if version == "latest" else version
    checked = 0
    for name, docs in manifests().items():
        for doc in docs:
            if doc["kind"] in ("ServiceMonitor", "Kustomization"):
                continue
            try:
                validator.validate(doc, version, strict=True)
            except validator.ValidationError as exc:
                pytest.fail(f"{name}: {doc['kind']} does not match Kubernetes {version}: {exc}")
            checked += 1
    assert checked == 4


def test_the_pod_has_the_application_and_the_agent_side_by_side() -> None:
    containers = pod_spec()["containers"]
    assert len(containers) == 2
    assert build_parser().parse_args(agent_container()["args"]).command == "run"


def test_the_sidecar_config_parses_and_listens_on_the_probed_port(tmp_path: Path) -> None:
    config = k8s_agent_config(tmp_path)
    ports = {p["name"]: p["containerPort"] for p in agent_container()["ports"]}
    assert config.listen == ("0.0.0.0", ports["metrics"])
    annotations = one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(config.listen[1])
    paths = agent_get_paths()
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = agent_container()[probe]["httpGet"]
        assert get["path"] in paths, f"{probe}: {get['path']} is not served by the agent"
        assert ports.get(get["port"], get["port"]) == config.listen[1]
    assert agent_container()["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert agent_container()["livenessProbe"]["httpGet"]["path"] == "/-/healthy"


def test_the_agent_runs_non_root_on_a_read_only_root() -> None:
    pod, container = pod_spec().get("securityContext", {}), agent_container()["securityContext"]
    effective = {**pod, **container}
    assert effective["runAsNonRoot"] is True
    assert effective["runAsUser"] == AGENT_UID
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]


def test_the_store_and_tmp_are_on_writable_empty_dirs(tmp_path: Path) -> None:
    store = k8s_agent_config(tmp_path).store
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    writable = {m["mountPath"]: volumes[m["name"]] for m in agent_container()["volumeMounts"]
                if not m.get("readOnly")}
    assert store.driver == "sqlite"
    data = writable[os.path.dirname(store.path)]
    assert "emptyDir" in data
    assert "emptyDir" in writable["/tmp"]
    size_limit_mb = int(data["emptyDir"]["sizeLimit"].removesuffix("Gi")) * 1024
    assert 0 < store.max_size_mb < size_limit_mb, "a full store must answer 503 before the kubelet evicts the Pod"


def test_every_variable_the_agent_container_sets_is_one_the_agent_reads() -> None:
    known = readme_environment_variables()
    assert "LOOM_AGENT_HMAC_KEY" in known
    names = [e["name"] for e in agent_container()["env"]]
    assert {"LOOM_AGENT_INGEST_API_KEYS", "LOOM_AGENT_ADMIN_TOKENS", "LOOM_AGENT_HMAC_KEY"} <= set(names)
    assert set(names) <= known, f"not in README's environment table: {sorted(set(names) - known)}"


def test_every_secret_reference_names_a_key_of_the_example_secret() -> None:
    secret = one("Secret")
    for container in pod_spec()["containers"]:
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] == secret["metadata"]["name"], env["name"]
                assert ref["key"] in secret["stringData"], env["name"]
    assert not any(e.get("value") for e in agent_container()["env"] if "KEY" in e["name"] or "TOKEN" in e["name"])


def test_the_service_and_service_monitor_reach_the_agent_port_as_job_loom_agent() -> None:
    service, monitor = one("Service"), one("ServiceMonitor")
    pod_labels = one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    agent_ports = {p["name"] for p in agent_container()["ports"]}
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert service_ports[endpoint["port"]]["targetPort"] in agent_ports
    assert endpoint["path"] == "/metrics"
    assert {"targetLabel": "job", "replacement": "loom-agent"} in endpoint["relabelings"]
