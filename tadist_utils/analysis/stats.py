"""Statistics over seeds: which differences of about one point (the paper's, one run each) survive several runs.

``summarise``/``formatted_table``: n, mean, sd and a Student-t interval per (experiment, model). ``paired``: a - b
on the seeds both have, per ensemble size, with two tests: the paired t-test (assumes normal differences, which 3
seeds cannot check) and the exact sign-flip test (assumes only symmetry, but cannot go below 2 / 2^n: 0.25 at 3
seeds). A family's tests are Holm-corrected together (``correct_family``); the outcome follows the t-test and
``decided`` says the sign-flip test agrees. ``detectable``/``seeds_needed``: the paired t-test's 80% power at the
family's strictest level, from the observed spread (estimates, not guarantees).

A comparison of the very same model on both sides (``members``: the lineage keys of its students) is ``identical by
construction`` and left out of its family; one whose two sides are those of an earlier one is the same test twice
(``duplicate_of``).
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats as _st
from scipy.optimize import brentq
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from ..methods import BASELINES, EXPERIMENTS, METHODS
from ..storage import summary as core
from ..storage.results import PAPER_ACCURACY, students_label
from ..storage.summary import describe, is_ensemble, n_students

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
    """One row per (experiment, model) for the teacher and every ``ensemble_N``: ``summary.summary_table``'s
    columns (the rows of ``summary.csv``); with one seed sd, sem and the interval are NaN."""
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
    """Rows: experiment; columns: teacher, 1, 2, 4, 8 ... students; cells "mean ± CI half-width (n=k)" from one
    dataset's ``summarise``. ``paper``: the paper's single-run numbers under each of its experiments."""
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


# ------------------------------------------------------------------------- power of the paired t-test
POWER = 0.8
DIFFERENCE = 1.0  # points of accuracy the planner asks about
ALPHA = 0.05


def _power(effect: float, n: int, alpha: float) -> float:
    """Power of the two-sided paired t-test: statsmodels' one-sided powers at alpha / 2, added; the far tail counts
    as 0 where scipy's noncentral t returns NaN for it (it is below 1e-15 there; ``TTestPower``'s two-sided: NaN)."""
    p = TTestPower()
    near = float(p.power(effect_size=effect, nobs=n, alpha=alpha / 2, alternative="larger"))
    far = float(p.power(effect_size=effect, nobs=n, alpha=alpha / 2, alternative="smaller"))
    return near + (far if np.isfinite(far) else 0.0)


def detectable(n: int, sd: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The mean paired difference a two-sided paired t-test at ``alpha`` finds with probability ``power`` with
    ``n`` seeds of spread ``sd`` (NaN below 2 seeds or without a spread). ``brentq`` on ``_power``, because
    ``TTestPower.solve_power`` missed the root at n = 3."""
    if n < 2 or not np.isfinite(sd):
        return float("nan")
    if sd == 0:
        return 0.0
    hi = 1.0
    while _power(hi, n, alpha) < power:
        hi *= 2
    return float(brentq(lambda d: _power(d, n, alpha) - power, 0.0, hi, xtol=1e-12)) * sd


def seeds_needed(sd: float, difference: float = DIFFERENCE, alpha: float = ALPHA, power: float = POWER) -> float:
    """The fewest seeds (at least 2) at which a two-sided paired t-test at ``alpha`` finds ``difference`` with
    probability ``power`` when per-seed differences have spread ``sd`` (NaN without one); a bisection on n."""
    if not np.isfinite(sd) or difference <= 0:
        return float("nan")
    if sd == 0:
        return 2.0
    effect = difference / sd
    lo, hi = 2, 2
    while _power(effect, hi, alpha) < power:
        lo, hi = hi, hi * 2
    while lo < hi:  # the first n in [lo, hi] with enough power
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if _power(effect, mid, alpha) < power else (lo, mid)
    return float(lo)


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
        return (METHODS[experiment].lineage(n),)
    if experiment in EXPERIMENTS:
        plan = METHODS[experiment].plan(n.bit_length(), share_students=share_students)
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
    """Holm-adjust the p-values of one family's tests (not identical by construction, no duplicate, n >= 2); adds
    their outcomes, the detectable difference and seeds needed at alpha / m."""
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
    df["decided"] = (df.outcome == df.outcome_perm) & df.outcome.isin([SUPPORTS, CONTRADICTS])  # both tests, and a side
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


def paired(results: pd.DataFrame, a: str, b: str, metric: str = "test_accuracy", dataset: str | None = None,
           level: float = LEVEL, share_students: bool = True) -> pd.DataFrame:
    """Experiment a minus experiment b for every ensemble size present in both, paired on seed: ``pair_stats``
    per size (p: ``ttest_rel``, NaN when n < 2, 1 when every difference is 0; p_perm: ``sign_flip_p``), the sizes
    one family for ``correct_family`` (claim: a > b)."""
    d = per_seed(results, metric, dataset)
    ens = d[is_ensemble(d.model)]
    models = set(ens[ens.experiment == a].model) & set(ens[ens.experiment == b].model)
    rows = [dict(a=a, b=b, model=m, students=n_students(m), **pair_stats(ens, (a, m), (b, m), level, share_students))
            for m in sorted(models, key=n_students)]
    return correct_family(pd.DataFrame(rows, columns=_PAIR_COLS), level)

