"""The import layers of space/, evaluators/ and nas/, from the source: no cycle, no private name, no upward arrow.

Every import statement counts, wherever it sits (a function-level import is an arrow too). The layers are the ones
in pyproject.toml's import-linter contracts, which `lint-imports` checks as well (the last test).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("space", "evaluators", "nas")
# Inside nas, top to bottom; modules of one layer may not import each other across sub-packages.
NAS_LAYERS = (("nas.cli",), ("nas.commands",), ("nas.export", "nas.run"), ("nas.views",), ("nas.record",),
              ("nas.study", "nas.zoo", "nas.format", "nas.fileio"))


def modules() -> dict[str, Path]:
    """Every module of the three packages: dotted name → file."""
    out = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = f
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) of every import of a project module in `path`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] in PACKAGES]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            if base.split(".")[0] not in PACKAGES:
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.append((sub, None, node.lineno) if sub in known else (base, a.name, node.lineno))
    return out


def graph() -> tuple[dict[str, set[str]], list[str]]:
    """Module → project modules it imports; and the imports of another module's private names."""
    known = modules()
    edges: dict[str, set[str]] = {m: set() for m in known}
    private = []
    for name, path in known.items():
        for target, what, line in imports(name, path, known):
            while target not in known and "." in target:
                target = target.rpartition(".")[0]
            if target in known and target != name:
                edges[name].add(target)
            if what and what.startswith("_") and not what.startswith("__") and target != name:
                private.append(f"{path.relative_to(ROOT)}:{line} imports {target}.{what}")
    return edges, private


def layer_of(module: str) -> int | None:
    """Index of `module`'s layer inside nas (None for the package itself)."""
    for i, group in enumerate(NAS_LAYERS):
        if any(module == g or module.startswith(g + ".") for g in group):
            return i
    return None


def group_of(module: str) -> str:
    """The layer member `module` belongs to (e.g. 'nas.run')."""
    for group in NAS_LAYERS:
        for g in group:
            if module == g or module.startswith(g + "."):
                return g
    return module


def test_no_import_cycle() -> None:
    edges, _ = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in edges:
        if v not in index:
            visit(v)
    assert cycles == []


def test_no_module_imports_another_modules_private_name() -> None:
    assert graph()[1] == []


def test_space_evaluators_nas_point_down() -> None:
    rank = {p: i for i, p in enumerate(PACKAGES)}
    edges, _ = graph()
    up = [f"{a} -> {b}" for a, targets in edges.items() for b in targets
          if rank[b.split(".")[0]] > rank[a.split(".")[0]]]
    assert up == []


def test_layers_inside_nas_point_down() -> None:
    edges, _ = graph()
    wrong = []
    for a, targets in edges.items():
        la = layer_of(a)
        for b in targets:
            lb = layer_of(b)
            if la is None or lb is None or not b.startswith("nas"):
                continue
            if lb < la or (lb == la and group_of(a) != group_of(b) and la != len(NAS_LAYERS) - 1):
                wrong.append(f"{a} -> {b}")
    assert wrong == []


def test_every_nas_module_has_a_layer() -> None:
    assert [m for m in modules() if m.startswith("nas.") and layer_of(m) is None] == []


def test_import_linter_contracts_are_kept() -> None:
    exe = Path(sys.executable).parent / "lint-imports"  # import-linter, from the dev extra
    r = subprocess.run([str(exe if exe.exists() else "lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout
