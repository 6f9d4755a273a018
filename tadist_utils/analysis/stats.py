"""Statistics over seeds, in one place: what ``summary.csv`` holds (n, mean, sd, Student-t interval per dataset,
experiment and model) and which differences survive several runs: paired t-test and exact sign-flip test per
comparison, Holm-corrected within a family, 80%-power detectable difference and seeds needed (estimates). Two
sides that are the very same model (``members``: their students' lineage keys) are ``identical by construction``
and left out of the family; a comparison repeating an earlier one's two models is counted once (``duplicate_of``).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats as st
from scipy.optimize import brentq

from ..plans import BASELINES, EXPERIMENTS, METHODS
from .paper import PAPER_ACCURACY, students_label

LEVEL = 0.95
ORDER = ["teacher", *EXPERIMENTS, *BASELINES]
# how each experiment is named in a table (summary.csv's ``label`` column); others by their own name
LABELS = {"teacher": "teacher", "direct": "direct", "single_ta": "single TA", "hierarchical": "hierarchical",
          "dense": "dense (new)", "labels": "labels only", "kd": "Hinton KD", "ta_chain": "TA chain"}
SUMMARY_COLUMNS = ["dataset", "experiment", "label", "model", "students", "metric", "n", "mean", "sd", "sem", "ci",
                   "ci_low", "ci_high", "min", "max"]


def is_ensemble(model: pd.Series) -> pd.Series:
    return model.astype(str).str.fullmatch(r"ensemble_\d+")


def n_students(model) -> float:
    """N of ``ensemble_N``; NaN for any other model (the teacher)."""
    m = str(model)
    return int(m.removeprefix("ensemble_")) if m.startswith("ensemble_") else float("nan")


def experiment_order(names) -> list[str]:
    """Experiments in the usual order (teacher, the chunked ones, the baselines), others after, by name."""
    names = list(dict.fromkeys(names))
    return [e for e in ORDER if e in names] + sorted(e for e in names if e not in ORDER)


def per_seed(results: pd.DataFrame, metric: str = "test_accuracy", dataset: str | None = None) -> pd.DataFrame:
    """Rows (dataset, experiment, model, seed, value) of one metric and one dataset (None: the only one, else a
    ValueError naming them; "*": every dataset): the teacher and the ensembles, a seed's duplicate rows averaged."""
    d = results[results.metric == metric]
    if dataset not in (None, "*"):
        d = d[d.dataset == dataset]
    elif dataset is None and "dataset" in d and d.dataset.nunique() > 1:
        raise ValueError(f"results hold several datasets {sorted(d.dataset.unique())}: pass dataset=...")
    d = d[is_ensemble(d.model) | (d.model == "teacher")]
    if "dataset" not in d:
        d = d.assign(dataset="")
    d = d.assign(value=pd.to_numeric(d.value, errors="coerce")).dropna(subset=["value"])
    return d.groupby(["dataset", "experiment", "model", "seed"], as_index=False).value.mean()


def describe(values, level: float = LEVEL) -> dict:
    """n, mean, sd (ddof=1), sem, ci (the two-sided ``level`` t-interval's half-width), ci_low, ci_high, min, max;
    below 2 values no spread is claimed (NaN)."""
    v = np.asarray(values, dtype=float)
    n, nan = len(v), float("nan")
    mean = float(v.mean()) if n else nan
    sd = float(v.std(ddof=1)) if n >= 2 else nan
    sem = sd / math.sqrt(n) if n >= 2 else nan
    ci = float(st.t.ppf(0.5 + level / 2, n - 1)) * sem if n >= 2 else nan
    return dict(n=n, mean=mean, sd=sd, sem=sem, ci=ci, ci_low=mean - ci, ci_high=mean + ci,
                min=float(v.min()) if n else nan, max=float(v.max()) if n else nan)


