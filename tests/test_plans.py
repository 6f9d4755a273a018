"""The paper's three distillation trees and the densely guided one, edge by edge, and plan validation."""
import pytest

from tadist_utils import plans
from tadist_utils.plans import Node, Plan

SS = [f"SS{i}{i}" for i in range(1, 9)]


def test_direct_tree():
    p = plans.METHODS["direct"].plan()
    assert p.edges() == [
        ("teacher", "S1", 0, 512),
        ("teacher", "S01", 0, 256), ("teacher", "S2", 256, 512),
        ("teacher", "S11", 0, 128), ("teacher", "S22", 128, 256), ("teacher", "S33", 256, 384), ("teacher", "S44", 384, 512),
    ] + [("teacher", n, 64 * i, 64 * (i + 1)) for i, n in enumerate(SS)]


def test_single_ta_tree():
    p = plans.METHODS["single_ta"].plan()
    assert p.edges()[:3] == [("teacher", "S1", 0, 512), ("S1", "S01", 0, 256), ("S1", "S2", 256, 512)]
    assert p.edges()[3:7] == [("S1", f"S{i}{i}", 128 * (i - 1), 128 * i) for i in range(1, 5)]
    assert p.edges()[7:] == [("S1", n, 64 * i, 64 * (i + 1)) for i, n in enumerate(SS)]


def test_hierarchical_tree():
    p = plans.METHODS["hierarchical"].plan()
    assert p.edges() == [
        ("teacher", "S1", 0, 512),
        ("S1", "S01", 0, 256), ("S1", "S2", 256, 512),
        ("S01", "S11", 0, 128), ("S01", "S22", 128, 256), ("S2", "S33", 0, 128), ("S2", "S44", 128, 256),
        ("S11", "SS11", 0, 64), ("S11", "SS22", 64, 128), ("S22", "SS33", 0, 64), ("S22", "SS44", 64, 128),
        ("S33", "SS55", 0, 64), ("S33", "SS66", 64, 128), ("S44", "SS77", 0, 64), ("S44", "SS88", 64, 128),
    ]


def test_ensembles_in_chunk_order():
    for name in plans.EXPERIMENTS:
        p = plans.METHODS[name].plan()
        assert p.ensembles == {1: ("S1",), 2: ("S01", "S2"), 4: ("S11", "S22", "S33", "S44"), 8: tuple(SS)}


def test_lineage_keys_share_identical_models_only():
    d, s, h = (plans.METHODS[e].plan() for e in ("direct", "single_ta", "hierarchical"))
    assert d.node("S1").key == s.node("S1").key == h.node("S1").key        # S1 trained once
    assert s.node("S01").key == h.node("S01").key                          # both halves of S1
    assert d.node("S01").key != s.node("S01").key                          # direct learns the teacher
    assert s.node("S11").key != h.node("S11").key                          # S1 quarter vs S01 half
    keys = {n.key for n in d.nodes + s.nodes + h.nodes}
    assert len(keys) == 15 + 14 + 12  # direct 15, single-TA 14 new, hierarchical 12 new (shares S1, S01, S2)


def test_generalises_to_more_levels():
    p = plans.METHODS["hierarchical"].plan(levels=5, feature_dim=1024)
    assert len(p.ensembles[16]) == 16 and p.node("SSS1616").dim == 64
    assert plans.METHODS["direct"].plan(levels=2).ensembles == {1: ("S1",), 2: ("S01", "S2")}


def test_validation_rejects_bad_plans():
    with pytest.raises(ValueError, match="not trained before"):
        plans.validate(Plan("x", (Node("S2", 2, "S1", 0, 256),), {}))
    with pytest.raises(ValueError, match="equal chunks"):
        plans.validate(Plan("x", (Node("S1", 1, "teacher", 0, 300),), {}))
    with pytest.raises(ValueError, match="concatenates"):
        plans.validate(Plan("x", (Node("S1", 1, "teacher", 0, 256),), {1: ("S1",)}))
    with pytest.raises(ValueError, match="cannot regress"):  # a guide slice of the wrong width
        plans.validate(Plan("x", (Node("S1", 1, "teacher", 0, 512),
                                  Node("S01", 2, "S1", 0, 256, targets=(("teacher", 0, 128), ("S1", 0, 256)))), {}))


def test_dense_tree_guides_every_ancestor():
    d, h = plans.METHODS["dense"].plan(), plans.METHODS["hierarchical"].plan()
    assert d.edges() == h.edges()  # the hierarchical tree ...
    assert d.node("S1").targets == (("teacher", 0, 512),)  # ... S1 has only the teacher above it
    assert d.node("S2").targets == (("teacher", 256, 512), ("S1", 256, 512))
    assert d.node("S44").targets == (("teacher", 384, 512), ("S1", 384, 512), ("S2", 128, 256))
    assert d.node("SS33").targets == (("teacher", 128, 192), ("S1", 128, 192), ("S01", 128, 192), ("S22", 0, 64))
    assert d.node("S1").key == h.node("S1").key  # shared with the other plans
    assert {n.key for n in d.nodes[1:]}.isdisjoint({n.key for n in h.nodes})  # the rest are new models



def test_separate_students_give_each_experiment_its_own_models_below_s1():
    d, s, h = (plans.METHODS[e].plan(share_students=False) for e in ("direct", "single_ta", "hierarchical"))
    assert d.node("S1").key == s.node("S1").key == h.node("S1").key and str(d.node("S1").key) == "T>L1[0:512]"  # the TA stays shared
    assert s.node("S01").key != h.node("S01").key and s.node("S2").key != h.node("S2").key
    assert str(h.node("S01").key) == "T>L1[0:512]>L2[0:256]@hierarchical"
    assert str(h.node("S11").key) == "T>L1[0:512]>L2[0:256]@hierarchical>L3[0:128]"  # the subtree follows its own S01
    assert [n.key for n in d.nodes] == [n.key for n in plans.METHODS["direct"].plan().nodes]  # never shared: unchanged
    keys = {n.key for n in d.nodes + s.nodes + h.nodes}
    assert len(keys) == 15 + 14 + 14  # hierarchical now trains its own S01 and S2
    assert h.edges() == plans.METHODS["hierarchical"].plan().edges()  # same tree, only the lineage differs
