"""methods.py: one unit per method; adding one is adding a unit, and nothing else dispatches on names."""
import types

import pytest
import torch.nn.functional as F

from tadist_utils import experiments, losses, methods, plans
from tadist_utils.config import ConfigError, make_config
from tadist_utils.experiments import Pipeline, check, spec_hash


def test_the_table_names_the_papers_experiments_and_the_baselines():
    assert methods.PAPER_EXPERIMENTS == ("direct", "single_ta", "hierarchical")
    assert methods.EXPERIMENTS == methods.PAPER_EXPERIMENTS + ("dense",)
    assert methods.BASELINES == ("labels", "kd", "ta_chain")
    assert methods.BEYOND == ("dense", "labels", "kd", "ta_chain")
    assert {n: (m.loss, m.source(1), m.source(4)) for n, m in methods.METHODS.items() if not m.chunked} == {
        "labels": (F.cross_entropy, None, None), "kd": (losses.kd_loss, "T", "T"),
        "ta_chain": (losses.kd_loss, "T", "T>KD>E1>KD>E2")}
    assert all(m.loss is losses.guided_loss for m in methods.METHODS.values() if m.chunked)


def test_baseline_lineage_keys_are_unchanged():
    """The keys name checkpoints on disk: the units must give the keys the branches gave."""
    labels, kd, chain = (methods.METHODS[b] for b in methods.BASELINES)
    assert [labels.lineage(n) for n in (1, 8)] == ["Y>E1", "Y>E8"]
    assert [kd.lineage(n) for n in (1, 4)] == ["T>KD>E1", "T>KD>E4"]
    assert chain.lineage(4) == "T>KD>E1>KD>E2>KD>E4"
    assert [chain.source(n) for n in (1, 2)] == ["T", "T>KD>E1"] and chain.source(8) == chain.lineage(4)
    assert labels.source(2) is None and kd.sizes(4) == [1, 2, 4, 8]


def test_baseline_checkpoint_names_specs_and_teachers_are_unchanged(tmp_path, monkeypatch):
    """Checkpoints are found by file name and reused when their spec's hash is equal: both pinned to what
    ``baselines.py`` gave (machine-dependent spec fields held fixed), and whom each distils (None: labels alone)."""
    seen = []

    def train_classifier(net, data, ctx, *, name, path, spec, distill_from=None, **kw):
        seen.append((path.name, spec_hash(spec), distill_from))
        return types.SimpleNamespace(best=dict(metric=0.0, epoch=0), seconds=0.0, history=[])
    monkeypatch.setattr(experiments, "train_classifier", train_classifier)
    monkeypatch.setattr(experiments, "evaluate", lambda *a, **k: 0.0)
    monkeypatch.setattr(experiments, "batches", lambda *a, **k: None)
    teacher = object()
    monkeypatch.setattr(Pipeline, "teacher", lambda self: teacher)
    monkeypatch.setattr(Pipeline, "_common", lambda self: dict(data="digits:fixed", seed=0, batch_size=64,
                                                               augment=False, precision="fp32", compile=False,
                                                               channels_last=False))
    monkeypatch.setitem(methods.METHODS, "mine", methods.EndToEnd("mine", "registered: labels alone", distils=False))
    pipe = Pipeline(make_config("smoke", dataset="digits", levels=3, results_dir=str(tmp_path)))
    pipe._specs["T"] = {"model": "teacher"}
    for name, n in [("labels", 2), ("kd", 1), ("ta_chain", 4), ("mine", 1)]:
        pipe.baseline_model(name, n)
    link = {k: model for k, (model, _) in pipe._baselines.items()}
    assert seen == [("labels2-695c5abd.pt", "a407d516a8bd", None), ("kd1-3c34ea00.pt", "e30dda0d8eb4", teacher),
                    ("ta_chain2-e67b1d9b.pt", "5313c6a31761", link["T>KD>E1"]),  # the chain's first link is kd's
                    ("ta_chain4-c11897b1.pt", "733fe0951ec6", link["T>KD>E1>KD>E2"]),
                    ("mine1-dc024291.pt", "4aaba324540f", None)]  # a registered unit: labels1's very model


def test_build_refuses_baselines_and_unknown_names():
    for name in ("kd", "nope"):
        with pytest.raises(ValueError, match="unknown experiment"):
            methods.build(name)


@pytest.fixture
def reversed_direct(monkeypatch):
    """A new method, registered the way a user would: one unit (here the direct plan with its chunks reversed)."""
    def build(levels, feature_dim):
        tree = plans.direct(levels, feature_dim)
        nodes = [plans.Node(n.name, n.level, n.parent, feature_dim - n.stop, feature_dim - n.start) for n in tree.nodes]
        return plans._finish("reversed", nodes, levels, feature_dim)
    method = methods.Chunked("reversed", "direct, chunks numbered from the end", build)
    monkeypatch.setitem(methods.METHODS, "reversed", method)
    return method


def test_a_registered_method_is_accepted_built_and_run(reversed_direct, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="unknown experiment"):
        check(make_config("smoke", experiments=("reversed_typo",), results_dir=str(tmp_path)))
    cfg = make_config("smoke", dataset="digits", experiments=("reversed",), levels=2, results_dir=str(tmp_path))
    plan = methods.build("reversed", cfg.levels)
    assert plan.experiment == "reversed" and [n.key for n in plan.nodes][:1] == ["T>L1[0:512]"]
    assert (plan.node("S01").start, plan.node("S2").start) == (256, 0)  # its own tree, validated by plans.validate

    trained = []  # the pipeline's dispatch reaches the new plan builder without a branch naming it
    monkeypatch.setattr(Pipeline, "teacher", lambda self: None)
    monkeypatch.setattr(Pipeline, "students", lambda self, ps: trained.extend(p.experiment for p in ps) or {})
    monkeypatch.setattr(Pipeline, "ensemble", lambda self, p, size: (None, dict(test_accuracy=float(size))))
    monkeypatch.setattr(Pipeline, "_rows", lambda self, e, m, **kw: [dict(experiment=e, model=m, **kw)])
    monkeypatch.setattr("tadist_utils.models.count_params", lambda m: 0)
    pipe = Pipeline(cfg)
    pipe._students = {n.key: None for n in plan.nodes}
    pipe.store.add_results = lambda rows: None
    pipe._manifest = lambda *a, **k: None
    rows = pipe.run_experiment("reversed")
    assert trained == ["reversed"]
    assert list(rows.model[rows.model.str.startswith("ensemble")]) == ["ensemble_1", "ensemble_2"]
