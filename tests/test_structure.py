"""The package's shape, checked: imports go one way (analysis -> core), no import cycle, no module over ~400 lines."""
import ast
from pathlib import Path

import tadist_utils

ROOT = Path(tadist_utils.__file__).parent
MAX_LINES = 410  # "no module over ~400 lines" (issue 11)


def modules() -> dict[str, Path]:
    return {".".join(p.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__"): p
            for p in sorted(ROOT.rglob("*.py"))}


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


def test_core_never_imports_analysis():
    bad = {m: sorted(t for t in ts if ".analysis" in t) for m, ts in imports().items() if ".analysis" not in m}
    assert not {m: ts for m, ts in bad.items() if ts}, "the method must not depend on measuring it"


def test_no_module_is_long():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these along a seam: {long}"


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
