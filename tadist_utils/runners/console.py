"""What a terminal shows while the notebooks train inside Jupyter kernels: live progress and which data is used.

Progress. Every training bar is :func:`bar`; when ``$TADIST_PROGRESS`` names a file (``reproduce`` sets it, the
kernel inherits it) the bar appends JSON lines to it, and a :class:`ProgressPrinter` thread in the runner prints
one line when each bar ends and one every 30 s while it runs, so a long notebook is never silent::

      01_teacher  teacher epoch 3/8  100%  412 img/s  ETA teacher 0:52  | job ETA ~9 min

(papermill's ``log_output`` instead shows a bar once, at 0%, then nothing until its cell ends; measured, issue 24.)
Data. ``data_line(cfg)`` is the runners' first line; ``data_notice(cfg)`` says before anything runs when the data
used will not be the data asked for (``auto`` falling back to digits), shown as a banner and again at the end.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import threading
import time
import warnings
from pathlib import Path

ENV = "TADIST_PROGRESS"  # the file training bars append their progress to (unset: no file)


# ----------------------------------------------------------------------------- inside the kernel
class _Reporting:
    """A tqdm bar that also appends its progress, throttled, to a JSON-lines file."""

    def __init__(self, bar, path: str, total: int, desc: str):
        self._bar, self._path = bar, path
        self.total, self.desc, self.count, self.postfix = total, desc, 0, ""
        self._t0 = self._last = time.perf_counter()
        self._closed = False
        self._write(done=False)

    def _write(self, done: bool) -> None:
        self._last = time.perf_counter()
        _append(self._path, dict(desc=self.desc, postfix=self.postfix, n=self.count, total=self.total,
                                 elapsed=round(self._last - self._t0, 3), done=done, pid=os.getpid()))

    def update(self, n: int = 1):
        self.count += n
        self._bar.update(n)
        if time.perf_counter() - self._last >= 1.0:  # throttled: at most a line a second
            self._write(done=False)

    def set_postfix_str(self, s: str = "", refresh: bool = True):
        self.postfix = s
        self._bar.set_postfix_str(s, refresh=refresh)
        self._write(done=False)

    def close(self):
        if not self._closed:
            self._closed = True
            self._write(done=True)
            self._bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __getattr__(self, name):
        return getattr(self._bar, name)


def _append(path: str, record: dict) -> None:
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    except OSError:  # progress is a courtesy: never let it stop training
        pass


def log(text: str) -> None:
    """A pipeline's log line (``Context.log``): printed (in a notebook, its output) and, when ``$TADIST_PROGRESS``
    names a file, sent to the runner's terminal too: a corrupted checkpoint retrained, a resumed model."""
    print(text, flush=True)
    if path := os.environ.get(ENV):
        _append(path, dict(message=str(text), pid=os.getpid()))


def bar(total: int, desc: str, disable: bool = False):
    """A tqdm bar (``tqdm.auto``: a widget in Jupyter); reporting to ``$TADIST_PROGRESS`` when that is set.

    Reporting, the bar itself is hidden: the runner's terminal shows the progress, and a widget left in an executed
    notebook is an empty bar on GitHub."""
    from tqdm.auto import tqdm
    path = os.environ.get(ENV)
    b = tqdm(total=total, desc=desc, disable=disable or bool(path), leave=False, dynamic_ncols=True)
    return _Reporting(b, path, total, desc) if path else b


# ----------------------------------------------------------------------------- in the runner
def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


_EPOCH = re.compile(r"epoch (\d+)/(\d+)")
_GROUP = re.compile(r"\(\d+ student\(s\)\)")  # train_students' bar: "students of S1 (14 student(s))"


