"""Every ensemble exported and run back: TorchScript (traced, saved, loaded, run at another batch size) and, when
``onnx`` and ``onnxruntime`` import, ONNX under onnxruntime, each within ``EXPORT_TOL`` of eager PyTorch.
TorchScript is deprecated in torch >= 2.10 but still what a C++ or mobile deployment loads without Python, so its
warnings are silenced locally."""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

EXPORT_TOL = 1e-4  # max |exported - eager| allowed, relative to max(1, max |eager logits|)


@contextlib.contextmanager
def _quiet_jit():
    """torch >= 2.10 marks torch.jit deprecated with a FutureWarning on every call; silence only those."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def export_check(reference: torch.Tensor, other: torch.Tensor) -> tuple[float, bool]:
    """(max |other - reference|, whether it is within ``EXPORT_TOL`` of the logits' scale)."""
    diff = float((reference.float() - other.float()).abs().max())
    return diff, diff <= EXPORT_TOL * max(1.0, float(reference.abs().max()))


def _export_inputs(model: nn.Module, seed: int):
    """The model on the CPU in eval mode, a batch of 2 to trace and a batch of 5 to compare on."""
    g = torch.Generator().manual_seed(seed)
    return model.eval().cpu(), torch.randn(2, 3, 32, 32, generator=g), torch.randn(5, 3, 32, 32, generator=g)


def export_torchscript(model: nn.Module, folder: Path, name: str, seed: int = 0) -> dict:
    """Trace at batch 2, save, load back, run on a batch of 5: file size and max |loaded - eager|."""
    model, example, probe = _export_inputs(model, seed)
    path = folder / f"{name}.ts.pt"
    with _quiet_jit(), torch.inference_mode():
        traced = torch.jit.trace(model, example)
        torch.jit.save(traced, str(path))
        loaded = torch.jit.load(str(path), map_location="cpu")
        diff, ok = export_check(model(probe), loaded(probe))
    size = path.stat().st_size
    path.unlink()
    return dict(torchscript_bytes=size, torchscript_max_abs_diff=diff, torchscript_ok=ok)


def onnx_available() -> str | None:
    """None when ONNX export can be checked, else why not."""
    missing = []
    for mod in ("onnx", "onnxruntime"):
        try:
            __import__(mod)
        except Exception:  # ImportError, or a broken install
            missing.append(mod)
    return f"skipped: {' and '.join(missing)} not installed" if missing else None


def export_onnx(model: nn.Module, folder: Path, name: str, seed: int = 0) -> dict:
    """ONNX (dynamic batch) run by onnxruntime on CPU, or the reason it was skipped or failed."""
    skipped = onnx_available()
    if skipped:
        return dict(onnx_status=skipped, onnx_bytes=None, onnx_max_abs_diff=None, onnx_ok=None)
    import onnxruntime as ort
    model, example, probe = _export_inputs(model, seed)
    path = folder / f"{name}.onnx"
    try:
        with _quiet_jit(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            # dynamo=False: needs only `onnx` (the default needs onnxscript too); torch >= 2.9 calls it legacy
            torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=["images"],
                              output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        out = session.run(None, {"images": probe.numpy()})[0]
        with torch.inference_mode():
            diff, ok = export_check(model(probe), torch.from_numpy(np.asarray(out)))
        size = path.stat().st_size
        for f in folder.glob(f"{name}.onnx*"):  # external data files, if the exporter wrote any
            f.unlink()
        return dict(onnx_status="ok" if ok else "mismatch", onnx_bytes=size, onnx_max_abs_diff=diff, onnx_ok=ok)
    except Exception as e:  # noqa: BLE001 - the exporter's many failure types all mean "could not check"
        return dict(onnx_status=f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}",
                    onnx_bytes=None, onnx_max_abs_diff=None, onnx_ok=False)


def export_failures(df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose TorchScript or ONNX output differs from PyTorch (or whose ONNX export broke)."""
    bad = pd.Series(False, index=df.index)
    for col in ("torchscript_ok", "onnx_ok"):
        if col in df:
            bad |= df[col].map(lambda v: v is False or v is np.False_)
    return df[bad]
