"""The paper's conclusions (C1-C3, in its words) and every family of comparisons tested (B1: exploratory, no
verdict), declared once, before any study is read; Holm's correction runs within a family, and only there. A
comparison reads "``better`` has a higher test accuracy than ``worse``" (two-sided paired tests).

A claim's verdict: ``holds`` (every comparison supports it), ``partly holds`` (some do, none contradicts, or one
compares a model with itself), ``does not hold`` (one contradicts it significantly), ``inconclusive`` (none
significant: always so with one seed), ``not run`` (an experiment or size it needs is absent); from the t-tests and
from the sign-flip tests (``rests_on`` says when they differ).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import pandas as pd

from .stats import (CONTRADICTS, EQUAL, LEVEL, SUPPORTS, UNCLEAR, correct_family, is_ensemble, pair_stats,
                    per_seed)


@dataclass(frozen=True)
class Comparison:
    """``better`` > ``worse``: each an (experiment, number of students)."""
    better: tuple[str, int]
    worse: tuple[str, int]

    @property
    def label(self) -> str:
        (ea, na), (eb, nb) = self.better, self.worse
        if ea == eb:
            return f"{ea}: {na} > {nb} students"
        return f"{ea} > {eb} ({na} students)" if na == nb else f"{ea} ({na}) > {eb} ({nb} students)"


@dataclass(frozen=True)
class Family:
    """Comparisons corrected together with Holm's method; ``requires``: the (experiment, students) a verdict cannot
    do without (absent: "not run"), other missing sizes are just not compared."""
    key: str
    title: str
    statement: str
    comparisons: tuple[Comparison, ...]
    requires: tuple[tuple[str, int], ...] = ()


def _pairs(experiments, sizes) -> tuple[Comparison, ...]:
    return tuple(Comparison((a, n), (b, n)) for a, b in itertools.combinations(experiments, 2) for n in sizes)


FAMILIES: dict[str, Family] = {f.key: f for f in (
    Family("C1", "learning directly from the teacher gives the best ensembles (direct > single TA and direct > "
                 "hierarchical at 2, 4 and 8 students)",
           "The best accuracies are obtained when all the ensembles are directly trained on the teacher.",
           tuple(Comparison(("direct", n), (other, n)) for n in (2, 4, 8) for other in ("single_ta", "hierarchical"))),
    Family("C2", "in the hierarchy, accuracy falls as the number of students grows (hierarchical 2 > 4 > 8 "
                 "students)",
           "In hierarchal training, the accuracies of the ensemble models decrease as we keep increasing the number "
           "of Teaching Assistants.",
           (Comparison(("hierarchical", 2), ("hierarchical", 4)),
            Comparison(("hierarchical", 4), ("hierarchical", 8)))),
    Family("C3", "the hierarchy beats a single TA at 2 and 4 students, a single TA beats the hierarchy at 8",
           "Comparing the hierarchal training with training 2 student, 4 student and 8 student models on the single "
           "student (TA) resulted in decrease in accuracies for the 2 students as well as 4 student models whereas "
           "the 8-student model trained through TA resulted in better accuracy.",
           (Comparison(("hierarchical", 2), ("single_ta", 2)), Comparison(("hierarchical", 4), ("single_ta", 4)),
            Comparison(("single_ta", 8), ("hierarchical", 8))),
           requires=(("single_ta", 8), ("hierarchical", 8))),
    Family("B1", "every pair of dense, hierarchical, direct, kd and labels at 1, 2, 4 and 8 students (exploratory)",
           "Does dense guidance help, and how do the chunked ensembles compare with the usual methods? (notebook 06)",
           _pairs(("dense", "hierarchical", "direct", "kd", "labels"), (1, 2, 4, 8))),
)}
PAPER_FAMILIES = ("C1", "C2", "C3")  # the claims with a verdict; B1 is exploratory


def family(key: str) -> Family:
    """The declared family ``key`` (C1, C2, C3, B1); a KeyError names the declared ones."""
    if key not in FAMILIES:
        raise KeyError(f"no family {key!r} is declared; declared: {', '.join(FAMILIES)} (analysis/claims.py)")
    return FAMILIES[key]


HOLDS, PARTLY, NOT_HOLD, INCONCLUSIVE, NOT_RUN = "holds", "partly holds", "does not hold", "inconclusive", "not run"
COLUMNS = ["conclusion", "family_key", "comparison", "exp_a", "model_a", "exp_b", "model_b", "n", "seeds", "mean_a",
           "mean_b", "mean_diff", "sd_diff", "sem_diff", "ci", "ci_low", "ci_high", "min_diff", "max_diff", "t", "p",
           "p_perm", "wins", "losses", "ties", "identical", "duplicate_of", "in_family", "family", "p_holm",
           "p_perm_holm", "detectable", "seeds_needed", "outcome", "outcome_perm", "decided", "correction"]


# ------------------------------------------------------------------------- the declared families, run
def family_comparisons(results: pd.DataFrame, key: str, metric: str = "test_accuracy", dataset: str | None = None,
                       level: float = LEVEL, share_students: bool = True) -> pd.DataFrame:
    """The comparisons of one declared family (``FAMILIES[key]``) that this study can make, Holm-corrected
    together: ``COLUMNS`` (``stats.correct_family`` documents them; ``comparison`` reads "better > worse").
    Comparisons whose models are absent are left out."""
    d = per_seed(results, metric, dataset)
    d = d[is_ensemble(d.model)]
    present = set(zip(d.experiment, d.model))
    rows = []
    for c in family(key).comparisons:
        a, b = (c.better[0], f"ensemble_{c.better[1]}"), (c.worse[0], f"ensemble_{c.worse[1]}")
        if a in present and b in present:
            rows.append(dict(conclusion=int(key[1:]) if key.startswith("C") else 0, family_key=key,
                             comparison=c.label, exp_a=a[0], model_a=a[1], exp_b=b[0], model_b=b[1],
                             **pair_stats(d, a, b, level, share_students)))
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    return correct_family(pd.DataFrame(rows), level)[COLUMNS]


def comparisons(results: pd.DataFrame, metric: str = "test_accuracy", dataset: str | None = None,
                level: float = LEVEL, share_students: bool = True, families=PAPER_FAMILIES) -> pd.DataFrame:
    """Every paired comparison (claim: a > b) of the declared ``families`` (default: the paper's C1-C3, column
    ``conclusion`` 1-3), each family Holm-corrected on its own (``family_comparisons``)."""
    parts = [family_comparisons(results, k, metric, dataset, level, share_students) for k in families]
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)


# ------------------------------------------------------------------------- verdicts
def _runnable(d: pd.DataFrame, key: str) -> bool:
    """The results hold every experiment the family compares, and its ``Family.requires`` ensembles."""
    f, present = family(key), set(zip(d.experiment, d.model))
    return ({e for c in f.comparisons for e in (c.better[0], c.worse[0])} <= set(d.experiment)
            and all((e, f"ensemble_{n}") in present for e, n in f.requires))


def verdict(outcomes) -> str:
    """holds / partly holds / does not hold / inconclusive from a claim's comparison outcomes (module doc)."""
    outcomes = list(outcomes)
    tests = [o for o in outcomes if o != EQUAL]
    if not tests:
        return INCONCLUSIVE
    if CONTRADICTS in tests:
        return NOT_HOLD
    if all(o == SUPPORTS for o in tests):
        return PARTLY if EQUAL in outcomes else HOLDS
    return PARTLY if SUPPORTS in tests else INCONCLUSIVE


