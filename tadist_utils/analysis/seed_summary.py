"""Per-seed values and their summaries: n, mean, sd, sem and a Student-t interval per (experiment, model).

``per_seed`` picks the teacher and ensemble rows of one metric from the tidy ``results.csv`` (columns dataset,
experiment, model, seed, metric, value), one value per (experiment, model, seed); ``summarise`` describes them;
``formatted_table``/``markdown_table`` write "mean ± CI half-width (n=k)" per experiment and ensemble size. The
computation is the core's (``tadist_utils.storage.summary``), the one ``summary.csv`` is written with.
"""
from __future__ import annotations

import pandas as pd

from ..storage import summary as core
from ..storage.results import PAPER_ACCURACY, students_label

KNOWN_ORDER = core.ORDER
LEVEL = core.LEVEL
experiment_order = core.order


# ------------------------------------------------------------------------- selection
def per_seed(results: pd.DataFrame, metric: str = "test_accuracy", dataset: str | None = None) -> pd.DataFrame:
    """Rows (dataset, experiment, model, seed, value) of one metric and one dataset: the teacher and ensembles.

    Duplicate rows of one (experiment, model, seed) are averaged, so a seed is never counted twice.
    """
    d = results if dataset is None else results[results.dataset == dataset]
    if dataset is None and "dataset" in d and d[d.metric == metric].dataset.nunique() > 1:
        raise ValueError(f"results hold several datasets {sorted(d.dataset.unique())}: pass dataset=...")
    return core.per_seed(d, metric)


# ------------------------------------------------------------------------- summaries
def summarise(results: pd.DataFrame, metric: str = "test_accuracy", dataset: str | None = None,
              level: float = LEVEL) -> pd.DataFrame:
    """One row per (experiment, model) for the teacher and every ``ensemble_N``, any experiment name.

    Columns (``summary.summary_table``, the rows of ``summary.csv``): dataset, experiment, label, model, students
    (NaN for the teacher), metric, n (seeds), mean, sd (ddof=1), sem, ci (half-width of the ``level`` Student-t
    interval), ci_low, ci_high, min, max. With one seed sd, sem and the interval are NaN.
    """
    d = results if dataset is None else results[results.dataset == dataset]
    per_seed(d, metric)  # one dataset, or a ValueError naming them
    return core.summary_table(d, metric, level)


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
