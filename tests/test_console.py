"""What a terminal user sees: live training progress from the kernel, the data fallback said first and last, a default
results folder per profile."""
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest

from tadist_utils import train
from tadist_utils.runners import console, nbsetup, reproduce
from tadist_utils.config import RESULTS_ROOT, Config, default_results_dir, make_config

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def offline_env():
    """No network for torchvision's download (a proxy that refuses), this checkout on the kernels' path."""
    env = dict(os.environ, http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9",
               HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", no_proxy="", NO_PROXY="")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env


# ---------------------------------------------------------------------------- progress
@pytest.fixture
def runner_terminal(monkeypatch):
    """``$TADIST_PROGRESS`` as the runner sets it for a kernel: a descriptor (here a pipe's); returns a reader."""
    read, write = os.pipe()
    monkeypatch.setenv(console.ENV, str(write))
    train.terminal.cache_clear()
    yield lambda: (train.terminal().flush(), os.close(write), os.read(read, 100_000).decode())[-1]
    train.terminal.cache_clear()
    os.close(read)


def test_bars_and_log_lines_reach_the_runners_terminal(runner_terminal, tmp_path, capsys):
    """A bar is plain tqdm on the runner's stderr (rate and ETA; a line when it ends); a pipeline's log line (a
    corrupted checkpoint retrained, through Context.log) is printed in the notebook and on the terminal; the NOTICEs
    of data and moved rows the runner says itself are not repeated per notebook."""
    from tadist_utils.storage import checkpoint
    with train.bar(3, "teacher epoch 1/2") as b:
        b.update(3)
    bad = tmp_path / "teacher-0123abcd.pt"
    bad.write_bytes(b"half a checkpoint")
    assert checkpoint.find_resumable(bad, {}, log=train.log) is None
    train.log("[tadist] NOTICE: CIFAR-10 not found; using digits")
    text = runner_terminal()
    assert "teacher epoch 1/2: 100%" in text and "3/3" in text and "step/s]" in text, text
    assert text.endswith(f"]\n[tadist] checkpoint {bad} is corrupted or not a tadist checkpoint (no content hash); "
                         "retraining it from the start (it will be overwritten)\n"), text
    assert "is corrupted" in capsys.readouterr().out  # and in the notebook's output, as before


def test_without_the_variable_bars_are_plain_tqdm(monkeypatch):
    monkeypatch.delenv(console.ENV, raising=False)
    train.terminal.cache_clear()
    from tqdm.auto import tqdm
    assert isinstance(train.bar(1, "x", disable=True), tqdm) and train.terminal() is None


# ---------------------------------------------------------------------------- the whole job: ETA, interruption
def test_each_notebook_line_gives_the_jobs_eta_at_this_runs_pace(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(reproduce, "run_one", lambda *a: None)
    argv = ["--profile", "smoke", "--dataset", "digits", "--results-dir", str(tmp_path / "r"), "--only", "00", "01"]
    assert reproduce.main(argv) == 0
    out = capsys.readouterr().out
    assert "00_overview.ipynb (notebook 1/2) ...\n" in out and "01_teacher.ipynb (notebook 2/2; job ETA 00:00) ..." in out, out


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_stopped_runner_says_what_finished_and_how_to_resume(how, tmp_path, monkeypatch, capsys):
    """Ctrl-C (KeyboardInterrupt) or SIGTERM during 01: one line naming it, what finished (00), and the same command
    to resume; exit 130 / 143 as a shell reports those signals; reproduce.json keeps 00 and says where it stopped.
    The notebooks are stubbed; a real kernel's shutdown on Ctrl-C is papermill's own (its setup_kernel's finally)."""
    import signal
    import time

    def run_one(src, *a, **k):
        if src.stem.startswith("01"):
            if how == "ctrl-c":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
            raise AssertionError("SIGTERM did not stop the runner")
        return None
    monkeypatch.setattr(reproduce, "run_one", run_one)
    before = signal.getsignal(signal.SIGTERM)
    argv = ["--profile", "smoke", "--dataset", "digits", "--results-dir", str(tmp_path / "r"), "--only", "00", "01", "02"]
    assert reproduce.main(argv) == (130 if how == "ctrl-c" else 143)
    assert signal.getsignal(signal.SIGTERM) is before  # the runner's SIGTERM handler is gone again
    out, err = capsys.readouterr()
    (line,) = err.strip().splitlines()
    assert line.startswith(f"interrupted ({'Ctrl-C' if how == 'ctrl-c' else 'SIGTERM'}) in 01_teacher.ipynb after ")
    assert "finished: 00_overview. To resume, run the same command again: python -m tadist_utils " \
           f"--profile smoke --dataset digits --results-dir {tmp_path / 'r'} --only 00 01 02 (finished models load " \
           f"from {tmp_path / 'r' / 'checkpoints'}" in line, line
    assert "02_direct" not in out  # nothing ran after the stop
    report = json.loads((tmp_path / "r" / "reproduce.json").read_text())
    assert [n["notebook"] for n in report["notebooks"]] == ["00_overview.ipynb"]
    assert report["interrupted"].startswith("01_teacher.ipynb after ")


def test_a_stopped_headless_run_says_the_same(tmp_path, monkeypatch, capsys):
    from tadist_utils import experiments
    seeds = []

    def run(self):
        seeds.append(self.cfg.seed)
        if len(seeds) == 2:
            raise KeyboardInterrupt
    monkeypatch.setattr(experiments.Pipeline, "run", run)
    argv = ["--headless", "--profile", "smoke", "--seeds", "0", "1", "--set", "dataset=digits", f"results_dir={tmp_path / 'r'}"]
    assert reproduce.main(argv) == 130
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("interrupted (Ctrl-C) in seed 1 after ") and "finished: seed 0. To resume, run the same " \
        f"command again: python -m tadist_utils {' '.join(argv)} (finished models load from " in line, line


# ---------------------------------------------------------------------------- the runner, offline, auto data
def test_runner_shows_progress_and_the_fallback_first_and_last(tmp_path):
    """No CIFAR-10 and no network: the first thing printed is which data is used, and the summary repeats it;
    between them the teacher's epochs appear live on stderr (the kernel's tqdm bar, a line per epoch with its rate)."""
    empty = tmp_path / "nodata"
    empty.mkdir()
    out = tmp_path / "results"
    r = subprocess.run([sys.executable, "-m", "tadist_utils.runners.reproduce", "--profile", "smoke", "--dataset", "auto",
                        "--data-dir", str(empty), "--results-dir", str(out), "--only", "01"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, env=offline_env())
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    assert lines[0].startswith("!!!") and "FELL BACK to scikit-learn digits" in lines[1], r.stdout
    assert lines[3].startswith("data: scikit-learn digits") and "auto fallback" in lines[3], r.stdout
    assert "FELL BACK to scikit-learn digits" in lines[-1] and lines[-1].startswith("!!! DATA:"), r.stdout
    assert "teacher: 100%" in r.stderr and "epoch 1/1]" in r.stderr and "step/s" in r.stderr, r.stderr


def test_headless_cli_says_the_fallback_first_and_last(tmp_path):
    empty = tmp_path / "nodata"
    empty.mkdir()
    r = subprocess.run([sys.executable, "-m", "tadist_utils", "--headless", "--profile", "smoke", "--set", "dataset=auto",
                        f"data_dir={empty}", f"results_dir={tmp_path / 'r'}", "experiments=direct", "levels=1",
                        "progress=false"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, env=offline_env())
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    assert "FELL BACK" in lines[1] and lines[1].startswith("!!! DATA:"), r.stdout
    assert lines[3].startswith("data: scikit-learn digits") and "auto fallback" in lines[3], r.stdout
    assert "FELL BACK" in lines[-1] and lines[-1].startswith("!!! DATA:"), r.stdout


def test_no_notice_for_the_data_asked_for(tmp_path):
    assert console.data_notice(make_config("smoke", dataset="digits", results_dir=str(tmp_path))) == ""


# ---------------------------------------------------------------------------- which data, said first
def _jpeg_cifar(root: Path, train_per_class: int = 8, test_per_class: int = 3) -> Path:
    """A tiny CIFAR-10 JPEG copy (data_dir/cifar10-jpeg/{train,test}/<class>/<n>.jpg) of flat colours."""
    from PIL import Image

    import numpy as np
    from tadist_utils.data import CIFAR10_CLASSES, JPEG_FOLDER
    for split, per in (("train", train_per_class), ("test", test_per_class)):
        for k, c in enumerate(CIFAR10_CLASSES):
            folder = root / JPEG_FOLDER / split / c
            folder.mkdir(parents=True)
            for i in range(per):
                Image.fromarray(np.full((32, 32, 3), 20 * k + i, np.uint8)).save(folder / f"{i}.jpg")
    return root


def test_the_data_line_counts_the_images_without_decoding_them(tmp_path, monkeypatch):
    """Which data, where, and how many images each split keeps: the sizes load_data then gives, counted from the
    file listing (a decode would cost CIFAR-10 a minute before the first line)."""
    from tadist_utils import data
    from tadist_utils.data import imagefolder
    root = _jpeg_cifar(tmp_path / "data")
    cfg = make_config("smoke", dataset="auto", data_dir=str(root), results_dir=str(tmp_path / "r"))

    def no_decoding(*_):
        raise AssertionError("decoded an image to print a line")
    monkeypatch.setattr(imagefolder, "decode", no_decoding)
    monkeypatch.setattr(data, "decode", no_decoding)
    line = console.data_line(cfg)
    assert line == (f"data: CIFAR-10 JPEG copy at {root / 'cifar10-jpeg'}: 64 train / 16 validation / 30 test images "
                    "(of 80 + 30)"), line  # val 80 // 5 = 16 (clamped from 64), train 64 (< the cap, 256)
    monkeypatch.undo()
    bundle = data.load_data(cfg)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (64, 16, 30) and bundle.name == "cifar10"
    for profile in ("smoke", "quick"):  # the digits' arithmetic agrees with load_data too
        cfg = make_config(profile, dataset="digits", results_dir=str(tmp_path / "r"))
        b = data.load_data(cfg)
        assert f"{len(b.train):,} train / {len(b.val):,} validation / {len(b.test):,} test images" in console.data_line(cfg)
    assert "(auto fallback: NOT CIFAR-10)" in console.data_line(cfg.replace(dataset="auto"), fallback=True)
    absent = console.data_line(make_config("quick", dataset="cifar10", data_dir=str(tmp_path / "none")))
    assert absent.startswith("data: CIFAR-10, not in ") and "downloading it" in absent and "at most" in absent


def test_both_runners_say_which_data_in_their_first_line(tmp_path, monkeypatch, capsys):
    """With CIFAR-10 found, the first line of reproduce and of experiments is the data line (the notebooks and the
    training are stubbed here: what is printed first is the runners' own)."""
    from tadist_utils import experiments
    root = _jpeg_cifar(tmp_path / "data")
    monkeypatch.setattr(reproduce, "run_one", lambda *a, **k: None)
    assert reproduce.main(["--profile", "smoke", "--data-dir", str(root), "--results-dir", str(tmp_path / "a"),
                           "--only", "00", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"data: CIFAR-10 JPEG copy at {root / 'cifar10-jpeg'}: 64 train"), lines
    monkeypatch.setattr(experiments.Pipeline, "run", lambda self: None)
    assert reproduce.main(["--headless", "--profile", "smoke", "--set", f"data_dir={root}", f"results_dir={tmp_path / 'b'}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"data: CIFAR-10 JPEG copy at {root / 'cifar10-jpeg'}: 64 train"), lines


# ---------------------------------------------------------------------------- a results folder per profile
def test_each_profile_has_its_own_default_results_folder(tmp_path, monkeypatch):
    """A notebook opened in Jupyter (smoke) and ``reproduce --profile quick`` used to share results/run, so a quick
    look moved the quick run's rows to superseded/. Now the default is results/run/<profile>, wherever resolved."""
    assert default_results_dir("smoke") == f"{RESULTS_ROOT}/smoke" != default_results_dir("quick")
    assert RESULTS_ROOT == "results/run"  # inside the folder .gitignore already ignores
    assert "results/run/" in (ROOT / ".gitignore").read_text().splitlines()
    for profile in ("smoke", "quick", "paper"):
        assert make_config(profile).results_dir == default_results_dir(profile)
        assert nbsetup.results_path(None, profile=profile) == str(nbsetup.repo_root() / default_results_dir(profile))
    assert Config().results_dir == default_results_dir("paper")  # Config's own profile
    assert make_config("quick", results_dir=str(tmp_path)).results_dir == str(tmp_path)  # a given folder wins
    assert nbsetup.results_path("elsewhere", profile="smoke") == str(nbsetup.repo_root() / "elsewhere")
    import papermill as pm
    for path in NOTEBOOKS:  # the notebooks' parameter says None: the profile's default, not a copy of it
        assert pm.inspect_notebook(str(path))["results_dir"]["default"] == "None", path.name
    monkeypatch.setattr(reproduce, "REPO", tmp_path)  # the runner's default, relative to the repository root
    given = []
    monkeypatch.setattr(reproduce, "run_one", lambda src, out, params, timeout: given.append(params))
    assert reproduce.main(["--profile", "smoke", "--dataset", "digits", "--only", "00", "--quiet"]) == 0
    assert given[0]["results_dir"] == default_results_dir("smoke")  # relative to the checkout: no machine path
    assert (tmp_path / default_results_dir("smoke") / "reproduce.json").is_file()


# ---------------------------------------------------------------------------- no kernel outlives the runner
@pytest.mark.parametrize("stop", ["Ctrl-C", "SIGTERM"])
def test_a_kernel_still_starting_when_the_runner_stops_is_ended_with_it(stop, tmp_path, monkeypatch):
    """papermill shuts a kernel down only once it has started: Ctrl-C or SIGTERM while it starts left the kernel to die
    on its own, up to a second after the runner. A stand-in process plays the kernel papermill was starting."""
    import subprocess

    import papermill
    kernel = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                               "signal.SIG_IGN); time.sleep(120)"], start_new_session=True)

    def execute_notebook(*a, **k):
        reproduce.KERNELS.append(kernel)  # as reproduce's kernel manager does at launch
        raise KeyboardInterrupt(*(["SIGTERM"] if stop == "SIGTERM" else []))  # as console.stop_on_sigterm raises it
    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)
    with pytest.raises(KeyboardInterrupt):
        reproduce.run_one(tmp_path / "01_teacher.ipynb", tmp_path / "out.ipynb", {}, None)
    assert kernel.poll() is not None and reproduce.KERNELS == []  # SIGTERM ignored: killed after the grace period


def test_ctrl_c_while_a_real_kernel_starts_leaves_no_kernel(tmp_path):
    """The same with a real kernel: Ctrl-C as soon as jupyter_client has launched it, before it answers."""
    import signal
    import time
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import time\ntime.sleep(120)")]
    nbformat.write(nb, tmp_path / "sleep.ipynb")
    launched = []

    def interrupt():
        while not reproduce.KERNELS:
            time.sleep(0.01)
        launched.extend(reproduce.KERNELS)
        os.kill(os.getpid(), signal.SIGINT)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job may inherit it ignored
    try:
        threading.Thread(target=interrupt, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            reproduce.run_one(tmp_path / "sleep.ipynb", tmp_path / "out.ipynb", {}, None)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert launched and all(p.poll() is not None for p in launched) and reproduce.KERNELS == []
