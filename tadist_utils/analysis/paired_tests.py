"""Paired differences over seeds: a - b on the seeds both have, two paired tests, and Holm's correction.

Comparisons come in families (the declared ones of ``claims``; the rows of one ``paired`` or ``paired_all``
call), and the tests of a family are corrected for multiple comparisons with Holm's step-down method
(``statsmodels.stats.multitest.multipletests(method="holm")``), so the chance of any false "significant" in a
family is at most ``1 - level`` (5%), under each test's assumptions. Each comparison gets two tests:

``p``       the paired t-test (``scipy.stats.ttest_rel``, two-sided): assumes the per-seed differences are normal,
            which 3 seeds cannot check;
``p_perm``  the exact paired permutation (sign-flip) test (``scipy.stats.permutation_test``, every one of the
            2^n sign patterns of the differences, two-sided, statistic: their mean): assumes only that a
            difference is as likely to be + as - when there is none. It cannot go below 2 / 2^n: 0.25 with
            3 seeds, so at n = 3 it never finds anything, and says so;

and their Holm-adjusted forms ``p_holm`` and ``p_perm_holm``. The outcome follows the t-test; ``decided`` is True
when the permutation test reaches the same outcome, and otherwise the outcome rests on the t-test's normality.
``detectable`` is the minimum detectable difference at 80% power (``power.detectable``) at the family's strictest
Holm level, alpha / m; ``seeds_needed`` the seeds at which a 1-point difference would be found with that power.
Each comparison "x > y" has one outcome:

``supports``                  Holm-adjusted p < 1 - level and x better on average;
``contradicts``               Holm-adjusted p < 1 - level and y better on average;
``unclear``                   neither, or fewer than 2 common seeds (no test);
``identical by construction`` both sides are the very same model, known from the lineage keys of their
                              students (``plans``/``baselines``): e.g. the 2-student ensembles of single_ta and
                              hierarchical when they share S01/S2 (``Config.share_students``, the default
                              outside the ``paper`` profile). Such a comparison carries no information: it is
                              left out of its family and of the verdict. Two *different* models that tie on
                              every seed (small test sets do that) are an ordinary, unclear comparison.

A comparison whose two sides are, model for model, those of an earlier comparison of its family (with shared
S01/S2: direct vs single TA and direct vs the hierarchy at 2 students) is the same test twice: it is left out of
the family (``duplicate_of`` names the one kept) and shows that one's result.

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
from ..storage.summary import describe, is_ensemble, n_students
from .power import detectable, seeds_needed
from .seed_summary import LEVEL, experiment_order, per_seed

EXACT_UP_TO = 16  # seeds: up to here the permutation test enumerates every sign pattern; above, 100,000 drawn

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
    n = n_students(model)
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

def sign_flip_p(diff) -> float:
    """The exact two-sided paired permutation p of per-seed differences: the share of the 2^n sign patterns whose
    mean is at least as far from 0 as the observed one (``scipy.stats.permutation_test``; above ``EXACT_UP_TO``
    seeds 100,000 patterns drawn with a fixed seed). NaN below 2 differences; 1 when all are 0."""
    diff = np.asarray(diff, dtype=float)
    if len(diff) < 2:
        return float("nan")
    if np.all(diff == 0):
        return 1.0
    exact = len(diff) <= EXACT_UP_TO
    r = _st.permutation_test((diff,), np.mean, permutation_type="samples", alternative="two-sided", vectorized=False,
                             n_resamples=np.inf if exact else 100_000, rng=None if exact else 0)
    return float(r.pvalue)


def pair_stats(d: pd.DataFrame, a: tuple[str, str], b: tuple[str, str], level: float = LEVEL,
               shared: bool = True) -> dict:
    """Paired statistics of (experiment, model) a minus (experiment, model) b over their common seeds (uncorrected;
    ``correct_family`` adds the family's Holm-adjusted p-values and outcomes). ``d``: ``per_seed`` rows."""
    va = d[(d.experiment == a[0]) & (d.model == a[1])].set_index("seed").value
    vb = d[(d.experiment == b[0]) & (d.model == b[1])].set_index("seed").value
    seeds = sorted(set(va.index) & set(vb.index), key=str)
    x, y = va.loc[seeds].to_numpy(float), vb.loc[seeds].to_numpy(float)
    diff = x - y
    s = describe(diff, level)
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
    lineage = (members(*a, share_students=shared), members(*b, share_students=shared))
    return dict(n=n, seeds=tuple(seeds), mean_a=float(x.mean()) if n else float("nan"),
                mean_b=float(y.mean()) if n else float("nan"), mean_diff=s["mean"], sd_diff=s["sd"],
                sem_diff=s["sem"], ci=s["ci"], ci_low=s["ci_low"], ci_high=s["ci_high"],
                min_diff=s["min"], max_diff=s["max"], t=t_stat, p=p, p_perm=sign_flip_p(diff),
                wins=int((diff > 0).sum()), losses=int((diff < 0).sum()), ties=int((diff == 0).sum()),
                identical=identical, lineage=lineage if None not in lineage else None)


def _label(r) -> str:
    if "comparison" in r and isinstance(r["comparison"], str):
        return r["comparison"]
    return f"{r['a']} > {r['b']} ({n_students(r['model'])} students)"


def correct_family(df: pd.DataFrame, level: float = LEVEL) -> pd.DataFrame:
    """Holm-adjust the p-values of one family: its rows that are tests (not identical by construction, not a
    duplicate of an earlier row, n >= 2). Adds duplicate_of, in_family, family (its size m), p_holm, p_perm_holm,
    detectable (80%-power minimum detectable difference at alpha / m), seeds_needed (seeds to find 1 point with
    that power), outcome (t-test), outcome_perm (permutation test), decided (both agree) and correction; drops
    the helper column ``lineage`` when present."""
    df = df.copy().reset_index(drop=True)
    alpha = 1 - level
    first: dict = {}
    dup = []
    for i, r in df.iterrows():  # a later comparison of the same two models (by lineage) is the same test
        key = r.get("lineage")
        kept = first.setdefault(key, i) if key is not None and not r.identical else i
        dup.append("" if kept == i else _label(df.loc[kept]))
    df["duplicate_of"] = dup
    fam = (~df.identical.astype(bool)) & df.p.notna() & (df.duplicate_of == "") if len(df) else pd.Series(dtype=bool)
    m = int(fam.sum())
    df["in_family"] = fam.astype(bool)
    df["family"] = m
    df["p_holm"] = df["p_perm_holm"] = np.nan
    if m:
        df.loc[fam, "p_holm"] = multipletests(df.p[fam].to_numpy(float), alpha=alpha, method=CORRECTION)[1]
        df.loc[fam, "p_perm_holm"] = multipletests(df.p_perm[fam].to_numpy(float), alpha=alpha, method=CORRECTION)[1]
    df["detectable"] = [detectable(int(r.n), r.sd_diff, alpha / m) if f else np.nan
                        for f, r in zip(fam, df.itertuples())]
    df["seeds_needed"] = [seeds_needed(r.sd_diff, alpha=alpha / m) if f else np.nan
                          for f, r in zip(fam, df.itertuples())]
    for i, r in df.iterrows():  # a duplicate shows the result of the test it repeats
        if r.duplicate_of:
            kept = df.index[[_label(df.loc[j]) == r.duplicate_of for j in df.index]][0]
            for c in ("p_holm", "p_perm_holm", "detectable", "seeds_needed"):
                df.loc[i, c] = df.loc[kept, c]
    df["outcome"] = [outcome(r, level) for _, r in df.iterrows()] if len(df) else pd.Series(dtype=str)
    df["outcome_perm"] = [outcome(r, level, permutation=True) for _, r in df.iterrows()] if len(df) else \
        pd.Series(dtype=str)
    df["decided"] = df.outcome == df.outcome_perm
    df["correction"] = f"{CORRECTION} over {m}"
    return df.drop(columns=["lineage"], errors="ignore")


def differences(results: pd.DataFrame, a: str, b: str, metric: str = "test_accuracy",
                dataset: str | None = None) -> pd.DataFrame:
    """Per-seed rows (model, students, seed, value_a, value_b, diff = a - b) of every ensemble size run in both
    experiments, common seeds only: the points behind ``paired``."""
    d = per_seed(results, metric, dataset)
    d = d[is_ensemble(d.model)]
    m = d[d.experiment == a].merge(d[d.experiment == b], on=["model", "seed"], suffixes=("_a", "_b"))
    m = m.assign(students=[n_students(x) for x in m.model], diff=m.value_a - m.value_b)
    return m[["model", "students", "seed", "value_a", "value_b", "diff"]].sort_values(["students", "seed"],
                                                                                      ignore_index=True)


def outcome(row, level: float = LEVEL, permutation: bool = False) -> str:
    """supports / contradicts / unclear / identical by construction, for a row of ``paired`` (claim: a > b):
    significance is the Holm-adjusted p-value (``p_holm``; the raw ``p`` for a row without one) below 1 - level;
    ``permutation``: the sign-flip test's (``p_perm_holm``, else ``p_perm``)."""
    if row["identical"]:
        return EQUAL
    raw, holm = ("p_perm", "p_perm_holm") if permutation else ("p", "p_holm")
    p = row[holm] if holm in row else row[raw]
    if row["n"] < 2 or not np.isfinite(p) or p >= 1 - level:
        return UNCLEAR
    return SUPPORTS if row["mean_diff"] > 0 else CONTRADICTS


PAIR_COLUMNS = ["n", "seeds", "mean_a", "mean_b", "mean_diff", "sd_diff", "sem_diff", "ci", "ci_low", "ci_high",
                "min_diff", "max_diff", "t", "p", "p_perm", "wins", "losses", "ties", "identical", "lineage"]
_PAIR_COLS = ["a", "b", "model", "students", *PAIR_COLUMNS]


def _paired_rows(d: pd.DataFrame, a: str, b: str, level: float, shared: bool) -> list[dict]:
    ens = d[is_ensemble(d.model)]
    models = set(ens[ens.experiment == a].model) & set(ens[ens.experiment == b].model)
    return [dict(a=a, b=b, model=m, students=n_students(m), **pair_stats(ens, (a, m), (b, m), level, shared))
            for m in sorted(models, key=n_students)]


def paired(results: pd.DataFrame, a: str, b: str, metric: str = "test_accuracy", dataset: str | None = None,
           level: float = LEVEL, share_students: bool = True) -> pd.DataFrame:
    """Experiment a minus experiment b for every ensemble size present in both, paired on seed; the sizes are one
    family for the Holm correction.

    Columns: a, b, model, students, n (common seeds), seeds, mean_a, mean_b, mean_diff (a - b), sd_diff,
    sem_diff, ci (half-width, uncorrected), ci_low, ci_high, min_diff, max_diff (the smallest and largest per-seed
    difference), t, p (``scipy.stats.ttest_rel``, uncorrected; NaN when n < 2, 1 when every difference is exactly
    0), p_perm (exact sign-flip test, uncorrected), wins (seeds where a > b), losses, ties, identical (the same
    model by construction, from the lineage; ``share_students``: see ``share_students(manifest)``), then
    ``correct_family``'s: duplicate_of, in_family, family (its size), p_holm, p_perm_holm, detectable (80% power),
    seeds_needed, outcome (claim a > b, t-test), outcome_perm, decided, correction.
    """
    d = per_seed(results, metric, dataset)
    return correct_family(pd.DataFrame(_paired_rows(d, a, b, level, share_students), columns=_PAIR_COLS), level)


def paired_all(results: pd.DataFrame, experiments=None, metric: str = "test_accuracy", dataset: str | None = None,
               level: float = LEVEL, share_students: bool = True) -> pd.DataFrame:
    """``paired`` for every pair (a, b) of ``experiments`` (a before b in the list; default: every experiment
    with ensembles, in the usual order); all its rows are one family for the Holm correction."""
    d = per_seed(results, metric, dataset)
    if experiments is None:
        experiments = experiment_order(d[is_ensemble(d.model)].experiment)
    rows = [r for a, b in itertools.combinations(experiments, 2) for r in _paired_rows(d, a, b, level, share_students)]
    return correct_family(pd.DataFrame(rows, columns=_PAIR_COLS), level)
