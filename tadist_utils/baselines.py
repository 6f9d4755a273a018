"""Baselines that place the chunked ensembles against methods people already know.

Each baseline (a ``methods.METHODS`` entry without a plan) trains the *same architecture* as a chunked
ensemble (n students of level log2(n)+1, concatenated, one output layer) end to end on cross-entropy,
so only the training signal differs:

* ``labels``   - labels alone, no teacher.
* ``kd``       - Hinton et al. (2015) logit distillation from the teacher (``losses.kd_loss``).
* ``ta_chain`` - Mirzadeh et al. (2020) teacher-assistant chain: teacher -> 1 -> 2 -> 4 -> 8 students,
  each distilled from the previous, larger-featured one. Its first link is the ``kd`` 1-student model.

Results use the ensemble model names (``ensemble_1`` .. ``ensemble_8``), so tables and plots treat a
baseline like a fourth, fifth and sixth experiment.
"""
from __future__ import annotations

from .methods import METHODS


def sizes(levels: int) -> list[int]:
    """Ensemble sizes 1, 2, 4, ... for ``levels`` levels."""
    return [2 ** (lv - 1) for lv in range(1, levels + 1)]


def source(baseline: str, n_students: int) -> str | None:
    """Who the model distils from: None (labels), 'teacher', or the lineage key of the previous link."""
    method = METHODS[baseline]
    if method.source is None:
        return None
    if method.source == "teacher" or n_students == 1:
        return "teacher"
    return lineage(baseline, n_students // 2)


def lineage(baseline: str, n_students: int) -> str:
    """Key shared by identical models: ``kd`` and ``ta_chain`` agree on the 1-student link (``T>KD>E1``)."""
    src = source(baseline, n_students)
    if src is None:
        return f"Y>E{n_students}"
    return ("T" if src == "teacher" else src) + f">{METHODS[baseline].loss.upper()}>E{n_students}"
