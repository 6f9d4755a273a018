"""Source notebooks are committed clean: valid, stripped, one papermill parameters cell, a kernelspec."""
import ast
import json
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_the_numbered_sequence_exists():
    assert [p.name[:2] for p in NOTEBOOKS] == ["00", "01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_valid_and_parameterised(path):
    json.loads(path.read_text())  # valid JSON first, for a clear failure
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec["name"] == "python3" and nb.metadata.kernelspec["language"] == "python"
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    names = set()
    for node in ast.parse(params[0].source).body:
        assert isinstance(node, (ast.Assign, ast.AnnAssign)), "the parameters cell holds assignments only"
        names.update(t.id for t in (node.targets if isinstance(node, ast.Assign) else [node.target]))
    assert {"profile", "dataset", "results_dir", "seed"} <= names
    assert f"notebooks/{path.name}" in nb.cells[0].source, "Open-in-Colab badge points at this notebook"


# ------------------------------------------------------------------ committed with the reference run's outputs
MACHINE_PATH = re.compile(r"(/root/|/home/|/work/|/tmp/|/content/|[A-Z]:\\\\Users)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_with_outputs_of_one_run_and_small(path):
    """A reader on GitHub or Colab sees numbers and figures before running anything; no machine's folders in them;
    the notebook stays light enough to open (the figures are PNGs at 120 dpi)."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert any(c.outputs for c in code), "run: python tools/publish_notebooks.py results/reference_cifar10"
    assert path.stat().st_size < 1_500_000
    text = json.dumps([c.outputs for c in code] + [c.source for c in code if "injected-parameters" in c.metadata.get("tags", [])])
    assert not MACHINE_PATH.search(text), MACHINE_PATH.search(text).group(0)
    assert "papermill" not in json.dumps(nb.metadata), "papermill's metadata names the run's machine paths"
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for c in code for o in c.outputs), \
        "a progress widget: GitHub shows it as an empty bar"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_sees_every_parameter(path):
    """papermill skips a parameter line it cannot parse (an '=' in a comment, `int | None`) without failing."""
    import papermill as pm
    nb = nbformat.read(path, as_version=4)
    source = next(c.source for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assigned = [line.split(":")[0].split("=")[0].strip() for line in source.splitlines() if line and not line.startswith("#")]
    assert list(pm.inspect_notebook(str(path))) == assigned


# ------------------------------------------------------------------ set-up: one call, no cell copied between notebooks
SETUP_CALL = "cfg, cfgs = nbsetup.start(globals())"


def _code(path):
    return [c for c in nbformat.read(path, as_version=4).cells
            if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_install_then_parameters_then_one_set_up_call(path):
    """The first code cell installs the package on Colab and does nothing elsewhere; then the parameters cell
    (papermill injects its cell right after it); then the set-up, one call. No other cell builds a config."""
    code = _code(path)
    install = code[0].source
    assert '"google.colab" in sys.modules' in install and "%pip install" in install and "nbsetup" not in install
    assert "parameters" in code[1].metadata.get("tags", []), "the parameters cell is the second code cell"
    setup = code[2].source
    assert setup.count("nbsetup.start(") == 1 and SETUP_CALL in setup, path.name
    rest = "\n".join(c.source for c in code[3:])
    for copied in ("nbsetup.start(", "make_config(", "check_parameters(", "drive.mount(", "google.colab"):
        assert copied not in rest, f"{path.name}: {copied} belongs to nbsetup.start or the install cell"


def test_no_cell_is_copied_between_notebooks():
    """Only the three set-up cells (install, parameters, the set-up call) are the same in every notebook; every
    other code cell is its notebook's own (a shared step belongs in the package, called once)."""
    seen = {}
    for path in NOTEBOOKS:
        for cell in _code(path)[3:]:
            key = "\n".join(line.strip() for line in cell.source.strip().splitlines())
            assert key not in seen, f"{path.name} repeats a cell of {seen[key]}: {cell.source.splitlines()[0]}"
            seen[key] = path.name
    setup_cells = {tuple(c.source for c in _code(p)[:3]) for p in NOTEBOOKS}
    assert len(setup_cells) == 1, "the install, parameters and set-up cells are the same everywhere (edit nbsetup.start)"


def _namespace(tmp_path, history=("",), **params):
    from tadist_utils.runners import nbsetup
    p = dict(profile="smoke", dataset="digits", data_dir="data", results_dir=str(tmp_path / "r"), use_drive=False,
             seed=0, seeds=[], device="auto", teacher_epochs=None, student_epochs=None, finetune_epochs=None,
             overrides={})
    assert set(p) == set(nbsetup.PARAMETERS)
    return {"In": list(history), **p, **params}


def test_start_builds_the_config_from_the_parameters(tmp_path):
    from tadist_utils.runners import nbsetup
    from tadist_utils.config import make_config
    cfg, cfgs = nbsetup.start(_namespace(tmp_path, seeds=[3, 1], teacher_epochs=2,
                                         overrides='{"student_lr": 0.002}'), show=False)
    assert [c.seed for c in cfgs] == [3, 1] and cfg is cfgs[0]
    assert (cfg.teacher_epochs, cfg.student_lr, cfg.results_dir) == (2, 0.002, str(tmp_path / "r"))
    assert cfg.data_dir == nbsetup.repo_path("data")  # relative: against the repository root
    assert cfg.student_epochs == make_config("smoke").student_epochs  # None keeps the profile's default
    cfg, cfgs = nbsetup.start(_namespace(tmp_path, results_dir=None), show=False)
    assert cfg.results_dir == nbsetup.results_path(None, profile="smoke") and cfgs == [cfg]


@pytest.mark.parametrize("params, history, message", [
    (dict(teacher_epochs=-3), ("",), "teacher_epochs must be a positive integer, got -3"),
    ({}, ("", "# Parameters\nteacher_epoch = 3\n"), "unknown notebook parameter(s): teacher_epoch (did you mean"),
    (dict(seeds=["a"]), ("",), "seeds must be a list of integers"),
    (dict(overrides="[1]"), ("",), "overrides must be a mapping"),
], ids=["bad-value", "papermill-misspelled", "seeds", "overrides"])
def test_start_stops_with_one_line(tmp_path, params, history, message):
    from tadist_utils.runners import nbsetup
    from tadist_utils.config import ConfigError
    with pytest.raises(ConfigError) as e:
        nbsetup.start(_namespace(tmp_path, history, **params), show=False)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert e.value._render_traceback_() == [f"ConfigError: {e.value}"]  # what Jupyter shows: one line
    assert not (tmp_path / "r").exists()


def test_start_names_a_missing_parameter(tmp_path):
    from tadist_utils.runners import nbsetup
    from tadist_utils.config import ConfigError
    ns = _namespace(tmp_path)
    del ns["seeds"]
    with pytest.raises(ConfigError, match="the parameters cell does not set seeds"):
        nbsetup.start(ns, show=False)


# ------------------------------------------------------------------ Run All in Jupyter: smoke, into results/run/
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_run_all_runs_the_parameters_cells_defaults(path):
    """No committed notebook keeps papermill's injected cell (it set profile reference and results_dir
    results/reference_cifar10: Run All started a 2-hour run over the committed CSVs); the defaults are smoke, into
    results/run/smoke."""
    cells = nbformat.read(path, as_version=4).cells
    assert not [c for c in cells if "injected-parameters" in c.metadata.get("tags", [])
                or (c.cell_type == "code" and c.source.lstrip().startswith("# Parameters"))], \
        "papermill's injected cell: tools/publish_notebooks.py drops it"
    source = next(c.source for c in cells if "parameters" in c.metadata.get("tags", []))
    defaults = {}
    exec(source, {}, defaults)
    assert (defaults["profile"], defaults["results_dir"]) == ("smoke", None)


def test_default_results_folders_are_ignored_by_git():
    """Only an explicit results_dir (or --results-dir) writes into a committed folder: every profile's default is
    under results/run/, which git ignores and where nothing is committed."""
    import shutil
    import subprocess
    from tadist_utils.config import PROFILES, default_results_dir
    from tadist_utils.runners import nbsetup
    for profile in PROFILES:
        assert Path(nbsetup.results_path(None, profile=profile)).relative_to(ROOT).as_posix() == default_results_dir(profile)
        assert default_results_dir(profile).startswith("results/run/")
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    assert subprocess.run(["git", "check-ignore", "-q", "results/run/smoke/results.csv"], cwd=ROOT).returncode == 0
    assert subprocess.run(["git", "ls-files", "results/run"], cwd=ROOT, capture_output=True, text=True).stdout == ""


# ------------------------------------------------------------------ the checkout comes from the notebook's folder
def test_the_root_is_the_checkout_the_notebook_runs_in(tmp_path, monkeypatch):
    """From the cwd, not from the import: with another clone installed editable, a notebook run in this one used
    the other's folders. A notebook's cwd is its own folder; `make notebooks`' copies are in results/_nbval/notebooks."""
    from tadist_utils.runners import nbsetup
    monkeypatch.chdir(ROOT / "notebooks")
    assert nbsetup.repo_root() == ROOT
    clone = tmp_path / "clone"
    for sub in ("notebooks", "tadist_utils", "results/_nbval/notebooks"):
        (clone / sub).mkdir(parents=True)
    for cwd in (clone / "notebooks", clone / "results/_nbval/notebooks"):
        monkeypatch.chdir(cwd)
        assert nbsetup.repo_root() == clone
        assert nbsetup.repo_path("data") == str(clone / "data")
        (line,) = nbsetup.where_lines(clone, make_smoke(clone))  # this clone's folders, another's code: said loudly
        assert line.startswith("!!! ") and str(nbsetup.PACKAGE) in line and str(clone) in line
    monkeypatch.chdir(tmp_path)
    assert nbsetup.repo_root() == tmp_path  # no checkout: an installed package, the cwd
    assert nbsetup.where_lines(ROOT, make_smoke(ROOT)) == []


def make_smoke(root):
    from tadist_utils.config import make_config
    return make_config("smoke", data_dir=str(root / "data"), results_dir=str(root / "results/run/smoke"))


def test_an_installed_package_in_an_empty_folder_says_where_data_and_results_go(tmp_path, monkeypatch, capsys):
    """Colab or any folder after `pip install`: ./data and ./results there, said first; the data it resolved to in
    the settings table, not `auto`."""
    from tadist_utils.runners import nbsetup
    monkeypatch.chdir(tmp_path)
    ns = _namespace(tmp_path, results_dir=None)
    cfg, _ = nbsetup.start(ns, show=True)
    assert (cfg.data_dir, cfg.results_dir) == (str(tmp_path / "data"), str(tmp_path / "results/run/smoke"))
    out = capsys.readouterr().out
    assert out.splitlines()[0] == (f"[tadist] not in a tadist checkout (an installed package): data in ./data, "
                                   f"results in ./results/run/smoke, under {tmp_path}")
    assert "digits: scikit-learn digits (8x8, upsampled to 32x32): 256 train / 64 validation / 128 test" in out
    assert not (tmp_path / "data").exists() and not (tmp_path / "results").exists()  # nothing written yet


def test_auto_resolves_to_the_data_it_uses(tmp_path, monkeypatch):
    """The settings table says which data `auto` resolved to: the CIFAR-10 copy found, or the digits fallback."""
    from tadist_utils.runners import nbsetup
    from tadist_utils.config import make_config
    from PIL import Image
    for split in ("train", "test"):
        for label in ("cat", "dog"):
            (tmp_path / f"data/cifar10-jpeg/{split}/{label}").mkdir(parents=True)
            Image.new("RGB", (32, 32)).save(tmp_path / f"data/cifar10-jpeg/{split}/{label}/0.jpg")
    monkeypatch.chdir(tmp_path)
    cfg = make_config("smoke", dataset="auto", data_dir=str(tmp_path / "data"))
    line, notice = nbsetup.data_lines(cfg, tmp_path)
    assert line.startswith("data: CIFAR-10 JPEG copy at data/cifar10-jpeg: ") and notice == ""
    assert nbsetup.summary(cfg, line)["dataset"].startswith("auto: CIFAR-10 JPEG copy at data/cifar10-jpeg")
    from tadist_utils.runners import console
    monkeypatch.setattr(console, "data_notice", lambda cfg: f"CIFAR-10 was neither in {tmp_path}/empty nor downloadable")
    line, notice = nbsetup.data_lines(cfg, tmp_path)
    assert "(auto fallback: NOT CIFAR-10)" in line and notice == "CIFAR-10 was neither in empty nor downloadable"


def test_headless_the_first_lines_reach_the_terminal(monkeypatch):
    """papermill shows nothing of a kernel without --log-output; what the kernel writes to its copy of the terminal's
    stderr descriptor (ipykernel's OutStream keeps it) reaches the terminal, and the notebook only once."""
    import os
    from tadist_utils.runners import nbsetup
    read, write = os.pipe()

    class KernelStderr:
        _original_stdstream_copy = write
    monkeypatch.setattr("sys.stderr", KernelStderr())
    monkeypatch.delenv(nbsetup.RUNNER_ENV, raising=False)
    nbsetup.to_terminal(["data: scikit-learn digits"])
    monkeypatch.setenv(nbsetup.RUNNER_ENV, "1")  # python -m tadist_utils says it itself
    nbsetup.to_terminal(["not shown"])
    os.close(write)
    assert os.read(read, 1000) == b"\ndata: scikit-learn digits\n"
    os.close(read)


# ------------------------------------------------------------------ make notebooks: the committed notebooks only
def test_nbval_copies_are_refused_for_a_notebook_changed_since_the_commit(tmp_path, capsys):
    """A notebook autosaved mid-run in Jupyter made `make test` fail with nbval's `Unrun reference cell has outputs`;
    now tools/nbval_copies.py names it in one line, with the command that restores it."""
    import importlib.util
    import shutil
    import subprocess
    if shutil.which("git") is None:
        pytest.skip("needs git")
    spec = importlib.util.spec_from_file_location("nbval_copies", ROOT / "tools" / "nbval_copies.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    repo = tmp_path / "clone"
    (repo / "notebooks").mkdir(parents=True)
    shutil.copy(NOTEBOOKS[0], repo / "notebooks")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=repo, check=True)
    assert tool.changed_since_commit(repo / "notebooks") == []
    nb = nbformat.read(repo / "notebooks" / NOTEBOOKS[0].name, as_version=4)
    nb.cells[-1].outputs = [nbformat.v4.new_output("stream", text="a half-run notebook\n")]
    nbformat.write(nb, repo / "notebooks" / NOTEBOOKS[0].name)
    assert tool.main(str(tmp_path / "nbval"), repo / "notebooks") == 2
    err = capsys.readouterr().err
    assert err == (f"error: notebooks/{NOTEBOOKS[0].name} changed since the last commit (Jupyter saves a run's outputs "
                   f"into the notebook; nbval compares against the committed ones): git checkout "
                   f"notebooks/{NOTEBOOKS[0].name} first, or commit the change\n")
    assert not (tmp_path / "nbval").exists()
    subprocess.run(["git", "checkout", "-q", "notebooks"], cwd=repo, check=True)
    assert tool.main(str(tmp_path / "nbval"), repo / "notebooks") == 0
    copy = nbformat.read(tmp_path / "nbval" / "notebooks" / NOTEBOOKS[0].name, as_version=4)
    injected = next(c.source for c in copy.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert 'dataset = "digits"' in injected and 'data_dir = "data"' in injected, injected  # relative: no machine path