def summarise(results: pd.DataFrame, metric: str = "test_accuracy", dataset: str | None = None,
              level: float = LEVEL) -> pd.DataFrame:
    """One row per (dataset, experiment, model) of the teacher and ``ensemble_N`` (``dataset`` as ``per_seed``;
    "*": ``summary.csv``): ``SUMMARY_COLUMNS`` (students: N, empty for the teacher), by dataset, experiment in the
    usual order, then students."""
    d = per_seed(results, metric, dataset)
    rows = [dict(dataset=ds, experiment=exp, label=LABELS.get(exp, exp), model=model, students=n_students(model),
                 metric=metric, **describe(g.value, level))
            for (ds, exp, model), g in d.groupby(["dataset", "experiment", "model"], sort=False)]
    out = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    rank = {e: i for i, e in enumerate(experiment_order(out.experiment))}
    out = out.assign(_r=out.experiment.map(rank), _s=out.students.fillna(0))
    return out.sort_values(["dataset", "_r", "_s"], kind="stable").drop(columns=["_r", "_s"]).reset_index(drop=True)


def accuracy_table(summary: pd.DataFrame, paper: bool = False, digits: int = 2, counts: bool = True,
                   experiments=None) -> pd.DataFrame:
    """Rows: experiment (``experiments``: these only); columns: teacher, 1, 2, 4, 8 ... students; cells "mean ±
    CI half-width (n=k)" of one dataset's ``summarise`` (``counts=False``: without "(n=k)"); ``paper``: the paper's
    single-run numbers under each of its experiments (its sizes as columns when there is no ensemble)."""
    if "dataset" in summary and summary.dataset.nunique() > 1:
        raise ValueError("summary holds several datasets: summarise one dataset at a time")
    teacher = summary[summary.model == "teacher"]  # under several experiment names: pool nothing, take the largest n
    t_row = teacher.sort_values("n").iloc[-1] if len(teacher) else None
    ens = summary[summary.students.notna()]
    if experiments is not None:
        ens = ens[ens.experiment.isin(list(experiments))]
    sizes = {int(s) for s in ens.students.unique()} or ({1, 2, 4, 8} if paper else set())
    col = {n: students_label(n) for n in sorted(sizes)}

    def cell(row) -> str:
        if row is None:
            return ""
        return f"{row['mean']:.{digits}f}" + (f" ± {row['ci']:.{digits}f}" if row["n"] >= 2 else "") + \
            (f" (n={row['n']})" if counts else "")
    rows = []
    for exp in experiment_order(ens.experiment):
        e = ens[ens.experiment == exp].set_index("students")
        rows.append({"experiment": exp, "teacher": cell(t_row),
                     **{c: cell(e.loc[n] if n in e.index else None) for n, c in col.items()}})
        if paper and exp in PAPER_ACCURACY:
            p = PAPER_ACCURACY[exp]
            rows.append({"experiment": f"{exp} (paper)", "teacher": f"{p['teacher']:.{digits}f}",
                         **{c: (f"{p[n]:.{digits}f}" if n in p else "") for n, c in col.items()}})
    return pd.DataFrame(rows, columns=["experiment", "teacher", *col.values()]).set_index("experiment")


# ------------------------------------------------------------------------- power of the paired t-test
POWER, DIFFERENCE, ALPHA = 0.8, 1.0, 0.05  # DIFFERENCE: points of accuracy the planner asks about


def _power(effect: float, n: int, alpha: float) -> float:
    """Two-sided paired t-test power as statsmodels' two one-sided powers at alpha / 2, a NaN far tail as 0
    (``TTestPower``'s own two-sided gives NaN there, where scipy's noncentral t underflows)."""
    from statsmodels.stats.power import TTestPower
    p = TTestPower()
    near = float(p.power(effect_size=effect, nobs=n, alpha=alpha / 2, alternative="larger"))
    far = float(p.power(effect_size=effect, nobs=n, alpha=alpha / 2, alternative="smaller"))
    return near + (far if np.isfinite(far) else 0.0)


