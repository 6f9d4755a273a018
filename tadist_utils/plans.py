"""Every method the pipeline runs: its plan (who learns from whom, which slice of the parent's feature), its loss.

A plan is a list of student nodes, each naming its parent and the ``[start:stop]`` slice of the parent's dense
feature it regresses (level k: 2**(k-1) students, 512 / 2**(k-1) dims each). The three paper builders generalise
to any number of levels; ``dense`` is the paper's future work (densely guided students, Son et al., arXiv
2009.08825): each regresses its chunk of *every* ancestor.

A node's ``Lineage`` is the chain of slices from the teacher down to it: nodes with one lineage are one model,
trained once and shared (S1 everywhere; S01/S2 between single-TA and hierarchical). ``share_students=False``
marks every student below S1 as the experiment's own (``...@hierarchical``), as the paper trained them.

A method is one unit of ``METHODS`` (its tree, its loss): ``METHODS["direct"].plan(levels, feature_dim,
share_students)`` is the only door; adding a method is adding a unit (and its tests).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, ClassVar

import torch.nn.functional as F

from . import losses
from .losses import chunk_slices

TEACHER = "teacher"


@dataclass(frozen=True)
class Lineage:
    """Who a model is: its parent's lineage (None: the teacher itself), its level and slice, whether it regresses
    every ancestor (``dense``) and the experiment it belongs to alone (``own``). ``str()`` is the key written to
    history.csv and hashed into checkpoint names: ``T>L1[0:512]>L2[0:256]@hierarchical``."""
    parent: Lineage | None = None
    level: int = 0
    start: int = 0
    stop: int = 0
    dense: bool = False
    own: str = ""

    def __str__(self) -> str:
        if self.parent is None:
            return "T"
        return (f"{self.parent}>L{self.level}[{self.start}:{self.stop}]" + ("+dense" if self.dense else "")
                + (f"@{self.own}" if self.own else ""))

    @property
    def depth(self) -> int:
        """Steps from the teacher: the students of one depth form a generation."""
        return 0 if self.parent is None else self.parent.depth + 1

    @property
    def owned(self) -> bool:
        return bool(self.own) or (self.parent is not None and self.parent.owned)


TEACHER_LINEAGE = Lineage()


@dataclass(frozen=True)
class Node:
    name: str
    level: int
    parent: str
    start: int
    stop: int
    key: Lineage | None = None  # filled in by the plan
    # (ancestor, start, stop) for every model this student regresses, teacher first, parent last; default: the parent
    targets: tuple[tuple[str, int, int], ...] = ()

    def __post_init__(self):
        if not self.targets:
            object.__setattr__(self, "targets", ((self.parent, self.start, self.stop),))

    @property
    def dim(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Plan:
    experiment: str
    nodes: tuple[Node, ...]
    ensembles: dict[int, tuple[str, ...]] = field(default_factory=dict)  # n_students -> names in chunk order
    feature_dim: int = 512

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"plan {self.experiment!r} has no student {name!r}")

    def children(self, parent: str) -> list[Node]:
        return [n for n in self.nodes if n.parent == parent]

    def edges(self) -> list[tuple[str, str, int, int]]:
        """(parent, child, start, stop) for every node, in training order."""
        return [(n.parent, n.name, n.start, n.stop) for n in self.nodes]


def level_names(level: int) -> list[str]:
    """The paper's names: S1 | S01, S2 | S11..S44 | SS11..SS88; then SSS11.., one more S a level."""
    if level == 1:
        return ["S1"]
    if level == 2:
        return ["S01", "S2"]
    return ["S" * (level - 2) + f"{i}{i}" for i in range(1, 2 ** (level - 1) + 1)]


def _finish(experiment: str, nodes: list[Node], levels: int, feature_dim: int, own: str = "",
            whole: bool = False) -> Plan:
    keys = {TEACHER: TEACHER_LINEAGE}
    finished = []
    for n in nodes:
        parent = keys[n.parent]
        mine = own if own and (whole or n.parent != TEACHER) and not parent.owned else ""  # its own (and subtree)
        keys[n.name] = Lineage(parent, n.level, n.start, n.stop, len(n.targets) > 1, mine)
        finished.append(Node(n.name, n.level, n.parent, n.start, n.stop, keys[n.name], n.targets))
    ensembles = {2 ** (lv - 1): tuple(level_names(lv)) for lv in range(1, levels + 1)}
    plan = Plan(experiment, tuple(finished), ensembles, feature_dim)
    validate(plan)
    return plan


def direct(levels: int = 4, feature_dim: int = 512) -> Plan:
    """Every student learns its chunk straight from the teacher."""
    nodes = []
    for lv in range(1, levels + 1):
        for name, (a, b) in zip(level_names(lv), chunk_slices(feature_dim, 2 ** (lv - 1))):
            nodes.append(Node(name, lv, TEACHER, a, b))
    return _finish("direct", nodes, levels, feature_dim)


def single_ta(levels: int = 4, feature_dim: int = 512) -> Plan:
    """S1 learns the teacher; every other student learns its chunk of S1."""
    nodes = [Node("S1", 1, TEACHER, 0, feature_dim)]
    for lv in range(2, levels + 1):
        for name, (a, b) in zip(level_names(lv), chunk_slices(feature_dim, 2 ** (lv - 1))):
            nodes.append(Node(name, lv, "S1", a, b))
    return _finish("single_ta", nodes, levels, feature_dim)


