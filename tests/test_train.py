"""Training loops: students learn a fixed parent; finished models are reused, changed ones retrained."""
import pytest
import torch

from tadist_utils import models
from tadist_utils.data import load_data
from tadist_utils.experiments import Pipeline
from tadist_utils.train import Context, StudentJob, run_epochs, student_training


def test_student_loss_falls_on_a_fixed_parent(smoke_cfg, tmp_path):
    data = load_data(smoke_cfg(train_size=512))
    ctx = Context(torch.device("cpu"), progress=False)
    torch.manual_seed(0)
    parent = models.student(2).eval()  # a fixed random parent: its 256-d features are the targets
    jobs = []
    for name, (a, b) in {"left": (0, 128), "right": (128, 256)}.items():
        jobs.append(StudentJob(name, models.student(3), a, b, tmp_path / f"{name}.pt", {"name": name}))
    runs = run_epochs(student_training(parent.features, jobs, data, ctx, epochs=4, lr=2e-3, weight_decay=0.0, batch_size=64,
                          augment=False, seed=0), ctx)
    for run in runs:
        losses = [h["train_loss"] for h in run.history]
        assert len(losses) == 4 and losses[-1] < 0.7 * losses[0], losses
        assert run.history[-1]["val_loss"] < run.history[0]["val_loss"]


def _mtimes(cfg):
    return {p.name: p.stat().st_mtime_ns for p in cfg.checkpoint_dir.rglob("*.pt")}


def test_checkpoint_reuse_skips_retraining_and_changes_retrain(smoke_cfg, direct_levels2_run):
    import shutil
    trained, first = direct_levels2_run  # the first run, from scratch (shared): trained here on a copy of it
    cfg = smoke_cfg(experiments=("direct",), levels=2)
    shutil.copytree(trained.results_dir, cfg.results_dir)
    assert cfg.replace(results_dir=trained.results_dir) == trained  # the same settings but for the folder
    first = first.copy()
    before = _mtimes(cfg)
    assert len(before) == 1 + 3 + 2  # teacher, S1 S01 S2, two fine-tuned ensembles
    again = Pipeline(cfg).run()
    assert _mtimes(cfg) == before  # nothing rewritten: nothing retrained
    assert first.sort_values(list(first.columns)).reset_index(drop=True).equals(
        again.sort_values(list(again.columns)).reset_index(drop=True))
    logs = []
    changed = cfg.replace(student_lr=5e-3)
    pipe = Pipeline(changed)
    pipe.ctx.log = logs.append
    pipe.run()
    after = _mtimes(cfg)
    assert after[next(n for n in before if n.startswith("teacher"))] == before[next(n for n in before if n.startswith("teacher"))]
    assert all(after[n] != before[n] for n in before if n.startswith("S"))
    assert any("lr: 0.001 -> 0.005" in line for line in logs), logs


def test_finetune_that_lowers_val_accuracy_keeps_the_ensemble_before_finetuning(tmp_path):
    """Training labels that contradict the validation labels: every fine-tuning epoch is worse on val than the
    head it started from, so the epoch-0 weights (recorded in the history) must be what is kept."""
    from types import SimpleNamespace

    from tadist_utils.train import finetune_head
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    y = (x[:, 0] > 0).long()                      # the true rule
    head = torch.nn.Linear(4, 2)
    with torch.no_grad():                         # a head that already knows it: 100% on val
        head.weight.copy_(torch.tensor([[-5.0, 0, 0, 0], [5.0, 0, 0, 0]]))
        head.bias.zero_()
    start = {k: v.clone() for k, v in head.state_dict().items()}
    split = lambda labels: SimpleNamespace(labels=labels)  # noqa: E731
    data = SimpleNamespace(train=split(1 - y[:192]), val=split(y[192:]))  # train labels flipped
    feats = {"train": x[:192], "val": x[192:]}
    ctx = Context(torch.device("cpu"), progress=False)
    run = finetune_head(head, feats, data, ctx, name="ft", path=tmp_path / "ft.pt", spec={"t": 1}, epochs=3,
                        lr=0.5, batch_size=32, seed=0)
    assert [h["epoch"] for h in run.history] == [0, 1, 2, 3]
    assert run.history[0]["val_accuracy"] == 100.0
    assert all(h["val_accuracy"] < 100.0 for h in run.history[1:])  # fine-tuning only hurt
    assert run.best["epoch"] == 0
    assert all(torch.equal(head.state_dict()[k], v) for k, v in start.items())  # the starting weights, restored
    again = finetune_head(torch.nn.Linear(4, 2), feats, data, ctx, name="ft", path=tmp_path / "ft.pt",
                          spec={"t": 1}, epochs=3, lr=0.5, batch_size=32, seed=0)  # reused from the checkpoint
    assert again.best["epoch"] == 0 and [h["epoch"] for h in again.history] == [0, 1, 2, 3]


