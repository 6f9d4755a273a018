"""Per-seed values and their summary per (experiment, model): ``summary.csv``, rewritten by
``ResultsStore.add_results`` whenever ``results.csv`` changes, so every results folder carries one (the README's
tables are built from it). A seed's duplicate rows are averaged, never counted twice; one seed gives n = 1 and an
empty sd and interval: no spread is claimed from one run.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as st

from ..methods import BASELINES, EXPERIMENTS

LEVEL = 0.95
ORDER = ["teacher", *EXPERIMENTS, *BASELINES]
# how each experiment is named in a table (the README's, summary.csv's ``label`` column); others by their own name
LABELS = {"teacher": "teacher", "direct": "direct", "single_ta": "single TA", "hierarchical": "hierarchical",
          "dense": "dense (new)", "labels": "labels only", "kd": "Hinton KD", "ta_chain": "TA chain"}
SUMMARY_COLUMNS = ["dataset", "experiment", "label", "model", "students", "metric", "n", "mean", "sd", "sem", "ci",
                   "ci_low", "ci_high", "min", "max"]


def is_ensemble(model: pd.Series) -> pd.Series:
    """True where a model name is ``ensemble_N``."""
    return model.astype(str).str.fullmatch(r"ensemble_\d+")


def n_students(model) -> float:
    """N of ``ensemble_N``; NaN for any other model (the teacher)."""
    m = str(model)
    return int(m.removeprefix("ensemble_")) if m.startswith("ensemble_") else float("nan")


def label(experiment: str) -> str:
    return LABELS.get(experiment, experiment)


def order(names) -> list[str]:
    """Experiments in the usual order (teacher, the chunked ones, the baselines), others after, by name."""
    names = list(dict.fromkeys(names))
    return [e for e in ORDER if e in names] + sorted(e for e in names if e not in ORDER)


def per_seed(results: pd.DataFrame, metric: str = "test_accuracy") -> pd.DataFrame:
    """Rows (dataset, experiment, model, seed, value) of one metric: the teacher and the ensembles, every dataset."""
    d = results[results.metric == metric]
    d = d[is_ensemble(d.model) | (d.model == "teacher")]
    if "dataset" not in d:
        d = d.assign(dataset="")
    d = d.assign(value=pd.to_numeric(d.value, errors="coerce")).dropna(subset=["value"])
    return d.groupby(["dataset", "experiment", "model", "seed"], as_index=False).value.mean()


def describe(values, level: float = LEVEL) -> dict:
    """n, mean, sd (ddof=1), sem, ci (the ``level`` t-interval's half-width), ci_low, ci_high, min, max."""
    v = np.asarray(values, dtype=float)
    n = len(v)
    nan = float("nan")
    mean = float(v.mean()) if n else nan
    sd = float(v.std(ddof=1)) if n >= 2 else nan
    sem = sd / math.sqrt(n) if n >= 2 else nan
    ci = float(st.t.ppf(0.5 + level / 2, n - 1)) * sem if n >= 2 else nan  # two-sided Student-t
    return dict(n=n, mean=mean, sd=sd, sem=sem, ci=ci, ci_low=mean - ci, ci_high=mean + ci,
                min=float(v.min()) if n else nan, max=float(v.max()) if n else nan)


def summary_table(results: pd.DataFrame, metric: str = "test_accuracy", level: float = LEVEL) -> pd.DataFrame:
    """One row per (dataset, experiment, model) of the teacher and every ``ensemble_N``: ``SUMMARY_COLUMNS``
    (students: N, empty for the teacher; label: the experiment's name in tables). Sorted by dataset, the usual
    experiment order, students."""
    d = per_seed(results, metric)
    rows = [dict(dataset=ds, experiment=exp, label=label(exp), model=model, students=n_students(model), metric=metric,
                 **describe(g.value, level))
            for (ds, exp, model), g in d.groupby(["dataset", "experiment", "model"], sort=False)]
    out = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    if out.empty:
        return out
    rank = {e: i for i, e in enumerate(order(out.experiment))}
    out = out.assign(_r=out.experiment.map(rank), _s=out.students.fillna(0))
    return out.sort_values(["dataset", "_r", "_s"], kind="stable").drop(columns=["_r", "_s"]).reset_index(drop=True)
