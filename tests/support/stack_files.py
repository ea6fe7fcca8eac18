"""Readers for the deployment files, so the stack tests can check them without Docker or Kubernetes:
docker-compose.yml as Compose sees it (variables interpolated, anchors merged), its ports and
mounts, the Dockerfile's instructions, .dockerignore's matching, and the README's variable table."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?err}, ${NAME?err}, $NAME; $$ is a literal $
_VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
                       r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class Interpolated:
    value: Any
    without_default: tuple[str, ...]    # variables that an empty environment leaves unset


def interpolate(document: Any, environ: Mapping[str, str]) -> Interpolated:
    """Compose's variable substitution over every string of the document."""
    missing: list[str] = []

    def one(text: str) -> str:
        def replace(match: re.Match) -> str:
            if match["escaped"]:
                return "$"
            name = match["braced"] or match["bare"]
            op, arg = match["op"], match["arg"] or ""
            value = environ.get(name)
            if op in (":-", ":?") and not value or op in ("-", "?") and value is None:
                if op and op.endswith("-"):
                    return arg
                missing.append(name)
                return ""
            if value is None:
                missing.append(name)
                return ""
            return value
        return _VARIABLE.sub(replace, text)

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return one(node)
        if isinstance(node, list):
            return [walk(item) for item in node]
        if isinstance(node, dict):
            return {key: walk(value) for key, value in node.items()}
        return node

    return Interpolated(walk(document), tuple(missing))


def load_compose(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """docker-compose.yml with an empty (or the given) environment: every default applies."""
    return interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), environ or {}).value


@dataclass(frozen=True)
class Mount:
    source: str          # a host path (absolute) or a named volume
    target: str
    bind: bool


def service_mounts(compose: dict[str, Any], service: str) -> list[Mount]:
    """The service's volumes (short and long syntax); relative binds resolved against the repository."""
    mounts = []
    for item in compose["services"][service].get("volumes", []):
        if isinstance(item, str):
            source, target = item.split(":")[:2]
        else:
            source, target = item.get("source", ""), item["target"]
        bind = source.startswith((".", "/", "~"))
        mounts.append(Mount(str((COMPOSE_FILE.parent / source).resolve()) if bind else source, target, bind))
    return mounts


def host_path(compose: dict[str, Any], service: str, container_path: str) -> Path | None:
    """Where a path inside the service's container comes from on the host, through its bind mounts."""
    best: Mount | None = None
    for mount in service_mounts(compose, service):
        if mount.bind and (container_path == mount.target or container_path.startswith(mount.target.rstrip("/") + "/")):
            if best is None or len(mount.target) > len(best.target):
                best = mount
    if best is None:
        return None
    return Path(best.source + container_path[len(best.target):])


def container_ports(service: dict[str, Any]) -> set[int]:
    """Ports the service's container listens on, as declared by `ports` (its container side) and `expose`."""
    ports: set[int] = set()
    for item in service.get("ports", []):
        if isinstance(item, dict):
            ports.add(int(item["target"]))
        else:
            ports.add(int(str(item).split("/")[0].rsplit(":", 1)[-1]))
    ports.update(int(str(item).split("/")[0]) for item in service.get("expose", []))
    return ports


def command_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def flag_value(args: list[str], flag: str) -> str | None:
    """`--flag=value` or `--flag value` in an argument list."""
    for i, arg in enumerate(args):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
    return None


def split_url(url: str) -> tuple[str, int]:
    """host and port of `scheme://host:port/...` or `host:port`."""
    rest = url.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = rest.rpartition(":")
    if not host:
        return rest, 443 if url.startswith(("https://", "wss://")) else 80
    return host, int(port)


# ---- Dockerfile

@dataclass(frozen=True)
class Instruction:
    stage: int           # index of the FROM it follows
    keyword: str         # upper case
    args: str            # the rest of the (joined) line


def dockerfile_instructions(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    stage, pending = -1, ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(stage, keyword, args.strip()))
    return out


def exec_form(args: str) -> list[str] | None:
    """The JSON array of an exec-form instruction, else None (shell form)."""
    try:
        value = json.loads(args)
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories decides."""
    excluded = False
    parts = path.split("/")
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _ignore_regex(pattern.lstrip("!").strip("/"))
        if any(regex.fullmatch("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            excluded = not negated
    return excluded


def _ignore_regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def read_dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


# ---- README

def readme_environment_variables() -> set[str]:
    """Every variable the README's "Environment variables" table names, patterns expanded
    (`OTEL_EXPORTER_OTLP_[{TRACES,METRICS}_]PROTOCOL` is three names)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Environment variables", 1)[1].split("\n#", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            for token in re.findall(r"`([^`]+)`", line.split("|")[1]):
                names.update(name for name in expand_pattern(token) if re.fullmatch(r"[A-Z][A-Z0-9_]*", name))
    return names


def expand_pattern(pattern: str) -> Iterator[str]:
    """`A[B]C` is AC and ABC; `{X,Y}` is X or Y; they nest."""
    if not pattern:
        yield ""
        return
    head = pattern[0]
    if head in "[{":
        end = _closing(pattern, 0)
        inner, rest = pattern[1:end], pattern[end + 1:]
        choices = [""] + [inner] if head == "[" else _split_top(inner)
        for choice in choices:
            for middle in expand_pattern(choice):
                for tail in expand_pattern(rest):
                    yield middle + tail
        return
    for tail in expand_pattern(pattern[1:]):
        yield head + tail


def _closing(text: str, start: int) -> int:
    depth = 0
    for i in range(start, len(text)):
        depth += text[i] in "[{"
        depth -= text[i] in "]}"
        if depth == 0:
            return i
    raise ValueError(f"unbalanced pattern {text!r}")


def _split_top(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "[{"
        depth -= char in "]}"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return parts + [current]
