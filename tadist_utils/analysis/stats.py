"""Statistics over seeds: which of the paper's differences survive several runs.

The paper reports one run per number and differences of about one point; this module turns the tidy
``results.csv`` (columns dataset, experiment, model, seed, metric, value) into

``summarise``     n, mean, sd, sem and a Student-t confidence interval per (experiment, model), for every
                  ensemble (``ensemble_N``) and the teacher, whatever the experiment is called;
``per_seed``      the teacher and ensemble rows of one metric, one value per (experiment, model, seed);
``paired``        a - b per ensemble size, paired on seed (seeds present in both only): mean difference,
                  its t interval, the paired t-test (``scipy.stats.ttest_rel``) and how many seeds a won;
``differences``   the per-seed differences behind ``paired``;
``paired_all``    ``paired`` for every pair of a list of experiments;
``comparisons``   every paired comparison behind the paper's three conclusions, with its outcome;
``conclusions``   one verdict per conclusion;
``markdown_table``/``formatted_table``  "mean ± CI half-width (n=k)" per experiment and ensemble size.

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

A conclusion made of several comparisons is then

``holds``          every comparison supports it;
``partly holds``   some support it, none contradicts it;
``does not hold``  some comparison contradicts it (significantly, in the opposite direction);
``inconclusive``   none is significant either way (always the case with a single seed);
``not run``        an experiment (or ensemble size) the conclusion is about is absent from the results.

A mean difference in the wrong direction that is not significant makes a comparison ``unclear``, not
``contradicts``: with a handful of seeds that is noise, and is reported as such. The third conclusion ("a single
TA beats the hierarchy only for 8 students") is never read as holding: a non-significant difference at 2 or 4
students is absence of evidence, not evidence of no difference, so its best verdict is ``partly holds`` with
the reading "supported at 8; not shown at 2 and 4" (see ``conclusions``).
"""
from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats as _st
from statsmodels.stats.multitest import multipletests

from .. import baselines
from ..baselines import BASELINES
from ..methods import EXPERIMENTS, PAPER_EXPERIMENTS, build
from ..results import PAPER_ACCURACY, students_label

KNOWN_ORDER = ["teacher", *EXPERIMENTS, *BASELINES]
LEVEL = 0.95

CORRECTION = "holm"  # statsmodels.stats.multitest.multipletests method, applied within each family
SUPPORTS, CONTRADICTS, UNCLEAR, EQUAL = "supports", "contradicts", "unclear", "identical by construction"
HOLDS, PARTLY, NOT_HOLD, INCONCLUSIVE, NOT_RUN = "holds", "partly holds", "does not hold", "inconclusive", "not run"

CLAIMS = {
    1: "learning directly from the teacher gives the best ensembles (direct > single TA and direct > hierarchical "
       "for 2, 4 and 8 students)",
    2: "accuracy falls as the number of students grows (2 > 4 > 8 students, in each experiment)",
    3: "a single TA beats the hierarchy only for 8 students (single TA > hierarchical for 8, not for 2 or 4)",
}


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


# ------------------------------------------------------------------------- the paper's conclusions
def _comparison(d, conclusion: int, a: tuple[str, str], b: tuple[str, str], level: float, shared: bool) -> dict:
    label = (f"{a[0]} > {b[0]} ({_students(a[1])} students)" if a[1] == b[1]
             else f"{a[0]}: {_students(a[1])} > {_students(b[1])} students")
    return dict(conclusion=conclusion, comparison=label, exp_a=a[0], model_a=a[1], exp_b=b[0], model_b=b[1],
                **_pair(d, a, b, level, shared))


def _missing(d: pd.DataFrame, needs) -> list[str]:
    """(experiment, model) pairs absent from d, as 'experiment/model' (or 'experiment' when wholly absent)."""
    present = set(zip(d.experiment, d.model))
    exps = set(d.experiment)
    out = []
    for e, m in needs:
        tag = e if e not in exps else f"{e}/{m}"
        if (e, m) not in present and tag not in out:
            out.append(tag)
    return out


