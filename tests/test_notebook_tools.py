"""tools/ for the committed notebooks: their Colab links come from one constant; a run's outputs published into them."""
import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_colab_links_come_from_one_constant():
    sync = tool("sync_repo_url")
    assert sync.sync_repo_url(write=False) == [], "run: python tools/sync_repo_url.py"
    for path in NOTEBOOKS:
        text = path.read_text()
        assert sync.colab_badge_url(path.name) in text and sync.pip_line() in text, path.name
    other = "https://github.com/someone/fork"
    assert sync.sync_repo_url(url=other, write=False) == NOTEBOOKS  # a change of the constant reaches all of them


def test_publish_drops_the_injected_cell_and_keeps_the_outputs(tmp_path):
    publish = tool("publish_notebooks")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('profile = "smoke"\nresults_dir = None', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell('# Parameters\nprofile = "reference"\nresults_dir = "results/reference_cifar10"\n',
                                  metadata={"tags": ["injected-parameters"], "papermill": {"duration": 1}}),
        nbformat.v4.new_code_cell("print(1)", outputs=[nbformat.v4.new_output("stream", text=f"{ROOT}/results/x\n")])])
    nb.metadata["papermill"] = {"input_path": "/somewhere"}
    nbformat.write(nb, tmp_path / "executed.ipynb")
    publish.publish(tmp_path / "executed.ipynb", tmp_path / "published.ipynb")
    cells = nbformat.read(tmp_path / "published.ipynb", as_version=4).cells
    assert [c.source for c in cells] == [nb.cells[0].source, "print(1)"]
    assert cells[1].outputs[0].text == "results/x\n"


def test_publish_refuses_a_run_that_failed_or_stopped(tmp_path):
    publish = tool("publish_notebooks")
    run = dict(notebooks=[dict(seed=0, notebook="00_overview.ipynb", status="failed", executed="x")])
    (tmp_path / "reproduce.json").write_text(json.dumps(run))
    with pytest.raises(SystemExit, match="holds an interrupted or failed run: nothing published"):
        publish.main(str(tmp_path))
