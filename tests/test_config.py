"""Config loading: defaults, merging, env overrides, and one bad-config fixture per error message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config.load import load_config, parse_config
from agent.config.node import ConfigError, parse_duration

ROOT = Path(__file__).resolve().parent.parent
BAD = sorted((Path(__file__).parent / "fixtures" / "bad_configs").glob("*.yaml"))


def expected_error(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# error: "), f"{path.name} must start with '# error: <message>'"
    return first.removeprefix("# error: ")


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_config_is_rejected_naming_the_key(path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(path), environ={})
    assert any(expected_error(path) in error for error in info.value.errors), info.value.errors


def test_every_error_is_reported_in_one_run() -> None:
    text = """
targets:
  - {name: a, kind: tcp, address: "127.0.0.1:1", interval: 5s, timeout: 6s}
  - {name: b, kind: http, url: "gopher://x"}
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert info.value.errors == ["targets[0].timeout: must be shorter than interval (5s)",
                                 "targets[1].url: must start with http:// or https://"]


@pytest.mark.parametrize("text,seconds", [("500ms", 0.5), ("15s", 15), ("5m", 300), ("1h30m", 5400), ("2d", 172800)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_defaults_and_module_merge() -> None:
    config = parse_config("""
defaults: {interval: 30s, timeout: 3s}
modules:
  api: {kind: http, timeout: 2s, valid_status_codes: [200, 204], method: HEAD}
targets:
  - {name: a, module: api, url: "http://127.0.0.1:1/", method: GET, labels: {service: auth, tier: "1"}}
  - {name: b, kind: tcp, address: "127.0.0.1:2"}
""")
    a, b = config.targets
    assert (a.kind, a.interval, a.timeout, a.module) == ("http", 30.0, 2.0, "api")
    assert a.options.method == "GET"                          # the target's own key wins
    assert tuple(a.options.valid_status_codes) == (200, 204)  # the module's key is kept
    assert dict(a.labels) == {"service": "auth", "tier": "1"}
    assert (b.kind, b.interval, b.timeout, b.retries) == ("tcp", 30.0, 3.0, 0)
    assert config.listen == ("127.0.0.1", 9464)


def test_listen_env_override() -> None:
    config = parse_config("listen: 127.0.0.1:9000\n", environ={"LOOM_AGENT_LISTEN": "0.0.0.0:9999"})
    assert config.listen == ("0.0.0.0", 9999)
    with pytest.raises(ConfigError, match="LOOM_AGENT_LISTEN: invalid address"):
        parse_config("", environ={"LOOM_AGENT_LISTEN": "nope"})


def test_secret_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOM_TEST_TOKEN", "s3cret")
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    config = parse_config(f"""
targets:
  - {{name: a, kind: http, url: "http://127.0.0.1/", bearer_token: "${{LOOM_TEST_TOKEN}}"}}
  - {{name: b, kind: http, url: "http://127.0.0.1/", bearer_token_file: "{token_file}"}}
""")
    assert config.targets[0].options.bearer_token == "s3cret"
    assert config.targets[1].options.bearer_token == "from-file"


def test_default_config_is_valid() -> None:
    config = load_config(str(ROOT / "config.yaml"), environ={})
    assert config.targets, "the default config must probe something out of the box"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.slow
def test_check_config_exit_codes() -> None:
    ok = run_cli("check-config", "config.yaml")
    assert ok.returncode == 0, ok.stderr
    assert "valid" in ok.stdout
    bad = run_cli("check-config", str(BAD[0]))
    assert bad.returncode == 2
    assert expected_error(BAD[0]) in bad.stderr


@pytest.mark.slow
def test_run_with_bad_config_exits_2() -> None:
    path = next(p for p in BAD if p.stem == "timeout_not_shorter")
    result = run_cli("run", "--config", str(path))
    assert result.returncode == 2
    assert "targets[2].timeout: must be shorter than interval (15s)" in result.stderr


@pytest.mark.slow
def test_help_and_version() -> None:
    assert run_cli("--help").returncode == 0
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("loom-agent ")
