"""Checkpoints: atomic writes, clear errors for corrupted or foreign files, spec differences named."""
import pytest
import torch

from tadist_utils import checkpoint as ck


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
