"""Fault injection: SIGKILL a training run (mid-epoch and mid-checkpoint-write, including after checkpoints
exist, so that it resumes from an epoch > 0), restart it until it finishes, and require exactly the metrics of
an uninterrupted run (CPU, fp32, deterministic). Nothing stale, nothing lost: a changed ImageFolder, other
engine settings or a corrupted checkpoint retrain; two processes writing one results folder lose no rows."""
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

CHILD = r'''
import os, signal, sys
from tadist_utils.storage import checkpoint
from tadist_utils.config import make_config
from tadist_utils.experiments import Pipeline

kill_at = int(os.environ.get("KILL_AT_SAVE", "0"))   # SIGKILL ourselves half-way through the Nth write
calls = [0]
real_save = checkpoint.save_atomic

def dying_save(obj, path):
    calls[0] += 1
    if calls[0] == kill_at:
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(b"half a checkpoint")
        os.kill(os.getpid(), signal.SIGKILL)
    real_save(obj, path)

checkpoint.save_atomic = dying_save

mid_epoch_after = int(os.environ.get("KILL_MID_EPOCH_AFTER_SAVE", "0"))  # SIGKILL in the 2nd batch of the epoch
if mid_epoch_after:                                                      # that follows the Nth finished save
    from tadist_utils import data
    real_iter = data.Batches.__iter__

    def dying_iter(self):
        for i, batch in enumerate(real_iter(self)):
            if self.shuffle and calls[0] >= mid_epoch_after and i == 1:
                os.kill(os.getpid(), signal.SIGKILL)
            yield batch
    data.Batches.__iter__ = dying_iter
# a quarter of smoke's 256 training images in batches of 16: the same 4 steps per epoch (so the same saves and the
# same "2nd batch of the epoch") at a fraction of the CPU (the VGG teacher's steps dominate); 32 validation and
# 32 test images. The teacher trains 2 epochs (enough to resume it from epoch 1).
cfg = make_config("smoke", dataset="digits", results_dir=sys.argv[1], experiments=("direct",), levels=2,
                  teacher_epochs=2, student_epochs=3, finetune_epochs=2, precision="fp32", device="cpu",
                  progress=False, train_size=64, batch_size=16, val_size=32, test_size=32)
Pipeline(cfg).run()
print("FINISHED")
'''


LOG: list[str] = []  # the output of every child run of the current test


