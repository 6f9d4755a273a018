"""The paper's three conclusions checked across seeds: their paired comparisons (``paired_tests``), one verdict each.

A conclusion made of several comparisons (each with an outcome, see ``paired_tests``) is then

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

import numpy as np
import pandas as pd

from ..methods import PAPER_EXPERIMENTS
from .paired_tests import CONTRADICTS, EQUAL, SUPPORTS, UNCLEAR, _correct, _pair
from .seed_summary import LEVEL, _is_ensemble, _students, per_seed

HOLDS, PARTLY, NOT_HOLD, INCONCLUSIVE, NOT_RUN = "holds", "partly holds", "does not hold", "inconclusive", "not run"

CLAIMS = {
    1: "learning directly from the teacher gives the best ensembles (direct > single TA and direct > hierarchical "
       "for 2, 4 and 8 students)",
    2: "accuracy falls as the number of students grows (2 > 4 > 8 students, in each experiment)",
    3: "a single TA beats the hierarchy only for 8 students (single TA > hierarchical for 8, not for 2 or 4)",
}


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