def regime(results: pd.DataFrame, manifest: dict | None = None, dataset: str | None = None) -> dict:
    """What a study's verdicts come from (profile, data, epochs, device from ``manifest.json``; the teacher's
    accuracy and the seeds from the results), and ``text``, all of it in one line."""
    m = manifest or {}
    cfg, data = m.get("config") or {}, m.get("dataset") or {}
    t = per_seed(results, "test_accuracy", dataset)
    t = t[t.model == "teacher"]
    out = dict(profile=cfg.get("profile", ""), dataset=data.get("name", cfg.get("dataset", "")),
               train_images=data.get("train", cfg.get("train_size")), val_images=data.get("val", cfg.get("val_size")),
               test_images=data.get("test", cfg.get("test_size")), teacher_epochs=cfg.get("teacher_epochs"),
               student_epochs=cfg.get("student_epochs"), finetune_epochs=cfg.get("finetune_epochs"),
               device=(m.get("environment") or {}).get("device", ""),
               teacher_accuracy=float(t.value.mean()) if len(t) else float("nan"), seeds=int(t.seed.nunique()))
    images = (f"{out['train_images']:,} train / {out['test_images']:,} test images"
              if isinstance(out["train_images"], int) and isinstance(out["test_images"], int) else "images unrecorded")
    epochs = (f"epochs: teacher {out['teacher_epochs']}, students {out['student_epochs']}, fine-tuning "
              f"{out['finetune_epochs']}" if out["teacher_epochs"] is not None else "epochs unrecorded")
    out["text"] = (f"profile {out['profile'] or 'unrecorded'}, {out['dataset'] or 'dataset unrecorded'}, {images}, "
                   f"{epochs}; teacher {out['teacher_accuracy']:.2f}% test (mean of {out['seeds']} seed(s))")
    return out