def comparisons(results: pd.DataFrame, metric: str = "test_accuracy", dataset: str | None = None,
                level: float = LEVEL, share_students: bool = True) -> pd.DataFrame:
    """Every paired comparison (claim: a > b) behind the three conclusions, with its outcome.

    1: direct vs single_ta and direct vs hierarchical for 2, 4 and 8 students (1 student is S1 in every
       experiment, the same model by construction, so it is left out);
    2: ensemble_2 vs ensemble_4 and ensemble_4 vs ensemble_8 within each of the three experiments;
    3: single_ta vs hierarchical for 2, 4 and 8 students.
    Each conclusion's comparisons are one family for the Holm correction (those identical by construction left
    out). Comparisons whose models are absent are left out (``conclusions`` reports them as not run).
    """
    d = per_seed(results, metric, dataset)
    d = d[_is_ensemble(d.model)]
    present = set(zip(d.experiment, d.model))
    rows = []
    for conclusion, a, b in _plan():
        if a in present and b in present:
            rows.append(_comparison(d, conclusion, a, b, level, share_students))
    cols = ["conclusion", "comparison", "exp_a", "model_a", "exp_b", "model_b", "n", "seeds", "mean_a", "mean_b",
            "mean_diff", "sd_diff", "sem_diff", "ci", "ci_low", "ci_high", "t", "p", "wins", "losses", "ties",
            "identical", "family", "p_holm", "detectable", "outcome", "correction"]
    raw = pd.DataFrame(rows, columns=cols[:cols.index("identical") + 1])
    parts = [_correct(g, level) for _, g in raw.groupby("conclusion", sort=True)]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def _plan():
    for n in (2, 4, 8):
        for other in ("single_ta", "hierarchical"):
            yield 1, ("direct", f"ensemble_{n}"), (other, f"ensemble_{n}")
    for exp in PAPER_EXPERIMENTS:
        for hi, lo in ((2, 4), (4, 8)):
            yield 2, (exp, f"ensemble_{hi}"), (exp, f"ensemble_{lo}")
    for n in (2, 4, 8):
        yield 3, ("single_ta", f"ensemble_{n}"), ("hierarchical", f"ensemble_{n}")


def _verdict(outcomes) -> str:
    outcomes = [o for o in outcomes if o != EQUAL]
    if not outcomes:
        return INCONCLUSIVE
    if CONTRADICTS in outcomes:
        return NOT_HOLD
    if all(o == SUPPORTS for o in outcomes):
        return HOLDS
    return PARTLY if SUPPORTS in outcomes else INCONCLUSIVE


def _verdict_3(rows: pd.DataFrame) -> str:
    """does not hold: single TA significantly worse for 8, or significantly better for 2 or 4 (so not "only for 8");
    partly holds: significantly better for 8 and neither of the former ("supported at 8; not shown at 2 and 4":
    a non-significant difference is not evidence of no difference, so the "only" is never shown);
    inconclusive otherwise."""
    at8 = rows[rows.model_a == "ensemble_8"].outcome.iloc[0]
    smaller = set(rows[rows.model_a != "ensemble_8"].outcome)
    if at8 == CONTRADICTS or SUPPORTS in smaller:
        return NOT_HOLD
    return PARTLY if at8 == SUPPORTS else INCONCLUSIVE


def _fmt(x: float, signed: bool = True, digits: int = 2) -> str:
    return "nan" if x is None or not np.isfinite(x) else (f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}")


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _reading(rows: pd.DataFrame, conclusion: int) -> str:
    """What the comparisons show, in words: supported at / contradicted at / not shown at / identical by construction."""
    def label(r):
        return str(_students(r.model_a)) if conclusion == 3 else r.comparison
    words = {SUPPORTS: "supported", CONTRADICTS: "contradicted", UNCLEAR: "not shown", EQUAL: "identical by construction"}
    parts = []
    for o in (SUPPORTS, CONTRADICTS, UNCLEAR, EQUAL):
        got = [label(r) for r in rows.itertuples() if r.outcome == o]
        if not got:
            continue
        if conclusion == 3:
            parts.append(f"{words[o]} at {_and(got)}")
        elif o == UNCLEAR:  # the many non-significant ones by count; the intervals are in the evidence
            parts.append(f"not shown: {len(got)} of {len(rows)} comparisons")
        else:
            parts.append(f"{words[o]}: {', '.join(got)}")
    text = "; ".join(parts)
    if conclusion == 3 and _verdict_3(rows) == PARTLY:
        text += " (\"only\" is not tested: not significant is not equal)"
    return text


