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

Significance is the confidence interval of the paired difference excluding 0 (equivalent to the
two-sided paired t-test at ``1 - level``). Each comparison "x > y" has one outcome:

``supports``                 CI entirely above 0 (x significantly better);
``contradicts``              CI entirely below 0 (y significantly better);
``unclear``                  CI contains 0, or fewer than 2 common seeds (no CI);
``equal by construction``    every paired difference is exactly 0 (the same model in both experiments,
                             e.g. the 2-student ensembles of single_ta and hierarchical share S01/S2).

A conclusion made of several comparisons is then

``holds``          every comparison supports it;
``partly holds``   some support it, none contradicts it;
``does not hold``  some comparison contradicts it (significantly, in the opposite direction);
``inconclusive``   none is significant either way (always the case with a single seed);
``not run``        an experiment (or ensemble size) the conclusion is about is absent from the results.

A mean difference in the wrong direction that is not significant makes a comparison ``unclear``, not
``contradicts``: with a handful of seeds that is noise, and is reported as such.
The third conclusion ("a single TA beats the hierarchy only for 8 students") has its own rule, see
``conclusions``.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats as _st

from .baselines import BASELINES
from .plans import EXPERIMENTS, PAPER_EXPERIMENTS
from .results import PAPER_ACCURACY

KNOWN_ORDER = ["teacher", *EXPERIMENTS, *BASELINES]
LEVEL = 0.95

SUPPORTS, CONTRADICTS, UNCLEAR, EQUAL = "supports", "contradicts", "unclear", "equal by construction"
HOLDS, PARTLY, NOT_HOLD, INCONCLUSIVE, NOT_RUN = "holds", "partly holds", "does not hold", "inconclusive", "not run"

CLAIMS = {
    1: "learning directly from the teacher gives the best ensembles (direct > single TA and direct > hierarchical "
       "for 2, 4 and 8 students)",
    2: "accuracy falls as the number of students grows (2 > 4 > 8 students, in each experiment)",
    3: "a single TA beats the hierarchy only for 8 students (single TA > hierarchical for 8, not for 2 or 4)",
}


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


def _pair(d: pd.DataFrame, a: tuple[str, str], b: tuple[str, str], level: float) -> dict:
    """Paired statistics of (experiment, model) a minus (experiment, model) b over their common seeds."""
    va = d[(d.experiment == a[0]) & (d.model == a[1])].set_index("seed").value
    vb = d[(d.experiment == b[0]) & (d.model == b[1])].set_index("seed").value
    seeds = sorted(set(va.index) & set(vb.index), key=str)
    x, y = va.loc[seeds].to_numpy(float), vb.loc[seeds].to_numpy(float)
    diff = x - y
    s = _describe(diff, level)
    n = s["n"]
    identical = bool(n) and bool(np.all(diff == 0))
    if n < 2:
        t_stat = p = float("nan")
    elif identical:
        t_stat, p = 0.0, 1.0  # ttest_rel gives 0/0 = NaN here; no evidence of any difference
    else:
        t_stat, p = (float(v) for v in _st.ttest_rel(x, y))
    return dict(n=n, seeds=tuple(seeds), mean_a=float(x.mean()) if n else float("nan"),
                mean_b=float(y.mean()) if n else float("nan"), mean_diff=s["mean"], sd_diff=s["sd"],
                sem_diff=s["sem"], ci=s["ci"], ci_low=s["ci_low"], ci_high=s["ci_high"], t=t_stat, p=p,
                wins=int((diff > 0).sum()), losses=int((diff < 0).sum()), ties=int((diff == 0).sum()),
                identical=identical)


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


def outcome(row) -> str:
    """supports / contradicts / unclear / equal by construction, for a row of ``paired`` (claim: a > b)."""
    if row["identical"]:
        return EQUAL
    if row["n"] >= 2 and row["ci_low"] > 0:
        return SUPPORTS
    if row["n"] >= 2 and row["ci_high"] < 0:
        return CONTRADICTS
    return UNCLEAR


def paired(results: pd.DataFrame, a: str, b: str, metric: str = "test_accuracy", dataset: str | None = None,
           level: float = LEVEL) -> pd.DataFrame:
    """Experiment a minus experiment b for every ensemble size present in both, paired on seed.

    Columns: a, b, model, students, n (common seeds), seeds, mean_a, mean_b, mean_diff (a - b), sd_diff,
    sem_diff, ci (half-width), ci_low, ci_high, t, p (``scipy.stats.ttest_rel``; NaN when n < 2, 1 when every
    difference is exactly 0), wins (seeds where a > b), losses, ties, identical (all differences exactly 0),
    outcome (claim a > b: supports / contradicts / unclear / equal by construction).
    """
    d = per_seed(results, metric, dataset)
    ens = d[_is_ensemble(d.model)]
    models = set(ens[ens.experiment == a].model) & set(ens[ens.experiment == b].model)
    rows = [dict(a=a, b=b, model=m, students=_students(m), **_pair(ens, (a, m), (b, m), level))
            for m in sorted(models, key=_students)]
    out = pd.DataFrame(rows, columns=["a", "b", "model", "students", "n", "seeds", "mean_a", "mean_b", "mean_diff",
                                      "sd_diff", "sem_diff", "ci", "ci_low", "ci_high", "t", "p", "wins", "losses",
                                      "ties", "identical"])
    out["outcome"] = [outcome(r) for _, r in out.iterrows()] if len(out) else pd.Series(dtype=str)
    return out


