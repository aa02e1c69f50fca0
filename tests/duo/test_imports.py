"""The package's import graph, read from the files: no circle, nothing points up a layer, the server sees
only the engine's public face.

Every import counts, also one inside a function or under `TYPE_CHECKING`: a lazy import is still a
dependency, and a circle hidden that way is still a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import duo

PACKAGE = Path(duo.__file__).resolve().parent

# Each part of duo and its layer; a module imports only from its own part or from a lower layer.
LAYERS = {
    "base": 0,  # duo/__init__, duo.files, duo.ids
    "engine": 1,
    "audio": 1,
    "server": 2,
    "training": 2,
    "evaluation": 3,
    "bench": 3,
    "tools": 4,  # the command line: duo.cli, duo.options, duo.prepare, duo.replay
}
BASE = {"duo", "duo.files", "duo.ids"}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["duo", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str]]:
    """(imported duo module, the module as written) for every import of one file."""
    found = []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                written = ".".join(base + ([node.module] if node.module else []))
            else:
                written = node.module or ""
            for alias in node.names:  # `from pkg import mod` depends on mod; `from pkg import name` on pkg
                target = f"{written}.{alias.name}"
                found.append((target if target in modules else written, written))
    return [(target, written) for target, written in found if target in modules and target != name]


def _part(module: str) -> str:
    if module in BASE:
        return "base"
    head = module.split(".")[1]
    return head if head in LAYERS else "tools"


def _graph() -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    modules = _modules()
    edges: dict[str, set[str]] = {}
    written: dict[str, list[str]] = {}
    for name, path in modules.items():
        pairs = _imports(name, path, modules)
        edges[name] = {target for target, _ in pairs}
        written[name] = [w for _, w in pairs]
    return edges, written


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_is_read_from_the_files() -> None:
    edges, _ = _graph()
    assert "duo.engine.plan" in edges["duo.engine.model_runner"]  # relative imports resolve
    assert "duo.engine" in edges["duo.server.app"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the check does find circles


def test_no_import_circle() -> None:
    edges, _ = _graph()
    assert _cycle(edges) is None


def test_no_import_points_up_or_across_a_layer() -> None:
    edges, _ = _graph()
    bad = []
    for module, targets in edges.items():
        for target in targets:
            a, b = _part(module), _part(target)
            if a != b and LAYERS[b] >= LAYERS[a]:
                bad.append(f"{module} ({a}) -> {target} ({b})")
    assert not bad, "\n".join(sorted(bad))


def test_the_engine_and_the_audio_front_end_are_independent() -> None:
    edges, _ = _graph()
    for module, targets in edges.items():
        for target in targets:
            assert {_part(module), _part(target)} != {"engine", "audio"}, (module, target)


def test_the_server_uses_only_the_engines_public_face() -> None:
    _, written = _graph()
    for module, names in written.items():
        if _part(module) == "server":
            inner = [n for n in names if n.startswith("duo.engine.")]
            assert not inner, f"{module} reaches into {inner}; import from duo.engine"