def _evidence(rows: pd.DataFrame, level: float) -> str:
    parts = []
    for _, r in rows.iterrows():
        if r.identical:
            parts.append(f"{r.comparison}: the same model on both sides (identical by construction, not a test)")
            continue
        if r.n >= 2:
            ci = (f"{int(level * 100)}% CI [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}], p={r.p:.3g}, "
                  f"Holm p={r.p_holm:.3g}, detectable {_fmt(r.detectable, False, 1)}")
        else:
            ci = "no CI (1 seed)"
        tie = ", tied on every seed" if r.ties == r.n and r.n else ""
        parts.append(f"{r.comparison}: {_fmt(r.mean_diff)} ({ci}, wins {r.wins}/{r.n}{tie}) -> {r.outcome}")
    return "; ".join(parts)


def conclusions(results: pd.DataFrame, metric: str = "test_accuracy", dataset: str | None = None,
                level: float = LEVEL, share_students: bool = True) -> pd.DataFrame:
    """The paper's three conclusions checked across seeds: one row each.

    Columns: conclusion (1-3), claim, verdict, reading (what was shown and what was not, in words), n_seeds
    (fewest common seeds over its comparisons), supports, contradicts, unclear, equal (counts of comparison
    outcomes; equal: identical by construction), correction (the multiple-comparison correction and its family
    size), detectable_min / detectable_max (the range of ``detectable`` over its comparisons: differences smaller
    than this could not have been found with these seeds) and evidence (every paired difference with its
    interval, raw and Holm-adjusted p-values, smallest detectable difference and wins).
    Verdicts for 1 and 2: see the module docstring; 3 partly holds (at best) when single TA is significantly
    better than the hierarchy for 8 students and not significantly better for 2 or 4, does not hold when it is
    significantly worse for 8 or significantly better for 2 or 4, and is inconclusive otherwise; with shared
    students its 2-student comparison is identical by construction and is left out.
    A conclusion is "not run" when an experiment it is about is missing from the results (conclusions 1 and 2:
    any of direct, single_ta, hierarchical; 3: single_ta or hierarchical with 8 students), or when none of its
    comparisons can be made; ensemble sizes missing from an experiment are otherwise just not compared.
    ``share_students``: whether the runs shared S01/S2 (``share_students(manifest)``).
    """
    d = per_seed(results, metric, dataset)
    d = d[_is_ensemble(d.model)]
    comp = comparisons(results, metric, dataset, level, share_students)
    exps = set(d.experiment)
    rows = []
    for c in (1, 2, 3):
        if c == 3:
            missing = _missing(d, [("single_ta", "ensemble_8"), ("hierarchical", "ensemble_8")])
        else:
            missing = [e for e in PAPER_EXPERIMENTS if e not in exps]
        r = comp[comp.conclusion == c]
        counts = {k: int((r.outcome == v).sum()) for k, v in
                  (("supports", SUPPORTS), ("contradicts", CONTRADICTS), ("unclear", UNCLEAR), ("equal", EQUAL))}
        fam = int(r.family.iloc[0]) if len(r) else 0
        correction = (f"Holm over the {fam} comparison(s) not identical by construction (family-wise "
                      f"{1 - level:.0%}; statsmodels multipletests)")
        if missing or r.empty:
            verdict, reading = NOT_RUN, ""
            evidence = "missing: " + ", ".join(missing or ["every compared ensemble"])
        else:
            verdict = _verdict_3(r) if c == 3 else _verdict(r.outcome)
            reading, evidence = _reading(r, c), _evidence(r, level)
        det = r.detectable.dropna()
        rows.append(dict(conclusion=c, claim=CLAIMS[c], verdict=verdict, reading=reading,
                         n_seeds=int(r.n.min()) if len(r) else 0, **counts, correction=correction,
                         detectable_min=float(det.min()) if len(det) else float("nan"),
                         detectable_max=float(det.max()) if len(det) else float("nan"), evidence=evidence))
    return pd.DataFrame(rows)


def conclusions_markdown(verdicts: pd.DataFrame, digits: int = 1) -> str:
    """``conclusions`` as the README's markdown table: claim, verdict, reading, smallest detectable difference."""
    lines = ["| conclusion | verdict | what the seeds show | smallest detectable difference (points) |",
             "|---|---|---|---|"]
    for r in verdicts.itertuples():
        det = (f"{r.detectable_min:.{digits}f}" + (f"–{r.detectable_max:.{digits}f}"
                                                    if round(r.detectable_max, digits) != round(r.detectable_min, digits) else "")
               if np.isfinite(r.detectable_min) else "—")
        lines.append(f"| {r.claim} | **{r.verdict}** | {r.reading or '—'} | {det} (n={r.n_seeds}) |")
    return "\n".join(lines)


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