def paired_all(results: pd.DataFrame, experiments=None, metric: str = "test_accuracy", dataset: str | None = None,
               level: float = LEVEL) -> pd.DataFrame:
    """``paired`` for every pair (a, b) of ``experiments`` (a before b in the list; default: every experiment
    with ensembles, in the usual order)."""
    if experiments is None:
        d = per_seed(results, metric, dataset)
        experiments = experiment_order(d[_is_ensemble(d.model)].experiment)
    parts = [paired(results, a, b, metric, dataset, level) for a, b in itertools.combinations(experiments, 2)]
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else paired(results, "", "", metric, dataset, level)


# ------------------------------------------------------------------------- the paper's conclusions
def _comparison(d, conclusion: int, a: tuple[str, str], b: tuple[str, str], level: float) -> dict:
    label = (f"{a[0]} > {b[0]} ({_students(a[1])} students)" if a[1] == b[1]
             else f"{a[0]}: {_students(a[1])} > {_students(b[1])} students")
    row = dict(conclusion=conclusion, comparison=label, exp_a=a[0], model_a=a[1], exp_b=b[0], model_b=b[1],
               **_pair(d, a, b, level))
    row["outcome"] = outcome(row)
    return row


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
                level: float = LEVEL) -> pd.DataFrame:
    """Every paired comparison (claim: a > b) behind the three conclusions, with its outcome.

    1: direct vs single_ta and direct vs hierarchical for 2, 4 and 8 students (1 student is S1 in every
       experiment, the same model by construction, so it is left out);
    2: ensemble_2 vs ensemble_4 and ensemble_4 vs ensemble_8 within each of the three experiments;
    3: single_ta vs hierarchical for 2, 4 and 8 students.
    Comparisons whose models are absent are left out (``conclusions`` reports them as not run).
    """
    d = per_seed(results, metric, dataset)
    d = d[_is_ensemble(d.model)]
    present = set(zip(d.experiment, d.model))
    rows = []
    for conclusion, a, b in _plan():
        if a in present and b in present:
            rows.append(_comparison(d, conclusion, a, b, level))
    cols = ["conclusion", "comparison", "exp_a", "model_a", "exp_b", "model_b", "n", "seeds", "mean_a", "mean_b",
            "mean_diff", "sd_diff", "sem_diff", "ci", "ci_low", "ci_high", "t", "p", "wins", "losses", "ties",
            "identical", "outcome"]
    return pd.DataFrame(rows, columns=cols)


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
    """single TA significantly better for 8 and not significantly better for 2 or 4 (equal, unclear or worse).

    does not hold: significantly worse for 8, or significantly better for 2 or 4 (so not "only for 8");
    holds: significantly better for 8 and none of the former; inconclusive otherwise.
    """
    at8 = rows[rows.model_a == "ensemble_8"].outcome.iloc[0]
    smaller = set(rows[rows.model_a != "ensemble_8"].outcome)
    if at8 == CONTRADICTS or SUPPORTS in smaller:
        return NOT_HOLD
    return HOLDS if at8 == SUPPORTS else INCONCLUSIVE


def _fmt(x: float, signed: bool = True, digits: int = 2) -> str:
    return "nan" if x is None or not np.isfinite(x) else (f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}")


def _evidence(rows: pd.DataFrame, level: float) -> str:
    parts = []
    for _, r in rows.iterrows():
        if r.identical:
            parts.append(f"{r.comparison}: identical on all {r.n} seed(s) (equal by construction)")
            continue
        ci = (f"{int(level * 100)}% CI [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}], p={r.p:.3g}" if r.n >= 2
              else "no CI (1 seed)")
        parts.append(f"{r.comparison}: {_fmt(r.mean_diff)} ({ci}, wins {r.wins}/{r.n}) -> {r.outcome}")
    return "; ".join(parts)


def conclusions(results: pd.DataFrame, metric: str = "test_accuracy", dataset: str | None = None,
                level: float = LEVEL) -> pd.DataFrame:
    """The paper's three conclusions checked across seeds: one row each.

    Columns: conclusion (1-3), claim, verdict, n_seeds (fewest common seeds over its comparisons), supports,
    contradicts, unclear, equal (counts of comparison outcomes) and evidence (every paired difference with its
    interval, p-value and wins). Verdicts for 1 and 2: see the module docstring; 3 holds when single TA is
    significantly better than the hierarchy for 8 students and not significantly better for 2 or 4 (the
    2-student ensembles are identical by construction here, which counts as "not better"), does not hold when
    it is significantly worse for 8 or significantly better for 2 or 4, and is inconclusive otherwise.
    A conclusion is "not run" when an experiment it is about is missing from the results (conclusions 1 and 2:
    any of direct, single_ta, hierarchical; 3: single_ta or hierarchical with 8 students), or when none of its
    comparisons can be made; ensemble sizes missing from an experiment are otherwise just not compared.
    """
    d = per_seed(results, metric, dataset)
    d = d[_is_ensemble(d.model)]
    comp = comparisons(results, metric, dataset, level)
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
        if missing or r.empty:
            verdict = NOT_RUN
            evidence = "missing: " + ", ".join(missing or ["every compared ensemble"])
        else:
            verdict = _verdict_3(r) if c == 3 else _verdict(r.outcome)
            evidence = _evidence(r, level)
        rows.append(dict(conclusion=c, claim=CLAIMS[c], verdict=verdict,
                         n_seeds=int(r.n.min()) if len(r) else 0, **counts, evidence=evidence))
    return pd.DataFrame(rows)


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
    col = {n: f"{n} student{'s' * (n > 1)}" for n in sizes}
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
