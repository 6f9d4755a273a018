"""The three experiments end to end on the smoke profile, and the paper's tables built from them."""
import json

import numpy as np

from tadist_utils.experiments import Pipeline
from tadist_utils.analysis.paper import loss_table
from tadist_utils.analysis.stats import accuracy_table, summarise


def test_three_experiments_end_to_end(smoke_cfg):
    cfg = smoke_cfg()
    df = Pipeline(cfg).run()
    for exp in ("direct", "single_ta", "hierarchical"):
        for n in (1, 2, 4, 8):
            row = df[(df.experiment == exp) & (df.model == f"ensemble_{n}")]
            metrics = set(row.metric)
            assert {"test_accuracy", "test_accuracy_before_finetune", "val_accuracy", "parameters"} <= metrics
            acc = row[row.metric == "test_accuracy"].value.item()
            assert 0 <= acc <= 100
        losses = df[(df.experiment == exp) & (df.metric == "final_train_loss")]
        assert len(losses) == 15 and np.isfinite(losses.value).all()
    # shared models give identical numbers: S1 everywhere, S01/S2 in single-TA and hierarchical
    s1 = df[(df.model == "S1") & (df.metric == "final_train_loss")].value
    assert s1.nunique() == 1
    acc = accuracy_table(summarise(df), paper=True)
    assert list(acc.columns) == ["teacher", "1 student", "2 students", "4 students", "8 students"]
    assert acc.loc["direct (paper)", "2 students"] == "86.57"
    assert loss_table(df).shape == (6, 16) and set(loss_table(df)["loss"]) == {"mse"}
    assert loss_table(df, feature_loss="cosine")["loss"].to_dict()["direct"] == "cosine"  # beside the paper's mse
    manifest = json.loads((cfg.checkpoint_dir.parent / "manifest.json").read_text())
    assert manifest["dataset"]["name"] == "digits" and manifest["config"]["profile"] == "smoke"
    assert {"torch", "git_commit", "device", "deterministic_algorithms"} <= set(manifest["environment"])
    assert manifest["config"]["deterministic"] is False and manifest["config"]["share_students"] is True
    hist = Pipeline(cfg).store.history()
    assert {"train_loss", "val_loss", "val_accuracy"} <= set(hist.metric)
    # fine-tuning selection starts from the ensemble as built (epoch 0) and says which epoch it kept
    ft = hist[hist.key.astype(str).str.startswith("E:") & (hist.metric == "val_accuracy")]
    assert ft.groupby("key").epoch.min().eq(0).all()
    sel = df[(df.metric == "selected_epoch") & df.model.str.startswith("ensemble_")]
    assert len(sel) == 12 and sel.value.between(0, cfg.finetune_epochs).all()


def test_separate_students_train_each_experiments_own_s01_s2(smoke_cfg):
    import torch
    cfg = smoke_cfg(experiments=("single_ta", "hierarchical"), levels=2, share_students=False, deterministic=True)
    try:
        df = Pipeline(cfg).run()
        manifest = json.loads((cfg.checkpoint_dir.parent / "manifest.json").read_text())
    finally:
        torch.use_deterministic_algorithms(False)
    loss = df[df.metric == "final_train_loss"].pivot(index="model", columns="experiment", values="value")
    assert loss.loc["S1", "single_ta"] == loss.loc["S1", "hierarchical"]  # the TA is still trained once
    assert loss.loc["S01", "single_ta"] != loss.loc["S01", "hierarchical"]  # two models, two initialisations
    assert len(list(cfg.checkpoint_dir.rglob("S01-*.pt"))) == 2
    assert manifest["config"]["share_students"] is False and manifest["environment"]["deterministic_algorithms"]


def test_exact_metrics_are_reproducible_on_cpu(smoke_cfg, tmp_path, direct_levels2_run):
    a = direct_levels2_run[1].copy()  # smoke_cfg(experiments=("direct",), levels=2), trained from scratch once
    b = Pipeline(smoke_cfg(experiments=("direct",), levels=2, results_dir=str(tmp_path / "other"))).run()
    key = ["experiment", "model", "metric"]
    a, b = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    keep = ~a.metric.str.contains("seconds")
    assert np.array_equal(a.value[keep].to_numpy(), b.value[keep].to_numpy())