def _run(results: Path, env=None, kill_after: float | None = None) -> bool:
    """Run the child once; SIGKILL it after ``kill_after`` seconds. True if it finished by itself."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(results)], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        return False
    LOG.append(out)
    if proc.returncode == -signal.SIGKILL:
        return False
    assert proc.returncode == 0, out
    return "FINISHED" in out


def _resumed() -> list[tuple[str, int]]:
    """(checkpoint name, epoch) of every ``resuming ... after epoch N`` line the restarts printed."""
    import re
    return [(m[0], int(m[1])) for out in LOG for m in re.findall(r"resuming (\S+) after epoch (\d+)", out)]


def _metrics(results: Path) -> pd.DataFrame:
    df = pd.read_csv(results / "results.csv")
    df = df[~df.metric.str.contains("seconds")]
    return df.sort_values(["experiment", "model", "metric"]).reset_index(drop=True)[["experiment", "model", "metric", "value"]]


def _same_as_clean(results: Path, clean: Path) -> None:
    """results.csv (less timings) and every epoch's history equal: the history also covers epochs that model
    selection dropped (a teacher still at chance on these few images keeps its first epoch, so a wrongly resumed
    later epoch would not show in results.csv)."""
    pd.testing.assert_frame_equal(_metrics(results), _metrics(clean))
    history = [pd.read_csv(r / "history.csv").sort_values(["key", "model", "epoch", "metric"]).reset_index(drop=True)
               for r in (results, clean)]
    pd.testing.assert_frame_equal(*history)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("clean")
    t0 = time.perf_counter()
    assert _run(out)
    return out, time.perf_counter() - t0


def _finish(results: Path, first_env=None, kill_after=None, teacher_from: Path | None = None) -> int:
    """Run once with the fault, then restart plainly until done; returns how many runs were killed.

    ``teacher_from``: a finished run whose trained teacher checkpoint is copied in first (a test about the students
    need not train the teacher again: every run then loads it, as a restart after the teacher finished does)."""
    LOG.clear()
    if teacher_from is not None:
        (ckpt,) = (teacher_from / "checkpoints" / "seed0").glob("teacher-*.pt")
        (results / "checkpoints" / "seed0").mkdir(parents=True)
        shutil.copy2(ckpt, results / "checkpoints" / "seed0" / ckpt.name)
    killed = 0 if _run(results, first_env, kill_after) else 1
    for _ in range(5):
        if _run(results):
            return killed
    raise AssertionError("run did not finish after restarts")


@pytest.mark.parametrize("fraction", [0.35, 0.6, 0.85])
def test_sigkill_mid_run_then_resume_gives_identical_metrics(uninterrupted, tmp_path, fraction):
    clean, seconds = uninterrupted
    delay = max(2.0, seconds * fraction * random.Random(fraction).uniform(0.9, 1.1))
    _finish(tmp_path / "r", kill_after=delay)
    _same_as_clean(tmp_path / "r", clean)


# saves: teacher epochs 1-2 are saves 1-2; in `direct` S1, S01 and S2 all learn from the teacher, so they train
# together and save in turn at the end of each epoch. The student cases start from the clean run's finished
# teacher (teacher_from), so there the students' saves are 1-3 (epoch 1), 4-6 (epoch 2), 7-9 (epoch 3).
@pytest.mark.parametrize("nth_save, resumed", [(2, [("teacher", 1)]), (3, [("S01", 1), ("S1", 1)])])
def test_sigkill_during_checkpoint_write_leaves_previous_checkpoint_usable(uninterrupted, tmp_path, nth_save, resumed):
    clean, _ = uninterrupted
    teacher_from = None if resumed[0][0] == "teacher" else clean
    assert _finish(tmp_path / "r", first_env={"KILL_AT_SAVE": str(nth_save)}, teacher_from=teacher_from) == 1
    assert sorted((name.rsplit("-", 1)[0], epoch) for name, epoch in _resumed()) == resumed  # from the epoch before
    _same_as_clean(tmp_path / "r", clean)


@pytest.mark.parametrize("after_save, resumed", [(1, [("teacher", 1)]), (6, [("S01", 2), ("S1", 2), ("S2", 2)])])
def test_sigkill_mid_epoch_after_checkpoints_exist_resumes_from_that_epoch(uninterrupted, tmp_path, after_save, resumed):
    """Killed in the middle of an epoch > 0 (deterministically): the restart resumes from the last checkpoint."""
    clean, _ = uninterrupted
    teacher_from = None if resumed[0][0] == "teacher" else clean
    assert _finish(tmp_path / "r", first_env={"KILL_MID_EPOCH_AFTER_SAVE": str(after_save)},
                   teacher_from=teacher_from) == 1
    assert sorted((name.rsplit("-", 1)[0], epoch) for name, epoch in _resumed()) == resumed
    _same_as_clean(tmp_path / "r", clean)


# ------------------------------------------------------------------------------- nothing stale
def _imagefolder(root: Path, per_class: int = 6) -> Path:
    import numpy as np
    from PIL import Image
    for split in ("train", "test"):
        for c, colour in (("cat", 20), ("dog", 200)):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(np.full((32, 32, 3), colour + i, np.uint8)).save(root / split / c / f"{i}.png")
    return root


def _teacher_log(cfg) -> tuple[str, list[str]]:
    """Train (or reuse) the teacher; (data fingerprint, what the pipeline logged)."""
    from tadist_utils.experiments import Pipeline
    from tadist_utils.train import Context
    said = []
    ctx = Context.from_config(cfg)
    ctx.log = said.append
    pipe = Pipeline(cfg, ctx=ctx)
    pipe.teacher()
    return pipe.data.fingerprint(), said


def test_an_edited_imagefolder_gives_new_data_and_retrains(smoke_cfg, tmp_path):
    from PIL import Image
    root = _imagefolder(tmp_path / "images")
    cfg = smoke_cfg(dataset="imagefolder", data_dir=str(root), val_size=2, teacher_epochs=1, threads=1)
    first, _ = _teacher_log(cfg)
    assert (root / ".tadist-cache.npz").exists()
    assert _teacher_log(cfg) == (first, [])  # unchanged: the cache and the checkpoint are reused, silently
    Image.new("RGB", (32, 32), (255, 0, 0)).save(root / "train" / "cat" / "3.png")  # an image replaced in place
    second, said = _teacher_log(cfg)
    assert second != first and any("not reusing teacher" in s and "data:" in s for s in said), said
    Image.new("RGB", (32, 32), (0, 0, 255)).save(root / "test" / "dog" / "extra.png")  # an image added
    third, said = _teacher_log(cfg)
    assert third not in (first, second) and any("not reusing teacher" in s for s in said), said


# the spec tests below are about what is logged, not about the numbers: 64 training images instead of 256 (smoke)
SMALL = dict(train_size=64, val_size=32, test_size=32)


def test_precision_is_part_of_the_spec(smoke_cfg):
    cfg = smoke_cfg(teacher_epochs=1, threads=1, **SMALL)
    _teacher_log(cfg)
    _, said = _teacher_log(cfg.replace(precision="bf16"))  # an fp32 checkpoint is not reused under bf16
    assert any("precision: fp32 -> bfloat16" in s for s in said), said
    _, said = _teacher_log(cfg.replace(channels_last=False))
    assert any("channels_last: True -> False" in s for s in said), said


def test_a_corrupted_checkpoint_is_named_in_one_line_and_retrained(smoke_cfg):
    cfg = smoke_cfg(teacher_epochs=1, threads=1, **SMALL)
    _teacher_log(cfg)
    (path,) = (Path(cfg.results_dir) / "checkpoints" / "seed0").glob("teacher-*.pt")
    raw = bytearray(path.read_bytes())
    mid = len(raw) // 2
    raw[mid:mid + 4096] = bytes(b ^ 0xFF for b in raw[mid:mid + 4096])  # 4 KiB flipped in the middle
    path.write_bytes(bytes(raw))
    _, said = _teacher_log(cfg)
    assert said == [f"[tadist] checkpoint {path} is corrupted (its content does not match its SHA-256); "
                    "retraining it from the start (it will be overwritten)"]
    assert _teacher_log(cfg)[1] == []  # the retrained checkpoint is whole again and reused


# ------------------------------------------------------------------------------- nothing lost
WRITER = r'''
import sys
from types import SimpleNamespace
from tadist_utils.storage.results import ResultsStore
store, name, n = ResultsStore(sys.argv[1]), sys.argv[2], int(sys.argv[3])
cfg = SimpleNamespace(as_dict=lambda: {"writer": name})
for i in range(n):
    store.add_results([dict(dataset="d", experiment=name, model=f"m{i}", seed=0, metric="acc", value=i)])
    store.add_history([dict(dataset="d", key=name, model=f"m{i}", seed=0, epoch=1, metric="loss", value=i)])
    store.update_manifest(f"{name}-{i}", cfg.as_dict(), {}, "cpu", 0.0)
'''


def test_two_processes_writing_one_results_folder_lose_nothing(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), name, "60"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for name in ("a", "b")]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out
    results, history = pd.read_csv(tmp_path / "results.csv"), pd.read_csv(tmp_path / "history.csv")
    assert len(results) == 120 and sorted(results.groupby("experiment").size()) == [60, 60]
    assert len(history) == 120
    import json
    stages = json.loads((tmp_path / "manifest.json").read_text())["stages"]
    assert len(stages) == 120
    assert not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]  # no temporaries left behind
