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
def test_progress_line_names_model_epoch_speed_and_eta():
    running = dict(desc="teacher epoch 2/4", postfix="", n=5, total=10, elapsed=2.0, done=False)
    line = console.progress_line(running, batch_size=64)
    # 2.5 steps/s x 64 = 160 img/s; this epoch's 5 steps and 2 more epochs of 10: 25 steps, 10 s
    assert line == "teacher epoch 2/4   50%  160 img/s  ETA teacher 0:10", line
    # with the previous epoch's duration (8 s): the rest of this one, 4 s, and 2 more epochs, 16 s
    assert console.progress_line(running, batch_size=64, epoch_seconds=8.0).endswith("ETA teacher 0:20")
    students = dict(desc="S1 group (2 student(s))", postfix="epoch 3/3", n=60, total=60, elapsed=30.0, done=True)
    line = console.progress_line(students, batch_size=32)
    assert "S1 group (2 student(s)) epoch 3/3" in line and "64 student-img/s" in line and "took 0:30" in line
    baseline = dict(desc="kd 8 student(s) epoch 1/2", postfix="", n=4, total=4, elapsed=1.0, done=True)
    assert "256 img/s" in console.progress_line(baseline, batch_size=64)  # one ensemble, trained end to end
    stopped = dict(desc="teacher epoch 1/8", postfix="", n=5, total=10, elapsed=3.0, done=True)  # closed by a stop
    assert console.progress_line(stopped).endswith(" 50%  stopped after 0:03"), console.progress_line(stopped)


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


def test_a_corrupted_checkpoint_retrained_in_the_kernel_is_said_on_the_runners_terminal(tmp_path, capsys):
    """storage.checkpoint logs it through Context.log (console.log in a Pipeline) inside the kernel: the notebook showed
    it, the terminal did not. The log line now goes through the progress file too; NOTICEs the runner says itself
    (the data's fallback, rows moved aside) are not repeated per notebook."""
    import io

    from tadist_utils.storage import checkpoint
    out = io.StringIO()
    bad = tmp_path / "ck" / "teacher-0123abcd.pt"
    bad.parent.mkdir()
    bad.write_bytes(b"half a checkpoint")
    with console.ProgressPrinter(tmp_path / "p.jsonl", "01_teacher", every=0.0, stream=out, poll=0.05):
        assert checkpoint.find_resumable(bad, {}, log=console.log) is None
        console.log("[tadist] NOTICE: CIFAR-10 not found; using digits")
    text = out.getvalue()
    assert text == f"  01_teacher  [tadist] checkpoint {bad} is corrupted or not a tadist checkpoint (no content hash); " \
                   "retraining it from the start (it will be overwritten)\n", text
    assert "is corrupted" in capsys.readouterr().out  # and in the notebook's output, as before


