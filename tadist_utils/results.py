"""Tidy results on disk: what every notebook reads and writes, and the paper's tables beside ours.

``<results_dir>/results.csv``  one row per (dataset, experiment, model, seed, metric)
``<results_dir>/history.csv``  one row per (dataset, model key, seed, epoch, metric): the curves
``<results_dir>/manifest.json`` config, dataset, library versions, git commit, device, wall times
Writes are atomic and keyed upserts, so re-running a stage replaces its rows instead of adding more. Each
read-modify-write holds ``<results_dir>/.results.lock`` (a ``filelock`` file lock), so processes writing one
folder at once (several seeds, notebooks run side by side) lose no rows and no manifest stages.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import uuid
from pathlib import Path

import pandas as pd
from filelock import FileLock

RESULT_KEYS = ["dataset", "experiment", "model", "seed", "metric"]
HISTORY_KEYS = ["dataset", "key", "model", "seed", "epoch", "metric"]

# SPEC.md: the paper's CIFAR-10 numbers (one run each).
PAPER_ACCURACY = {
    "hierarchical": {"teacher": 82.889, 1: 85.605, 2: 85.556, 4: 84.099, 8: 83.086},
    "direct": {"teacher": 82.889, 1: 85.605, 2: 86.568, 4: 85.123, 8: 84.926},
    "single_ta": {"teacher": 82.889, 1: 85.605, 2: 85.321, 4: 83.716, 8: 83.938},
}
PAPER_LOSS = {
    "hierarchical": dict(S1=0.0799, S01=0.0237, S2=0.0422, S11=0.0309, S22=0.0432, S33=0.0437, S44=0.0445),
    "direct": dict(S1=0.0799, S01=0.0254, S2=0.0455, S11=0.0293, S22=0.0459, S33=0.0475, S44=0.0507,
                   SS11=0.0917, SS22=0.1102, SS33=0.1196, SS44=0.1162, SS55=0.1348, SS66=0.1299, SS77=0.1378,
                   SS88=0.1457),
    "single_ta": dict(S1=0.0799, S01=0.0687, S2=0.1284, S11=0.0829, S22=0.1188, S33=0.1174, S44=0.1251,
                      SS11=0.0324, SS22=0.0463, SS33=0.0432, SS44=0.0582, SS55=0.0603, SS66=0.0501, SS77=0.0622,
                      SS88=0.0523),
}


def _write_atomic(write, path: Path) -> None:
    """``write(tmp)`` to a uniquely named temporary beside ``path``, then rename; a full disk is one RunError line."""
    from .checkpoint import disk_full
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        full = disk_full(e, path)
        if full is not None:
            raise full from None
        raise


def _write_csv_atomic(df: pd.DataFrame, path: Path) -> None:
    _write_atomic(lambda tmp: df.to_csv(tmp, index=False), path)


def _upsert(path: Path, rows: list[dict], keys: list[str]) -> pd.DataFrame:
    new = pd.DataFrame(rows)
    if path.exists() and path.stat().st_size:
        old = pd.read_csv(path)
        merged = pd.concat([old, new], ignore_index=True)
        merged[keys] = merged[keys].astype(str)
        merged = merged.drop_duplicates(subset=keys, keep="last")
    else:
        merged = new
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_csv_atomic(merged, path)
    return merged


class ResultsStore:
    def __init__(self, results_dir: str | Path):
        self.dir = Path(results_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.lock = FileLock(self.dir / ".results.lock")  # one writer at a time, across processes

    @property
    def results_csv(self) -> Path:
        return self.dir / "results.csv"

    @property
    def history_csv(self) -> Path:
        return self.dir / "history.csv"

    @property
    def manifest_json(self) -> Path:
        return self.dir / "manifest.json"

    def add_results(self, rows: list[dict]) -> None:
        if rows:
            with self.lock:
                _upsert(self.results_csv, rows, RESULT_KEYS)

    def add_history(self, rows: list[dict]) -> None:
        if rows:
            with self.lock:
                _upsert(self.history_csv, rows, HISTORY_KEYS)

    def results(self) -> pd.DataFrame:
        if not self.results_csv.exists():
            raise FileNotFoundError(f"{self.results_csv} does not exist yet: run the training notebooks (or "
                                    "`python -m tadist_utils.reproduce`) first")
        return pd.read_csv(self.results_csv)

    def history(self) -> pd.DataFrame:
        return pd.read_csv(self.history_csv) if self.history_csv.exists() else pd.DataFrame(columns=HISTORY_KEYS + ["value"])

    def update_manifest(self, stage: str, cfg, data_info: dict, device: str, seconds: float, extra: dict | None = None) -> dict:
        """Record which config, data, versions and machine produced this directory, stage by stage."""
        env = environment(device)  # outside the lock: it runs git
        with self.lock:
            m = json.loads(self.manifest_json.read_text()) if self.manifest_json.exists() else {}
            m.update(config=cfg.as_dict(), dataset=data_info, environment=env)
            m.setdefault("stages", {})[stage] = dict(seconds=round(seconds, 2), finished=_now(), **(extra or {}))
            text = json.dumps(m, indent=2, default=str)
            _write_atomic(lambda tmp: tmp.write_text(text), self.manifest_json)
        return m

    def manifest(self) -> dict:
        return json.loads(self.manifest_json.read_text()) if self.manifest_json.exists() else {}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True,
                               text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(device: str) -> dict:
    import torch
    import torchvision
    from . import __version__
    return dict(tadist=__version__, git_commit=git_commit(), python=platform.python_version(), torch=torch.__version__,
                torchvision=torchvision.__version__, platform=platform.platform(), device=device,
                cpu_threads=torch.get_num_threads())


# ------------------------------------------------------------------------- the paper's tables
def _select(df: pd.DataFrame, metric: str, seed: int | None, dataset: str | None) -> pd.DataFrame:
    d = df[df.metric == metric]
    if dataset is not None:
        d = d[d.dataset == dataset]
    return d if seed is None else d[d.seed == seed]


def accuracy_table(df: pd.DataFrame, seed: int | None = None, metric: str = "test_accuracy",
                   dataset: str | None = None) -> pd.DataFrame:
    """Rows: experiment; columns: Teacher, 1, 2, 4, 8 students; ours (mean over seeds) beside the paper's."""
    d = _select(df, metric, seed, dataset)
    teacher = d[d.model == "teacher"].value.mean()
    rows = []
    for exp in [e for e in PAPER_ACCURACY if e in set(d.experiment)]:
        row = {"experiment": exp, "teacher": teacher}
        for n in (1, 2, 4, 8):
            v = d[(d.experiment == exp) & (d.model == f"ensemble_{n}")].value
            row[f"{n} students"] = v.mean() if len(v) else float("nan")
        rows.append(row)
        rows.append({"experiment": f"{exp} (paper)", "teacher": PAPER_ACCURACY[exp]["teacher"],
                     **{f"{n} students": PAPER_ACCURACY[exp][n] for n in (1, 2, 4, 8)}})
    return pd.DataFrame(rows).set_index("experiment").round(2)


def loss_table(df: pd.DataFrame, seed: int | None = None, metric: str = "final_train_loss",
               dataset: str | None = None) -> pd.DataFrame:
    """Final feature loss per student (S1, S01, ..., SS88), ours beside the paper's."""
    d = _select(df, metric, seed, dataset)
    order = ["S1", "S01", "S2", "S11", "S22", "S33", "S44"] + [f"SS{i}{i}" for i in range(1, 9)]
    rows = []
    for exp in [e for e in PAPER_LOSS if e in set(d.experiment)]:
        ours = d[d.experiment == exp].groupby("model").value.mean()
        rows.append({"experiment": exp, **{m: ours.get(m, float("nan")) for m in order}})
        rows.append({"experiment": f"{exp} (paper)", **{m: PAPER_LOSS[exp].get(m, float("nan")) for m in order}})
    return pd.DataFrame(rows).set_index("experiment").round(4)
