"""The papermill runner: bad input is one line and exit 2 before anything runs; a real run writes its copies."""
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


def reproduce(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "tadist_utils.reproduce", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("args, message", [
    (["--profile", "nope"], "unknown profile 'nope'"),
    (["--profile", "smoke", "--set", "teacher_epochs=-3"], "teacher_epochs must be a positive integer"),
    (["--profile", "smoke", "--set", "teacher_epoch=3"], "unknown setting(s): teacher_epoch"),
    (["--profile", "smoke", "--set", "student_lr"], "--set expects key=value"),
    (["--profile", "smoke", "--only", "99"], "--only 99 matches no notebook"),
], ids=["profile", "negative-epochs", "unknown-key", "no-equals", "only"])
def test_bad_input_is_one_line_before_anything_runs(args, message, tmp_path):
    r = reproduce(*args, "--results-dir", str(tmp_path / "r"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.startswith("error: ")
    assert message in r.stderr and "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "r" / "executed").exists()


def test_runs_one_notebook_and_writes_executed_copy(tmp_path):
    out = tmp_path / "results"
    r = reproduce("--profile", "smoke", "--dataset", "digits", "--results-dir", str(out), "--only", "00", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    nb = nbformat.read(out / "executed" / "00_overview.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and 'profile = "smoke"' in injected[0].source and 'dataset = "digits"' in injected[0].source
    assert (out / "figures" / "00_overview.png").exists()
    report = json.loads((out / "reproduce.json").read_text())
    assert [(n["notebook"], n["status"]) for n in report["notebooks"]] == [("00_overview.ipynb", "ok")]
    assert "00_overview.ipynb ... ok in" in r.stdout  # one progress line per notebook


def test_failure_names_notebook_and_cell(tmp_path):
    """05 on an empty results folder has nothing to compare: exit 1, one line naming notebook, cell and error."""
    out = tmp_path / "results"
    r = reproduce("--profile", "smoke", "--dataset", "digits", "--results-dir", str(out), "--only", "05", "--quiet")
    assert r.returncode == 1
    lines = [l.strip() for l in r.stderr.splitlines() if l.strip().startswith("05_compare.ipynb")]
    assert len(lines) == 1 and "(seed 0): cell " in lines[0] and "FileNotFoundError" in lines[0], r.stderr
    assert json.loads((out / "reproduce.json").read_text())["notebooks"][0]["status"] == "failed"
