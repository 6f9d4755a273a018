"""methods.py: one table holds every method; adding one is adding an entry, and nothing else dispatches on names."""
import pytest

from tadist_utils import baselines, methods, plans
from tadist_utils.config import ConfigError, make_config
from tadist_utils.experiments import Pipeline


def test_the_table_names_the_papers_experiments_and_the_baselines():
    assert methods.PAPER_EXPERIMENTS == ("direct", "single_ta", "hierarchical")
    assert methods.EXPERIMENTS == methods.PAPER_EXPERIMENTS + ("dense",)
    assert methods.BASELINES == ("labels", "kd", "ta_chain")
    assert methods.BEYOND == ("dense", "labels", "kd", "ta_chain")
    assert {n: (m.loss, m.source) for n, m in methods.METHODS.items() if not m.chunked} == {
        "labels": ("ce", None), "kd": ("kd", "teacher"), "ta_chain": ("kd", "previous")}
    assert all(m.loss == "feature" and m.source == "teacher" for m in methods.METHODS.values() if m.chunked)


def test_baseline_lineage_keys_are_unchanged():
    """The keys name checkpoints on disk: the table must give the keys the branches gave."""
    assert [baselines.lineage("labels", n) for n in (1, 8)] == ["Y>E1", "Y>E8"]
    assert [baselines.lineage("kd", n) for n in (1, 4)] == ["T>KD>E1", "T>KD>E4"]
    assert baselines.lineage("ta_chain", 4) == "T>KD>E1>KD>E2>KD>E4"
    assert [baselines.source("ta_chain", n) for n in (1, 2)] == ["teacher", "T>KD>E1"]
    assert baselines.source("labels", 2) is None


def test_build_refuses_baselines_and_unknown_names():
    for name in ("kd", "nope"):
        with pytest.raises(ValueError, match="unknown experiment"):
            methods.build(name)


@pytest.fixture
def reversed_direct(monkeypatch):
    """A new method, registered the way a user would: one entry (here the direct plan with its chunks reversed)."""
    def build(levels, feature_dim):
        tree = plans.direct(levels, feature_dim)
        nodes = [plans.Node(n.name, n.level, n.parent, feature_dim - n.stop, feature_dim - n.start) for n in tree.nodes]
        return plans._finish("reversed", nodes, levels, feature_dim)
    method = methods.Method("reversed", "direct, chunks numbered from the end", build)
    monkeypatch.setitem(methods.METHODS, "reversed", method)
    return method


def test_a_registered_method_is_accepted_built_and_run(reversed_direct, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="unknown experiment"):
        make_config("smoke", experiments=("reversed_typo",), results_dir=str(tmp_path))
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


@pytest.mark.parametrize("loss, distils", [("kd", True), ("ce", False)])
def test_a_baselines_loss_entry_decides_whether_it_distils(loss, distils, tmp_path, monkeypatch):
    """The table's ``loss`` is what the baseline trains on: "ce" means labels alone even with a source."""
    from tadist_utils import experiments
    monkeypatch.setitem(methods.METHODS, "mine", methods.Method("mine", "a baseline", None, loss=loss))
    seen = {}

    class Stop(Exception):
        pass

    def train_classifier(*args, **kwargs):
        seen.update(kwargs)
        raise Stop
    monkeypatch.setattr(experiments, "train_classifier", train_classifier)
    teacher = object()
    monkeypatch.setattr(Pipeline, "teacher", lambda self: teacher)
    pipe = Pipeline(make_config("smoke", dataset="digits", levels=1, results_dir=str(tmp_path)))
    pipe._specs["T"] = {"model": "teacher"}
    with pytest.raises(Stop):
        pipe.baseline_model("mine", 1)
    assert (seen["distill_from"] is teacher) == distils and (seen["spec"]["kd"] is not None) == distils
