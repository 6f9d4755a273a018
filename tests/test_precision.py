"""engine.resolve_precision: auto never picks an emulated precision, and a forced one warns."""
import warnings

import pytest


def test_forced_bf16_on_a_cpu_without_native_bf16_warns(monkeypatch):
    import torch
    from tadist_utils import engine

    monkeypatch.setattr(engine, "cpu_has_bf16", lambda: False)
    cpu = torch.device("cpu")
    assert engine.resolve_precision("auto", cpu) is None  # auto never picks emulated bf16
    with pytest.warns(UserWarning, match="without native bf16"):
        assert engine.resolve_precision("bf16", cpu) is torch.bfloat16
    monkeypatch.setattr(engine, "cpu_has_bf16", lambda: True)
    assert engine.resolve_precision("auto", cpu) is torch.bfloat16


def test_forced_fp16_on_a_cpu_without_native_fp16_warns(monkeypatch):
    """On this project's EPYC (AVX512-BF16, no AVX512-FP16) a teacher step took 18.4 s under fp16 autocast against
    0.57 s in fp32 and 0.35 s in bf16 (interleaved, 1 thread); and a CPU gets no grad scaler (engine.grad_scaler)."""
    import torch
    from tadist_utils import engine

    cpu = torch.device("cpu")
    monkeypatch.setattr(engine, "cpu_has_fp16", lambda: False)
    with pytest.warns(UserWarning, match="without native fp16"):
        assert engine.resolve_precision("fp16", cpu) is torch.float16
    monkeypatch.setattr(engine, "cpu_has_fp16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert engine.resolve_precision("fp16", cpu) is torch.float16


@pytest.mark.parametrize("capability, auto", [((7, 5), "float16"), ((7, 0), "float16"), ((8, 0), "bfloat16"),
                                              ((9, 0), "bfloat16")], ids=["T4", "V100", "A100", "H100"])
def test_auto_precision_on_a_gpu_without_bf16_units_is_fp16_even_where_torch_says_bf16_is_supported(monkeypatch,
                                                                                                   capability, auto):
    """``torch.cuda.is_bf16_supported()`` says yes on a T4 (it counts emulation), so auto picked emulated bf16 on
    Colab's free GPU; the README promised fp16 with a grad scaler there. Capability decides now."""
    import torch
    from tadist_utils import engine

    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # as on a T4
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "a test GPU")
    gpu = torch.device("cuda")
    assert engine.resolve_precision("auto", gpu) is getattr(torch, auto)
    if auto == "float16":
        with pytest.warns(UserWarning, match="no bf16 units"):
            assert engine.resolve_precision("bf16", gpu) is torch.bfloat16
