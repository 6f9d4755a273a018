"""Per-seed values and their summaries: n, mean, sd, sem and a Student-t interval per (experiment, model).

``per_seed`` picks the teacher and ensemble rows of one metric from the tidy ``results.csv`` (columns dataset,
experiment, model, seed, metric, value), one value per (experiment, model, seed); ``summarise`` describes them;
``formatted_table``/``markdown_table`` write "mean ± CI half-width (n=k)" per experiment and ensemble size.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as _st

from ..methods import BASELINES, EXPERIMENTS
from ..results import PAPER_ACCURACY, students_label

KNOWN_ORDER = ["teacher", *EXPERIMENTS, *BASELINES]
LEVEL = 0.95


# ------------------------------------------------------------------------- selection
def _is_ensemble(model: pd.Series) -> pd.Series:
    return model.astype(str).str.fullmatch(r"ensemble_\d+")


def _students(model) -> float:
    m = str(model)
    return int(m.removeprefix("ensemble_")) if m.startswith("ensemble_") else float("nan")


def experiment_order(names) -> list[str]:
    names = list(dict.fromkeys(names))
    return [e for e in KNOWN_ORDER if e in names] + sorted(e for e in names if e not in KNOWN_ORDER)


def per_seed(results: pd.DataFrame, metric: str = "test_accuracy", dataset: str | None = None) -> pd.DataFrame:
    """Rows (dataset, experiment, model, seed, value) of one metric and one dataset: the teacher and ensembles.

    Duplicate rows of one (experiment, model, seed) are averaged, so a seed is never counted twice.
    """
    d = results[results.metric == metric]
    if dataset is not None:
        d = d[d.dataset == dataset]
    elif "dataset" in d and d.dataset.nunique() > 1:
        raise ValueError(f"results hold several datasets {sorted(d.dataset.unique())}: pass dataset=...")
    d = d[_is_ensemble(d.model) | (d.model == "teacher")]
    if "dataset" not in d:
        d = d.assign(dataset="")
    d = d.assign(value=pd.to_numeric(d.value, errors="coerce")).dropna(subset=["value"])
    return d.groupby(["dataset", "experiment", "model", "seed"], as_index=False).value.mean()


def _t_crit(n: int, level: float) -> float:
    return float(_st.t.ppf(0.5 + level / 2, n - 1)) if n >= 2 else float("nan")


def _describe(values, level: float) -> dict:
    v = np.asarray(values, dtype=float)
    n = len(v)
    mean = float(v.mean()) if n else float("nan")
    sd = float(v.std(ddof=1)) if n >= 2 else float("nan")
    sem = sd / math.sqrt(n) if n >= 2 else float("nan")
    ci = _t_crit(n, level) * sem if n >= 2 else float("nan")
    return dict(n=n, mean=mean, sd=sd, sem=sem, ci=ci, ci_low=mean - ci, ci_high=mean + ci)

# ------------------------------------------------------------------------- summaries
def summarise(results: pd.DataFrame, metric: str = "test_accuracy", dataset: str | None = None,
              level: float = LEVEL) -> pd.DataFrame:
    """One row per (experiment, model) for the teacher and every ``ensemble_N``, any experiment name.

    Columns: dataset, experiment, model, students (NaN for the teacher), n (seeds), mean, sd (ddof=1), sem,
    ci (half-width of the ``level`` Student-t interval), ci_low, ci_high. With one seed sd, sem and the
    interval are NaN.
    """
    d = per_seed(results, metric, dataset)
    rows = []
    for (ds, exp, model), g in d.groupby(["dataset", "experiment", "model"], sort=False):
        rows.append(dict(dataset=ds, experiment=exp, model=model, students=_students(model),
                         **_describe(g.value, level)))
    cols = ["dataset", "experiment", "model", "students", "n", "mean", "sd", "sem", "ci", "ci_low", "ci_high"]
    out = pd.DataFrame(rows, columns=cols)
    if out.empty:
        return out
    rank = {e: i for i, e in enumerate(experiment_order(out.experiment))}
    out = out.assign(_r=out.experiment.map(rank), _s=out.students.fillna(0))
    return out.sort_values(["_r", "_s"]).drop(columns=["_r", "_s"]).reset_index(drop=True)


# ------------------------------------------------------------------------- tables for the README / notebooks
def _cell(row, digits: int) -> str:
    if row is None:
        return ""
    if row["n"] >= 2:
        return f"{row['mean']:.{digits}f} ± {row['ci']:.{digits}f} (n={row['n']})"
    return f"{row['mean']:.{digits}f} (n={row['n']})"


def formatted_table(summary: pd.DataFrame, digits: int = 2, paper: bool = False) -> pd.DataFrame:
    """Rows: experiment; columns: teacher, 1, 2, 4, 8 ... students; cells "mean ± CI half-width (n=k)".

    ``summary`` is ``summarise(...)`` output (one dataset). The teacher column repeats the teacher's summary on
    every row, as in the README. ``paper=True`` adds the paper's single-run numbers under each of its experiments.
    """
    if "dataset" in summary and summary.dataset.nunique() > 1:
        raise ValueError("summary holds several datasets: summarise one dataset at a time")
    teacher = summary[summary.model == "teacher"]
    t_row = teacher.iloc[0] if len(teacher) == 1 else None
    if len(teacher) > 1:  # the teacher recorded under several experiment names: pool nothing, take the largest n
        t_row = teacher.sort_values("n").iloc[-1]
    ens = summary[summary.students.notna()]
    sizes = sorted(int(s) for s in ens.students.unique())
    col = {n: students_label(n) for n in sizes}
    rows = []
    for exp in experiment_order(ens.experiment):
        e = ens[ens.experiment == exp].set_index("students")
        rows.append({"experiment": exp, "teacher": _cell(t_row, digits),
                     **{col[n]: _cell(e.loc[n] if n in e.index else None, digits) for n in sizes}})
        if paper and exp in PAPER_ACCURACY:
            p = PAPER_ACCURACY[exp]
            rows.append({"experiment": f"{exp} (paper)", "teacher": f"{p['teacher']:.{digits}f}",
                         **{col[n]: (f"{p[n]:.{digits}f}" if n in p else "") for n in sizes}})
    return pd.DataFrame(rows, columns=["experiment", "teacher", *col.values()]).set_index("experiment")


def markdown_table(summary: pd.DataFrame, digits: int = 2, paper: bool = False) -> str:
    """``formatted_table`` as a GitHub markdown table (no extra dependency)."""
    t = formatted_table(summary, digits, paper).reset_index()
    lines = ["| " + " | ".join(t.columns) + " |", "|" + "---|" * len(t.columns)]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in t.itertuples(index=False)]
    return "\n".join(lines)
