"""export.py and cost.py's command: every ensemble's TorchScript and ONNX round trip, the full table as JSON and CSV."""
import json
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import cost, export
from benchmarks.machine import describe_machine
from tadist_utils import fused as fusion
from tadist_utils import models
from tadist_utils.analysis.cost import build_ensemble

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from test_cost import randomise_bn  # noqa: E402  (the fused-ensemble tests' non-trivial BatchNorm, kept there)


def test_exports_round_trip():
    table = cost.exports(["student_level4", "ensemble_2", "ensemble_8"])
    assert [(r.model, r.mode) for r in table.itertuples()] == [
        (f"ensemble_{n}", m) for n in (2, 8) for m in ("sequential", "together")]  # single models: not exported
    assert table.torchscript_ok.all() and (table.torchscript_max_abs_diff < 1e-4).all()
    params = table.model.map(lambda m: models.PAPER_PARAMS[m])
    assert (table.torchscript_bytes > params * 4).all()
    if export.onnx_available() is None:
        assert (table.onnx_status == "ok").all() and (table.onnx_max_abs_diff < 1e-4).all()
    else:
        assert table.onnx_status.str.startswith("skipped").all()


def test_torchscript_export_of_fused_ensemble_with_real_bn(tmp_path):
    torch.manual_seed(3)
    fused = fusion.FusedEnsemble(randomise_bn(build_ensemble(2))).eval()
    out = export.export_torchscript(fused, tmp_path, "f")
    assert out["torchscript_ok"] and out["torchscript_max_abs_diff"] < 1e-4 and out["torchscript_bytes"] > 0
    assert not list(tmp_path.iterdir())  # the file is measured, then removed


def test_export_check_catches_a_difference():
    ref = torch.tensor([[1.0, -2.0]])
    assert export.export_check(ref, ref + 1e-6)[1]
    assert not export.export_check(ref, ref + 1e-2)[1]


def test_cli_quick_writes_json_and_csv(tmp_path, capsys):
    out = tmp_path / "c.json"
    cost.main(["--device", "cpu", "--quick", "--models", "ensemble_2", "--large-batch", "2", "--out", str(out)])
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert [(r["model"], r["mode"]) for r in rows] == [("ensemble_2", "sequential"), ("ensemble_2", "together")]
    assert all(r["parameters"] == models.PAPER_PARAMS["ensemble_2"] and r["latency_ms_b2"] > 0 for r in rows)
    assert all(r["torchscript_ok"] for r in rows)
    assert report["machine"]["torch"] == torch.__version__ and report["settings"]["quick"]
    cpu = describe_machine(torch.device("cpu"))  # the bench report's fields, every device listed
    assert report["machine"]["devices"] == [{k: cpu[k] for k in ("device", "description")}]
    assert {k: report["machine"][k] for k in cpu if k not in ("device", "description")} == \
        {k: v for k, v in cpu.items() if k not in ("device", "description")}
    assert out.with_suffix(".csv").exists()
    assert "ensemble_2" in capsys.readouterr().out


def test_an_unknown_device_is_one_line():
    from tadist_utils.errors import ConfigError
    with pytest.raises(ConfigError, match="unknown device"):
        cost.main(["--device", "tpu9", "--quick", "--models", "student_level4", "--no-export"])
