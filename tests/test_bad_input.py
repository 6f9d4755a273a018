"""Bad input at every public entry point fails before anything trains, with one line that says what is wrong.

* the runner, ``python -m tadist_utils.reproduce``: exit 2, one stderr line ``error: ...``, no traceback, nothing run;
* a notebook run directly with papermill: ConfigError at the config cell, shown as one line;
* the API, ``make_config``: ConfigError with a one-line message (more cases in test_config.py; CIFAR-10
  requested but absent through ``load_data`` is in test_data.py).
"""
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from tadist_utils import nbsetup, reproduce
from tadist_utils.config import ConfigError, make_config

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
DEAD_PROXY = "http://127.0.0.1:9"  # nothing listens there: any download fails at once, network or not
OFFLINE = {**{k: DEAD_PROXY for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")},
           "no_proxy": "", "NO_PROXY": ""}
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
NOT_ROOT = pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write into a read-only folder")


# ------------------------------------------------------------------------------------------- the runner
def case(name, args, message, marks=()):
    return pytest.param(args, message, id=name, marks=marks)


RUNNER_CASES = [  # (id, arguments ({tmp}: the test's tmp_path), what the one line must say)
    case("profile", ["--profile", "nope"], "unknown profile 'nope'; choose from smoke, quick, paper"),
    case("experiment", ["--set", "experiments=nope"], "unknown experiment(s) ['nope']"),
    case("dataset", ["--dataset", "nope"], "unknown dataset 'nope'"),
    case("imagefolder-missing", ["--dataset", "imagefolder", "--data-dir", "{tmp}/nope"], "nope' does not exist"),
    case("imagefolder-layout", ["--dataset", "imagefolder", "--data-dir", "{tmp}/flat"], "lacks train/ and test/"),
    case("cifar10-absent", ["--dataset", "cifar10", "--data-dir", "{tmp}/empty"],
         "CIFAR-10 is not in {tmp}/empty and could not be downloaded"),
    case("cifar100-absent", ["--dataset", "cifar100", "--data-dir", "{tmp}/empty"],
         "CIFAR-100 is not in {tmp}/empty and could not be downloaded"),
    case("teacher-epochs", ["--set", "teacher_epochs=-3"], "teacher_epochs must be a positive integer, got -3"),
    case("student-epochs", ["--set", "student_epochs=0"], "student_epochs must be a positive integer, got 0"),
    case("epochs-not-a-number", ["--set", "teacher_epochs=three"], "teacher_epochs: bad value 'three'"),
    case("batch-size", ["--set", "batch_size=0"], "batch_size must be a positive integer, got 0"),
    case("levels-0", ["--set", "levels=0"], "levels must be a positive integer, got 0"),
    case("levels-9", ["--set", "levels=9"], "levels=9 needs a student architecture"),
    case("device", ["--set", "device=tpu"], "unknown device 'tpu'"),
    case("cuda-absent", ["--set", "device=cuda"], "no CUDA GPU", marks=NO_CUDA),
    case("results-read-only", ["--results-dir", "{tmp}/ro/results"], "is not writable", marks=NOT_ROOT),
    case("results-under-a-file", ["--results-dir", "{tmp}/a_file/results"], "is not writable"),
    case("misspelled-key", ["--set", "teacher_epoch=3"], "teacher_epoch (did you mean teacher_epochs?)"),
    case("seed-via-set", ["--set", "seed=1"], "use --seeds instead of --set seed"),
    case("no-equals", ["--set", "student_lr"], "--set expects key=value"),
    case("timeout-zero", ["--timeout", "0"], "--timeout must be a positive number of seconds, got 0"),
    case("timeout-not-a-number", ["--timeout", "abc"], "argument --timeout: invalid int value: 'abc'"),
    case("unknown-flag", ["--epochs", "3"], "unrecognized arguments: --epochs 3"),
    case("only", ["--only", "99"], "--only 99 matches no notebook"),
]


@pytest.mark.parametrize("args, message", RUNNER_CASES)
def test_runner_bad_input_is_one_line_before_anything_runs(args, message, tmp_path):
    (tmp_path / "flat").mkdir()                   # a folder without train/ and test/
    (tmp_path / "empty").mkdir()                  # no CIFAR here, and OFFLINE: none to download
    (tmp_path / "a_file").write_text("x")         # results_dir below a file
    (tmp_path / "ro").mkdir(mode=0o555)           # results_dir in a read-only folder
    base = ["--profile", "smoke", "--dataset", "digits", "--results-dir", str(tmp_path / "r"), "--only", "00"]
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]  # later flags win over the base ones
    r = subprocess.run([sys.executable, "-m", "tadist_utils.reproduce", *base, *args], cwd=ROOT,
                       env={**os.environ, **OFFLINE}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.endswith("\n") and r.stderr.count("\n") == 1 and r.stderr.startswith("error: "), r.stderr
    assert message.replace("{tmp}", str(tmp_path)) in r.stderr
    assert "Traceback" not in r.stderr + r.stdout and r.stdout == ""  # nothing started
    assert not (tmp_path / "r").exists() and not list(tmp_path.rglob("executed"))


# ---------------------------------------------------------------------------- notebooks run with papermill
def test_every_notebook_declares_the_parameters_its_config_cell_checks():
    import papermill as pm
    for path in NOTEBOOKS:
        assert tuple(pm.inspect_notebook(str(path))) == nbsetup.PARAMETERS, path.name
        config_cell = next(c.source for c in nbformat.read(path, as_version=4).cells if "make_config(" in c.source)
        assert "nbsetup.check_parameters(In)" in config_cell and "nbsetup.one_line_errors()" in config_cell, path.name


def test_the_runner_injects_only_declared_parameters():
    cfg = make_config("smoke", dataset="digits", student_lr=2e-3, levels=2)
    params = reproduce.parameters(cfg, {"student_lr": "2e-3", "levels": "2", "dataset": "digits"})
    assert set(params) <= set(nbsetup.PARAMETERS)
    assert params["overrides"] == {"student_lr": 2e-3, "levels": 2}


@pytest.mark.parametrize("history, message", [
    (["", "import sys", "profile = 'x'"], None),  # run by hand: no injected cell, nothing to check
    (["", "# Parameters\nprofile = \"smoke\"\nteacher_epochs = 3\noverrides = {}\n"], None),
    (["", "# Parameters\nteacher_epoch = 3\n"], "teacher_epoch (did you mean teacher_epochs?)"),
    (["", "# Parameters\nstudent_lr = 0.002\n"], "student_lr (a Config field: pass it inside overrides)"),
    (["", "# Parameters\nbanana = 1\nprofile = 'smoke'\n"], "unknown notebook parameter(s): banana;"),
], ids=["no-papermill", "declared", "misspelled", "config-field", "unknown"])
def test_check_parameters(history, message):
    if message is None:
        nbsetup.check_parameters(history)
        return
    with pytest.raises(ConfigError) as e:
        nbsetup.check_parameters(history)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert e.value._render_traceback_() == [f"ConfigError: {e.value}"]  # what Jupyter shows: one line


@pytest.fixture
def papermill_run(tmp_path, monkeypatch):
    """Run 00_overview (the cheapest notebook) directly with papermill, as a user would; returns its error."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    def run(**params):
        out = tmp_path / "out.ipynb"
        with pytest.raises(PapermillExecutionError) as e:
            pm.execute_notebook(str(ROOT / "notebooks" / "00_overview.ipynb"), str(out), kernel_name="python3",
                                cwd=str(ROOT / "notebooks"), progress_bar=False, log_output=False,
                                parameters=dict(profile="smoke", dataset="digits", results_dir=str(tmp_path / "r"),
                                                **params))
        assert e.value.ename == "ConfigError" and "make_config(" in e.value.source  # stopped at the config cell
        assert e.value.traceback == [f"ConfigError: {e.value.evalue}"]             # one line, no traceback
        assert not (tmp_path / "r").exists()                                        # nothing was written
        return e.value.evalue

    return run


def test_papermill_misspelled_parameter_stops_at_the_config_cell(papermill_run):
    message = papermill_run(teacher_epoch=3, student_lr=0.002)
    assert message.startswith("unknown notebook parameter(s): teacher_epoch (did you mean teacher_epochs?), "
                              "student_lr (a Config field: pass it inside overrides)")


def test_papermill_bad_value_is_one_line(papermill_run):
    assert papermill_run(teacher_epochs=-3) == "teacher_epochs must be a positive integer, got -3"


# ------------------------------------------------------------------------------------------------ the API
@pytest.mark.parametrize("kwargs, message", [
    (dict(experiments=""), "unknown experiment(s) (none given)"),
    (dict(levels=0), "levels must be a positive integer, got 0"),
    (dict(levels=9), "levels=9 needs a student architecture"),
    (dict(eval_batch_size=0), "eval_batch_size must be a positive integer"),
    (dict(finetune_epochs=-1), "finetune_epochs must be zero or a positive integer"),
    (dict(teacher_epochs="three"), "teacher_epochs: bad value 'three'"),
    (dict(augment="maybe"), "augment must be true or false"),
    (dict(precision="fp8"), "precision must be auto, fp32, bf16 or fp16"),
    (dict(teacher_optimizer="rmsprop"), "teacher_optimizer must be 'adam' or 'sgd'"),
    (dict(device="cuda:x"), "device 'cuda:x'"),
    (dict(student_lr=0), "student_lr must be positive"),
])
def test_api_bad_settings_are_one_line(kwargs, message):
    with pytest.raises(ConfigError) as e:
        make_config("smoke", **kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)


@NOT_ROOT
def test_api_read_only_results_dir(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o555)
    with pytest.raises(ConfigError, match="is not writable"):
        make_config("smoke", results_dir=str(tmp_path / "ro" / "results"))


def test_runner_data_check_names_the_folder_without_network(tmp_path, monkeypatch):
    """The runner's CIFAR probe, in-process with the download mocked to fail; present files need no network."""
    from tadist_utils import data

    def no_network(*a, **k):
        raise OSError("no network")
    monkeypatch.setattr(data, "_torchvision_cifar", no_network)
    with pytest.raises(ConfigError, match=r"CIFAR-10 is not in .* could not be downloaded \(OSError\)"):
        reproduce.check_data(make_config("smoke", dataset="cifar10", data_dir=str(tmp_path)))
    (tmp_path / "cifar-10-batches-py").mkdir()
    reproduce.check_data(make_config("smoke", dataset="cifar10", data_dir=str(tmp_path)))  # present: no download
    reproduce.check_data(make_config("smoke", dataset="auto", data_dir=str(tmp_path / "x")))  # auto falls back later


def test_notebook_seeds_parameter_is_checked():
    from tadist_utils import nbsetup
    cfg = make_config("smoke", dataset="digits")
    assert [c.seed for c in nbsetup.per_seed(cfg, [])] == [cfg.seed]
    assert [c.seed for c in nbsetup.per_seed(cfg, [2, 0, 2])] == [2, 0]
    with pytest.raises(ConfigError, match="seeds must be a list of integers"):
        nbsetup.per_seed(cfg, ["a"])
