"""plans.py's units: one per method; adding one is adding a unit, and nothing else dispatches on names."""
import copy
import dataclasses
import types

import pytest
import torch
import torch.nn.functional as F

from tadist_utils import experiments, losses, models, plans
from tadist_utils.data import load_data
from tadist_utils.train import Context, StudentJob, run_epochs, student_training
from tadist_utils.config import ConfigError, make_config
from tadist_utils.experiments import Pipeline, spec_hash


def test_the_table_names_the_papers_experiments_and_the_baselines():
    assert plans.PAPER_EXPERIMENTS == ("direct", "single_ta", "hierarchical")
    assert plans.EXPERIMENTS == plans.PAPER_EXPERIMENTS + ("dense",)
    assert plans.BASELINES == ("labels", "kd", "ta_chain")
    assert plans.BEYOND == ("dense", "labels", "kd", "ta_chain")
    assert {n: (m.source(1), m.source(4)) for n, m in plans.METHODS.items() if not m.chunked} == {
        "labels": (None, None), "kd": ("T", "T"), "ta_chain": ("T", "T>KD>E1>KD>E2")}
    assert all(m.loss is losses.guided_loss for m in plans.METHODS.values() if m.chunked)
    out, teacher, y = torch.randn(8, 10), torch.randn(8, 10), torch.arange(8)  # the baselines' losses, as training calls them
    assert torch.equal(plans.METHODS["labels"].loss(out, y), F.cross_entropy(out, y))
    for name in ("kd", "ta_chain"):
        assert torch.equal(plans.METHODS[name].loss(out, y, teacher, 2.0, 0.5), losses.kd_loss(out, teacher, y, 2.0, 0.5))


def test_baseline_lineage_keys_are_unchanged():
    """The keys name checkpoints on disk: the units must give the keys the branches gave."""
    labels, kd, chain = (plans.METHODS[b] for b in plans.BASELINES)
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
    monkeypatch.setitem(plans.METHODS, "mine", plans.EndToEnd("mine", "registered: labels alone", distils=False))
    pipe = Pipeline(make_config("smoke", dataset="digits", levels=3, results_dir=str(tmp_path)))
    pipe._specs[plans.TEACHER_LINEAGE] = {"model": "teacher"}
    for name, n in [("labels", 2), ("kd", 1), ("ta_chain", 4), ("mine", 1)]:
        pipe.baseline_model(name, n)
    link = {k: model for k, (model, _) in pipe._baselines.items()}
    assert seen == [("labels2-695c5abd.pt", "a407d516a8bd", None), ("kd1-3c34ea00.pt", "e30dda0d8eb4", teacher),
                    ("ta_chain2-e67b1d9b.pt", "5313c6a31761", link["T>KD>E1"]),  # the chain's first link is kd's
                    ("ta_chain4-c11897b1.pt", "733fe0951ec6", link["T>KD>E1>KD>E2"]),
                    ("mine1-dc024291.pt", "4aaba324540f", None)]  # a registered unit: labels1's very model


@pytest.fixture
def reversed_direct(monkeypatch):
    """A new method, registered the way a user would: one unit (here the direct plan with its chunks reversed)."""
    def build(levels, feature_dim):
        tree = plans.direct(levels, feature_dim)
        nodes = [plans.Node(n.name, n.level, n.parent, feature_dim - n.stop, feature_dim - n.start) for n in tree.nodes]
        return plans._finish("reversed", nodes, levels, feature_dim)
    method = plans.Chunked("reversed", "direct, chunks numbered from the end", build)
    monkeypatch.setitem(plans.METHODS, "reversed", method)
    return method


def test_a_registered_method_is_accepted_built_and_run(reversed_direct, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="unknown experiment"):
        make_config("smoke", experiments=("reversed_typo",), results_dir=str(tmp_path))
    cfg = make_config("smoke", dataset="digits", experiments=("reversed",), levels=2, results_dir=str(tmp_path))
    plan = plans.METHODS["reversed"].plan(cfg.levels)
    assert plan.experiment == "reversed" and [str(n.key) for n in plan.nodes][:1] == ["T>L1[0:512]"]
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


def test_a_units_loss_is_the_one_training_calls(tmp_path, monkeypatch):
    """A copy of ``direct`` whose loss is the stock one scaled by 0: training calls the unit's loss, so its
    students record a zero loss, on their own lineage (never direct's checkpoints)."""
    zero = dataclasses.replace(plans.METHODS["direct"], name="zero", loss=lambda *a: 0 * losses.guided_loss(*a))
    monkeypatch.setitem(plans.METHODS, "zero", zero)
    assert str(zero.plan(1).node("S1").key) == "T>L1[0:512]@zero"
    cfg = make_config("smoke", dataset="digits", experiments=("direct", "zero"), levels=1, progress=False,
                      results_dir=str(tmp_path))
    df = Pipeline(cfg).run()
    loss = df[(df.model == "S1") & (df.metric == "final_train_loss")].set_index("experiment").value
    assert loss["zero"] == 0.0 and loss["direct"] > 0


@pytest.mark.parametrize("fuse", [False, True])
def test_the_stock_loss_through_a_unit_trains_exactly_as_before(smoke_cfg, tmp_path, fuse):
    """The same students trained with the stock loss and with a unit's loss that only wraps it: the same numbers
    one by one; fused, a unit's own loss leaves the batched kernels (``losses.chunk_losses``): the same to rounding."""
    data = load_data(smoke_cfg(train_size=64))
    ctx = Context(torch.device("cpu"), progress=False, fuse=fuse)
    parent = models.student(2).eval()
    torch.manual_seed(0)
    nets = [models.student(3) for _ in range(2)]
    runs = {}
    for tag, loss in (("stock", losses.guided_loss), ("wrapped", lambda *a: losses.guided_loss(*a))):
        jobs = [StudentJob(f"s{i}", copy.deepcopy(n), 128 * i, 128 * (i + 1), tmp_path / f"{tag}{i}.pt", {}, loss=loss)
                for i, n in enumerate(nets)]
        runs[tag] = run_epochs(student_training(parent.features, jobs, data, ctx, epochs=2, lr=1e-3, weight_decay=0.0,
                                                batch_size=32, augment=False, seed=0), ctx)
    same = (lambda a, b, k: torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=k)) if fuse else (
        lambda a, b, k: torch.equal(a, b) or pytest.fail(k))
    for a, b in zip(runs["stock"], runs["wrapped"]):
        same(torch.tensor([h["train_loss"] for h in a.history]), torch.tensor([h["train_loss"] for h in b.history]), "loss")
        for k, v in a.model.state_dict().items():
            same(v, b.model.state_dict()[k], k)