def progress_line(record: dict, batch_size: int | None = None, epoch_seconds: float | None = None) -> str:
    """One terminal line for one progress record: model and epoch, percent, images/s, ETA of the model.

    ``epoch_seconds``: how long this model's previous epoch took; the ETA then uses it (the pace measured over the
    first batches of an epoch is noisy), else the current pace."""
    desc, postfix = record.get("desc", ""), record.get("postfix", "")
    n, total, elapsed = record.get("n", 0), max(1, record.get("total") or 1), record.get("elapsed", 0.0)
    parts = [f"{desc} {postfix}".strip(), f"{100 * n / total:3.0f}%"]
    rate = n / elapsed if elapsed > 0 and n else 0.0
    if rate and batch_size:
        unit = "student-img/s" if _GROUP.search(desc) else "img/s"  # a step of a student group trains each student
        parts.append(f"{rate * batch_size:,.0f} {unit}")
    if record.get("done"):  # a bar closed before its last step: the run stopped (Ctrl-C, SIGTERM, an error)
        parts.append(f"took {_clock(elapsed)}" if n >= total else f"stopped after {_clock(elapsed)}")
    elif rate:
        per_epoch = epoch_seconds or total / rate
        left = (total - n) / total * per_epoch if epoch_seconds else (total - n) / rate
        m = _EPOCH.search(desc)  # a bar per epoch (teacher, baselines): the epochs still to come, at this pace
        if m:
            left += (int(m.group(2)) - int(m.group(1))) * per_epoch
        model = desc[:m.start()].strip() if m else desc.split(" (")[0]
        parts.append(f"ETA {model} {_clock(left)}")
    return "  ".join(parts)


