"""Fault injection: SIGKILL a training run (mid-epoch and mid-checkpoint-write), restart it until it
finishes, and require exactly the metrics of an uninterrupted run (CPU, fp32, deterministic)."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

CHILD = r'''
import os, signal, sys
from tadist_utils import checkpoint
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
cfg = make_config("smoke", dataset="digits", results_dir=sys.argv[1], experiments=("direct",), levels=2,
                  teacher_epochs=3, student_epochs=3, finetune_epochs=2, precision="fp32", device="cpu",
                  progress=False)
Pipeline(cfg).run()
print("FINISHED")
'''


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
    if proc.returncode == -signal.SIGKILL:
        return False
    assert proc.returncode == 0, out
    return "FINISHED" in out


def _metrics(results: Path) -> pd.DataFrame:
    df = pd.read_csv(results / "results.csv")
    df = df[~df.metric.str.contains("seconds")]
    return df.sort_values(["experiment", "model", "metric"]).reset_index(drop=True)[["experiment", "model", "metric", "value"]]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("clean")
    t0 = time.perf_counter()
    assert _run(out)
    return out, time.perf_counter() - t0


def _finish(results: Path, first_env=None, kill_after=None) -> int:
    """Run once with the fault, then restart plainly until done; returns how many runs were killed."""
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
    pd.testing.assert_frame_equal(_metrics(tmp_path / "r"), _metrics(clean))


@pytest.mark.parametrize("nth_save", [2, 6])
def test_sigkill_during_checkpoint_write_leaves_previous_checkpoint_usable(uninterrupted, tmp_path, nth_save):
    clean, _ = uninterrupted
    assert _finish(tmp_path / "r", first_env={"KILL_AT_SAVE": str(nth_save)}) == 1
    pd.testing.assert_frame_equal(_metrics(tmp_path / "r"), _metrics(clean))
