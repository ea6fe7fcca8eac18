"""The import graph of agent/: no module imports itself through others, and no function-local import
hides a cycle.

Why a test: a cycle works until the day someone imports the modules in another order; the usual
dodge (an import inside a function) hides the cycle from readers too. Imports under
`if TYPE_CHECKING:` are not edges: they name types for the checker and never run (agent/api/keys.py
types every application key that way, so that every module may import it).
"""

from __future__ import annotations

import ast
from pathlib import Path

AGENT = Path(__file__).resolve().parent.parent / "agent"
# imports inside functions that are not cycle dodges: optional or heavy dependencies loaded on use,
# and the CLI's sub-commands (module: imported names)
LAZY_ALLOWED = {
    "agent.__main__": {"uvloop", "prometheus_client", "aiohttp", "agent.app.root", "agent.api.keys",
                       "agent.config.load", "agent.rules.render", "agent.dashboards.render", "agent.demo.cli",
                       "agent.store.retention", "agent.store.cleanup", "agent.docs_render",
                       "agent.receiver.config"},
    "agent.store.open": {"agent.store.sqlite", "agent.store.postgres"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(AGENT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(path: Path, known: set[str]) -> tuple[set[str], list[tuple[int, str]]]:
    """(agent modules imported at module level, function-local imports as (line, module))."""
    module = module_name(path)
    tree = ast.parse(path.read_text(), str(path))
    top: set[str] = set()
    local: list[tuple[int, str]] = []

    def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        base = resolve(module, node, path.name == "__init__.py")
        # `from agent.api import keys` imports the submodule agent.api.keys
        return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for name in targets(child):
                    if in_function:
                        local.append((child.lineno, name))
                    elif name.split(".")[0] == "agent":
                        top.add(name)
            else:
                visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(tree, False)
    return top, local


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def graph() -> tuple[dict[str, set[str]], dict[str, list[tuple[int, str]]]]:
    paths = {module_name(p): p for p in AGENT.rglob("*.py")}
    known = set(paths)
    edges: dict[str, set[str]] = {}
    locals_: dict[str, list[tuple[int, str]]] = {}
    for name, path in paths.items():
        top, local = imports(path, known)
        # importing a.b.c runs a/__init__ and a/b/__init__ too
        expanded = set()
        for target in top:
            parts = target.split(".")
            expanded.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
        edges[name] = {t for t in expanded if t in known and t != name}
        locals_[name] = local
    return edges, locals_


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_agent_has_no_import_cycle() -> None:
    edges, _ = graph()
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_function_local_import_of_agent_modules_outside_the_allowed_ones() -> None:
    _, locals_ = graph()
    found = [f"{module}:{line} imports {target}" for module, items in sorted(locals_.items())
             for line, target in items
             if target not in LAZY_ALLOWED.get(module, set()) and target.split(".")[0] == "agent"]
    assert not found, "function-local imports (a hidden cycle?):\n" + "\n".join(found)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_top_of_agent_holds_packages_and_at_most_two_modules() -> None:
    modules = sorted(p.name for p in AGENT.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert len(modules) <= 2, modules
