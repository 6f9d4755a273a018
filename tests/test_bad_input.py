"""Bad input at every public entry point fails before anything trains, with one line that says what is wrong.

* the runner, ``python -m tadist_utils``: exit 2, one stderr line ``error: ...``, no traceback, nothing run;
* a notebook run directly with papermill: ConfigError at the config cell, shown as one line;
* the API, ``make_config``: ConfigError with a one-line message (more cases in test_config.py; CIFAR-10
  requested but absent through ``load_data`` is in test_data.py).
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from tadist_utils.runners import nbsetup, reproduce
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


# These cases run the real ``python -m tadist_utils`` process (exit status through sys.exit, stderr of a
# fresh interpreter, the CIFAR download really failing through a dead proxy); the rest call reproduce.main in-process
# with the same assertions (a subprocess launch is ~2 s of CPU each, mostly importing torch).
IN_A_SUBPROCESS = {"profile", "unknown-flag", "cifar10-absent", "cifar100-absent"}


def run_runner(argv, name, capsys, monkeypatch) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of the runner with ``argv``, offline, from the repository root."""
    if name in IN_A_SUBPROCESS:
        r = subprocess.run([sys.executable, "-m", "tadist_utils.runners.reproduce", *argv], cwd=ROOT,
                           env={**os.environ, **OFFLINE}, capture_output=True, text=True, timeout=300)
        return r.returncode, r.stdout, r.stderr
    import warnings
    for key, value in {**OFFLINE, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}.items():
        monkeypatch.setenv(key, value)  # restored afterwards, should main get as far as setting PYTHONPATH
    monkeypatch.chdir(ROOT)
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            rc = reproduce.main(argv)
        except SystemExit as e:  # argparse's errors leave through cli.Parser.exit, as in the process
            rc = e.code
    out, err = capsys.readouterr()
    # a warning would be a second stderr line in the process (deprecations are hidden there by default)
    shown = [w for w in caught if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))]
    return rc, out, err + "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in shown)


RUNNER_CASES = [  # (id, arguments ({tmp}: the test's tmp_path), what the one line must say)
    case("profile", ["--profile", "nope"], "unknown profile 'nope'; choose from smoke, quick, reference, paper"),
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
def test_runner_bad_input_is_one_line_before_anything_runs(args, message, tmp_path, request, capsys, monkeypatch):
    (tmp_path / "flat").mkdir()                   # a folder without train/ and test/
    (tmp_path / "empty").mkdir()                  # no CIFAR here, and OFFLINE: none to download
    (tmp_path / "a_file").write_text("x")         # results_dir below a file
    (tmp_path / "ro").mkdir(mode=0o555)           # results_dir in a read-only folder
    base = ["--profile", "smoke", "--dataset", "digits", "--results-dir", str(tmp_path / "r"), "--only", "00"]
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]  # later flags win over the base ones
    name = request.node.callspec.id
    returncode, stdout, stderr = run_runner([*base, *args], name, capsys, monkeypatch)
    assert returncode == 2, stdout + stderr
    assert stderr.endswith("\n") and stderr.count("\n") == 1 and stderr.startswith("error: "), stderr
    assert message.replace("{tmp}", str(tmp_path)) in stderr
    assert "Traceback" not in stderr + stdout  # nothing started: on stdout at most the first line, the data's
    assert stdout == "" or (stdout.count("\n") == 1 and stdout.startswith("data: ") and "not in" in stdout), stdout
    assert not (tmp_path / "r").exists() and not list(tmp_path.rglob("executed"))


