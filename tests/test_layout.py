"""The package's layout keeps its promises: no import circles (any import, function-level
included, a package's `__init__` counted as a module of its own), an `__init__.py` only
re-exports, nothing below the configuration step imports it, and every private `Trainer`
member tl-hf relies on still exists in the installed transformers."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = Path(REPO) / "tl_hf"
# The steps below config in the flow, and the extension points: they take resolved records and
# settings, never the configuration itself.
BELOW_CONFIG = (
    "data",
    "augment",
    "modalities",
    "model",
    "strategies",
    "training",
    "report",
    "output",
    "embedded",
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The tl_hf modules `name` imports, wherever in the file (the closest existing module of
    each dotted name: `from tl_hf.lab import trials` counts as importing `tl_hf.lab`)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            targets = [base]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rsplit(".", 1)[0] if "." in target else ""
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_no_import_circles():
    graph = _graph()
    index, low, stack, on, circles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert circles == [], f"import circles: {circles}"


def test_an_init_only_re_exports():
    for path in PACKAGE.rglob("__init__.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            allowed = isinstance(node, ast.Import | ast.ImportFrom) or (
                isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            )
            allowed |= isinstance(node, ast.Assign) and [
                t.id for t in node.targets if isinstance(t, ast.Name)
            ] == ["__all__"]
            # tl_hf/__init__.py: `import tl_hf` stays cheap, the heavy names load on first use
            allowed |= isinstance(node, ast.FunctionDef) and node.name == "__getattr__"
            allowed |= path == PACKAGE / "__init__.py" and isinstance(node, ast.Assign)
            assert allowed, f"{path.relative_to(REPO)}:{node.lineno} does more than re-export"


@pytest.mark.parametrize("step", BELOW_CONFIG)
def test_nothing_below_config_imports_it(step):
    graph = _graph()
    offenders = {
        name: sorted(t for t in targets if t == "tl_hf.config" or t.startswith("tl_hf.config."))
        for name, targets in graph.items()
        if name == f"tl_hf.{step}" or name.startswith(f"tl_hf.{step}.")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_trainer_still_has_every_private_member_tl_hf_uses():
    from tl_hf.training.coupling import PRIVATE_MEMBERS, missing_private_members

    assert len(PRIVATE_MEMBERS) >= 10
    assert missing_private_members() == [], (
        "transformers.Trainer lost members tl-hf relies on (tl_hf/training/coupling.py)"
    )


def test_modules_stay_readable():
    """No module over about 400 lines outside the embedded converters and the augmenter
    tables; no function over about 60 lines unless a comment beside it says why."""
    long_modules, long_functions = [], []
    for path in PACKAGE.rglob("*.py"):
        rel = str(path.relative_to(PACKAGE))
        lines = path.read_text().splitlines()
        if len(lines) > 420 and not rel.startswith(("embedded" + os.sep, "augment" + os.sep)):
            long_modules.append(f"{rel} ({len(lines)})")
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                before = lines[node.lineno - 2] if node.lineno > 1 else ""
                if length > 65 and "long:" not in before and not rel.startswith("embedded"):
                    long_functions.append(f"{rel}:{node.name} ({length})")
    assert long_modules == [] and long_functions == [], (long_modules, long_functions)
