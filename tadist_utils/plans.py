"""Distillation plans: who learns from whom, and which slice of the parent's feature.

A plan is a list of student nodes. Each node names its parent (``"teacher"`` or another node) and
the contiguous ``[start:stop]`` slice of the parent's dense feature it regresses. Ensembles list
their students in chunk order. The three builders reproduce SPEC.md's trees and generalise to any
number of levels (level k has 2**(k-1) students, each regressing a 512 / 2**(k-1) chunk).

Every node also has a *lineage key*: the chain of slices from the teacher down to it. Two nodes
with the same key are the same model trained the same way, so it is trained once and shared
(S1 across all experiments; S01 and S2 between single-TA and hierarchical).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .losses import chunk_slices

TEACHER = "teacher"
EXPERIMENTS = ("direct", "single_ta", "hierarchical")


@dataclass(frozen=True)
class Node:
    name: str
    level: int
    parent: str
    start: int
    stop: int
    key: str = ""  # lineage key, filled in by the plan

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


def _finish(experiment: str, nodes: list[Node], levels: int, feature_dim: int) -> Plan:
    keys = {TEACHER: "T"}
    finished = []
    for n in nodes:
        key = f"{keys[n.parent]}>L{n.level}[{n.start}:{n.stop}]"
        keys[n.name] = key
        finished.append(Node(n.name, n.level, n.parent, n.start, n.stop, key))
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


BUILDERS = {"direct": direct, "single_ta": single_ta, "hierarchical": hierarchical}


def build(experiment: str, levels: int = 4, feature_dim: int = 512) -> Plan:
    if experiment not in BUILDERS:
        raise ValueError(f"unknown experiment {experiment!r}; choose from {', '.join(BUILDERS)}")
    if levels < 1:
        raise ValueError(f"levels must be at least 1, got {levels}")
    return BUILDERS[experiment](levels, feature_dim)


def validate(plan: Plan, feature_dims: dict[str, int] | None = None) -> None:
    """Check a plan before any training: parents come first, slices fit, chunks tile each ensemble."""
    dims = {TEACHER: plan.feature_dim, **(feature_dims or {})}
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
        seen.add(n.name)
        dims[n.name] = n.dim
    for size, names in plan.ensembles.items():
        total = sum(dims[name] for name in names)
        if len(names) != size or total != plan.feature_dim:
            raise ValueError(f"plan {plan.experiment!r}: ensemble of {size} concatenates to {total}-d, "
                             f"not the teacher's {plan.feature_dim}-d")