def test_a_bad_flag_is_answered_before_torch_is_imported():
    """The runner reads its flags before importing the package's torch modules: a typo costs ~0.1 s, not ~2 s."""
    code = ("import sys\nfrom tadist_utils.runners import reproduce\ntry:\n    reproduce.main(['--epochs', '3'])\n"
            "except SystemExit as e:\n    print(e.code, 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["2", "False"], r.stdout + r.stderr


# ---------------------------------------------------------------------------- notebooks run with papermill
def test_every_notebook_declares_the_parameters_its_config_cell_checks():
    import papermill as pm
    for path in NOTEBOOKS:
        assert tuple(pm.inspect_notebook(str(path))) == nbsetup.PARAMETERS, path.name
        config_cell = next(c.source for c in nbformat.read(path, as_version=4).cells if "nbsetup.start(" in c.source)
        assert "nbsetup.start(globals())" in config_cell, path.name  # check_parameters(In) inside


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
        assert e.value.ename == "ConfigError" and "nbsetup.start(" in e.value.source  # stopped at the set-up cell
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
    (dict(levels=5), "levels=5 needs a student architecture"),  # the first level without one (runner: 9)
    (dict(eval_batch_size=0), "eval_batch_size must be a positive integer"),
    (dict(finetune_epochs=-1), "finetune_epochs must be zero or a positive integer"),
    (dict(teacher_epochs="three"), "teacher_epochs: bad value 'three'"),
    (dict(augment="maybe"), "augment must be true or false"),
    (dict(precision="fp8"), "unknown precision 'fp8'; choose from auto, fp32, bf16, fp16"),
    (dict(teacher_optimizer="rmsprop"), "unknown teacher_optimizer 'rmsprop'; choose from adam, adamw, sgd"),
    (dict(device="cuda:x"), "device 'cuda:x'"),
    (dict(student_lr=0), "student_lr must be positive"),
    (dict(dense_drop=1.0), "dense_drop must be in [0, 1), got 1.0"),
    (dict(kd_alpha=2), "kd_alpha must be in [0, 1], got 2"),
    (dict(threads=0), "threads must be a positive integer or None"),
    (dict(feature_loss="huber"), "unknown feature_loss 'huber'"),
    (dict(finetune_mode="some"), "unknown finetune_mode 'some'; choose from head, all"),
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
    """The runner's CIFAR probe, in-process with the download mocked to fail; present files are read, not downloaded."""
    from tadist_utils import data

    def no_network(*a, **k):
        raise OSError("no network")
    monkeypatch.setattr(data, "_torchvision_cifar", no_network)
    with pytest.raises(ConfigError, match=r"CIFAR-10 is not in .* could not be downloaded \(OSError\)"):
        reproduce.check_data(make_config("smoke", dataset="cifar10", data_dir=str(tmp_path)))
    reproduce.check_data(make_config("smoke", dataset="auto", data_dir=str(tmp_path / "x")))  # auto falls back later
    monkeypatch.undo()
    (tmp_path / "cifar-10-batches-py").mkdir()  # present but empty: named, not downloaded, not a traceback
    with pytest.raises(ConfigError, match=r"cifar-10-batches-py/batches.meta is missing"):
        reproduce.check_data(make_config("smoke", dataset="cifar10", data_dir=str(tmp_path)))


def test_notebook_seeds_parameter_is_checked():
    from tadist_utils.runners import nbsetup
    cfg = make_config("smoke", dataset="digits")
    assert [c.seed for c in nbsetup.per_seed(cfg, [])] == [cfg.seed]
    assert [c.seed for c in nbsetup.per_seed(cfg, [2, 0, "1"])] == [2, 0, 1]
    for seeds in (["a"], [1.5], [True], "0 1"):
        with pytest.raises(ConfigError, match="seeds must be a list of integers"):
            nbsetup.per_seed(cfg, seeds)


# ------------------------------------------------ issue 30: seeds, one check (config.check_seed) at every way in
SEED_RANGE = "must be an integer from 0 to 2,147,483,647, got "


def test_the_largest_seed_survives_every_derivation_the_package_makes():
    """The bound is the package's, not torch's alone: the largest seed's derived seeds (train.init_seed, a dense
    student's masks at the last epoch, the batches' order) are still seeds torch takes."""
    from tadist_utils.config import MAX_EPOCHS, SEED_LIMIT
    from tadist_utils.train import init_seed
    top = SEED_LIMIT - 1
    for derived in (init_seed(top, "teacher"), init_seed(top * 1009 + MAX_EPOCHS, "T>L1[0:512]"), top * 100_003 + MAX_EPOCHS):
        torch.Generator().manual_seed(derived)
        torch.manual_seed(derived)
    with pytest.raises((RuntimeError, ValueError, OverflowError)):  # the seed, had it passed: what 01 hit
        torch.manual_seed(init_seed(100000000000000 * 1009, "T"))


@pytest.mark.parametrize("seed", [100000000000000, 2**31, -1, True, 1.0])
def test_make_config_refuses_a_seed_out_of_range(seed):
    with pytest.raises(ConfigError) as e:
        make_config("smoke", dataset="digits", seed=seed)
    assert "\n" not in str(e.value) and ("seed must be" in str(e.value))


@pytest.mark.parametrize("runner", ["reproduce", "headless", "sweep"])
@pytest.mark.parametrize("seeds, message", [
    (["100000000000000"], f"seed {SEED_RANGE}100000000000000"),
    (["-1"], f"seed {SEED_RANGE}-1"),
    (["0", "0"], "--seeds names 0 more than once; give each seed once"),
], ids=["huge", "negative", "twice"])
def test_every_runner_checks_seeds_as_the_config_does(runner, seeds, message, tmp_path, capsys):
    argv = ["--profile", "smoke", "--dataset", "digits", "--results-dir", str(tmp_path / "r"), "--seeds", *seeds]
    try:
        rc = _main(runner)(argv + (["--only", "00"] if runner == "reproduce" else []))
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    assert rc == 2 and out == "" and err == f"error: {message}\n", out + err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("seeds, message", [
    ([0, 0], "seeds names 0 more than once; give each seed once"),  # papermill -y "seeds: [0, 0]" trained one seed
    ([5, 100000000000000], f"seed {SEED_RANGE}100000000000000"),
    ([-2], f"seed {SEED_RANGE}-2"),
])
def test_notebook_seeds_are_checked_as_the_runners_are(seeds, message):
    cfg = make_config("smoke", dataset="digits")
    with pytest.raises(ConfigError) as e:
        nbsetup.per_seed(cfg, seeds)
    assert str(e.value) == message


def test_papermill_repeated_seeds_stop_at_the_config_cell(papermill_run):
    assert papermill_run(seeds=[0, 0]) == "seeds names 0 more than once; give each seed once"


def test_the_sweep_api_checks_seeds_as_the_runners_do(tmp_path):
    from tadist_utils.runners import sweep
    with pytest.raises(ConfigError, match="^seeds names 1 more than once; give each seed once$"):
        sweep.plan("smoke", [1, 1], {"dataset": "digits"}, {}, tmp_path)
    with pytest.raises(ConfigError, match=f"^seed {SEED_RANGE}4294967296$"):
        sweep.plan("smoke", [2**32], {"dataset": "digits"}, {}, tmp_path)


# ------------------------------------------------------------------- issue 10: data, values, files, training
class Evil:
    """A pickle that runs a shell command when loaded with pickle.load."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant_malicious_cifar10(root: Path, marker: Path) -> Path:
    import pickle

    import numpy as np
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    batch = {"data": np.zeros((10, 3072), np.uint8), "labels": list(range(10))}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (base / name).write_bytes(pickle.dumps(batch))
    (base / "batches.meta").write_bytes(pickle.dumps({"label_names": Evil(marker)}))
    return base / "batches.meta"


@pytest.mark.parametrize("dataset", ["auto", "cifar10"])
def test_a_malicious_cifar_pickle_runs_nothing_and_is_refused(tmp_path, dataset):
    """The default --dataset auto too: a CIFAR folder someone sent you is read without running code from it."""
    marker = tmp_path / "pwned"
    meta = _plant_malicious_cifar10(tmp_path / "data", marker)
    r = subprocess.run([sys.executable, "-m", "tadist_utils.runners.reproduce", "--profile", "smoke", "--dataset", dataset,
                        "--data-dir", str(tmp_path / "data"), "--results-dir", str(tmp_path / "r"), "--only", "00"],
                       cwd=ROOT, env={**os.environ, **OFFLINE}, capture_output=True, text=True, timeout=300)
    assert not marker.exists()  # os.system never ran
    assert r.returncode == 2 and r.stdout == "" and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"error: refusing to load {meta}: "), r.stderr
    assert "posix.system" in r.stderr or "nt.system" in r.stderr
    from tadist_utils import data
    with pytest.raises(ConfigError, match="refusing to load"):  # the API (notebooks) refuses the same way
        data.load_data(make_config("smoke", dataset=dataset, data_dir=str(tmp_path / "data"),
                                   results_dir=str(tmp_path / "r")))
    assert not marker.exists()


def _images(folder: Path, n: int = 6, colour: int = 40) -> None:
    import numpy as np
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((32, 32, 3), colour + i, np.uint8)).save(folder / f"{i}.jpg")


def _folders(tmp: Path) -> None:
    """ImageFolder trees, each wrong in one way, under ``tmp``."""
    for name in ("one-class", "empty-class", "truncated", "not-an-image", "test-class-missing", "ok", "dangling"):
        for split in ("train", "test"):
            _images(tmp / name / split / "cat", colour=20)
            if name != "one-class":
                _images(tmp / name / split / "dog", n=0 if name == "empty-class" and split == "train" else 6, colour=200)
    import shutil
    shutil.rmtree(tmp / "test-class-missing" / "test" / "dog")
    jpg = tmp / "truncated" / "train" / "dog" / "3.jpg"
    jpg.write_bytes(jpg.read_bytes()[: len(jpg.read_bytes()) // 2])
    (tmp / "not-an-image" / "test" / "cat" / "notes.jpg").write_text("not a picture")
    (tmp / "dangling" / "train" / "dog" / "6.jpg").symlink_to(tmp / "moved-away.jpg")  # its target is gone
    (tmp / "no-class-folders" / "train").mkdir(parents=True)
    (tmp / "no-class-folders" / "test").mkdir()
    _images(tmp / "no-class-folders" / "train", n=2)  # images straight in train/, no class folders


def folder(name, message, **sets):
    return pytest.param(["--dataset", "imagefolder", "--data-dir", f"{{tmp}}/{name}",
                         *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]], message, id=name)


RUNNER_CASES_10 = [  # in-process (fast): reproduce.main's exit status, stderr and stdout
    case("student-lr-inf", ["--set", "student_lr=inf"], "student_lr must be a finite number, got inf"),
    case("student-lr-nan", ["--set", "student_lr=nan"], "student_lr must be a finite number, got nan"),
    case("epochs-huge", ["--set", "student_epochs=99999999999999999999"], "student_epochs must be at most 10,000"),
    case("weight-decay-negative", ["--set", "teacher_weight_decay=-1"],
         "teacher_weight_decay must be zero or positive, got -1.0"),
    case("train-size-1", ["--set", "train_size=1"], "train_size=1 is too small: at least 2 training images per class"),
    case("val-size-huge", ["--set", "val_size=100000"], "val_size=100000 is not below the 1,438 training images of digits"),
    folder("one-class", "has one class folder (cat); classification needs at least two"),
    folder("empty-class", "{tmp}/empty-class/train/dog holds no images"),
    folder("truncated", "cannot decode image {tmp}/truncated/train/dog/3.jpg (OSError"),
    folder("not-an-image", "cannot decode image {tmp}/not-an-image/test/cat/notes.jpg (UnidentifiedImageError"),
    folder("dangling", "cannot read image {tmp}/dangling/train/dog/6.jpg (FileNotFoundError: No such file or directory)"),
    folder("test-class-missing", "{tmp}/test-class-missing/test does not have the classes of train/: missing dog"),
    folder("no-class-folders", "{tmp}/no-class-folders/train has no class folders"),
    folder("ok", "train_size=3 is too small: at least 2 training images per class are needed (4 for 2 classes)",
           train_size=3),
]


@pytest.mark.parametrize("args, message", RUNNER_CASES_10)
def test_runner_bad_data_and_values_are_one_line(args, message, tmp_path, capsys):
    _folders(tmp_path)
    base = ["--profile", "smoke", "--dataset", "digits", "--results-dir", str(tmp_path / "r"), "--only", "00"]
    assert reproduce.main(base + [a.replace("{tmp}", str(tmp_path)) for a in args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert message.replace("{tmp}", str(tmp_path)) in err
    assert not (tmp_path / "r").exists()


def test_an_unreadable_image_is_one_line_naming_it(tmp_path, capsys, monkeypatch):
    """An image without read permission: a PermissionError traceback from the listing's hash before (exit 1).
    root reads a chmod 000 file all the same, so as root the permission error is simulated on that file's open()."""
    from tadist_utils.data import imagefolder, load_data
    _folders(tmp_path)
    image = tmp_path / "ok" / "test" / "cat" / "2.jpg"
    if os.geteuid() == 0:
        def refuse(path, *a, **k):
            if Path(path) == image:
                raise PermissionError(13, "Permission denied", str(path))
            return open(path, *a, **k)
        monkeypatch.setattr(imagefolder, "open", refuse, raising=False)  # the module's name before the builtin
    else:
        image.chmod(0)
    message = f"cannot read image {image} (PermissionError: Permission denied); fix or remove it"
    with pytest.raises(ConfigError) as e:
        load_data(make_config("smoke", dataset="imagefolder", data_dir=str(tmp_path / "ok"), val_size=2))
    assert str(e.value) == message
    argv = ["--profile", "smoke", "--dataset", "imagefolder", "--data-dir", str(tmp_path / "ok"),
            "--results-dir", str(tmp_path / "r"), "--only", "00"]
    assert reproduce.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"error: {message}\n" and not (tmp_path / "r").exists()
    image.chmod(0o644)


def test_an_edited_folder_is_decoded_again_not_taken_from_the_cache(tmp_path):
    from tadist_utils.data import load_data
    _folders(tmp_path)
    cfg = make_config("smoke", dataset="imagefolder", data_dir=str(tmp_path / "ok"), val_size=2,
                      results_dir=str(tmp_path / "r"))
    first = load_data(cfg)
    (tmp_path / "ok" / "train" / "cat" / "0.jpg").write_text("now broken")  # a cached image replaced by junk
    with pytest.raises(ConfigError, match="cannot decode image .*ok/train/cat/0.jpg"):
        load_data(cfg)
    _images(tmp_path / "ok" / "train" / "cat", n=1, colour=250)  # repaired with other pixels
    assert load_data(cfg).fingerprint() != first.fingerprint()


def test_an_image_replaced_with_its_size_and_mtime_kept_is_not_served_from_the_cache(tmp_path):
    """``cp -p``, ``rsync -t`` and tar keep the mtime: the cache is keyed on the images' content, not path+size+mtime."""
    import os

    from tadist_utils.data import load_data
    _folders(tmp_path)
    cfg = make_config("smoke", dataset="imagefolder", data_dir=str(tmp_path / "ok"), val_size=2,
                      results_dir=str(tmp_path / "r"))
    first = load_data(cfg)  # every image decoded and cached
    assert (tmp_path / "ok" / ".tadist-cache.npz").exists()
    cat, dog = tmp_path / "ok" / "train" / "cat" / "0.jpg", tmp_path / "ok" / "train" / "dog" / "0.jpg"
    assert cat.stat().st_size == dog.stat().st_size  # one flat colour each: same size, other pixels
    st = cat.stat()
    cat.write_bytes(dog.read_bytes())
    os.utime(cat, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = load_data(cfg)
    assert again.fingerprint() != first.fingerprint()
    assert 20 not in again.train.images[:, 0, 0, 0].tolist() + again.val.images[:, 0, 0, 0].tolist()  # cat/0's colour


@pytest.mark.parametrize("kwargs, message", [
    (dict(student_lr="0.001"), "student_lr must be a finite number, got '0.001'"),
    (dict(results_dir=None), "results_dir must be a path, got None"),
    (dict(batch_size=True), "batch_size must be an integer, got True"),
    (dict(levels=2.0), "levels must be an integer, got 2.0"),
    (dict(augment="no"), "augment must be true or false, got 'no'"),
    (dict(train_size="100"), "train_size must be an integer or None, got '100'"),
    (dict(experiments="direct,nope"), "unknown experiment(s) ['nope']"),
    (dict(student_weight_decay=float("inf")), "student_weight_decay must be a finite number, got inf"),
    (dict(finetune_epochs=10_001), "finetune_epochs must be at most 10,000, got 10001"),
])
def test_config_built_directly_is_checked_with_one_line(kwargs, message, tmp_path):
    from tadist_utils.config import Config
    from tadist_utils.experiments import Pipeline
    kwargs = {"results_dir": str(tmp_path / "r"), "dataset": "digits", **kwargs}
    with pytest.raises(ConfigError) as e:
        Pipeline(Config(**kwargs))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_config_experiments_given_as_a_string_are_names_not_letters():
    from tadist_utils.config import Config, validate
    assert Config(experiments="direct").experiments == ("direct",)
    assert Config(experiments="direct, kd").experiments == ("direct", "kd")
    validate(Config(experiments="direct", dataset="digits"))


def test_papermill_overrides_given_as_a_string_are_parsed(papermill_run):
    """`papermill -p overrides '{"batch_size": 0}'` passes a string; it is read as JSON, then checked."""
    assert papermill_run(overrides='{"batch_size": 0}') == "batch_size must be a positive integer, got 0"


@pytest.mark.parametrize("value, expected", [
    ('{"student_lr": 0.002, "levels": 2}', {"student_lr": 0.002, "levels": 2}), ("", {}), ({"a": 1}, {"a": 1}),
    (None, {}), ('__import__("os").system("true")', ConfigError), ("[1, 2]", ConfigError), ("{batch_size: 0}", ConfigError),
])
def test_parse_overrides(value, expected):
    if expected is ConfigError:
        with pytest.raises(ConfigError, match="overrides must be") as e:
            nbsetup.parse_overrides(value)
        assert "\n" not in str(e.value)
    else:
        assert nbsetup.parse_overrides(value) == expected


def _experiments_cli(args, capsys):
    try:
        rc = reproduce.main(["--headless", *args])
    except SystemExit as e:  # argparse
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def test_experiments_cli_bad_seeds_is_one_line(capsys):
    rc, out, err = _experiments_cli(["--seeds", "abc"], capsys)
    assert rc == 2 and out == "" and err == ("error: argument --seeds: invalid int value: 'abc' "
                                             "(see python -m tadist_utils --help)\n")


def test_the_notebooks_flags_are_refused_with_headless(capsys):
    rc, out, err = _experiments_cli(["--only", "01", "--quiet"], capsys)
    assert rc == 2 and out == "" and err == "error: --only, --quiet: for the notebooks, not --headless\n", err


def test_the_headless_runner_leaves_no_folder_when_it_refuses_the_data(tmp_path, capsys):
    """The bad image is found when the pipeline loads the data, after it made the results folder: that folder (and
    the parents it made) are removed again; a folder that was there before stays."""
    _folders(tmp_path)
    args = ["--profile", "smoke", "--dataset", "imagefolder", "--data-dir", str(tmp_path / "truncated")]
    rc, out, err = _experiments_cli(args + ["--results-dir", str(tmp_path / "new" / "r")], capsys)
    assert rc == 2 and err.startswith("error: cannot decode image ") and err.count("\n") == 1, err
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    rc, out, err = _experiments_cli(args + ["--results-dir", str(tmp_path / "kept")], capsys)
    assert rc == 2 and (tmp_path / "kept").is_dir()


SMOKE = ["--profile", "smoke", "--set", "dataset=digits", "device=cpu", "precision=fp32", "progress=false", "threads=1",
         "experiments=direct", "levels=1"]


def test_diverging_training_stops_with_one_line_naming_the_model_and_epoch(tmp_path, capsys):
    rc, out, err = _experiments_cli(SMOKE + [f"results_dir={tmp_path}", "teacher_lr=1e30"], capsys)
    assert rc == 2 and err == "error: teacher: train_loss is nan at epoch 1; training diverged: lower the learning rate\n"
    assert not (tmp_path / "results.csv").exists()  # no empty cells written
    assert not list(tmp_path.rglob("teacher-*.pt"))  # nor a diverged checkpoint


def test_nan_in_any_recorded_metric_stops_the_run(tmp_path):
    from tadist_utils.errors import RunError
    from tadist_utils.train import RunState
    run = RunState(tmp_path / "S01-12345678.pt", {}, None, None, None, None, epoch=3)
    with pytest.raises(RunError, match=r"^S01: val_loss is inf at epoch 3; training diverged"):
        run.record(dict(train_loss=0.1, val_loss=float("inf")), select=None)
    assert run.history == []


def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(tmp_path, capsys, monkeypatch):
    import errno

    from tadist_utils.storage import checkpoint

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(checkpoint.os, "fsync", full)
    rc, out, err = _experiments_cli(SMOKE + [f"results_dir={tmp_path}"], capsys)
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: no space left on the device to write "), err
    assert "Traceback" not in err and not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    assert not list(tmp_path.rglob("*.pt"))


def test_a_full_disk_while_writing_results_is_one_line(tmp_path, monkeypatch):
    import errno

    import pandas as pd

    from tadist_utils.errors import RunError
    from tadist_utils.storage.results import ResultsStore
    store = ResultsStore(tmp_path)
    store.add_results([dict(dataset="d", experiment="e", model="m", seed=0, metric="acc", value=1.0)])

    def full(self, path, *a, **k):
        open(path, "w").write("half a ")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    with pytest.raises(RunError, match="no space left on the device to write .*results.csv"):
        store.add_results([dict(dataset="d", experiment="e", model="m2", seed=0, metric="acc", value=2.0)])
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".results.lock", "results.csv", "summary.csv"]  # no temporary
    assert len(store.results()) == 1  # the old file, whole


RESULTS_CSV = "dataset,experiment,model,seed,metric,value,settings\ndigits,teacher,teacher,0,test_accuracy,50.0,0123abcd4567\n"


def test_a_damaged_results_csv_is_one_line_before_anything_trains(tmp_path, capsys):
    """A hand-damaged results.csv (an unterminated quoted field appended) is named before the teacher trains: exit 2,
    one line, the file untouched (it was a pandas ParserError traceback, exit 1, from results._upsert after training)."""
    csv = tmp_path / "results.csv"
    csv.write_text(RESULTS_CSV + 'digits,direct,"S1,0,final_train_loss,0.1\n')
    before = csv.read_bytes()
    rc, out, err = _experiments_cli(SMOKE + [f"results_dir={tmp_path}"], capsys)
    assert rc == 2 and err.count("\n") == 1 and err.startswith(f"error: {csv} cannot be read (ParserError: "), err
    assert "Traceback" not in err and csv.read_bytes() == before and not list(tmp_path.rglob("*.pt"))
    rc = reproduce.main(["--profile", "smoke", "--dataset", "digits", "--results-dir", str(tmp_path), "--only", "00"])
    out, err = capsys.readouterr()
    assert rc == 2 and out == "" and err.count("\n") == 1 and err.startswith(f"error: {csv} cannot be read"), err
    assert csv.read_bytes() == before and not (tmp_path / "executed").exists()


@pytest.mark.parametrize("name, text, message", [
    ("history.csv", "dataset,model,seed\ndigits,teacher,0\n", "history.csv lacks the column(s) key, epoch, metric, value"),
    ("superseded/results.csv", RESULTS_CSV + '"\n', "superseded/results.csv cannot be read (ParserError"),
    ("manifest.json", '{"config": ', "manifest.json cannot be read (JSONDecodeError"),
], ids=["history-columns", "superseded-unterminated", "manifest-cut"])
def test_every_results_file_is_checked_before_anything_trains(name, text, message, tmp_path):
    from tadist_utils.experiments import Pipeline
    from tadist_utils.storage.results import check_files
    (tmp_path / name).parent.mkdir(exist_ok=True)
    (tmp_path / name).write_text(text)
    check_files(tmp_path / "elsewhere")  # no files: nothing to say
    with pytest.raises(ConfigError, match=re.escape(message)) as e:
        Pipeline(make_config("smoke", dataset="digits", results_dir=str(tmp_path)))
    assert "\n" not in str(e.value) and (tmp_path / name).read_text() == text


HISTORY_CSV = "dataset,key,model,seed,epoch,metric,value,settings\ndigits,T,teacher,0,1,train_loss,2.3,0123abcd4567\n"


@pytest.mark.parametrize("name, row, problem", [
    ("results.csv", "digits,teacher\n", "2 field(s) where the header has 7"),
    ("results.csv", "digits,teacher,teacher,0,val_accuracy,abc,0123abcd4567\n", "value 'abc' is not a number"),
    ("results.csv", "digits,teacher,teacher,zero,val_accuracy,1,0123abcd4567\n", "seed 'zero' is not an integer"),
    ("results.csv", "digits,teacher,teacher,0.0,val_accuracy,1,0123abcd4567\n", "seed '0.0' is not an integer"),
    ("results.csv", "digits,drect,S1,0,val_accuracy,1,0123abcd4567\n", "unknown experiment 'drect' (known: dense, "),
    ("results.csv", "digits,direct,S1,0,,1,0123abcd4567\n", "no metric"),
    ("history.csv", "digits,T,teacher,0,1\n", "5 field(s) where the header has 8"),
    ("history.csv", "digits,T,teacher,0,two,train_loss,2.1,0123abcd4567\n", "epoch 'two' is not an integer"),
    ("superseded/history.csv", "digits,T,teacher,0,2,train_loss,n/a,0123abcd4567\n", "value 'n/a' is not a number"),
], ids=["short-row", "value-abc", "seed-word", "seed-float", "experiment", "empty-key", "history-short", "epoch",
        "superseded"])  # a long row: pandas' ParserError (test_every_results_file_is_checked_before_anything_trains)
def test_a_results_file_that_parses_but_is_wrong_is_refused_row_by_row(name, row, problem, tmp_path):
    """A row pandas reads but this package never writes: one line naming the file and line, nothing changed or
    moved. (The short row was moved to superseded/ as made under other settings, every seed rewritten as 0.0; the
    value abc overwritten.)"""
    from tadist_utils.experiments import Pipeline
    path = tmp_path / name
    path.parent.mkdir(exist_ok=True)
    path.write_text((HISTORY_CSV if "history" in name else RESULTS_CSV) + "\n" + row)  # a blank line: skipped
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(ConfigError) as e:
        Pipeline(make_config("smoke", dataset="digits", results_dir=str(tmp_path)))
    assert str(e.value).startswith(f"{path}, line 4: {problem}") and "\n" not in str(e.value)
    assert str(e.value).endswith("; repair or remove that row (nothing was changed)")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert path.read_text().endswith(row)


def test_the_runners_refuse_a_wrong_row_before_anything_trains(tmp_path, capsys):
    csv = tmp_path / "results.csv"
    csv.write_text(RESULTS_CSV + "digits,teacher\n")
    rc, out, err = _experiments_cli(SMOKE + [f"results_dir={tmp_path}"], capsys)
    assert rc == 2 and err == f"error: {csv}, line 3: 2 field(s) where the header has 7; repair or remove that row " \
                              "(nothing was changed)\n", err
    assert not list(tmp_path.rglob("*.pt")) and not (tmp_path / "superseded").exists()
    assert reproduce.main(["--profile", "smoke", "--dataset", "digits", "--results-dir", str(tmp_path), "--only", "00"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"error: {csv}, line 3: ") and not (tmp_path / "executed").exists()


def test_every_committed_results_folder_passes_the_check():
    from tadist_utils.storage.results import check_files
    folders = {p.parent for p in (ROOT / "results").rglob("*.csv") if p.name in ("results.csv", "history.csv")}
    assert len(folders) >= 4
    for folder in sorted(folders):
        check_files(folder)


def test_val_size_set_by_hand_beyond_the_training_set_is_refused_and_a_profiles_is_clamped(tmp_path):
    from tadist_utils.data import load_data
    with pytest.raises(ConfigError, match=r"^val_size=1438 is not below the 1,438 training images of digits") as e:
        load_data(make_config("smoke", dataset="digits", val_size=1438))
    assert "\n" not in str(e.value)
    clamped = load_data(make_config("smoke", dataset="digits", val_size=1437))  # set by hand, below: 20%, said
    assert len(clamped.val) == 287 and "val_size clamped to 287" in clamped.notice
    _folders(tmp_path)  # smoke's own 64 on a folder of 12 training images: 20%, said, as before
    small = load_data(make_config("smoke", dataset="imagefolder", data_dir=str(tmp_path / "ok")))
    assert len(small.val) == 2 and "val_size clamped to 2" in small.notice


# ------------------------------------------------------------------ one flag vocabulary for every runner (cli.py)
def _main(runner: str):
    from tadist_utils.runners import sweep
    return dict(reproduce=reproduce.main, headless=lambda argv: reproduce.main(["--headless", *argv]), sweep=sweep.main)[runner]


@pytest.mark.parametrize("runner", ["reproduce", "headless", "sweep"])
@pytest.mark.parametrize("args, message", [
    (["--seeds", "0", "1", "0"], "--seeds names 0 more than once; give each seed once"),
    (["--profile", "nope"], "unknown profile 'nope'"),
    (["--dataset", "nope"], "unknown dataset 'nope'"),
    (["--dataset", "imagefolder", "--data-dir", "{tmp}/nope"], "nope' does not exist"),
    (["--results-dir", "{tmp}/a_file/results"], "is not writable"),
    (["--set", "val_size=0"], "val_size must be a positive integer, got 0"),
    (["--set", "seed=1"], "use --seeds instead of --set seed"),
], ids=["seeds-twice", "profile", "dataset", "data-dir", "results-dir", "set", "set-seed"])
def test_every_runner_takes_the_same_flags_and_refuses_alike(runner, args, message, tmp_path, capsys):
    """reproduce, experiments and sweep share one parser (cli.py): the same flags, the same one-line refusals, nothing
    run (``--seeds 0 0`` ran seed 0 twice and exited 0)."""
    (tmp_path / "a_file").write_text("x")
    base = ["--profile", "smoke", "--dataset", "digits", "--results-dir", str(tmp_path / "r")]
    argv = base + [a.replace("{tmp}", str(tmp_path)) for a in args] + (["--only", "00"] if runner == "reproduce" else [])
    try:
        rc = _main(runner)(argv)
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    assert rc == 2 and out == "" and err.count("\n") == 1 and err.startswith("error: "), out + err
    assert message.replace("{tmp}", str(tmp_path)) in err
    assert not (tmp_path / "r").exists()
