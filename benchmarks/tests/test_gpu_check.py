"""``.ci/gpu-check``, the prepared GPU session of issue 15, run on a CPU in miniature: the same script, every knob an
environment variable. It must leave its few files in OUT, say how far each seed got, and resume when run again."""
import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path, **env) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(tmp_path / "out"), "WORK": str(tmp_path / "work"), "PROFILE": "smoke",
           "DATASET": "digits", "SEEDS": "0 1", "SETS": "experiments=direct levels=2 train_size=64 val_size=32 test_size=32",
           "BENCH_ARGS": "--quick --cases ops --threads 1", **env}
    return subprocess.run(["bash", str(ROOT / ".ci" / "gpu-check")], env=env, capture_output=True, text=True,
                          timeout=1200)


def test_the_gpu_check_runs_end_to_end_in_miniature_and_resumes(tmp_path):
    # deadlines for a CPU beside other tests (`make test` runs a worker per core), not the GPU's 60/150/330 s
    first = _run(tmp_path, SYNC_S="300", BENCH_S="300", SEEDS_S="300")
    assert first.returncode == 0, first.stdout + first.stderr
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["bench.json", "bench.log", "seeds.tgz", "syncs.log"]
    summary = (out / "syncs.log").read_text().strip().splitlines()[-1]  # e.g. "17 passed, 2 xfailed in 9.1s"
    assert re.search(r"\d+ passed", summary) and not re.search(r"\b\d+ failed", summary), summary
    assert json.loads((out / "bench.json").read_text())["cases"]["ops"]["fused"]["aten_ops"] > 0
    with tarfile.open(out / "seeds.tgz") as tgz:
        names = set(tgz.getnames())
    assert {"seeds/results.csv", "seeds/history.csv", "seeds/manifest.json", "seed0.log", "seed1.log"} <= names
    assert not any("checkpoints" in n or n.endswith(".lock") for n in names)  # small enough to come back
    for s in (0, 1):
        assert f"seed {s}: 3 models with a test accuracy; teacher" in first.stdout, first.stdout
    again = _run(tmp_path, SEEDS_S="300")  # the bench is not repeated; every model is reused from its checkpoint
    assert again.returncode == 0 and "bench (at most" not in again.stdout and "synchronisations" not in again.stdout
    assert "seed 0: 3 models with a test accuracy" in again.stdout
    assert "resuming" not in (tmp_path / "work" / "seed0.log").read_text()


def test_a_seed_cut_off_by_its_deadline_is_reported_not_hidden(tmp_path):
    run = _run(tmp_path, SEEDS="0", SEEDS_S="1", BENCH_S="1", SYNC_S="1")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "bench did not finish" in run.stdout and "synchronisation check failed or ran out of time" in run.stdout
    assert "seed 0: stopped at its deadline" in run.stdout, run.stdout
    assert "seed 0: 0 models with a test accuracy; teacher not finished" in run.stdout, run.stdout


def test_a_seed_that_fails_says_why(tmp_path):
    (tmp_path / "work").mkdir()
    for done in ("syncs.done", "bench.done"):  # finished before: skipped, as on a second call
        (tmp_path / "work" / done).touch()
    run = _run(tmp_path, SEEDS="0", SETS="experiments=nonsense")
    assert run.returncode == 0 and "seed 0: exit 2: error:" in run.stdout and "nonsense" in run.stdout, run.stdout