def test_progress_files_of_dead_runners_are_removed(tmp_path):
    """A SIGKILLed runner leaves .progress-<pid>.jsonl in the results folder; the next run's printer removes it, and
    leaves a live runner's (another run writing the same folder) and anything else alone."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale, live = tmp_path / f".progress-{int(dead.stdout)}.jsonl", tmp_path / f".progress-{os.getppid()}.jsonl"
    other = tmp_path / ".progress-notes.jsonl"
    for p in (stale, live, other):
        p.write_text("{}\n")
    with console.ProgressPrinter(tmp_path / f".progress-{os.getpid()}.jsonl", "00_overview", every=0.0):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])


def test_a_quiet_run_removes_them_too(tmp_path, monkeypatch, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / "r" / f".progress-{int(dead.stdout)}.jsonl"
    stale.parent.mkdir()
    stale.write_text("{}\n")
    monkeypatch.setattr(reproduce, "run_one", lambda *a: None)
    argv = ["--profile", "smoke", "--dataset", "digits", "--results-dir", str(tmp_path / "r"), "--only", "00", "--quiet"]
    assert reproduce.main(argv) == 0 and not stale.exists()


def test_without_the_variable_bars_are_plain_tqdm(monkeypatch):
    monkeypatch.delenv(console.ENV, raising=False)
    from tqdm.auto import tqdm
    assert isinstance(console.bar(1, "x", disable=True), tqdm)


# ---------------------------------------------------------------------------- the whole job: ETA, interruption
def test_the_job_eta_uses_reference_times_scaled_by_this_runs_pace():
    ref = {"00_overview": 10.0, "01_teacher": 100.0, "02_direct": 50.0}
    job = console.JobClock([(0, s) for s in ref], ref, "the reference run results/x/reproduce.json")
    assert job.left() == 160.0 and job.pace() is None
    assert job.position() == "notebook 1/3; job ETA ~3 min from the notebook times of the reference run " \
                             "results/x/reproduce.json"
    job.finish(0, "00_overview", 40.0)  # 4x slower, but 10 reference seconds are mostly a kernel start: not scaled
    assert job.pace() is None and job.left() == 150.0
    assert job.left(elapsed_in_current=30.0) == 120.0  # 70 s left of 01's 100, then 02's 50
    assert job.left(elapsed_in_current=500.0) == 50.0  # an overrun counts the current notebook as about to end
    job.finish(0, "01_teacher", 180.0)  # 220 s for 110 reference seconds: this machine runs at 2x
    assert job.pace() == 2.0 and job.left() == 100.0
    assert job.position().startswith("notebook 3/3; job ETA ~2 min from the notebook times of the reference run")
    assert job.position().endswith("results/x/reproduce.json x 2.0, this run's pace so far"), job.position()
    assert job.short(elapsed_in_current=70.0) == "job ETA <1 min"
    job.finish(0, "02_direct", 90.0)
    assert job.left() == 0.0
    nothing = console.JobClock([(0, "00_overview"), (1, "00_overview")], {}, "")
    assert nothing.position() == "notebook 1/2" and nothing.short(5.0) == "" and nothing.left() is None


def test_reference_times_prefer_this_folders_last_run_then_a_committed_one(tmp_path):
    def report(path, profile, times, status="ok"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(profile=profile, profile_settings=console.profile_settings(profile), notebooks=[
            dict(seed=seed, notebook=f"{stem}.ipynb", status=status, seconds=sec) for (seed, stem), sec in times.items()])))
    repo, here = tmp_path / "repo", tmp_path / "run"
    stems = ["00_overview", "01_teacher"]
    assert console.reference_times("quick", stems, here, repo) == ({}, "")
    report(repo / "results" / "quick_cifar10" / "reproduce.json", "quick", {(0, "00_overview"): 10, (0, "01_teacher"): 90})
    report(repo / "results" / "smoke_x" / "reproduce.json", "smoke", {(0, "00_overview"): 1, (0, "01_teacher"): 2})
    assert console.reference_times("quick", stems, here, repo) == (
        {"00_overview": 10, "01_teacher": 90}, "the reference run results/quick_cifar10/reproduce.json")
    report(here / "reproduce.json", "quick", {(0, "00_overview"): 20})  # interrupted after 00: not a basis
    assert console.reference_times("quick", stems, here, repo)[1].startswith("the reference run")
    report(here / "reproduce.json", "quick", {(0, "00_overview"): 20, (0, "01_teacher"): 300, (1, "01_teacher"): 100})
    assert console.reference_times("quick", stems, here, repo) == (
        {"00_overview": 20, "01_teacher": 200}, "this folder's last run")  # seeds averaged
    assert console.reference_times("paper", stems, here, repo) == ({}, "")  # another profile's times are no basis
    old = json.loads((here / "reproduce.json").read_text())
    (here / "reproduce.json").write_text(json.dumps(dict(old, profile_settings=dict(train_size=5000))))
    assert console.reference_times("quick", stems, here, repo)[1].startswith("the reference run")  # made under an
    # older quick profile (its first ETA said 22 minutes for a 5-minute job): no basis


def test_progress_lines_end_with_the_job_eta(tmp_path):
    import io
    out = io.StringIO()
    with console.ProgressPrinter(tmp_path / "p.jsonl", "01_teacher", 8, every=0.0, stream=out, poll=0.05,
                                 suffix=lambda: "job ETA ~9 min"):
        with console.bar(2, "teacher epoch 1/1", disable=True) as b:
            b.update(2)
    assert "01_teacher  teacher epoch 1/1  100%" in out.getvalue() and out.getvalue().rstrip().endswith(
        "  | job ETA ~9 min"), out.getvalue()


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
    argv = ["--profile", "smoke", "--seeds", "0", "1", "--set", "dataset=digits", f"results_dir={tmp_path / 'r'}"]
    assert experiments.main(argv) == 130
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("interrupted (Ctrl-C) in seed 1 after ") and "finished: seed 0. To resume, run the same " \
        f"command again: python -m tadist_utils.experiments {' '.join(argv)} (finished models load from " in line, line


# ---------------------------------------------------------------------------- the runner, offline, auto data
def test_runner_shows_progress_and_the_fallback_first_and_last(tmp_path):
    """No CIFAR-10 and no network: the first thing printed is which data is used, and the summary repeats it;
    between them the teacher's epochs appear live (a line per epoch with images/s)."""
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
    assert experiments.main(["--profile", "smoke", "--set", f"data_dir={root}", f"results_dir={tmp_path / 'b'}"]) == 0
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
    assert reproduce.main(["--profile", "smoke", "--dataset", "digits", "--only", "00", "--prepare-only"]) == 0
    nb = nbformat.read(tmp_path / default_results_dir("smoke") / "notebooks" / "00_overview.ipynb", as_version=4)
    injected = next(c.source for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert f'results_dir = "{default_results_dir("smoke")}"' in injected  # relative to the checkout: no machine path


# ---------------------------------------------------------------------------- no kernel outlives the runner
@pytest.mark.parametrize("stop", [KeyboardInterrupt, console.Stopped])
def test_a_kernel_still_starting_when_the_runner_stops_is_ended_with_it(stop, tmp_path, monkeypatch):
    """papermill shuts a kernel down only once it has started: Ctrl-C or SIGTERM while it starts left the kernel to die
    on its own, up to a second after the runner. A stand-in process plays the kernel papermill was starting."""
    import subprocess

    import papermill
    kernel = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                               "signal.SIG_IGN); time.sleep(120)"], start_new_session=True)

    def execute_notebook(*a, **k):
        reproduce.KERNELS.append(kernel)  # as reproduce's kernel manager does at launch
        raise stop("stopped")
    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)
    with pytest.raises(stop):
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
