"""Every method the pipeline runs, in one table: adding a method is adding one entry here (and its tests).

A method is three choices:

* ``plan``   - the builder of its chunked-student tree (``plans.py``): who regresses which chunk of whom.
  ``None`` for an end-to-end baseline, which trains the same ensemble architecture as a whole.
* ``loss``   - ``"feature"``: each student regresses its chunk of its parent's dense feature with
  ``Config.feature_loss`` (``losses.FEATURE_LOSSES``); ``"ce"``: labels alone; ``"kd"``: Hinton's logit
  distillation plus labels (``losses.kd_loss``).
* ``source`` - who it learns from: ``"teacher"``; ``"previous"``, the method's own next-smaller ensemble
  (the teacher-assistant chain, whose first link learns from the teacher); ``None``, nobody (labels).

``experiments.Pipeline.run_experiment`` reads this table; ``config.validate`` accepts its names.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import plans
from .plans import Plan


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    plan: Callable[[int, int], Plan] | None = None  # (levels, feature_dim) -> Plan
    loss: str = "feature"
    source: str | None = "teacher"
    paper: bool = False  # one of the paper's three experiments

    @property
    def chunked(self) -> bool:
        return self.plan is not None


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("direct", "every student regresses its chunk of the teacher", plans.direct, paper=True),
    Method("single_ta", "S1 learns the teacher; every other student its chunk of S1", plans.single_ta, paper=True),
    Method("hierarchical", "each level regresses halves of the level above", plans.hierarchical, paper=True),
    Method("dense", "the hierarchy, each student regressing its chunk of every ancestor (DGKD)", plans.dense),
    Method("labels", "the ensemble architecture trained on labels alone", loss="ce", source=None),
    Method("kd", "the ensemble architecture distilled from the teacher's logits (Hinton)", loss="kd"),
    Method("ta_chain", "teacher -> 1 -> 2 -> 4 -> 8 students, each distilled from the last (Mirzadeh)", loss="kd",
           source="previous"),
)}

PAPER_EXPERIMENTS = tuple(n for n, m in METHODS.items() if m.paper)
EXPERIMENTS = tuple(n for n, m in METHODS.items() if m.chunked)  # every chunked-student plan
BASELINES = tuple(n for n, m in METHODS.items() if not m.chunked)
BEYOND = tuple(n for n, m in METHODS.items() if not m.paper)  # what notebook 06 adds to the paper's three


def build(experiment: str, levels: int = 4, feature_dim: int = 512, share_students: bool = True) -> Plan:
    """The plan of one chunked method. ``share_students=False``: its students below S1 are its own (``plans.py``)."""
    method = METHODS.get(experiment)
    if method is None or not method.chunked:
        raise ValueError(f"unknown experiment {experiment!r}; choose from {', '.join(EXPERIMENTS)}")
    if levels < 1:
        raise ValueError(f"levels must be at least 1, got {levels}")
    plan = method.plan(levels, feature_dim)
    return plan if share_students else plans.own_students(plan, levels)
