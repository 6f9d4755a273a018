"""Paired differences over seeds: a - b on the seeds both have, the paired t-test, and Holm's correction.

Comparisons come in families (the comparisons behind one conclusion; the rows of one ``paired`` or
``paired_all`` call), and the paired t-tests of a family are corrected for multiple comparisons with Holm's
step-down method (``statsmodels.stats.multitest.multipletests(method="holm")``; column ``p_holm``), so the
chance of any false "significant" in a family stays below ``1 - level`` (5%). The intervals shown are the
uncorrected ``level`` t-intervals; ``detectable`` is the smallest mean difference that is significant after the
correction at the step of Holm's procedure that judged it (the comparison with the i-th smallest p of m is tested
at alpha / (m - i): t at ``1 - alpha / (2 (m - i))`` with n - 1 degrees of freedom, times the standard error of
the mean paired difference; a comparison can be significant only if those before it are). With 3 seeds it is
large, which is why so much is "unclear". Each comparison "x > y" has one outcome:

``supports``                  Holm-adjusted p < 1 - level and x better on average;
``contradicts``               Holm-adjusted p < 1 - level and y better on average;
``unclear``                   neither, or fewer than 2 common seeds (no test);
``identical by construction`` both sides are the very same model, known from the lineage keys of their
                              students (``plans``/``baselines``): e.g. the 2-student ensembles of single_ta and
                              hierarchical when they share S01/S2 (``Config.share_students``, the default
                              outside the ``paper`` profile). Such a comparison carries no information: it is
                              left out of its family and of the verdict. Two *different* models that tie on
                              every seed (small test sets do that) are an ordinary, unclear comparison.

Which students are shared is not in results.csv: it follows from the plans and the config's
``share_students``, recorded in ``manifest.json`` (``share_students(manifest)``; absent means shared, as in
every run made before the option existed).
"""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
from scipy import stats as _st
from statsmodels.stats.multitest import multipletests

from .. import baselines
from ..methods import BASELINES, EXPERIMENTS, build
from .seed_summary import LEVEL, _describe, _is_ensemble, _students, _t_crit, experiment_order, per_seed

CORRECTION = "holm"  # statsmodels.stats.multitest.multipletests method, applied within each family
SUPPORTS, CONTRADICTS, UNCLEAR, EQUAL = "supports", "contradicts", "unclear", "identical by construction"


# ------------------------------------------------------------------------- lineage: which models are the same
def share_students(manifest: dict | None) -> bool:
    """Whether a results folder's experiments shared their students below S1 (``Config.share_students``, in
    ``manifest.json``); True when absent, as in every run made before the option existed."""
    return bool(((manifest or {}).get("config") or {}).get("share_students", True))


def members(experiment: str, model: str, share_students: bool = True) -> tuple[str, ...] | None:
    """Lineage keys of the students an ``ensemble_N`` of an experiment is made of (one key for a baseline's
    end-to-end model); None when unknown (an experiment this package does not build, a non-ensemble model)."""
    n = _students(model)
    if not np.isfinite(n) or n < 1 or int(n) & (int(n) - 1):
        return None
    n = int(n)
    if experiment in BASELINES:
        return (baselines.lineage(experiment, n),)
    if experiment in EXPERIMENTS:
        plan = build(experiment, n.bit_length(), share_students=share_students)
        return tuple(plan.node(name).key for name in plan.ensembles[n])
    return None


def same_by_construction(a: tuple[str, str], b: tuple[str, str], share_students: bool = True) -> bool:
    """(experiment, model) a and b are the very same model: the same students, by lineage (an ensemble's output
    layer is fine-tuned once per set of students and reused, so equal members mean an equal ensemble)."""
    ma = members(*a, share_students=share_students)
    return ma is not None and ma == members(*b, share_students=share_students)

def _pair(d: pd.DataFrame, a: tuple[str, str], b: tuple[str, str], level: float, shared: bool = True) -> dict:
    """Paired statistics of (experiment, model) a minus (experiment, model) b over their common seeds (uncorrected;
    ``_correct`` adds the family's Holm-adjusted p-values and outcomes)."""
    va = d[(d.experiment == a[0]) & (d.model == a[1])].set_index("seed").value
    vb = d[(d.experiment == b[0]) & (d.model == b[1])].set_index("seed").value
    seeds = sorted(set(va.index) & set(vb.index), key=str)
    x, y = va.loc[seeds].to_numpy(float), vb.loc[seeds].to_numpy(float)
    diff = x - y
    s = _describe(diff, level)
    n = s["n"]
    tied = bool(n) and bool(np.all(diff == 0))
    identical = same_by_construction(a, b, shared)
    if identical and n and not tied:
        warnings.warn(f"{a} and {b} should be the same model (shared students) but differ on some seed: results "
                      "made with share_students=False? Pass share_students=False; compared as different models")
        identical = False
    if n < 2:
        t_stat = p = float("nan")
    elif tied:
        t_stat, p = 0.0, 1.0  # ttest_rel gives 0/0 = NaN here; no evidence of any difference
    else:
        t_stat, p = (float(v) for v in _st.ttest_rel(x, y))
    return dict(n=n, seeds=tuple(seeds), mean_a=float(x.mean()) if n else float("nan"),
                mean_b=float(y.mean()) if n else float("nan"), mean_diff=s["mean"], sd_diff=s["sd"],
                sem_diff=s["sem"], ci=s["ci"], ci_low=s["ci_low"], ci_high=s["ci_high"], t=t_stat, p=p,
                wins=int((diff > 0).sum()), losses=int((diff < 0).sum()), ties=int((diff == 0).sum()),
                identical=identical)


