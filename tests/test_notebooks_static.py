"""Source notebooks are committed clean: valid, stripped, one papermill parameters cell, a kernelspec."""
import ast
import json
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_the_numbered_sequence_exists():
    assert [p.name[:2] for p in NOTEBOOKS] == ["00", "01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean_and_parameterised(path):
    json.loads(path.read_text())  # valid JSON first, for a clear failure
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec["name"] == "python3" and nb.metadata.kernelspec["language"] == "python"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), "outputs must be stripped"
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    names = set()
    for node in ast.parse(params[0].source).body:
        assert isinstance(node, (ast.Assign, ast.AnnAssign)), "the parameters cell holds assignments only"
        names.update(t.id for t in (node.targets if isinstance(node, ast.Assign) else [node.target]))
    assert {"profile", "dataset", "results_dir", "seed"} <= names
    assert f"notebooks/{path.name}" in nb.cells[0].source, "Open-in-Colab badge points at this notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_sees_every_parameter(path):
    """papermill skips a parameter line it cannot parse (an '=' in a comment, `int | None`) without failing."""
    import papermill as pm
    nb = nbformat.read(path, as_version=4)
    source = next(c.source for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assigned = [line.split(":")[0].split("=")[0].strip() for line in source.splitlines() if line and not line.startswith("#")]
    assert list(pm.inspect_notebook(str(path))) == assigned


def test_colab_links_come_from_one_constant():
    """Badges and the Colab pip line are generated from nbsetup.REPO_URL (python -m tadist_utils.nbsetup --sync-repo-url)."""
    from tadist_utils import nbsetup
    assert nbsetup.sync_repo_url(write=False) == [], "run: python -m tadist_utils.nbsetup --sync-repo-url"
    for path in NOTEBOOKS:
        text = path.read_text()
        assert nbsetup.colab_badge_url(path.name) in text and nbsetup.pip_line() in text, path.name
    other = "https://github.com/someone/fork"
    assert nbsetup.sync_repo_url(url=other, write=False) == NOTEBOOKS  # a change of the constant reaches all of them
