"""What a runner's terminal says besides the training bars (``train.bar``/``train.log`` in the kernels, on the
stderr descriptor the runner hands them as ``$TADIST_PROGRESS``): which data, a stop on SIGTERM, how to resume."""
from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import warnings

ENV = "TADIST_PROGRESS"  # read by train.terminal (which imports no runner)


@contextlib.contextmanager
def stop_on_sigterm():
    """Within: SIGTERM raises KeyboardInterrupt("SIGTERM"), so a runner stops as on Ctrl-C and says which."""
    def stop(signum, frame):
        raise KeyboardInterrupt("SIGTERM")
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted(stop: KeyboardInterrupt, where: str, seconds: float, finished: list[str], command: str, checkpoints) -> int:
    """Say where a runner stopped, what finished and how to resume (stderr); the exit status a shell gives the signal."""
    from tqdm.std import tqdm
    how = "SIGTERM" if stop.args == ("SIGTERM",) else "Ctrl-C"
    print(f"interrupted ({how}) in {where} after {tqdm.format_interval(seconds)}; finished: "
          f"{', '.join(finished) or 'nothing'}. To resume, run the same command again: {command} (finished models load "
          f"from {checkpoints}, an interrupted one resumes at its last finished epoch)", file=sys.stderr, flush=True)
    return 143 if how == "SIGTERM" else 130


def data_notice(cfg) -> str:
    """Non-empty when ``auto`` will fall back to digits; tries now the download the first notebook would try."""
    from .. import data
    if cfg.dataset != "auto" or data.is_present(cfg.replace(dataset="cifar10")):
        return ""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return data.load_raw(cfg)[5]


def data_line(cfg, fallback: bool = False) -> str:
    """The runners' first line: which data, where, the images of each split (counted, none decoded)."""
    from .. import data
    cfg = cfg.replace(dataset="digits") if fallback else cfg
    what, n_train, n_test = data.locate(cfg)
    with contextlib.suppress(ValueError):  # data_dir relative to the cwd when under it (ValueError: another drive)
        if not (short := os.path.relpath(cfg.data_dir)).startswith(".."):
            what = what.replace(str(cfg.data_dir), short)
    what += " (auto fallback: NOT CIFAR-10)" if fallback else ""
    if n_train is None:  # not counted without reading (or downloading) it: the profile's caps
        train, test = ("all" if n is None else f"{n:,}" for n in (cfg.train_size, cfg.test_size))
        return f"data: {what}: {train} train / {cfg.val_size:,} validation / {test} test images at most"
    train, val, test = data.split_sizes(cfg, n_train, n_test)
    return f"data: {what}: {train:,} train / {val:,} validation / {test:,} test images (of {n_train:,} + {n_test:,})"


def announce(notice: str, final: bool = False) -> None:
    """The data notice, loud: a banner first, one line again at the end."""
    if notice:
        print(f"!!! DATA: {notice}" if final else f"{'!' * 100}\n!!! DATA: {notice}\n{'!' * 100}", flush=True)
