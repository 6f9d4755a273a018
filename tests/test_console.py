"""What a terminal user sees: live training progress from the kernel, the data fallback said first and last, one
default results folder."""
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest

from tadist_utils import console, nbsetup, reproduce
from tadist_utils.config import DEFAULT_RESULTS_DIR, Config, make_config

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def offline_env():
    """No network for torchvision's download (a proxy that refuses), this checkout on the kernels' path."""
    env = dict(os.environ, http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9",
               HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", no_proxy="", NO_PROXY="")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env


# ---------------------------------------------------------------------------- progress
def test_progress_line_names_model_epoch_speed_and_eta():
    running = dict(desc="teacher epoch 2/4", postfix="", n=5, total=10, elapsed=2.0, done=False)
    line = console.progress_line(running, batch_size=64)
    # 2.5 steps/s x 64 = 160 img/s; this epoch's 5 steps and 2 more epochs of 10: 25 steps, 10 s
    assert line == "teacher epoch 2/4   50%  160 img/s  ETA teacher 0:10", line
    # with the previous epoch's duration (8 s): the rest of this one, 4 s, and 2 more epochs, 16 s
    assert console.progress_line(running, batch_size=64, epoch_seconds=8.0).endswith("ETA teacher 0:20")
    students = dict(desc="S1 group (2 student(s))", postfix="epoch 1/3", n=20, total=60, elapsed=10.0, done=True)
    line = console.progress_line(students, batch_size=32)
    assert "S1 group (2 student(s)) epoch 1/3" in line and "64 student-img/s" in line and "took 0:10" in line
    baseline = dict(desc="kd 8 student(s) epoch 1/2", postfix="", n=4, total=4, elapsed=1.0, done=True)
    assert "256 img/s" in console.progress_line(baseline, batch_size=64)  # one ensemble, trained end to end


def test_bars_report_to_the_progress_file_and_the_printer_prints_them(tmp_path, monkeypatch):
    import io
    out = io.StringIO()
    path = tmp_path / "p.jsonl"
    with console.ProgressPrinter(path, "01_teacher", batch_size=8, every=0.0, stream=out, poll=0.05):
        assert os.environ[console.ENV] == str(path)
        with console.bar(3, "teacher epoch 1/2", disable=True) as b:
            for _ in range(3):
                b.update()
        with console.bar(4, "S1 (2 student(s))", disable=True) as b:
            b.set_postfix_str("epoch 1/1", refresh=False)
            b.update(4)
    assert console.ENV not in os.environ and not path.exists()
    text = out.getvalue()
    assert "01_teacher  teacher epoch 1/2  100%" in text and "took" in text, text
    assert "S1 (2 student(s)) epoch 1/1  100%" in text, text


def test_without_the_variable_bars_are_plain_tqdm(monkeypatch):
    monkeypatch.delenv(console.ENV, raising=False)
    from tqdm.auto import tqdm
    assert isinstance(console.bar(1, "x", disable=True), tqdm)


# ---------------------------------------------------------------------------- the runner, offline, auto data
def test_runner_shows_progress_and_the_fallback_first_and_last(tmp_path):
    """No CIFAR-10 and no network: the first thing printed is which data is used, and the summary repeats it;
    between them the teacher's epochs appear live (a line per epoch with images/s)."""
    empty = tmp_path / "nodata"
    empty.mkdir()
    out = tmp_path / "results"
    r = subprocess.run([sys.executable, "-m", "tadist_utils.reproduce", "--profile", "smoke", "--dataset", "auto",
                        "--data-dir", str(empty), "--results-dir", str(out), "--only", "01"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, env=offline_env())
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    assert lines[0].startswith("!!!") and "FELL BACK to scikit-learn digits" in lines[1], r.stdout
    assert "FELL BACK to scikit-learn digits" in lines[-1] and lines[-1].startswith("!!! DATA:"), r.stdout
    progress = [l for l in lines if l.startswith("  01_teacher  teacher epoch 1/1")]
    assert progress and "img/s" in progress[-1], r.stdout
    assert lines.index(progress[0]) < lines.index(next(l for l in lines if "01_teacher.ipynb ok in" in l))
    assert not list(out.glob(".progress-*"))


def test_headless_cli_says_the_fallback_first_and_last(tmp_path):
    empty = tmp_path / "nodata"
    empty.mkdir()
    r = subprocess.run([sys.executable, "-m", "tadist_utils.experiments", "--profile", "smoke", "--set", "dataset=auto",
                        f"data_dir={empty}", f"results_dir={tmp_path / 'r'}", "experiments=direct", "levels=1",
                        "progress=false"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, env=offline_env())
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    assert "FELL BACK" in lines[1] and lines[1].startswith("!!! DATA:"), r.stdout
    assert "FELL BACK" in lines[-1] and lines[-1].startswith("!!! DATA:"), r.stdout


def test_no_notice_for_the_data_asked_for(tmp_path):
    assert console.data_notice(make_config("smoke", dataset="digits", results_dir=str(tmp_path))) == ""


# ---------------------------------------------------------------------------- one results folder
def test_one_default_results_folder_everywhere(tmp_path, monkeypatch):
    assert Config().results_dir == DEFAULT_RESULTS_DIR == make_config("quick").results_dir
    assert nbsetup.results_path(None) == str(nbsetup.repo_root() / DEFAULT_RESULTS_DIR)
    import papermill as pm
    for path in NOTEBOOKS:  # the notebooks' parameter says None: the constant, not a copy of it
        assert pm.inspect_notebook(str(path))["results_dir"]["default"] == "None", path.name
    monkeypatch.setattr(reproduce, "REPO", tmp_path)  # the runner's default, relative to the repository root
    assert reproduce.main(["--profile", "smoke", "--dataset", "digits", "--only", "00", "--prepare-only"]) == 0
    nb = nbformat.read(tmp_path / DEFAULT_RESULTS_DIR / "notebooks" / "00_overview.ipynb", as_version=4)
    injected = next(c.source for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert f'results_dir = "{tmp_path / DEFAULT_RESULTS_DIR}"' in injected
