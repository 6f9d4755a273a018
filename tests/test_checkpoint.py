"""Checkpoints: atomic writes, clear errors for corrupted or foreign files, spec differences named."""
import os
import signal
import subprocess
import sys

import pytest
import torch

from tadist_utils.storage import checkpoint as ck
from tadist_utils.errors import RunError


def test_roundtrip_and_no_temporary_left(tmp_path):
    path = tmp_path / "m.pt"
    ck.save_atomic(dict(spec={"a": 1}, state={"w": torch.ones(2)}), path)
    assert ck.load(path)["state"]["w"].tolist() == [1.0, 1.0]
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


@pytest.mark.parametrize("payload", [b"", b"not a checkpoint at all", None])
def test_corrupted_or_foreign_file_is_one_clear_error(tmp_path, payload):
    path = tmp_path / "bad.pt"
    if payload is None:
        torch.save({"weights": torch.zeros(1)}, path)  # a valid torch file that is not ours
    else:
        path.write_bytes(payload)
    with pytest.raises(ck.CheckpointError, match="bad.pt"):
        ck.load(path)


def test_truncated_checkpoint_is_detected(tmp_path):
    path = tmp_path / "t.pt"
    ck.save_atomic(dict(spec={}, state={"w": torch.randn(1000)}), path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ck.CheckpointError, match="corrupted"):
        ck.load(path)


def test_spec_mismatch_is_named_and_not_reused(tmp_path):
    path = tmp_path / "s.pt"
    ck.save_atomic(dict(spec={"lr": 0.001, "epochs": 2}, state={}), path)
    said = []
    assert ck.find_resumable(path, {"lr": 0.002, "epochs": 2}, said.append) is None
    assert "lr: 0.001 -> 0.002" in said[0]
    assert ck.find_resumable(path, {"lr": 0.001, "epochs": 2}, said.append) is not None


KILLED_MID_WRITE = r"""
import os, signal, sys
from pathlib import Path
import torch
from tadist_utils.storage import checkpoint
os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # die with the temporary written, before the rename
checkpoint.save_atomic(dict(spec={"epoch": 2}, state={"w": torch.full((2,), 2.0)}), Path(sys.argv[1]))
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_sigkill_mid_write_keeps_the_old_file_and_leaves_an_unread_temporary(tmp_path):
    path = tmp_path / "m.pt"
    ck.save_atomic(dict(spec={"epoch": 1}, state={"w": torch.ones(2)}), path)
    child = subprocess.Popen([sys.executable, "-c", KILLED_MID_WRITE, str(path)], env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert child.wait(timeout=120) == -signal.SIGKILL
    stale = [p.name for p in tmp_path.iterdir() if p.name != "m.pt"]
    assert len(stale) == 1 and stale[0].startswith(f".m.pt.tmp-{child.pid}")
    assert ck.load(path)["spec"] == {"epoch": 1}  # the old checkpoint is intact
    ck.save_atomic(dict(spec={"epoch": 3}, state={"w": torch.zeros(2)}), path)  # the temporary is not in the way
    assert ck.load(path)["spec"] == {"epoch": 3}


def test_a_failed_write_leaves_no_temporary_and_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    ck.save_atomic(dict(spec={"epoch": 1}, state={}), path)

    def disk_full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(ck.os, "fsync", disk_full)
    with pytest.raises(RunError) as e:  # one line naming the file, not an OSError traceback
        ck.save_atomic(dict(spec={"epoch": 2}, state={}), path)
    assert "no space left on the device to write" in str(e.value) and str(path) in str(e.value)
    assert "\n" not in str(e.value)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"] and ck.load(path)["spec"] == {"epoch": 1}


def test_other_write_errors_still_propagate(tmp_path, monkeypatch):
    def denied(fd):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(ck.os, "fsync", denied)
    with pytest.raises(PermissionError):
        ck.save_atomic(dict(spec={}, state={}), tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []


def test_4kib_flipped_in_the_middle_is_caught_by_the_content_hash_and_retrained(tmp_path):
    path = tmp_path / "teacher-0123abcd.pt"
    ck.save_atomic(dict(spec={"lr": 1}, state={"w": torch.randn(64, 1024)}), path)  # 256 KiB of weights
    raw = bytearray(path.read_bytes())
    mid = len(raw) // 2
    raw[mid:mid + 4096] = bytes(b ^ 0xFF for b in raw[mid:mid + 4096])
    path.write_bytes(bytes(raw))
    with pytest.raises(ck.CheckpointError, match="teacher-0123abcd.pt is corrupted .*SHA-256"):
        ck.load(path)
    said = []
    assert ck.find_resumable(path, {"lr": 1}, said.append) is None  # not loaded, not a traceback: retrained
    assert len(said) == 1 and str(path) in said[0] and "retraining it" in said[0]


def test_a_plain_torch_file_without_the_hash_is_not_loaded(tmp_path):
    path = tmp_path / "old.pt"
    torch.save(dict(spec={}, state={}), path)  # right content, but no content hash: never trusted
    with pytest.raises(ck.CheckpointError, match="no content hash"):
        ck.load(path)


# ----------------------------------------------------------------------------- what a RunState file holds
def _adam_run(path, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.BatchNorm1d(64))
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    return ck.RunState(path, {"m": 1}, model, opt, sched, torch.amp.GradScaler("cpu", enabled=False))


def _epoch(run, metric):
    run.model.train()
    run.optimizer.zero_grad()
    run.model(torch.randn(8, 64)).square().mean().backward()
    run.optimizer.step()
    run.scheduler.step()
    run.epoch += 1
    run.record(dict(val_accuracy=metric), "val_accuracy")


def _weights(state: dict) -> int:
    return sum(v.numel() for v in state.values() if v.is_floating_point())


@pytest.mark.parametrize("metrics, best_copy", [((1.0, 2.0), False), ((2.0, 1.0), True)],
                         ids=["best-is-current", "best-is-earlier"])
def test_a_running_checkpoint_writes_the_best_weights_only_when_they_are_not_the_current_ones(tmp_path, metrics,
                                                                                               best_copy):
    run = _adam_run(tmp_path / "r.pt")
    for m in metrics:
        _epoch(run, m)
    run.save(epochs=5)
    saved = ck.load(tmp_path / "r.pt")
    assert ("state" in saved["best"]) == best_copy and "optimizer" in saved["state"]
    again = _adam_run(tmp_path / "r.pt", seed=1)  # other weights, overwritten by the restore
    assert again.restore(lambda line: None) and again.epoch == 2 and again.history == run.history
    assert again.best["epoch"] == run.best["epoch"] and again.best["metric"] == run.best["metric"]
    for k, v in run.best["state"].items():  # the chosen weights come back either way
        assert torch.equal(again.best["state"][k], v), k
    assert again.optimizer.state_dict()["state"][0]["step"] == 2


def test_a_finished_checkpoint_keeps_only_the_chosen_weights(tmp_path):
    run = _adam_run(tmp_path / "f.pt")
    for m in (1.0, 3.0, 2.0):  # the best epoch is the second, not the last
        _epoch(run, m)
    chosen = {k: v.clone() for k, v in run.best["state"].items()}
    run.save(epochs=3)
    saved = ck.load(tmp_path / "f.pt")
    assert set(saved["state"]) == {"model"} and "state" not in saved["best"]
    tensors = [v for v in saved["state"]["model"].values()]
    assert _weights(saved["state"]["model"]) == _weights(run.model.state_dict())  # one copy, not four
    assert len(tensors) == len(run.model.state_dict())
    fresh = _adam_run(tmp_path / "f.pt", seed=1)
    assert fresh.restore(lambda line: None) and fresh.epoch == 3 and fresh.best["epoch"] == 2
    fresh.finish()
    for k, v in chosen.items():
        assert torch.equal(fresh.model.state_dict()[k], v), k
    assert not fresh.model.training


def test_a_file_of_the_earlier_layout_still_resumes(tmp_path):
    """Before, every file held the model, the optimiser state and the best epoch's copy, finished or not."""
    run = _adam_run(tmp_path / "old.pt")
    for m in (2.0, 1.0):
        _epoch(run, m)
    ck.save_atomic(dict(spec=run.spec, epoch=2, done=False, history=run.history, best=run.best, seconds=1.0,
                        rng=ck.rng_state(), state=dict(model=run.model.state_dict(),
                                                       optimizer=run.optimizer.state_dict(),
                                                       scheduler=run.scheduler.state_dict(),
                                                       scaler=run.scaler.state_dict())), tmp_path / "old.pt")
    again = _adam_run(tmp_path / "old.pt", seed=1)
    assert again.restore(lambda line: None) and again.epoch == 2 and again.best["epoch"] == 1
    assert again.scheduler.state_dict() == run.scheduler.state_dict()
    for k, v in run.best["state"].items():
        assert torch.equal(again.best["state"][k], v), k
    for k, v in run.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[k], v), k


