"""The package's shape, checked: imports go one way (analysis -> core, but for summary.csv's statistics), no import
cycle, and no module takes another's private name (a module is cut at a seam, where what crosses is public; issue 24)."""
import ast
from pathlib import Path

import tadist_utils

ROOT = Path(tadist_utils.__file__).parent


def modules(root: Path = ROOT) -> dict[str, Path]:
    return {".".join(p.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): p
            for p in sorted(root.rglob("*.py"))}


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of import nodes under ``if TYPE_CHECKING:`` (annotations, never run)."""
    return {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and getattr(block.test, "id", "") == "TYPE_CHECKING"
            for stmt in block.body for n in ast.walk(stmt)}


def imports() -> dict[str, set[str]]:
    """Module -> the package modules it imports, at top level or inside functions (those run too)."""
    mods = modules()
    out = {}
    for name, path in mods.items():
        pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        tree = ast.parse(path.read_text())
        skip = _type_checking_only(tree)
        found = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom):
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1]) if node.level else ""
                target = ".".join(x for x in (base, node.module) if x)
                found |= {t for t in [target, *(f"{target}.{a.name}" for a in node.names)] if t in mods}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name in mods}
        out[name] = found - {name, "tadist_utils"}  # the package's __init__ holds only __version__
    return out


def test_import_graph_has_no_cycle():
    graph, state, cycles = imports(), {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, f"import cycles: {cycles}"


def test_core_never_imports_analysis_but_results_its_statistics():
    """The method does not depend on measuring it. One crossing: storage.results writes summary.csv with
    analysis.stats, a leaf that takes from the core only plans (an ensemble's students)."""
    graph = imports()
    bad = {m: sorted(t for t in ts if ".analysis" in t) for m, ts in graph.items() if ".analysis" not in m}
    assert {m: ts for m, ts in bad.items() if ts} == {"tadist_utils.storage.results": ["tadist_utils.analysis.stats"]}
    assert graph["tadist_utils.analysis.stats"] == {"tadist_utils.plans", "tadist_utils.analysis.paper"}
    assert graph["tadist_utils.analysis.paper"] == set()


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_imports(root: Path = ROOT) -> set[str]:
    """'<module> imports <other module>.<name>' for every private name one module of the package takes from another:
    ``from .x import _name`` or ``from . import x`` ... ``x._name`` (module attributes; tests may use them)."""
    mods, found = modules(root), set()
    for name, path in mods.items():
        pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        tree, aliases = ast.parse(path.read_text()), {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1]) if node.level else ""
                target = ".".join(x for x in (base, node.module) if x)
                for a in node.names:
                    if f"{target}.{a.name}" in mods:
                        aliases[a.asname or a.name] = f"{target}.{a.name}"
                    elif target in mods and target != name and _private(a.name):
                        found.add(f"{name} imports {target}.{a.name}")
            elif isinstance(node, ast.Import):
                aliases.update({a.asname: a.name for a in node.names if a.asname and a.name in mods})
        found |= {f"{name} imports {aliases[n.value.id]}.{n.attr}" for n in ast.walk(tree)
                  if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in aliases
                  and aliases[n.value.id] != name and _private(n.attr)}
    return found


def test_no_module_takes_another_modules_private_name():
    assert not private_imports(), f"make these public in their module, or move them to it: {sorted(private_imports())}"


def test_the_checker_sees_a_private_import(tmp_path):
    """The rule can fail: a planted ``from .a import _helper`` and an ``a._helper`` attribute are both reported."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def _helper():\n    pass\n\n\ndef public():\n    return _helper()\n")
    (pkg / "b.py").write_text("from .a import _helper, public\n")
    (pkg / "sub" / "c.py").write_text("from .. import a\n\n\ndef f():\n    return a._helper(), a.__name__\n")
    assert private_imports(pkg) == {"pkg.b imports pkg.a._helper", "pkg.sub.c imports pkg.a._helper"}


def test_the_checker_sees_a_cycle(monkeypatch):
    """The cycle test can fail: a planted a -> b -> a is reported."""
    graph = {"a": {"b"}, "b": {"a"}}
    monkeypatch.setitem(globals(), "imports", lambda: graph)
    try:
        test_import_graph_has_no_cycle()
    except AssertionError as e:
        assert "['a', 'b', 'a']" in str(e)
    else:
        raise AssertionError("a planted cycle went unnoticed")


def package_imports(path: Path) -> list[str]:
    """Every import of the package in a file, anywhere in it (functions, ``if TYPE_CHECKING:``), as written."""
    return sorted(ast.unparse(n) for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ImportFrom)
                  and (n.level or n.module.startswith("tadist_utils")) or isinstance(n, ast.Import)
                  and any(a.name.startswith("tadist_utils") for a in n.names))


def test_config_imports_nothing_from_the_package(tmp_path):
    """config is below every module that owns what a setting means: at load it takes only the one-line error from
    errors.py, which imports nothing; ``validate`` imports the owners of names inside. A planted import is seen."""
    assert package_imports(ROOT / "config.py") == ["from . import models", "from .data.imagefolder import list_images",
                                                   "from .errors import ConfigError", "from .plans import METHODS"]
    assert package_imports(ROOT / "errors.py") == []
    (tmp_path / "m.py").write_text("import os\nfrom .errors import E\n\ndef f():\n    import tadist_utils.data\n"
                                   "if TYPE_CHECKING:\n    from .. import models\n")
    assert package_imports(tmp_path / "m.py") == ["from .. import models", "from .errors import E",
                                                  "import tadist_utils.data"]