def test_finetune_selection_scores_at_the_precision_that_reports(tmp_path):
    """Fine-tuning must rank its epochs by the number that will be reported. The reported accuracy comes from
    ``evaluate`` under the run's autocast (bf16 on GPUs and on CPUs with native bf16); the selection scored the
    head in fp32, so a head that fp32 rates 100% and bf16 0% was recorded as 100% (issue 23). Logits 1.0 vs
    1.001 are a tie in bf16 (argmax: class 0) and class 1 in fp32; the labels are 1."""
    from types import SimpleNamespace

    from tadist_utils.train import finetune_head
    head = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 1.001]] * 8)
    y = torch.ones(8, dtype=torch.long)
    split = lambda labels: SimpleNamespace(labels=labels)  # noqa: E731
    data = SimpleNamespace(train=split(y), val=split(y))
    ctx = Context(torch.device("cpu"), amp_dtype=torch.bfloat16, progress=False)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        reported = 100.0 * (head(x).argmax(1) == y).float().mean().item()  # what evaluate() would say
    assert reported == 0.0 and (head(x).argmax(1) == y).all()  # the premise: bf16 and fp32 disagree
    run = finetune_head(head, {"train": x, "val": x}, data, ctx, name="ft", path=tmp_path / "ft.pt", spec={},
                        epochs=1, lr=0.0, batch_size=8, seed=0)
    assert run.history[0]["val_accuracy"] == reported
    # the pipeline passes the reporting function itself: whatever it returns is what the selection ranks
    scores = iter([40.0, 60.0])
    run = finetune_head(head, {"train": x, "val": x}, data, ctx, name="ft", path=tmp_path / "ft2.pt", spec={},
                        epochs=1, lr=0.0, batch_size=8, seed=0, validate=lambda: next(scores))
    assert [h["val_accuracy"] for h in run.history] == [40.0, 60.0] and run.best["epoch"] == 1


def test_pipeline_reports_the_val_accuracy_its_fine_tuning_selected_under_bf16(smoke_cfg):
    """Under bf16 autocast on this CPU, every ensemble's reported val_accuracy is the best of the fine-tuning
    history (epoch 0 being the ensemble as built, ``val_accuracy_before_finetune``): never below it."""
    if not torch.backends.mkldnn.is_available():
        pytest.skip("no oneDNN")
    cfg = smoke_cfg(experiments=("direct",), levels=2, precision="bf16", finetune_epochs=3)
    pipe = Pipeline(cfg)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a forced bf16 on a CPU without native bf16 warns; the maths is the same
        df = pipe.run()
    hist = pipe.store.history()
    ft = hist[hist.key.astype(str).str.startswith("E:") & (hist.metric == "val_accuracy")]
    for model, g in df[df.model.str.startswith("ensemble_")].groupby("model"):
        m = dict(zip(g.metric, g.value))
        h = ft[ft.model == model].sort_values("epoch")
        assert h.value.iloc[0] == m["val_accuracy_before_finetune"], (model, h.value.tolist(), m)
        assert m["val_accuracy"] == h.value.max() == h.value.iloc[int(m["selected_epoch"])], (model, m)
        assert m["val_accuracy"] >= m["val_accuracy_before_finetune"]


@pytest.mark.filterwarnings("ignore:Detected call of")  # the unfused run's skipped first step
def test_fused_sgd_survives_a_first_step_the_grad_scaler_skips(tmp_path, monkeypatch):
    """On CUDA the teacher's SGD is fused (``engine.fused_optimizer``). Fused SGD allocates its momentum buffers with
    ``torch.empty_like`` on its first step and, when the GradScaler found an overflow (fp16's first steps often do),
    writes nothing into them: the next step built on uninitialised memory. Here the overflow is forced
    (first step only), uninitialised memory is NaN (as a sanitizer poisons it), and fused SGD runs on the CPU:
    the run must equal the unfused one."""
    import copy

    from tadist_utils.data import DataBundle, Split
    from tadist_utils.train import train_classifier

    g = torch.Generator().manual_seed(0)
    split = Split(torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(16) % 10)
    data = DataBundle("t", tuple("abcdefghij"), split, split, split, mean=torch.full((3,), 0.5),
                      std=torch.full((3,), 0.25))
    torch.manual_seed(0)
    model = models.Ensemble([models.student(2)], 10)
    poisoned = lambda t, *a, **k: torch.full_like(t, float("nan"), *a, **k)  # noqa: E731
    monkeypatch.setattr(torch, "empty_like", poisoned)

    class FirstStepOverflows(torch.amp.GradScaler):
        def scale(self, outputs):
            first, self.scaled = not hasattr(self, "scaled"), True
            return super().scale(outputs) * (float("inf") if first else 1.0)

    monkeypatch.setattr("tadist_utils.train.grad_scaler", lambda device, dtype: FirstStepOverflows("cpu"))
    weights = {}
    for fused in (False, True):
        monkeypatch.setattr("tadist_utils.train.fused_optimizer", lambda device: {"fused": fused})
        run = train_classifier(copy.deepcopy(model), data, Context(torch.device("cpu"), None, progress=False,
                               log=lambda line: None), name="t", path=tmp_path / f"t{fused}.pt", spec={}, epochs=2,
                               lr=0.01, weight_decay=5e-4, batch_size=4, augment=False, seed=0, optimizer="sgd")
        assert bool(run.optimizer.param_groups[0]["fused"]) == fused
        assert run.scaler.get_scale() == 2.0 ** 15  # the first step was skipped (and no other)
        weights[fused] = run.model.state_dict()
    for k, v in weights[False].items():
        torch.testing.assert_close(weights[True][k], v, rtol=1e-5, atol=1e-6, msg=k)
