"""Device, precision and seeding: the knobs that make the same loop fast on a CPU, a T4 or an H100."""
from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import torch

from .errors import ConfigError


def default_threads() -> int:
    """Torch CPU threads when ``threads`` is None: the cores not busy with other processes running now (/proc/loadavg,
    median of 5 looks), at least 1 (beside other jobs on 2 cores, 1 thread trained 4x faster than 2)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        import statistics
        import time
        running = []
        for _ in range(5):
            running.append(int(Path("/proc/loadavg").read_text().split()[3].split("/")[0]))
            time.sleep(0.02)
        busy = max(0, int(statistics.median(running)) - 1)
    except (OSError, ValueError, IndexError):
        busy = 0
    return max(1, cores - busy)


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA, then MPS, then CPU; an explicit device that is absent is a one-line error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but this machine has no CUDA GPU (use device='auto' or 'cpu')")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"device {name!r} requested but MPS is not available here")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return dev


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for fp32. 'auto': bf16 on GPUs that support it, fp16 on older ones; on a CPU, bf16
    only with native bf16 (AVX512-BF16, AMX: the teacher 2.7x faster), else fp32 (emulated bf16: ~12x slower)."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        if device.type == "cpu" and not cpu_has_bf16():
            warnings.warn("precision='bf16' on a CPU without native bf16 (no AVX512-BF16 or AMX): autocast emulates "
                          "it, measured ~12x slower than fp32 on an AVX2-only EPYC; use precision='auto' or 'fp32'",
                          stacklevel=2)
        if device.type == "cuda" and not cuda_has_bf16(device):
            warnings.warn(f"precision='bf16' on {torch.cuda.get_device_name(device)}, which has no bf16 units (before "
                          "Ampere): it is emulated; use precision='auto' (fp16 with a grad scaler there) or 'fp32'",
                          stacklevel=2)
        return torch.bfloat16
    if precision == "fp16":
        if device.type == "cpu" and not cpu_has_fp16():
            warnings.warn("precision='fp16' on a CPU without native fp16 (no AVX512-FP16 or AMX-FP16): autocast emulates "
                          "it, a teacher step measured ~30x slower than fp32 on an AVX512-BF16 EPYC, and a CPU gets "
                          "no grad scaler; use precision='auto' or 'fp32'", stacklevel=2)
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if cuda_has_bf16(device) else torch.float16
    if device.type == "cpu" and cpu_has_bf16():
        return torch.bfloat16
    return None


def cuda_has_bf16(device: torch.device) -> bool:
    """bf16 in hardware: Ampere (compute capability 8) and later, or ROCm. Not ``torch.cuda.is_bf16_supported()``,
    which by default also says yes where bf16 is only emulated (a T4, Colab's free GPU: sm 7.5)."""
    if torch.version.hip:
        return True
    return torch.cuda.get_device_capability(device)[0] >= 8


def _cpuinfo(field: str) -> str:
    """A field of ``/proc/cpuinfo``'s first processor ("" where there is none, e.g. macOS)."""
    try:
        return next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith(field)), "")
    except OSError:
        return ""


def cpu_has_bf16() -> bool:
    return bool({"avx512_bf16", "amx_bf16"} & set(_cpuinfo("flags").split()))


def cpu_has_fp16() -> bool:
    return bool({"avx512_fp16", "amx_fp16"} & set(_cpuinfo("flags").split()))


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype | None):
    """A GradScaler only where fp16 needs one; otherwise a disabled scaler with the same interface."""
    return torch.amp.GradScaler(device.type, enabled=(dtype == torch.float16 and device.type == "cuda"))


def scaled_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler, scaler) -> None:
    """One training step from a loss: backward (scaled under fp16; an overflow skips the update), schedule step."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()


def fused_optimizer(device: torch.device) -> dict:
    """``fused=True`` for an optimiser on CUDA: one kernel for all its tensors, and under fp16 the GradScaler's
    overflow check stays on the GPU (unfused, ``GradScaler.step`` reads ``found_inf`` on the host every step)."""
    return {"fused": True} if device.type == "cuda" else {}


class Compiled:
    """``torch.compile(module)`` for one input shape, the first it is called with: an epoch's smaller last batch runs
    eagerly (same maths), so each module compiles once. CUDA: ``"reduce-overhead"`` (CUDA graphs, for launch-bound
    tiny students). The optimiser step stays eager (the fused Adam is one kernel already)."""

    def __init__(self, module: torch.nn.Module, device: torch.device):
        self.module, self.shape = module, None
        self.compiled = torch.compile(module, dynamic=False,
                                      mode="reduce-overhead" if device.type == "cuda" else None)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.shape is None:
            self.shape = x.shape
        return self.compiled(x) if x.shape == self.shape else self.module(x)


def prepare(model: torch.nn.Module, device: torch.device, channels_last: bool) -> torch.nn.Module:
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        import platform
        name = _cpuinfo("model name") or platform.processor() or platform.machine()
        n = torch.get_num_threads()
        return f"{name} ({n} thread{'s' if n != 1 else ''})"
    return device.type
