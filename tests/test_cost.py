"""cost.py: the fused ensemble gives the same logits, the sizes are right, the latencies are timed."""
import pytest
import torch

from tadist_utils import fused, models
from tadist_utils.analysis import cost


def randomise_bn(net: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Non-trivial BatchNorm: random running mean/var and affine weights, so fusing BN per group matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.3)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.2)
    return net.eval()


@pytest.fixture(scope="module")
def table():
    torch.manual_seed(0)
    return cost.cost_table("cpu", models_=["student_level4", "ensemble_2", "ensemble_8"], large_batch=2,
                           min_run_time=0.01)


@pytest.mark.parametrize("n", [2, 8])
@pytest.mark.parametrize("fold_bn", [False, True])
def test_fused_ensemble_gives_the_ensembles_logits(n, fold_bn):
    torch.manual_seed(n)
    ens = randomise_bn(cost.build_ensemble(n), seed=n)
    net = fused.FusedEnsemble(ens, fold_bn=fold_bn).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(net.features(x), ens.features(x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(net(x), ens(x), atol=1e-4, rtol=1e-4)
    assert models.count_macs(net) == models.count_macs(ens)
    if fold_bn:
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    else:
        assert models.count_params(net) == models.count_params(ens)


def test_fused_ensemble_keeps_chunk_order():
    # Swapping two students must change the fused features exactly as it changes the Ensemble's.
    torch.manual_seed(0)
    ens = randomise_bn(cost.build_ensemble(2))
    swapped = models.Ensemble([ens.students[1], ens.students[0]])
    swapped.classifier.load_state_dict(ens.classifier.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        f, fs = fused.FusedEnsemble(ens)(x), fused.FusedEnsemble(swapped.eval())(x)
        assert (f - fs).abs().max() > 1e-3
        torch.testing.assert_close(fs, swapped(x), atol=1e-4, rtol=1e-4)


def test_fused_ensemble_in_train_mode_uses_each_students_batch_statistics():
    torch.manual_seed(4)
    ens = cost.build_ensemble(4).train()
    net = fused.FusedEnsemble(ens)
    assert net.training
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(net(x), ens(x), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(net.body[1].running_mean[32:64], ens.students[1].body[1].running_mean)


def test_fused_ensemble_copies_weights_and_rejects_mixed_students():
    ens = cost.build_ensemble(2).eval()
    net = fused.FusedEnsemble(ens)
    assert not any(p.data_ptr() == q.data_ptr() for p in net.parameters() for q in ens.students.parameters())
    with pytest.raises(ValueError, match="one architecture"):
        fused.FusedEnsemble(models.Ensemble([models.student(3), models.student(4)]))


def test_table_parameters_match_count_params_and_the_paper(table):
    for model, g in table.groupby("model"):
        assert set(g.parameters) == {models.PAPER_PARAMS[model]}, model
    assert set(table[table.model == "ensemble_8"]["mode"]) == {"sequential", "together"}
    for n in (2, 8):
        assert set(table[table.model == f"ensemble_{n}"].parameters) == {models.count_params(cost.build_ensemble(n))}
        assert set(table[table.model == f"ensemble_{n}"].macs) == {models.count_macs(cost.build_ensemble(n))}
    assert table.set_index("model").loc["student_level4", "macs"] == models.count_macs(models.student(4))


def test_disk_size_is_four_bytes_per_parameter_plus_a_little(table):
    ratio = table.disk_bytes / (4 * table.parameters)
    assert ratio.between(1.0, 1.05).all(), ratio.tolist()


def test_latency_rows_are_positive_and_consistent(table):
    assert (table.latency_ms_b1 > 0).all() and (table.latency_ms_b2 > 0).all()
    assert (table.images_per_s_b2 - 2000 / table.latency_ms_b2).abs().max() < 1e-6
    assert set(table.device) == {"cpu"} and table.device_name.str.len().min() > 0


def test_latency_is_the_median_of_timed_forwards_after_untimed_ones():
    """torch.utils.benchmark's blocked_autorange: its block-size search runs the model untimed first (a cold first
    pass read about 5x slow), then blocks of passes until ``min_run_time``; runs_* count the timed passes."""
    calls = []
    net = models.student(4).eval()
    net.register_forward_hook(lambda *args: calls.append(1))
    m = cost.latency(net, 2, torch.device("cpu"), min_run_time=0.01)
    timed = m.number_per_run * len(m.times)
    assert m.median > 0 and 0 < timed < len(calls)


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model"):
        cost.cost_table("cpu", models_=["student_level9"])


def test_accuracy_vs_cost_plot(table):
    import matplotlib
    matplotlib.use("Agg")
    import pandas as pd
    from tadist_utils.analysis import plots
    rows = [("cifar10", "teacher", "teacher", 0, "test_accuracy", 90.0)]
    rows += [("cifar10", e, f"ensemble_{n}", s, "test_accuracy", 80.0 + n + s)
             for e in ("direct", "hierarchical") for n in (2, 8) for s in (0, 1)]
    results = pd.DataFrame(rows, columns=["dataset", "experiment", "model", "seed", "metric", "value"])
    c = pd.concat([table, table[table.model == "ensemble_2"].assign(model="teacher", mode="single")])
    fig = plots.accuracy_vs_cost(results, c, x="latency_ms_b1")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    labels = ax.get_legend_handles_labels()[1]
    assert "teacher" in labels and "sequential (hollow)" in labels
    with pytest.raises(ValueError, match="no column"):
        plots.accuracy_vs_cost(results, c, x="nonsense")
    import matplotlib.pyplot as plt
    plt.close("all")


def test_smoke_spends_a_small_budget_on_the_cost_table():
    """Notebook 06 on smoke used to time every model for seconds (9-13 minutes of CI); now a hundredth of a second
    of timed passes each (after blocked_autorange's untimed ones), batch 8 for the large batch."""
    import nbformat
    from pathlib import Path
    from tadist_utils.config import make_config
    b = cost.PROFILE_BUDGETS["smoke"]
    assert b["min_run_time"] <= 0.05 and b["large_batch"] <= 16 and cost.SMOKE_BUDGET is b
    assert "paper" not in cost.PROFILE_BUDGETS  # the paper profile measures in full
    nb = nbformat.read(Path(__file__).resolve().parents[1] / "notebooks" / "06_beyond.ipynb", as_version=4)
    assert any("**cost.PROFILE_BUDGETS.get(cfg.profile, {})" in c.source for c in nb.cells)
    df = cost.cost_table("cpu", models_=["ensemble_2"], **b)
    assert (df.runs_b1 >= 1).all() and "latency_ms_b8" in df
    assert make_config("smoke").threads == 1  # no second spinning thread beside CI's other jobs


def test_quick_times_the_whole_table_briefly():
    """quick's table (notebook 06) took ~8 of its 30 minutes on an AVX2-only CPU; most of it batch-256 passes of the
    teacher and ensemble_8. quick keeps every row and both modes, timed on a batch of 64 for a fifth of a second each
    (the export checks are the full measurement's: python -m benchmarks.cost)."""
    q = cost.PROFILE_BUDGETS["quick"]
    assert q["large_batch"] <= 64 and q["min_run_time"] <= 0.5
    assert q["large_batch"] > cost.SMOKE_BUDGET["large_batch"] and q["min_run_time"] > cost.SMOKE_BUDGET["min_run_time"]
    df = cost.cost_table("cpu", models_=["student_level4", "ensemble_2"], **q)
    assert set(df["mode"]) == {"single", "sequential", "together"} and f"latency_ms_b{q['large_batch']}" in df
    assert (df.runs_b1 >= 1).all() and (df[f"runs_b{q['large_batch']}"] >= 1).all()
