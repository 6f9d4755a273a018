"""Issue 6 experiments end to end on tiny data: densely guided students, the baselines, CIFAR-100."""
import sys
from pathlib import Path

import numpy as np
import torch

from tadist_utils import models
from tadist_utils.data import load_data
from tadist_utils.experiments import Pipeline
from tadist_utils.losses import FEATURE_LOSSES, kd_loss
from tadist_utils.plans import METHODS
from tadist_utils.train import Context, StudentJob, batches, keep_mask, run_epochs, student_training

sys.path.insert(0, str(Path(__file__).parent))
from cifar_fixture import write_fake_cifar100  # noqa: E402


def test_keep_mask_never_drops_everything_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    masks = [keep_mask(3, 0.9, g) for _ in range(200)]
    assert all(any(m) for m in masks)
    assert 0 < sum(map(sum, masks)) < 200 * 3  # something is dropped, something kept
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert [keep_mask(4, 0.5, g1) for _ in range(20)] == [keep_mask(4, 0.5, g2) for _ in range(20)]
    assert keep_mask(2, 0.0, g1) == [True, True]


def test_dense_loss_is_the_mean_over_kept_targets(smoke_cfg, tmp_path, monkeypatch):
    """With drop=0 a densely guided student's loss is exactly the mean of its per-guide losses."""
    data = load_data(smoke_cfg(train_size=64))
    ctx = Context(torch.device("cpu"), progress=False)
    torch.manual_seed(0)
    a, b = models.student(2).eval(), models.student(2).eval()  # two fixed guides, 256-d each
    torch.manual_seed(1)
    net = models.student(3)
    seen = []
    real, batched = FEATURE_LOSSES["mse"]
    spy = lambda o, t: seen.append(real(o, t)) or seen[-1]  # noqa: E731
    monkeypatch.setitem(FEATURE_LOSSES, "mse", (spy, batched))  # the step's (guided_loss) and the validation loss
    job = StudentJob("x", net, 0, 128, tmp_path / "x.pt", {"n": 1}, targets=((0, 128, 256), (1, 0, 128)))
    run, = run_epochs(student_training([a.features, b.features], [job], data, ctx, epochs=1, lr=1e-3, weight_decay=0.0,
                          batch_size=64, augment=False, seed=0, drop=0.0), ctx)
    assert len(data.train) == 64  # one step per epoch: the epoch's loss is that step's loss
    assert len(seen) == 3  # the step's two guides, then the validation loss against the parent (guide 1)
    assert abs(run.history[0]["train_loss"] - float((seen[0] + seen[1]).detach() / 2)) < 1e-6
    assert seen[0] != seen[1]


def test_dense_experiment_and_baselines_end_to_end(smoke_cfg):
    cfg = smoke_cfg(experiments=("direct", "dense", "labels", "kd", "ta_chain"), levels=3)
    pipe = Pipeline(cfg)
    df = pipe.run()
    acc = df[df.metric == "test_accuracy"].set_index(["experiment", "model"]).value
    for exp in ("dense", "labels", "kd", "ta_chain"):
        for n in (1, 2, 4):
            assert 0 <= acc[exp, f"ensemble_{n}"] <= 100
    assert acc["kd", "ensemble_1"] == acc["ta_chain", "ensemble_1"]  # the chain's first link is the KD model
    params = df[df.metric == "parameters"].set_index(["experiment", "model"]).value
    for n in (1, 2, 4):  # same architecture and output layer as the chunked ensembles
        assert params["labels", f"ensemble_{n}"] == params["direct", f"ensemble_{n}"] == params["dense", f"ensemble_{n}"]
    dense_losses = df[(df.experiment == "dense") & (df.metric == "final_train_loss")]
    assert len(dense_losses) == 7 and np.isfinite(dense_losses.value).all()
    # S1 is shared with direct (one guide); the dense level-2 students are their own models
    s1 = df[(df.model == "S1") & (df.metric == "final_train_loss")].set_index("experiment").value
    assert s1["dense"] == s1["direct"]
    ckpts = {p.name.split("-")[0] for p in cfg.checkpoint_dir.rglob("*.pt")}
    assert {"labels1", "labels4", "kd1", "kd4", "ta_chain2", "ta_chain4"} <= ckpts and "ta_chain1" not in ckpts


