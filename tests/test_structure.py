"""The package's structure, built from its source: the module-level import graph has no cycle,
no class is over 300 lines and no function over 80 (a short allowlist says why for each
exception), every module declares ``__all__``, and every import inside a function names the
cycle or optional dependency that keeps it there."""

from __future__ import annotations

import ast
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parent.parent / "autograd_gpu"
MAX_CLASS, MAX_FUNC = 300, 80

# name -> why it may be longer (keep this short: a long definition is a design smell)
SIZE_ALLOWLIST: dict[str, str] = {}


def _modules() -> dict:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        rel = p.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _tree(path):
    return ast.parse(path.read_text(), filename=str(path))


def _targets(mod, node, is_pkg):
    """The package modules an import statement names."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in MODULES]
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    if node.level:
        base = base[:len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    out = [target] if target in MODULES else []
    out += [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES]
    return out


def _graph() -> dict:
    """module -> the package modules it imports at module level (package __init__ files are
    aggregators of the public names, not layers: left out)."""
    g = {}
    for mod, path in MODULES.items():
        if path.name == "__init__.py":
            continue
        edges = set()
        for node in _tree(path).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for t in _targets(mod, node, False):
                    if t != mod and not MODULES[t].name == "__init__.py":
                        edges.add(t)
        g[mod] = edges
    return g


def test_the_module_import_graph_has_no_cycle():
    g = _graph()
    state: dict = {}
    path: list = []

    def visit(v):
        state[v] = 1
        path.append(v)
        for w in sorted(g.get(v, ())):
            if state.get(w) == 1:
                cycle = path[path.index(w):] + [w]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if w not in state:
                visit(w)
        path.pop()
        state[v] = 2

    for v in sorted(g):
        if v not in state:
            visit(v)


def _definitions():
    for mod, path in MODULES.items():
        for node in ast.walk(_tree(path)):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                yield mod, node


def test_no_class_over_300_lines_and_no_function_over_80():
    offenders = []
    for mod, node in _definitions():
        n = node.end_lineno - node.lineno + 1
        limit = MAX_CLASS if isinstance(node, ast.ClassDef) else MAX_FUNC
        name = f"{mod}.{node.name}"
        if n > limit and name not in SIZE_ALLOWLIST:
            offenders.append(f"{name}: {n} lines (limit {limit})")
    assert not offenders, "definitions over the size limits:\n" + "\n".join(offenders)


def test_every_module_declares_all():
    def declares(node):
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        return any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets)

    missing = [mod for mod, path in MODULES.items()
               if not any(declares(n) for n in _tree(path).body)]
    assert not missing, f"modules without __all__: {missing}"


def test_imports_inside_functions_say_why():
    """An import of a package module (or an optional dependency) inside a function must say,
    in a comment on its line or the line above, which cycle or optional dependency needs it."""
    offenders = []
    for mod, path in MODULES.items():
        lines = path.read_text().splitlines()
        for node in ast.walk(_tree(path)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    here = " ".join(lines[max(0, sub.lineno - 2):sub.end_lineno])
                    if "#" not in here:
                        offenders.append(f"{mod}:{sub.lineno}: {lines[sub.lineno - 1].strip()}")
    assert not offenders, (f"{len(offenders)} imports inside functions without a comment "
                           "naming the cycle or optional dependency:\n" + "\n".join(offenders))
