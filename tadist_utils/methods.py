"""Every method the pipeline runs, one unit each: adding a method is adding a unit to ``METHODS`` (and its tests).

A unit carries what the pipeline asks of a method: its targets, its loss, its source. ``experiments.Pipeline``
asks the units; ``config.validate`` accepts their names.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import torch.nn.functional as F

from . import losses, plans


@dataclass(frozen=True)
class Chunked:
    """Students that regress chunks of dense features: ``targets`` builds the tree (``plans.py``) of who regresses
    which chunk of whom, the teacher at its root; each student's loss is ``losses.guided_loss``."""
    name: str
    summary: str
    targets: Callable[[int, int], plans.Plan]  # (levels, feature_dim) -> plans.Plan
    paper: bool = False  # one of the paper's three experiments
    chunked: ClassVar[bool] = True
    loss: ClassVar[Callable] = staticmethod(losses.guided_loss)

    def plan(self, levels: int = 4, feature_dim: int = 512, share_students: bool = True) -> plans.Plan:
        """Its students. ``share_students=False``: its students below S1 are its own (``plans.own_students``)."""
        if levels < 1:
            raise ValueError(f"levels must be at least 1, got {levels}")
        plan = self.targets(levels, feature_dim)
        return plan if share_students else plans.own_students(plan, levels)


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

    @property
    def loss(self) -> Callable:
        return losses.kd_loss if self.distils else F.cross_entropy

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


def build(experiment: str, levels: int = 4, feature_dim: int = 512, share_students: bool = True) -> plans.Plan:
    """The plan of one chunked method, by name (``Chunked.plan``)."""
    method = METHODS.get(experiment)
    if method is None or not method.chunked:
        raise ValueError(f"unknown experiment {experiment!r}; choose from {', '.join(EXPERIMENTS)}")
    return method.plan(levels, feature_dim, share_students)