def detectable(n: int, sd: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The mean paired difference found with probability ``power`` by ``n`` seeds of spread ``sd`` (NaN below 2
    seeds or without a spread); ``brentq``, because ``TTestPower.solve_power`` missed the root at n = 3."""
    if n < 2 or not np.isfinite(sd):
        return float("nan")
    if sd == 0:
        return 0.0
    hi = 1.0
    while _power(hi, n, alpha) < power:
        hi *= 2
    return float(brentq(lambda d: _power(d, n, alpha) - power, 0.0, hi, xtol=1e-12)) * sd


def seeds_needed(sd: float, difference: float = DIFFERENCE, alpha: float = ALPHA, power: float = POWER) -> float:
    """The fewest seeds (at least 2) that find ``difference`` with probability ``power`` at per-seed spread
    ``sd`` (NaN without one): a bisection on n."""
    if not np.isfinite(sd) or difference <= 0:
        return float("nan")
    if sd == 0:
        return 2.0
    effect, lo, hi = difference / sd, 2, 2
    while _power(effect, hi, alpha) < power:
        lo, hi = hi, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if _power(effect, mid, alpha) < power else (lo, mid)
    return float(lo)


# ------------------------------------------------------------------------- paired tests
EXACT_UP_TO = 16  # seeds: up to here the sign-flip test enumerates every sign pattern; above, 100,000 drawn
CORRECTION = "holm"  # statsmodels multipletests method, applied within each family
SUPPORTS, CONTRADICTS, UNCLEAR, EQUAL = "supports", "contradicts", "unclear", "identical by construction"


def share_students(manifest: dict | None) -> bool:
    """``Config.share_students`` of a results folder's manifest; True when absent (runs made before the option)."""
    return bool(((manifest or {}).get("config") or {}).get("share_students", True))


def members(experiment: str, model: str, share_students: bool = True) -> tuple[str, ...] | None:
    """Lineage keys of the students of an experiment's ``ensemble_N`` (a baseline: its one end-to-end model);
    None when unknown (an experiment this package does not build, a non-ensemble model)."""
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


def sign_flip_p(diff) -> float:
    """Exact two-sided paired permutation p of per-seed differences (``scipy.stats.permutation_test``; above
    ``EXACT_UP_TO`` seeds 100,000 patterns drawn with a fixed seed). NaN below 2 differences; 1 when all are 0."""
    diff = np.asarray(diff, dtype=float)
    if len(diff) < 2:
        return float("nan")
    if np.all(diff == 0):
        return 1.0
    exact = len(diff) <= EXACT_UP_TO
    r = st.permutation_test((diff,), np.mean, permutation_type="samples", alternative="two-sided", vectorized=False,
                            n_resamples=np.inf if exact else 100_000, rng=None if exact else 0)
    return float(r.pvalue)


def pair_stats(d: pd.DataFrame, a: tuple[str, str], b: tuple[str, str], level: float = LEVEL,
               shared: bool = True) -> dict:
    """(experiment, model) a minus b over their common seeds of ``per_seed`` rows ``d``, uncorrected
    (``correct_family`` adds Holm and outcomes). Equal students on both sides: ``identical``."""
    va = d[(d.experiment == a[0]) & (d.model == a[1])].set_index("seed").value
    vb = d[(d.experiment == b[0]) & (d.model == b[1])].set_index("seed").value
    seeds = sorted(set(va.index) & set(vb.index), key=str)
    x, y = va.loc[seeds].to_numpy(float), vb.loc[seeds].to_numpy(float)
    diff = x - y
    s = describe(diff, level)
    n = s["n"]
    tied = bool(n) and bool(np.all(diff == 0))
    lineage = (members(*a, share_students=shared), members(*b, share_students=shared))
    identical = lineage[0] is not None and lineage[0] == lineage[1]
    if identical and n and not tied:
        warnings.warn(f"{a} and {b} should be the same model (shared students) but differ on some seed: results "
                      "made with share_students=False? Pass share_students=False; compared as different models")
        identical = False
    if n < 2:
        t_stat = p = float("nan")
    elif tied:
        t_stat, p = 0.0, 1.0  # ttest_rel gives 0/0 = NaN here; no evidence of any difference
    else:
        t_stat, p = (float(v) for v in st.ttest_rel(x, y))
    return dict(n=n, seeds=tuple(seeds), mean_a=float(x.mean()) if n else float("nan"),
                mean_b=float(y.mean()) if n else float("nan"), mean_diff=s["mean"], sd_diff=s["sd"],
                sem_diff=s["sem"], ci=s["ci"], ci_low=s["ci_low"], ci_high=s["ci_high"],
                min_diff=s["min"], max_diff=s["max"], t=t_stat, p=p, p_perm=sign_flip_p(diff),
                wins=int((diff > 0).sum()), losses=int((diff < 0).sum()), ties=int((diff == 0).sum()),
                identical=identical, lineage=lineage if None not in lineage else None)


def _label(r) -> str:
    if isinstance(r.get("comparison"), str):
        return r["comparison"]
    return f"{r['a']} > {r['b']} ({n_students(r['model'])} students)"


def outcome(row, level: float = LEVEL, permutation: bool = False) -> str:
    """supports / contradicts / unclear / identical by construction for a ``paired`` row (claim: a > b), from its
    Holm p (the raw p without one); ``permutation``: the sign-flip test's."""
    if row["identical"]:
        return EQUAL
    raw, holm = ("p_perm", "p_perm_holm") if permutation else ("p", "p_holm")
    p = row[holm] if holm in row else row[raw]
    if row["n"] < 2 or not np.isfinite(p) or p >= 1 - level:
        return UNCLEAR
    return SUPPORTS if row["mean_diff"] > 0 else CONTRADICTS


def correct_family(df: pd.DataFrame, level: float = LEVEL) -> pd.DataFrame:
    """Holm-adjust one family's tests (not identical, no duplicate, n >= 2) and add their outcomes, detectable
    difference and seeds needed at alpha / m; a duplicate shows the result of the test it repeats."""
    from statsmodels.stats.multitest import multipletests
    df = df.copy().reset_index(drop=True)
    alpha, first = 1 - level, {}
    df["duplicate_of"] = ["" if (r.get("lineage") is None or r.identical
                                 or first.setdefault(r.get("lineage"), i) == i) else _label(df.loc[first[r.lineage]])
                          for i, r in df.iterrows()]
    fam = (~df.identical.astype(bool)) & df.p.notna() & (df.duplicate_of == "") if len(df) else pd.Series(dtype=bool)
    m = int(fam.sum())
    df["in_family"], df["family"] = fam.astype(bool), m
    df["p_holm"] = df["p_perm_holm"] = np.nan
    if m:
        for raw in ("p", "p_perm"):
            df.loc[fam, f"{raw}_holm"] = multipletests(df[raw][fam].to_numpy(float), alpha=alpha, method=CORRECTION)[1]
    df["detectable"] = [detectable(int(r.n), r.sd_diff, alpha / m) if f else np.nan for f, r in zip(fam, df.itertuples())]
    df["seeds_needed"] = [seeds_needed(r.sd_diff, alpha=alpha / m) if f else np.nan for f, r in zip(fam, df.itertuples())]
    labels = [_label(df.loc[j]) for j in df.index]
    for i in df.index[df.duplicate_of != ""]:
        kept = labels.index(df.loc[i, "duplicate_of"])
        for c in ("p_holm", "p_perm_holm", "detectable", "seeds_needed"):
            df.loc[i, c] = df.loc[kept, c]
    df["outcome"] = pd.Series([outcome(r, level) for _, r in df.iterrows()], dtype=str)
    df["outcome_perm"] = pd.Series([outcome(r, level, permutation=True) for _, r in df.iterrows()], dtype=str)
    df["decided"] = (df.outcome == df.outcome_perm) & df.outcome.isin([SUPPORTS, CONTRADICTS])  # both tests, a side
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


PAIR_COLUMNS = ["a", "b", "model", "students", "n", "seeds", "mean_a", "mean_b", "mean_diff", "sd_diff", "sem_diff",
                "ci", "ci_low", "ci_high", "min_diff", "max_diff", "t", "p", "p_perm", "wins", "losses", "ties",
                "identical", "lineage"]


def paired(results: pd.DataFrame, a: str, b: str, metric: str = "test_accuracy", dataset: str | None = None,
           level: float = LEVEL, share_students: bool = True) -> pd.DataFrame:
    """Experiment a minus b for every ensemble size both have, paired on seed (``pair_stats``), the sizes one
    family for ``correct_family`` (claim: a > b)."""
    d = per_seed(results, metric, dataset)
    ens = d[is_ensemble(d.model)]
    models = set(ens[ens.experiment == a].model) & set(ens[ens.experiment == b].model)
    rows = [dict(a=a, b=b, model=m, students=n_students(m), **pair_stats(ens, (a, m), (b, m), level, share_students))
            for m in sorted(models, key=n_students)]
    return correct_family(pd.DataFrame(rows, columns=PAIR_COLUMNS), level)
