"""Every method the pipeline runs, one unit each: adding a method is adding a unit to ``METHODS`` (and its tests).

A unit carries what the pipeline asks of a method: its plan, its loss (the one training calls), its source.
``METHODS[name]`` is the only door: ``METHODS["direct"].plan(levels, feature_dim, share_students)``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, ClassVar

import torch.nn.functional as F

from . import losses, plans


@dataclass(frozen=True)
class Chunked:
    """Students that regress chunks of dense features: ``tree`` builds the plan (``plans.py``) of who regresses
    which chunk of whom, the teacher at its root; ``loss`` is each student's, in every training step."""
    name: str
    summary: str
    tree: Callable[[int, int], plans.Plan]  # (levels, feature_dim) -> plans.Plan
    paper: bool = False  # one of the paper's three experiments
    loss: Callable = losses.guided_loss  # (pred, feats, targets, keep, kind) -> the student's loss
    chunked: ClassVar[bool] = True

    def plan(self, levels: int = 4, feature_dim: int = 512, share_students: bool = True) -> plans.Plan:
        """Its students. ``share_students=False``: its students below S1 are its own (``plans.own_students``); a unit
        of another loss than the stock one shares none, S1 included (the same lineage would be another model)."""
        if levels < 1:
            raise ValueError(f"levels must be at least 1, got {levels}")
        plan = replace(self.tree(levels, feature_dim), experiment=self.name)  # a copy of a unit names its own
        whole = self.loss is not losses.guided_loss
        return plan if share_students and not whole else plans.own_students(plan, levels, whole)


@dataclass(frozen=True)
class EndToEnd:
    """A baseline: the n-student ensemble architecture (n students of level log2(n)+1, one output layer) trained whole,
    so only the signal differs: the labels, and the teacher's logits (Hinton's ``losses.kd_loss``) if it distils.
    Its results use the ensemble model names."""
    name: str
    summary: str
    distils: bool = True
    chunked: ClassVar[bool] = False
    paper: ClassVar[bool] = False

    def loss(self, out, labels, teacher_logits=None, temperature: float = 4.0, alpha: float = 0.9):
        """What its classifier training minimises: Hinton's loss against the source's logits, or the labels'."""
        if teacher_logits is None:
            return F.cross_entropy(out.float(), labels)
        return losses.kd_loss(out, teacher_logits, labels, temperature, alpha)

    @staticmethod
    def sizes(levels: int) -> list[int]:
        return [2 ** i for i in range(levels)]

    def previous(self, n_students: int) -> int | None:
        """The size of its own smaller model that the n-student one distils; None: the teacher."""
        return None

    def source(self, n_students: int) -> str | None:
        """Lineage key of the model it distils: the teacher's ("T"), a smaller one's, None for the labels alone."""
        if not self.distils:
            return None
        prev = self.previous(n_students)
        return "T" if prev is None else self.lineage(prev)

    def lineage(self, n_students: int) -> str:
        """Key shared by identical models, naming their checkpoints: ``kd`` and ``ta_chain`` share ``T>KD>E1``."""
        src = self.source(n_students)
        return f"Y>E{n_students}" if src is None else f"{src}>KD>E{n_students}"


class Chain(EndToEnd):
    """Mirzadeh's teacher-assistant chain: each size distilled from the next smaller one, the first from the teacher."""

    def previous(self, n_students: int) -> int | None:
        return n_students // 2 if n_students > 1 else None


METHODS: dict[str, Chunked | EndToEnd] = {m.name: m for m in (
    Chunked("direct", "every student regresses its chunk of the teacher", plans.direct, paper=True),
    Chunked("single_ta", "S1 learns the teacher; every other student its chunk of S1", plans.single_ta, paper=True),
    Chunked("hierarchical", "each level regresses halves of the level above", plans.hierarchical, paper=True),
    Chunked("dense", "the hierarchy, each student regressing its chunk of every ancestor (DGKD)", plans.dense),
    EndToEnd("labels", "the ensemble architecture trained on labels alone", distils=False),
    EndToEnd("kd", "the ensemble architecture distilled from the teacher's logits (Hinton)"),
    Chain("ta_chain", "teacher -> 1 -> 2 -> 4 -> 8 students, each distilled from the last (Mirzadeh)"),
)}

PAPER_EXPERIMENTS = tuple(n for n, m in METHODS.items() if m.paper)
EXPERIMENTS = tuple(n for n, m in METHODS.items() if m.chunked)  # every chunked-student plan
BASELINES = tuple(n for n, m in METHODS.items() if not m.chunked)
BEYOND = tuple(n for n, m in METHODS.items() if not m.paper)  # what notebook 06 adds to the paper's three