class ProgressPrinter:
    """Follow a progress file in a thread and print a line per finished bar, and every ``every`` s otherwise.

    ``with ProgressPrinter(path, label, batch_size): run the notebook`` (sets ``$TADIST_PROGRESS`` meanwhile).
    """

    def __init__(self, path: Path, label: str, batch_size: int | None = None, every: float = 30.0,
                 stream=None, poll: float = 0.5, suffix=None):
        self.path, self.label, self.batch_size, self.every, self.poll = Path(path), label, batch_size, every, poll
        self.suffix = suffix  # a callable giving text to end each line with (the job's ETA), or None
        self.stream = stream or sys.stdout
        self.lines = 0
        self._stop = threading.Event()
        self._offset, self._last_print, self._pending = 0, time.monotonic(), None
        self._epoch_seconds: dict[str, float] = {}  # model -> its last finished epoch's duration (per-epoch bars)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._previous_env = None

    def _emit(self, record: dict) -> None:
        model = _EPOCH.split(record.get("desc", ""))[0].strip()
        line = progress_line(record, self.batch_size, None if record.get("done") else self._epoch_seconds.get(model))
        if record.get("done") and _EPOCH.search(record.get("desc", "")):
            self._epoch_seconds[model] = record.get("elapsed", 0.0)
        extra = self.suffix() if self.suffix else ""
        print(f"  {self.label}  {line}" + (f"  | {extra}" if extra else ""), file=self.stream, flush=True)
        self.lines += 1
        self._last_print = time.monotonic()

    def read(self) -> None:
        """Print what the file gained since the last read (the last record of a running bar, when due)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except OSError:
            return
        complete = chunk[:chunk.rfind(b"\n") + 1]  # a line still being written waits for the next read
        self._offset += len(complete)
        for raw in complete.decode("utf-8", "replace").splitlines():
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(record, dict):
                continue
            if "message" in record:  # a log line (``log``); the NOTICEs of data and moved rows the runner says itself
                if not str(record["message"]).startswith("[tadist] NOTICE:"):
                    print(f"  {self.label}  {record['message']}", file=self.stream, flush=True)
                    self.lines += 1
                continue
            if record.get("done"):
                self._pending = None
                self._emit(record)
            else:
                self._pending = record
        if self._pending is not None and time.monotonic() - self._last_print >= self.every:
            self._emit(self._pending)
            self._pending = None

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            self.read()

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(self.path.parent)
        self.path.write_text("")
        self._previous_env = os.environ.get(ENV)
        os.environ[ENV] = str(self.path)  # the kernel papermill starts inherits it
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.read()
        if self._previous_env is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = self._previous_env
        with contextlib.suppress(OSError):
            self.path.unlink()
        return False


def alive(pid: int) -> bool:
    """Whether process ``pid`` may still run (moved here from storage.checkpoint, which no longer reaps by PID)."""
    if os.name == "nt":
        return True  # os.kill(pid, 0) would terminate the process on Windows; keep the file instead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists but belongs to someone else (or cannot tell): leave its file alone
    return True


def remove_stale(folder: Path) -> list[Path]:
    """Delete the ``.progress-<pid>.jsonl`` files of runners that no longer run (a SIGKILL leaves its file behind)."""
    removed = []
    for p in Path(folder).glob(".progress-*.jsonl"):
        pid = p.name[len(".progress-"):-len(".jsonl")]
        if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


# ----------------------------------------------------------------------------- the whole job
def profile_settings(profile: str) -> dict:
    """The profile's overrides as JSON reads them back (tuples as lists): a reproduce.json records them, and times
    made under other settings (an older quick profile) are no basis for an ETA."""
    from ..config import PROFILES
    return json.loads(json.dumps(PROFILES.get(profile, {})))


def reference_times(profile: str, stems: list[str], results_dir: Path, repo: Path) -> tuple[dict[str, float], str]:
    """Seconds per notebook to estimate the whole job from, and where they come from: the last run of this profile
    in ``results_dir`` (this machine), else a committed reference run of this profile (``results/*/reproduce.json``);
    one whose times cover every notebook in ``stems``. ``({}, "")`` when there is none (no job ETA, only counts)."""
    def times(path: Path) -> dict[str, float]:
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(report, dict) or report.get("profile") != profile \
                or report.get("profile_settings") != profile_settings(profile):
            return {}
        seen: dict[str, list[float]] = {}
        for n in report.get("notebooks", []):
            if isinstance(n, dict) and n.get("status") == "ok" and isinstance(n.get("seconds"), (int, float)):
                seen.setdefault(Path(str(n.get("notebook"))).stem, []).append(float(n["seconds"]))
        out = {k: sum(v) / len(v) for k, v in seen.items()}  # mean over seeds
        return out if all(s in out for s in stems) else {}

    own = Path(results_dir) / "reproduce.json"
    if found := times(own):
        return found, "this folder's last run"
    for path in sorted(Path(repo).glob("results/*/reproduce.json")):
        if found := times(path):
            return found, f"the reference run {path.relative_to(repo)}"
    return {}, ""


def _minutes(seconds: float) -> str:
    return "<1 min" if seconds < 60 else f"~{seconds / 60:.0f} min"


class JobClock:
    """The whole job's ETA: the notebooks still to run, at their reference times, scaled by this run's pace.

    ``steps``: (seed, notebook stem) in run order. ``reference``: seconds per stem (``reference_times``). The pace
    is this run's seconds over the reference seconds of the notebooks finished so far, once those reach
    ``MIN_SCALED`` reference seconds (a kernel start alone would make 00 look several times slower); until then the
    reference times are used as they are. Without reference times there is no ETA, only the count."""

    MIN_SCALED = 60.0

    def __init__(self, steps: list[tuple[int, str]], reference: dict[str, float], basis: str):
        self.steps, self.reference, self.basis = list(steps), dict(reference), basis
        self.done: list[tuple[int, str, float]] = []  # (seed, stem, seconds)

    def finish(self, seed: int, stem: str, seconds: float) -> None:
        self.done.append((seed, stem, seconds))

    def pace(self) -> float | None:
        ref = sum(self.reference.get(stem, 0.0) for _, stem, _ in self.done)
        return sum(s for *_, s in self.done) / ref if ref >= self.MIN_SCALED else None

    def left(self, elapsed_in_current: float = 0.0) -> float | None:
        """Seconds left in the job, the current notebook (``elapsed_in_current`` s in) included; None: no basis."""
        if not self.reference:
            return None
        pace = self.pace() or 1.0
        todo = [stem for _, stem in self.steps[len(self.done):]]
        if not todo:
            return 0.0
        current = max(0.0, pace * self.reference.get(todo[0], 0.0) - elapsed_in_current)
        return current + pace * sum(self.reference.get(stem, 0.0) for stem in todo[1:])

    def position(self) -> str:
        """``notebook 3/7`` (the next to run), with the job's ETA and its basis when there is one."""
        text = f"notebook {min(len(self.done) + 1, len(self.steps))}/{len(self.steps)}"
        left = self.left()
        if left is None:
            return text
        pace = self.pace()
        scaled = f" x {pace:.1f}, this run's pace so far" if pace is not None else ""
        return f"{text}; job ETA {_minutes(left)} from the notebook times of {self.basis}{scaled}"

    def short(self, elapsed_in_current: float) -> str:
        """``job ETA ~9 min`` for the live progress lines; empty without a basis."""
        left = self.left(elapsed_in_current)
        return "" if left is None else f"job ETA {_minutes(left)}"


class Stopped(BaseException):
    """SIGTERM while a runner runs, raised like Ctrl-C's KeyboardInterrupt (not an Exception: no ``except
    Exception`` on the way may take it for a failed notebook)."""


@contextlib.contextmanager
def stop_on_sigterm():
    """Within: SIGTERM raises ``Stopped`` in the main thread, so a runner can clean up and say where it stopped."""
    import signal

    def stop(signum, frame):
        raise Stopped("SIGTERM")
    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted_line(stop: BaseException, where: str, seconds: float, finished: list[str], command: str,
                     checkpoints: Path) -> str:
    """The one line a runner leaves when stopped (Ctrl-C or SIGTERM): where, what finished, how to resume."""
    how = "SIGTERM" if isinstance(stop, Stopped) else "Ctrl-C"
    return (f"interrupted ({how}) in {where} after {_clock(seconds)}; finished: {', '.join(finished) or 'nothing'}. "
            f"To resume, run the same command again: {command} (finished models load from {checkpoints}, an "
            f"interrupted one resumes at its last finished epoch)")


def exit_status(stop: BaseException) -> int:
    """128 + the signal number, as a shell reports a process ended by it: 130 for Ctrl-C, 143 for SIGTERM."""
    return 143 if isinstance(stop, Stopped) else 130


# ----------------------------------------------------------------------------- which data
def data_notice(cfg) -> str:
    """Non-empty when the run will not use the data it asked for (today: ``auto`` falling back to digits).

    For ``auto`` without CIFAR-10 in ``data_dir`` this tries the download the first notebook would try (and
    keeps the files if it succeeds), so the answer is known before any notebook starts.
    """
    if cfg.dataset != "auto":
        return ""
    from .. import data
    if data.is_present(cfg.replace(dataset="cifar10")):
        return ""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return data.load_raw(cfg)[5]


def data_line(cfg, fallback: bool = False) -> str:
    """One line, printed first by ``reproduce`` and ``experiments``: which data the run uses, where it is, and how
    many images each split keeps, e.g. ``data: CIFAR-10 JPEG copy at data/cifar10-jpeg: 3,000 train / 500
    validation / 1,000 test images (of 50,000 + 10,000)``. Cheap: files are counted, nothing is decoded.
    ``fallback``: ``auto`` fell back to digits (``data_notice`` said so)."""
    from .. import data
    if fallback:
        cfg = cfg.replace(dataset="digits")
    what, n_train, n_test = data.locate(cfg)
    what = _relative(what, cfg.data_dir)
    if fallback:
        what += " (auto fallback: NOT CIFAR-10)"
    if n_train is None:  # not counted without reading (or downloading) it: the profile's caps
        train, test = ("all" if n is None else f"{n:,}" for n in (cfg.train_size, cfg.test_size))
        return f"data: {what}: {train} train / {cfg.val_size:,} validation / {test} test images at most"
    train, val, test = data.split_sizes(cfg, n_train, n_test)
    return f"data: {what}: {train:,} train / {val:,} validation / {test:,} test images (of {n_train:,} + {n_test:,})"


def _relative(text: str, data_dir) -> str:
    """``text`` with ``data_dir`` written relative to the working directory when it lies under it."""
    try:
        short = os.path.relpath(data_dir)
    except ValueError:  # another drive (Windows)
        return text
    return text.replace(str(data_dir), short) if not short.startswith("..") else text


def announce(notice: str, final: bool = False) -> None:
    """The data notice, loud: a banner first, one line again in the final summary."""
    if notice:
        line = f"!!! DATA: {notice}"
        print(line if final else f"{'!' * 100}\n{line}\n{'!' * 100}", flush=True)