@pytest.mark.parametrize("saved_fused, resumed_fused", [(False, True), (True, False), (True, True)])
def test_a_resumed_optimiser_keeps_the_implementation_it_was_built_with(tmp_path, saved_fused, resumed_fused):
    """Runs on a GPU build fused optimisers (``engine.fused_optimizer``); checkpoints written before, or on a CPU,
    hold unfused ones. ``load_state_dict`` alone takes ``fused`` from the file: a fused optimiser resumed from an
    unfused file became unfused, and the GradScaler (fp16) then called it as a fused one: an AssertionError."""
    def run_with(fused, seed=0):
        run = _adam_run(tmp_path / "o.pt", seed)
        run.optimizer = torch.optim.Adam(run.model.parameters(), lr=0.1, fused=fused)
        run.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(run.optimizer, T_max=10)
        run.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 4)  # enabled: the fp16 path
        return run

    def scaled_step(run, x):
        run.optimizer.zero_grad()
        run.scaler.scale(run.model(x).square().mean()).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()

    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(1))
    run = run_with(saved_fused)
    _epoch(run, 1.0)
    run.save(epochs=5)
    again = run_with(resumed_fused, seed=1)
    assert again.restore(lambda line: None)
    assert bool(again.optimizer.param_groups[0]["fused"]) == resumed_fused
    scaled_step(again, x)  # raised before, for an unfused file resumed fused
    scaled_step(run, x)
    for k, v in run.model.state_dict().items():  # the same step, in either implementation's rounding
        torch.testing.assert_close(again.model.state_dict()[k], v, rtol=1e-5, atol=1e-6, msg=k)
    assert float(again.optimizer.state_dict()["state"][0]["step"]) == 2


def test_load_optimizer_refuses_a_state_of_more_parameter_groups():
    """As ``load_state_dict`` does: zipping the groups would drop the file's extra ones and load the rest silently."""
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    two = torch.optim.Adam([{"params": a.parameters()}, {"params": b.parameters()}])
    (a(torch.ones(1, 2)).sum() + b(torch.ones(1, 2)).sum()).backward()
    two.step()
    with pytest.raises(ValueError, match="number of parameter groups"):
        ck.load_optimizer(torch.optim.Adam(a.parameters()), two.state_dict())
