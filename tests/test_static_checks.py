"""ruff (lint and import order) and mypy (types) on agent/, at the strictness pyproject.toml sets.

Why in the test suite: the README's test command is what CI runs, so a finding fails the build like a
failing test; both tools read their settings from pyproject.toml, so a developer runs the same checks
with `ruff check agent` and `mypy`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing_in_agent() -> None:
    result = run("ruff", "check", "agent")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing_in_agent() -> None:
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """Both tools, as configured, report a planted mistake (so a green run means something)."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\n\ndef f(x: int) -> str:\n    return x\n")
    lint = run("ruff", "check", "--config", str(ROOT / "pyproject.toml"), str(bad))
    assert lint.returncode == 1 and "F401" in lint.stdout
    types = run("mypy", "--config-file", str(ROOT / "pyproject.toml"), str(bad))
    assert types.returncode == 1 and "Incompatible return value" in types.stdout
