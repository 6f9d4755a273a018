"""Notebook plumbing: where relative paths point, which parameters were given, what is on disk.

Notebooks run with cwd = their own folder (papermill, nbval, Jupyter), on Colab with cwd = /content.
Relative ``data_dir`` / ``results_dir`` therefore resolve against the repository root when the
package is imported from a checkout, and against the cwd otherwise, so every way of running a
notebook reads and writes the same folders as ``python -m tadist_utils.reproduce`` does.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .config import Config
from .results import ResultsStore

DRIVE_ROOT = Path("/content/drive/MyDrive/tadist")  # Colab: where results go when use_drive is on


def repo_root() -> Path:
    """The checkout this package was imported from, or the cwd for an installed package."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "notebooks").is_dir() else Path.cwd()


def repo_path(path: str | Path, drive: bool = False) -> str:
    """Absolute paths stay; relative ones sit under the repo root (or under Google Drive when ``drive``)."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return str(p)
    return str((DRIVE_ROOT if drive else repo_root()) / p)


def given(**params) -> dict:
    """The notebook parameters that were set (None means: keep the profile's default)."""
    return {k: v for k, v in params.items() if v is not None}


def summary(cfg: Config) -> pd.Series:
    """The settings a reader needs to interpret a notebook's numbers."""
    keys = ["profile", "dataset", "seed", "device", "precision", "teacher_epochs", "student_epochs", "finetune_epochs",
            "finetune_mode", "feature_loss", "train_size", "val_size", "test_size", "batch_size", "results_dir"]
    return pd.Series({k: getattr(cfg, k) for k in keys}, name="value", dtype=object)


def load(cfg: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results, history) of ``cfg.results_dir``, restricted to the dataset this run last trained on.

    A results folder reused for another dataset keeps that dataset's rows; mixing them in one table
    would average CIFAR-10 with digits.
    """
    store = ResultsStore(cfg.results_dir)
    results, history = store.results(), store.history()
    name = store.manifest().get("dataset", {}).get("name")
    if name is not None:
        results, history = results[results.dataset == name], history[history.dataset == name]
    return results.reset_index(drop=True), history.reset_index(drop=True)
