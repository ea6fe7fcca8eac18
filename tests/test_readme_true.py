"""README stays true: every metric it names is produced somewhere in agent/, every config key of
its reference block is accepted, and the quick start's commands exist."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from agent.config.load import parse_config

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SOURCE = "\n".join(p.read_text() for p in (ROOT / "agent").rglob("*.py"))
SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_info")


def metric_names() -> set[str]:
    names = set()
    for line in README.splitlines():
        if line.startswith("| `") and ("probe_" in line or "loom_" in line):
            cell = line.split("|")[1]
            names.update(re.findall(r"`((?:probe|loom)_[a-z0-9_]+)`", cell))
    return names


def test_every_metric_in_the_readme_is_produced_by_the_agent() -> None:
    names = metric_names()
    assert len(names) > 40
    missing = []
    for name in sorted(names):
        base = name
        for suffix in SUFFIXES:
            base = base.removesuffix(suffix)
        if f'"{name}"' not in SOURCE and f'"{base}"' not in SOURCE and f'"{base}_' not in SOURCE:
            missing.append(name)
    assert not missing, f"README names metrics the agent does not produce: {missing}"


def test_the_configuration_reference_block_is_a_valid_config() -> None:
    block = README.split("## Configuration", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    document = yaml.safe_load(block)
    # the reference shows placeholders for modules and a URL that does not resolve: make them concrete
    document["modules"] = {"api": {"kind": "http", "timeout": "2s"}}
    document["targets"][0]["module"] = "api"
    config = parse_config(yaml.safe_dump(document), environ={})
    assert config.targets and config.events.mappings


def test_quick_start_commands_exist() -> None:
    assert "python3 -m agent run --config config.yaml" in README
    assert "bash scripts/test.sh" in README
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