def hierarchical(levels: int = 4, feature_dim: int = 512) -> Plan:
    """Each level learns halves of the level above: T -> S1 -> S01, S2 -> S11..S44 -> SS11..SS88."""
    nodes = [Node("S1", 1, TEACHER, 0, feature_dim)]
    for lv in range(2, levels + 1):
        parents = level_names(lv - 1)
        half = feature_dim // 2 ** (lv - 1)
        for i, name in enumerate(level_names(lv)):
            a = (i % 2) * half
            nodes.append(Node(name, lv, parents[i // 2], a, a + half))
    return _finish("hierarchical", nodes, levels, feature_dim)


def dense(levels: int = 4, feature_dim: int = 512) -> Plan:
    """The hierarchical tree, but each student regresses its chunk of the teacher *and* of every assistant above it
    (SS22: S11[64:128], S01[64:128], S1[64:128], T[64:128]); a random subset is dropped each step, as in DGKD."""
    tree = hierarchical(levels, feature_dim)
    offsets: dict[str, dict[str, int]] = {TEACHER: {}}  # name -> {ancestor: where this model's output starts in it}
    nodes = []
    for n in tree.nodes:
        here = {n.parent: n.start, **{a: o + n.start for a, o in offsets[n.parent].items()}}
        offsets[n.name] = here
        order = [TEACHER] + [m.name for m in tree.nodes if m.name in here and m.name != TEACHER]  # teacher first, parent last
        targets = tuple((a, here[a], here[a] + n.dim) for a in order)
        nodes.append(Node(n.name, n.level, n.parent, n.start, n.stop, targets=targets))
    return _finish("dense", nodes, levels, feature_dim)


def own_students(plan: Plan, levels: int, whole: bool = False) -> Plan:
    """The same tree with every student below S1 (``whole``: S1 too) keyed to this experiment alone."""
    return _finish(plan.experiment, list(plan.nodes), levels, plan.feature_dim, own=plan.experiment, whole=whole)


def validate(plan: Plan) -> None:
    """Check a plan before any training: parents come first, slices fit, chunks tile each ensemble."""
    dims = {TEACHER: plan.feature_dim}
    seen = {TEACHER}
    for n in plan.nodes:
        if n.name in seen:
            raise ValueError(f"plan {plan.experiment!r}: student {n.name!r} appears twice")
        if n.parent not in seen:
            raise ValueError(f"plan {plan.experiment!r}: {n.name!r} learns from {n.parent!r}, which is not trained before it")
        parent_dim = dims[n.parent]
        if not (0 <= n.start < n.stop <= parent_dim) or parent_dim % n.dim:
            raise ValueError(f"plan {plan.experiment!r}: slice [{n.start}:{n.stop}] of {n.parent!r} "
                             f"does not cut its {parent_dim}-d feature into equal chunks")
        for ancestor, a, b in n.targets:
            if ancestor not in seen or not (0 <= a < b <= dims[ancestor]) or b - a != n.dim:
                raise ValueError(f"plan {plan.experiment!r}: {n.name!r} cannot regress [{a}:{b}] of {ancestor!r}")
        seen.add(n.name)
        dims[n.name] = n.dim
    for size, names in plan.ensembles.items():
        total = sum(dims[name] for name in names)
        if len(names) != size or total != plan.feature_dim:
            raise ValueError(f"plan {plan.experiment!r}: ensemble of {size} concatenates to {total}-d, "
                             f"not the teacher's {plan.feature_dim}-d")


@dataclass(frozen=True)
class Chunked:
    """Students that regress chunks of dense features: ``tree`` builds the plan of who regresses
    which chunk of whom, the teacher at its root; ``loss`` is each student's, in every training step."""
    name: str
    summary: str
    tree: Callable[[int, int], Plan]  # (levels, feature_dim) -> Plan
    paper: bool = False  # one of the paper's three experiments
    loss: Callable = losses.guided_loss  # (pred, feats, targets, keep, kind) -> the student's loss
    chunked: ClassVar[bool] = True

    def plan(self, levels: int = 4, feature_dim: int = 512, share_students: bool = True) -> Plan:
        """Its students. ``share_students=False``: its students below S1 are its own (``own_students``); a unit
        of another loss than the stock one shares none, S1 included (the same lineage would be another model)."""
        if levels < 1:
            raise ValueError(f"levels must be at least 1, got {levels}")
        plan = replace(self.tree(levels, feature_dim), experiment=self.name)  # a copy of a unit names its own
        whole = self.loss is not losses.guided_loss
        return plan if share_students and not whole else own_students(plan, levels, whole)


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
    Chunked("direct", "every student regresses its chunk of the teacher", direct, paper=True),
    Chunked("single_ta", "S1 learns the teacher; every other student its chunk of S1", single_ta, paper=True),
    Chunked("hierarchical", "each level regresses halves of the level above", hierarchical, paper=True),
    Chunked("dense", "the hierarchy, each student regressing its chunk of every ancestor (DGKD)", dense),
    EndToEnd("labels", "the ensemble architecture trained on labels alone", distils=False),
    EndToEnd("kd", "the ensemble architecture distilled from the teacher's logits (Hinton)"),
    Chain("ta_chain", "teacher -> 1 -> 2 -> 4 -> 8 students, each distilled from the last (Mirzadeh)"),
)}

PAPER_EXPERIMENTS = tuple(n for n, m in METHODS.items() if m.paper)
EXPERIMENTS = tuple(n for n, m in METHODS.items() if m.chunked)  # every chunked-student plan
BASELINES = tuple(n for n, m in METHODS.items() if not m.chunked)
BEYOND = tuple(n for n, m in METHODS.items() if not m.paper)  # what notebook 06 adds to the paper's three

