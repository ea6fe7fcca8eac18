"""Module files an operator might get wrong, in either form: each is a config error naming the key (exit 2
of check-config), never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agent.config.load import load_config
from agent.config.node import ConfigError


def errors_of(tmp_path: Path, config: dict, modules_file: bytes | None = None) -> list[str]:
    if modules_file is not None:
        (tmp_path / "blackbox.yml").write_bytes(modules_file)
        config = {**config, "modules_file": "blackbox.yml"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"targets": [], "store": {"driver": "none"}, **config}))
    with pytest.raises(ConfigError) as info:
        load_config(str(path), environ={})
    return info.value.errors


@pytest.mark.parametrize("block", [[1], "x", 5])
def test_a_probers_block_that_is_not_a_mapping_is_an_error_naming_it(tmp_path: Path, block: object) -> None:
    modules = {"bad": {"prober": "http", "http": block}, "also": {"prober": "tcp", "tcp": block}}
    assert sorted(errors_of(tmp_path, {"modules": modules})) == [
        f"modules.also.tcp: must be a mapping, got {type(block).__name__}",
        f"modules.bad.http: must be a mapping, got {type(block).__name__}"]
    file = yaml.safe_dump({"modules": modules}).encode()
    assert sorted(errors_of(tmp_path, {}, file)) == [
        f"modules_file (blackbox.yml): modules.also.tcp: must be a mapping, got {type(block).__name__}",
        f"modules_file (blackbox.yml): modules.bad.http: must be a mapping, got {type(block).__name__}"]


def test_files_that_are_not_utf8_are_errors_not_tracebacks(tmp_path: Path) -> None:
    assert errors_of(tmp_path, {}, b"modules:\n  x: {prober: http}\n# \xff\n") == [
        "modules_file (blackbox.yml): not UTF-8 text (byte 31)"]
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"targets: []\n# caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), environ={})
    assert info.value.errors == [f"{path}: not UTF-8 text (byte 17)"]
