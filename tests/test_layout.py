"""The house rules a reader relies on: layers import downwards only, no import cycles, nothing private crosses a package.

Imports are read from the source (every ``import``, module level or inside a function),
so a lazy import inside a function counts like any other.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = SRC / "storyreasoning"

#: Each package may import only those listed for it (besides itself and the leaf modules,
#: which sit below every package and import nothing of ours but errors).
LEAVES = {"errors", "files", "models", "packages", "settings", "__init__"}
_BASE = {"format", "terminal"}
LAYERS = {
    "format": set(),
    "terminal": {"format"},
    "data": _BASE,
    "vision": _BASE,
    "check": _BASE,
    "tell": _BASE | {"data", "vision"},
    "evaluate": _BASE | {"data", "tell"},
    "train": _BASE | {"data", "tell", "evaluate"},
    "builder": _BASE | {"data", "tell", "vision"},
    "studio": _BASE | {"data", "tell", "evaluate"},
    "testing": _BASE | {"data"},
    "cli": _BASE | {"data", "tell", "evaluate", "train", "builder", "studio", "check"},
    "__main__": {"cli"},
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(module: str, path: Path):
    """``(imported module, names imported from it, line)`` for every import in the file."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [a.name for a in node.names]
            # ``from . import x`` may name a submodule
            subs = [n for n in names if f"{target}.{n}" in MODULES]
            if subs:
                for n in subs:
                    yield f"{target}.{n}", [], node.lineno
                names = [n for n in names if n not in subs]
            if names or not subs:
                yield target, names, node.lineno


def _internal(target: str) -> str | None:
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def test_nothing_private_crosses_a_package():
    found = []
    for module, path in MODULES.items():
        for target, names, line in _imports(module, path):
            target = _internal(target)
            if target is None or _package(target) == _package(module):
                continue
            for name in names:
                if name.startswith("_") and not name.startswith("__"):
                    found.append(f"{path.relative_to(SRC)}:{line} imports {target}.{name}")
    assert not found, "private names imported across packages:\n" + "\n".join(found)


def test_layers_import_downwards_only():
    found = []
    for module, path in MODULES.items():
        own = _package(module)
        allowed = LAYERS.get(own)
        assert allowed is not None or own in LEAVES, f"{own} has no layer: add it to LAYERS"
        for target, _, line in _imports(module, path):
            target = _internal(target)
            if target is None:
                continue
            other = _package(target)
            if other == own or other in LEAVES:
                continue
            if own in LEAVES or other not in (allowed or set()):
                found.append(f"{path.relative_to(SRC)}:{line} ({own}) imports {target} ({other})")
    assert not found, "imports against the layers:\n" + "\n".join(found)


def test_no_import_cycles():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for target, _, _ in _imports(module, path):
            target = _internal(target)
            if target and target != module and not module.startswith(target + "."):
                graph[module].add(target)
    # a package's __init__ importing its own submodules is how packages work, not a cycle
    for module in graph:
        graph[module] = {
            t
            for t in graph[module]
            if not (MODULES[module].name == "__init__.py" and t.startswith(module + "."))
        }
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checks_see_imports():
    """The scanner itself finds what it must (a guard against a checker that sees nothing)."""
    imports = list(_imports("storyreasoning.tell.local", MODULES["storyreasoning.tell.local"]))
    assert any(t == "storyreasoning.models" for t, _, _ in imports)
    assert sum(1 for _ in MODULES) > 50


def test_the_license_is_shipped_and_named_alike_everywhere():
    """pyproject says Apache-2.0 and ships LICENSE in the wheel's metadata; the file is that license's
    text and the README points to it."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    text = (root / "LICENSE").read_text(encoding="utf-8")
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "Apache License 2.0: [LICENSE](LICENSE)" in (root / "README.md").read_text(encoding="utf-8")
