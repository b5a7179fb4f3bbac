"""The layer rules of docs/internals.md, checked by reading every module's imports.

Who may import whom:

    advrobust.cli            parsers and main()s: the only code that prints errors and exits
                             (with advrobust/__main__.py and advrobust/report/__main__.py)
        |
    advrobust.sweep          a study: configs from TOML, then the library below
        |
    compare, report, plots   many runs -> rows, fits, figures
        |
    train, attack, api       one run (or one model) -> results on disk / in memory
        |
    evaluate, certify, exact, lipschitz, law, intrinsic     the measurements
        |
    data, models, runs       inputs, networks, the run folder and its files
        |
    errors, jsonio, norms, configs, _stats, _progress       the vocabulary
        |
    attacks                  the attack algorithms; imports nothing from advrobust

A module may import modules of its own layer or below, never above; the module graph has no
cycles; no module imports another module's private name (``from .certify import _walk``), and
only the package ``attacks`` itself uses its private modules (``attacks._common``).
The one exception: the ``if __name__ == "__main__":`` guard at the foot of a command module imports
its command line, so that ``python -m advrobust.train`` keeps working.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LAYERS = [
    {"attacks"},
    {"advrobust.errors", "advrobust.jsonio", "advrobust.norms", "advrobust.configs", "advrobust._version",
     "advrobust._stats", "advrobust._progress"},
    {"advrobust.data", "advrobust.models", "advrobust.runs"},
    {"advrobust.evaluate", "advrobust.certify", "advrobust.exact", "advrobust.lipschitz", "advrobust.law",
     "advrobust.intrinsic"},
    {"advrobust.train", "advrobust.attack", "advrobust.api"},
    {"advrobust.compare", "advrobust.plots", "advrobust.report"},
    {"advrobust.sweep"},
    {"advrobust.cli", "advrobust.__main__", "advrobust.report.__main__", "advrobust"},
]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> int:
    """The layer of a module: its own entry, else the entry of its closest package."""
    parts = module.split(".")
    for k in range(len(parts), 0, -1):
        name = ".".join(parts[:k])
        for i, layer in enumerate(LAYERS):
            if name in layer:
                return i
    raise AssertionError(f"{module} is in no layer of tests/test_layers.py: add it to LAYERS and docs/internals.md")


def _is_main_guard(node: ast.AST) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


def _imports(path: Path):
    """(imported module, imported names, line) for every import outside the __main__ guard."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = set()
    for node in tree.body:
        if _is_main_guard(node):
            skip.update(id(n) for n in ast.walk(node))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [a.name for a in node.names]
            if not node.module and node.level:  # from . import x: a module, or a name of the package
                for a in names:
                    sub = ROOT.joinpath(*target.split("."), a)
                    if sub.with_suffix(".py").exists() or sub.is_dir():
                        yield f"{target}.{a}", [], node.lineno
                    else:
                        yield target, [a], node.lineno
            else:
                yield target, names, node.lineno


def _ours(name: str) -> bool:
    return name.split(".")[0] in ("advrobust", "attacks")


SOURCES = sorted(p for pkg in ("advrobust", "attacks") for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_obey_the_layers(path):
    module = _module_name(path)
    mine = _layer(module)
    bad = []
    for target, names, line in _imports(path):
        if not _ours(target):
            continue
        if target.split(".")[0] == "advrobust" and module.startswith("attacks"):
            bad.append(f"line {line}: attacks imports {target}")
            continue
        if _layer(target) > mine:
            bad.append(f"line {line}: {module} (layer {mine}) imports {target} (layer {_layer(target)})")
        private_module = any(part.startswith("_") and not part.startswith("__") for part in target.split("."))
        if private_module and target.split(".")[0] != module.split(".")[0]:
            bad.append(f"line {line}: {module} imports the private module {target} of another package")
        if target != module:
            for n in names:
                if n.startswith("_") and not n.startswith("__"):
                    bad.append(f"line {line}: {module} imports the private name {n} from {target}")
    assert not bad, "\n".join(bad)


def test_module_graph_has_no_cycles():
    graph = {}
    for path in SOURCES:
        module = _module_name(path)
        graph[module] = {t for t, _, _ in _imports(path) if _ours(t) and t != module}
    # only edges between modules we have files for (``from .x import name`` targets the module x)
    known = set(graph)
    edges = {m: {t for t in ts if t in known} for m, ts in graph.items()}
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for t in edges[m]:
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack + [m, t]))
            if t not in state:
                visit(t, stack + [m])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [])


def test_the_rules_catch_a_violation(tmp_path):
    """The checker itself: an upward import, a private name and attacks -> advrobust are found."""
    global ROOT
    saved = ROOT
    try:
        ROOT = tmp_path
        (tmp_path / "advrobust").mkdir()
        (tmp_path / "attacks").mkdir()
        bad = tmp_path / "advrobust" / "data.py"
        bad.write_text("from .sweep import run\nfrom .certify import _walk\nimport attacks._common\n"
                       "if __name__ == '__main__':\n    from advrobust.cli.x import main\n")
        found = list(_imports(bad))
        assert ("advrobust.sweep", ["run"], 1) in found
        assert ("advrobust.certify", ["_walk"], 2) in found
        assert ("attacks._common", [], 3) in found
        assert not any(t.startswith("advrobust.cli") for t, _, _ in found)  # the guard is exempt
        with pytest.raises(AssertionError, match="layer"):
            test_imports_obey_the_layers(bad)
    finally:
        ROOT = saved
