"""Every family of paired comparisons this project tests, declared once, here, before any study is read.

Notebook 05 (``stats.conclusions``/``stats.comparisons``), notebook 06 (``stats.family_comparisons``), the study
tables written beside a results folder (``study_tables``: ``claims.csv``, ``verdicts.csv``) and the README's tables
built from those all take their families from ``FAMILIES``; nothing else groups comparisons for Holm's
correction, so a p-value can only be quoted with the family it was corrected in. A comparison reads "``better``
has a higher test accuracy than ``worse``" (a paired, two-sided t-test on the seeds both have; its sign says
which way a significant difference goes).

The paper's three conclusions are encoded as its Results section states them (the sentences are in
``statement``; the numbers behind them are ``results.PAPER_ACCURACY``):

``C1``  "The best accuracies are obtained when all the ensembles are directly trained on the teacher" / "both
        single TA as well as hierarchal TAs resulted in lowered accuracies as compared to direct training":
        direct > single TA and direct > hierarchical, at 2, 4 and 8 students (6 comparisons; with shared S01/S2
        the two 2-student ones compare direct with the very same model, and the second is left out of the
        family as a duplicate, so 5).
``C2``  "In hierarchal training, the accuracies of the ensemble models decrease as we keep increasing the
        number of Teaching Assistants": within the hierarchy only, 2 > 4 and 4 > 8 students (2 comparisons). The
        paper says this of the hierarchy alone; its own single-TA numbers rise from 4 to 8 students (83.72 ->
        83.94), so "in every experiment" would misquote it.
``C3``  "Comparing the hierarchal training with ... the single student (TA) resulted in decrease in accuracies
        for the 2 students as well as 4 student models whereas the 8-student model trained through TA resulted
        in better accuracy": hierarchical > single TA at 2 and at 4, single TA > hierarchical at 8, each tested in
        the paper's direction (a directional claim, not an equivalence test: no margin is assumed). With shared
        S01/S2 the 2-student comparison is one model against itself and cannot be tested.

Beyond the paper, notebook 06 asks one exploratory question, corrected as one family:

``B1``  every pair of dense, hierarchical, direct, kd and labels at 1, 2, 4 and 8 students (40 comparisons;
        those whose two sides are the same model by construction, such as S1 in every chunked experiment, are
        left out: 37 in a study with all five).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass


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
    """Comparisons corrected together with Holm's method. ``claim``: a statement with a verdict (the paper's
    conclusions); otherwise exploratory (a table of outcomes, no verdict). ``requires``: the (experiment,
    students) a verdict cannot do without (absent: "not run"); other missing sizes are just not compared."""
    key: str
    title: str
    statement: str
    comparisons: tuple[Comparison, ...]
    claim: bool = True
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
           _pairs(("dense", "hierarchical", "direct", "kd", "labels"), (1, 2, 4, 8)), claim=False),
)}
PAPER_FAMILIES = ("C1", "C2", "C3")
BEYOND_FAMILIES = ("B1",)


def family(key: str) -> Family:
    """The declared family ``key`` (C1, C2, C3, B1); a KeyError names the declared ones."""
    if key not in FAMILIES:
        raise KeyError(f"no family {key!r} is declared; declared: {', '.join(FAMILIES)} (analysis/claims.py)")
    return FAMILIES[key]