def conclusions(results: pd.DataFrame, metric: str = "test_accuracy", dataset: str | None = None,
                level: float = LEVEL, share_students: bool = True, manifest: dict | None = None) -> pd.DataFrame:
    """The paper's three conclusions checked across seeds: one row each (families C1-C3), with the verdict from
    the t-tests (``verdict``) and from the sign-flip tests (``verdict_perm``), what it ``rests_on`` when they
    differ, outcome counts, family size, detectable range, seeds needed, smallest Holm p of each test, the
    ``regime`` (pass the folder's ``manifest``). "not run": an experiment or size it needs is missing."""
    d = per_seed(results, metric, dataset)
    d = d[is_ensemble(d.model)]
    comp = comparisons(results, metric, dataset, level, share_students)
    where = regime(results, manifest, dataset)["text"]
    rows = []
    for key in PAPER_FAMILIES:
        c, r = int(key[1:]), comp[comp.family_key == key]
        counts = {k: int((r.outcome == v).sum()) for k, v in
                  (("supports", SUPPORTS), ("contradicts", CONTRADICTS), ("unclear", UNCLEAR), ("equal", EQUAL))}
        tests = r[r.in_family.astype(bool)]
        fam, n = (int(r.family.iloc[0]), int(r.n.min())) if len(r) else (0, 0)
        v, vp = (NOT_RUN, NOT_RUN) if r.empty or not _runnable(d, key) else (verdict(r.outcome), verdict(r.outcome_perm))
        decided = v == vp and v not in (NOT_RUN, INCONCLUSIVE)  # both tests agree on a verdict that says something
        if v in (NOT_RUN, INCONCLUSIVE) and v == vp:
            rests = "nothing decided" if v == INCONCLUSIVE else ""
        else:
            rests = "both tests" if decided else (f"the t-test alone (normal differences assumed): the exact sign-flip "
                                                  f"test reads '{vp}' (its smallest possible p with {n} seeds is "
                                                  f"{2 / 2 ** n:.3g})")
        rows.append(dict(conclusion=c, family_key=key, claim=family(key).title, statement=family(key).statement,
                         verdict=v, verdict_perm=vp, decided=decided, rests_on=rests, n_seeds=n,
                         p_perm_floor=2 / 2 ** n if n > 1 else float("nan"), **counts, family_size=fam,
                         correction=f"Holm over the {fam} test(s) of {key} (not identical by construction, no "
                                    f"duplicate; family-wise at most {1 - level:.0%} under each test's assumptions; "
                                    "statsmodels multipletests)",
                         detectable_min=float(tests.detectable.min()), detectable_max=float(tests.detectable.max()),
                         seeds_needed=float(tests.seeds_needed.max()), p_min=float(tests.p_holm.min()),
                         p_perm_min=float(tests.p_perm_holm.min()), regime=where))
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------- planning
def seed_plan(results: pd.DataFrame, families=PAPER_FAMILIES, metric: str = "test_accuracy",
              dataset: str | None = None, share_students: bool = True) -> pd.DataFrame:
    """For every test of the declared ``families``: n, the per-seed spread, family size m, alpha (0.05 / m), the
    80%-power detectable difference with n seeds and the seeds needed for 1 point (``correct_family``'s columns).
    A family needs its largest ``seeds_needed`` for every comparison to be found."""
    c = comparisons(results, metric, dataset, share_students=share_students, families=families)
    c = c[c.in_family.astype(bool)]
    return pd.DataFrame(dict(family=c.family_key, comparison=c.comparison, n=c.n.astype(int), sd_diff=c.sd_diff,
                             m=c.family.astype(int), alpha=(1 - LEVEL) / c.family.astype(float),
                             detectable=c.detectable, seeds_needed=c.seeds_needed)).reset_index(drop=True)