def test_kd_baseline_learns_from_the_teacher(smoke_cfg, monkeypatch):
    """KD trains on kd_loss against the teacher's logits of the training images, with the configured T and alpha;
    the labels baseline never calls it."""
    calls = []

    def recording(student_logits, teacher_logits, labels, temperature, alpha):
        calls.append((teacher_logits.detach().clone(), temperature, alpha))
        return kd_loss(student_logits, teacher_logits, labels, temperature, alpha)
    monkeypatch.setattr("tadist_utils.losses.kd_loss", recording)  # what plans.EndToEnd.loss calls
    cfg = smoke_cfg(kd_alpha=1.0, kd_temperature=2.0, levels=1)
    pipe = Pipeline(cfg)
    teacher = pipe.teacher()
    pipe.baseline_model("labels", 1)
    assert calls == []
    pipe.baseline_model("kd", 1)
    steps = len(batches(pipe.data, "train", cfg.batch_size, pipe.ctx, train=True))
    assert len(calls) == steps * cfg.student_epochs
    assert {(t, a) for _, t, a in calls} == {(2.0, 1.0)}
    seen = torch.cat([logits for logits, _, _ in calls])
    everything, _, _ = next(iter(batches(pipe.data, "train", len(pipe.data.train), pipe.ctx)))
    with torch.no_grad():
        expected = teacher(everything).float()
    # every training image's teacher logits, once each (the batches come shuffled)
    torch.testing.assert_close(seen.sum(1).sort().values, expected.sum(1).sort().values, rtol=1e-4, atol=1e-4)


def test_cached_soft_targets_line_up_with_shuffled_batches(smoke_cfg):
    """KD without augmentation looks the teacher's logits up by index: they must be the logits of *that* batch."""
    from tadist_utils.train import frozen_features
    data = load_data(smoke_cfg())
    ctx = Context(torch.device("cpu"), progress=False)
    torch.manual_seed(0)
    teacher = models.teacher(data.num_classes).eval()
    soft = frozen_features([teacher.__call__], data, 64, ctx, augment=False)  # its logits, as train_classifier asks
    train = batches(data, "train", 64, ctx, train=True, seed=3)
    train.set_epoch(1)
    x, _, idx = next(iter(train))
    assert not torch.equal(idx, torch.arange(len(idx)))  # shuffled
    with torch.no_grad():
        torch.testing.assert_close(soft(x, idx)[0], teacher(x), rtol=1e-4, atol=1e-4)


def test_cifar100_has_a_100_way_output_layer(smoke_cfg, tmp_path):
    root = write_fake_cifar100(tmp_path / "c100")
    cfg = smoke_cfg(dataset="cifar100", data_dir=str(root), experiments=("direct",), levels=2)
    pipe = Pipeline(cfg)
    df = pipe.run()
    assert pipe.data.num_classes == 100 and pipe.teacher().classifier.out_features == 100
    assert set(df.dataset) == {"cifar100"}
    ens, metrics = pipe.ensemble(METHODS["direct"].plan(2), 2)
    assert ens.classifier.out_features == 100 and ens(pipe.data.test.images[:2].float()).shape == (2, 100)


def test_runner_takes_cifar100_through_the_dense_experiment_and_baselines(tmp_path):
    """The issue-6 path through papermill: CIFAR-100 (synthetic, torchvision layout), teacher, direct, notebook 06."""
    import json
    import subprocess

    root = write_fake_cifar100(tmp_path / "c100")
    out = tmp_path / "results"
    # levels=2 (3 students per tree instead of smoke's 15; 06 trains 4 experiments): the 100-class path is the same
    # at every level, and the notebooks at smoke's full depth are nbval's job (make notebooks)
    r = subprocess.run([sys.executable, "-m", "tadist_utils.runners.reproduce", "--profile", "smoke", "--dataset", "cifar100",
                        "--data-dir", str(root), "--results-dir", str(out), "--only", "01", "02", "06", "--quiet",
                        "--set", "levels=2"],
                       cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads((out / "reproduce.json").read_text())
    assert [n["status"] for n in report["notebooks"]] == ["ok"] * 3
    import pandas as pd
    results = pd.read_csv(out / "results.csv")
    assert set(results.dataset) == {"cifar100"}
    assert {"teacher", "direct", "dense", "labels", "kd", "ta_chain"} <= set(results.experiment)
    cost = pd.read_csv(out / "cost.csv")
    assert (cost[cost.model == "teacher"].parameters == models.count_params(models.teacher(100))).all()
    assert (out / "figures" / "06_accuracy_with_error_bars.png").exists()


def test_cifar100_folder_is_found_without_network(tmp_path):
    from tadist_utils.config import make_config
    from tadist_utils.data import is_present
    cfg = make_config("smoke", dataset="cifar100", data_dir=str(tmp_path / "c100"))
    assert not is_present(cfg)
    write_fake_cifar100(tmp_path / "c100", train_per_class=1, test_per_class=1)
    assert is_present(cfg) and not is_present(cfg.replace(dataset="cifar10"))
