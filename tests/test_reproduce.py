"""The papermill runner: a real run writes its copies; a failing notebook is named with its cell and kept.

Bad input (one line, exit 2, nothing run) is in test_bad_input.py."""
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def reproduce(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "tadist_utils.runners.reproduce", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


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
    assert re.search(r"00_overview\.ipynb \(notebook 1/1[^()]*\) \.\.\. ok in", r.stdout), r.stdout  # a line a notebook


def test_failure_names_notebook_and_cell_and_keeps_the_partial_notebook(tmp_path):
    """05 on an empty results folder has nothing to compare: exit 1, one line naming notebook, cell and error,
    and the executed copy is kept with the outputs of the cells that ran and the error in the failing one."""
    out = tmp_path / "results"
    r = reproduce("--profile", "smoke", "--dataset", "digits", "--results-dir", str(out), "--only", "05", "--quiet")
    assert r.returncode == 1
    lines = [l.strip() for l in r.stderr.splitlines() if l.strip().startswith("05_compare.ipynb")]
    assert len(lines) == 1 and "(seed 0): cell In [" in lines[0] and "FileNotFoundError" in lines[0], r.stderr
    assert "Traceback" not in r.stderr and str(out / "executed") in r.stderr
    assert json.loads((out / "reproduce.json").read_text())["notebooks"][0]["status"] == "failed"

    nb = nbformat.read(out / "executed" / "05_compare.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    failed = [c for c in code if any(o.output_type == "error" for o in c.outputs)]
    assert len(failed) == 1 and failed[0].outputs[-1].ename == "FileNotFoundError"
    assert f"cell In [{failed[0].execution_count}] `{failed[0].source.splitlines()[0]}`" in lines[0]
    ran = code[:code.index(failed[0])]
    assert ran and all(c.execution_count is not None for c in ran)
    assert any(c.outputs for c in ran if "nbsetup.start(" in c.source)  # the settings table of the set-up cell
    assert all(c.execution_count is None and not c.outputs for c in code[code.index(failed[0]) + 1:])


def test_a_notebook_trains_every_seed_it_is_given(tmp_path):
    """The `seeds` parameter: one notebook run trains each listed seed (here the teacher of seeds 0 and 1)."""
    import os

    import papermill as pm
    out = tmp_path / "results"
    env_path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env_path]))
    try:
        pm.execute_notebook(str(ROOT / "notebooks" / "01_teacher.ipynb"), str(tmp_path / "01.ipynb"),
                            parameters=dict(profile="smoke", dataset="digits", results_dir=str(out), seeds=[0, 1]),
                            kernel_name="python3", cwd=str(ROOT / "notebooks"), progress_bar=False)
    finally:
        if env_path is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = env_path
    results = pd.read_csv(out / "results.csv")
    assert sorted(results[results.metric == "test_accuracy"].seed) == [0, 1]
    assert (out / "checkpoints" / "seed1").is_dir()


def test_a_finished_notebook_is_shut_down_without_a_sigint(tmp_path, capfd):
    """papermill asks the kernel for its info after the last cell and shuts it down on the reply; jupyter_client's
    shutdown begins with a SIGINT, which hit the kernel while it was still finishing that request (under load), and
    the kernel logged ``[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel.`` after a run that went fine.
    Here the kernel keeps a SIGINT handler between requests that leaves a file, so any SIGINT shows, race or not."""
    from tadist_utils.runners import reproduce as runner
    marker = tmp_path / "sigint"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import os, signal\n"
        f"def _leave_mark(*_):\n    os.close(os.open({str(marker)!r}, os.O_CREAT | os.O_WRONLY))\n"
        "get_ipython().kernel.post_handler_hook = lambda: signal.signal(signal.SIGINT, _leave_mark)\n"
        "print('ran')")])
    nb.metadata["kernelspec"] = dict(name="python3", display_name="Python 3", language="python")
    src = tmp_path / "tiny.ipynb"
    nbformat.write(nb, src)
    assert runner.run_one(src, tmp_path / "out.ipynb", {}, 120) is None
    assert nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[0].outputs[0].text == "ran\n"
    assert not marker.exists(), "the runner interrupted a kernel that had finished"
    assert "KeyboardInterrupt" not in capfd.readouterr().err
    assert not (tmp_path / "out.kernel.log").exists()  # nothing logged: no file left


def test_the_kernels_own_log_goes_to_a_file_not_the_terminal(tmp_path, capfd):
    """The kernel process's stderr is plumbing (ZMQ tracebacks when a stop races a cell's reply): it goes to a
    file beside the executed copy, which a failure names; what a cell prints still reaches the notebook."""
    from tadist_utils.runners import reproduce as runner
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import sys\nget_ipython().kernel.log.error('kernel plumbing')\nprint('to the notebook', file=sys.stderr)"),
        nbformat.v4.new_code_cell("raise ValueError('boom')")])
    nb.metadata["kernelspec"] = dict(name="python3", display_name="Python 3", language="python")
    src = tmp_path / "logs.ipynb"
    nbformat.write(nb, src)
    error = runner.run_one(src, tmp_path / "out.ipynb", {}, 120)
    assert error.endswith("ValueError: boom"), error
    assert "kernel plumbing" not in capfd.readouterr().err
    assert "kernel plumbing" in (tmp_path / "out.kernel.log").read_text()
    (first,) = [c for c in nbformat.read(tmp_path / "out.ipynb", as_version=4).cells if "plumbing" in c.source]
    assert any("to the notebook" in o.get("text", "") for o in first.outputs)


def test_a_cell_still_running_at_shutdown_is_interrupted(tmp_path):
    """The other side of the test above: a cell that is still running when the kernel is shut down (here a cell
    timeout; Ctrl-C or SIGTERM to the runner alike) gets the SIGINT, so it ends as a cell error, not mid-write."""
    from tadist_utils.runners import reproduce as runner
    marker = tmp_path / "interrupted"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import os, time\ntry:\n    time.sleep(120)\nexcept KeyboardInterrupt:\n"
        f"    os.close(os.open({str(marker)!r}, os.O_CREAT | os.O_WRONLY))\n    raise")])
    nb.metadata["kernelspec"] = dict(name="python3", display_name="Python 3", language="python")
    src = tmp_path / "slow.ipynb"
    nbformat.write(nb, src)
    error = runner.run_one(src, tmp_path / "out.ipynb", {}, 2)
    assert error is not None and "CellTimeoutError" in error, error
    assert marker.exists(), "the running cell was not interrupted"