def _correct(df: pd.DataFrame, level: float) -> pd.DataFrame:
    """Holm-adjust the p-values of one family (its rows that are not identical by construction and have a test),
    and add family (its size m), p_holm, detectable, outcome and correction."""
    df = df.copy()
    alpha = 1 - level
    fam = (~df.identical.astype(bool)) & df.p.notna() if len(df) else pd.Series(dtype=bool)
    m = int(fam.sum())
    df["family"] = m
    df["p_holm"] = np.nan
    if m:
        df.loc[fam, "p_holm"] = multipletests(df.p[fam].to_numpy(float), alpha=alpha, method=CORRECTION)[1]
    # Holm judges the comparison with the i-th smallest p (i = 0, 1, ...) at alpha / (m - i): the half-width of
    # the t-interval at that level is the smallest mean difference its step could have found with this spread
    step = pd.Series(np.nan, index=df.index)
    if m:
        step[df.index[fam]] = np.argsort(np.argsort(df.p[fam].to_numpy(float), kind="stable"), kind="stable")
    df["detectable"] = [(_t_crit(int(r.n), 1 - alpha / (m - int(i))) * r.sem_diff) if f else np.nan
                        for f, i, r in zip(fam, step, df.itertuples())]
    df["outcome"] = [outcome(r, level) for _, r in df.iterrows()] if len(df) else pd.Series(dtype=str)
    df["correction"] = f"{CORRECTION} over {m}"
    return df


def differences(results: pd.DataFrame, a: str, b: str, metric: str = "test_accuracy",
                dataset: str | None = None) -> pd.DataFrame:
    """Per-seed rows (model, students, seed, value_a, value_b, diff = a - b) of every ensemble size run in both
    experiments, common seeds only: the points behind ``paired``."""
    d = per_seed(results, metric, dataset)
    d = d[_is_ensemble(d.model)]
    m = d[d.experiment == a].merge(d[d.experiment == b], on=["model", "seed"], suffixes=("_a", "_b"))
    m = m.assign(students=[_students(x) for x in m.model], diff=m.value_a - m.value_b)
    return m[["model", "students", "seed", "value_a", "value_b", "diff"]].sort_values(["students", "seed"],
                                                                                      ignore_index=True)


def outcome(row, level: float = LEVEL) -> str:
    """supports / contradicts / unclear / identical by construction, for a row of ``paired`` (claim: a > b):
    significance is the Holm-adjusted p-value (``p_holm``; the raw ``p`` for a row without one) below 1 - level."""
    if row["identical"]:
        return EQUAL
    p = row["p_holm"] if "p_holm" in row else row["p"]
    if row["n"] < 2 or not np.isfinite(p) or p >= 1 - level:
        return UNCLEAR
    return SUPPORTS if row["mean_diff"] > 0 else CONTRADICTS


_PAIR_COLS = ["a", "b", "model", "students", "n", "seeds", "mean_a", "mean_b", "mean_diff", "sd_diff", "sem_diff",
              "ci", "ci_low", "ci_high", "t", "p", "wins", "losses", "ties", "identical"]


def _paired_rows(d: pd.DataFrame, a: str, b: str, level: float, shared: bool) -> list[dict]:
    ens = d[_is_ensemble(d.model)]
    models = set(ens[ens.experiment == a].model) & set(ens[ens.experiment == b].model)
    return [dict(a=a, b=b, model=m, students=_students(m), **_pair(ens, (a, m), (b, m), level, shared))
            for m in sorted(models, key=_students)]


def paired(results: pd.DataFrame, a: str, b: str, metric: str = "test_accuracy", dataset: str | None = None,
           level: float = LEVEL, share_students: bool = True) -> pd.DataFrame:
    """Experiment a minus experiment b for every ensemble size present in both, paired on seed; the sizes are one
    family for the Holm correction.

    Columns: a, b, model, students, n (common seeds), seeds, mean_a, mean_b, mean_diff (a - b), sd_diff,
    sem_diff, ci (half-width, uncorrected), ci_low, ci_high, t, p (``scipy.stats.ttest_rel``, uncorrected; NaN
    when n < 2, 1 when every difference is exactly 0), wins (seeds where a > b), losses, ties, identical (the same
    model by construction, from the lineage; ``share_students``: see ``share_students(manifest)``), family (its
    size), p_holm, detectable (see the module doc), outcome (claim a > b), correction.
    """
    d = per_seed(results, metric, dataset)
    return _correct(pd.DataFrame(_paired_rows(d, a, b, level, share_students), columns=_PAIR_COLS), level)


def paired_all(results: pd.DataFrame, experiments=None, metric: str = "test_accuracy", dataset: str | None = None,
               level: float = LEVEL, share_students: bool = True) -> pd.DataFrame:
    """``paired`` for every pair (a, b) of ``experiments`` (a before b in the list; default: every experiment
    with ensembles, in the usual order); all its rows are one family for the Holm correction."""
    d = per_seed(results, metric, dataset)
    if experiments is None:
        experiments = experiment_order(d[_is_ensemble(d.model)].experiment)
    rows = [r for a, b in itertools.combinations(experiments, 2) for r in _paired_rows(d, a, b, level, share_students)]
    return _correct(pd.DataFrame(rows, columns=_PAIR_COLS), level)
