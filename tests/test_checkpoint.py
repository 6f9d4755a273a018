"""Checkpoints: atomic writes, clear errors for corrupted or foreign files, spec differences named."""
import os
import signal
import subprocess
import sys

import pytest
import torch

from tadist_utils import checkpoint as ck
from tadist_utils.config import RunError


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
from tadist_utils import checkpoint
os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # die with the temporary written, before the rename
checkpoint.save_atomic(dict(spec={"epoch": 2}, state={"w": torch.full((2,), 2.0)}), Path(sys.argv[1]))
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_sigkill_mid_write_keeps_the_old_file_and_the_next_save_removes_the_stale_temporary(tmp_path):
    path = tmp_path / "m.pt"
    ck.save_atomic(dict(spec={"epoch": 1}, state={"w": torch.ones(2)}), path)
    child = subprocess.Popen([sys.executable, "-c", KILLED_MID_WRITE, str(path)], env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert child.wait(timeout=120) == -signal.SIGKILL
    stale = tmp_path / f".m.pt.tmp-{child.pid}"
    assert stale.exists() and ck.load(path)["spec"] == {"epoch": 1}  # the old checkpoint is intact
    live = tmp_path / f".m.pt.tmp-{os.getppid()}"      # a writer that is still running: left alone
    other = tmp_path / f".other.pt.tmp-{child.pid}"    # another checkpoint's temporary: not this save's business
    live.write_bytes(b"x")
    other.write_bytes(b"x")
    ck.save_atomic(dict(spec={"epoch": 3}, state={"w": torch.zeros(2)}), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.pt", live.name, other.name])
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
