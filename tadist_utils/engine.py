"""Device, precision and seeding: the knobs that make the same loop fast on a CPU, a T4 or an H100."""
from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import torch

from .config import check_device


def default_threads() -> int:
    """Torch CPU threads when ``threads`` is None: the cores not busy with other processes running now (/proc/loadavg,
    median of 5 looks), at least 1 (beside other jobs on 2 cores, 1 thread trained 4x faster than 2)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    running = []
    for _ in range(5):
        with contextlib.suppress(OSError, ValueError, IndexError):
            running.append(int(Path("/proc/loadavg").read_text().split()[3].split("/")[0]))
        time.sleep(0.02)
    return max(1, cores - max(0, int(statistics.median(running or [1])) - 1))


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA, then MPS, then CPU; another name is checked (``config.check_device``: one-line errors)."""
    if name != "auto":
        return check_device(name) or torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for fp32. 'auto': bf16 on GPUs that support it, fp16 on older ones; on a CPU, bf16
    only with native bf16 (AVX512-BF16, AMX: the teacher 2.7x faster), else fp32 (emulated bf16: ~12x slower)."""
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if cuda_has_bf16(device) else torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_has_bf16() else None
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if device.type == "cuda" and dtype is torch.bfloat16 and not cuda_has_bf16(device):
        warnings.warn(f"precision='bf16' on {torch.cuda.get_device_name(device)}, which has no bf16 units (before "
                      "Ampere): it is emulated; use precision='auto' (fp16 with a grad scaler there) or 'fp32'",
                      stacklevel=2)
    if device.type == "cpu" and not (cpu_has_bf16() if dtype is torch.bfloat16 else cpu_has_fp16()):
        warnings.warn(f"precision={precision!r} on a CPU without native {precision} (no AVX512-{precision.upper()} or "
                      "AMX): autocast emulates it, ~12x (bf16) to ~30x (fp16) slower than fp32 measured, and a CPU "
                      "gets no grad scaler; use precision='auto' or 'fp32'", stacklevel=2)
    return dtype


def cuda_has_bf16(device: torch.device) -> bool:
    """bf16 in hardware: Ampere (compute capability 8) and later, or ROCm. Not ``torch.cuda.is_bf16_supported()``,
    which by default also says yes where bf16 is only emulated (a T4, Colab's free GPU: sm 7.5)."""
    return bool(torch.version.hip) or torch.cuda.get_device_capability(device)[0] >= 8


def _cpuinfo(field: str) -> str:
    """A field of ``/proc/cpuinfo``'s first processor ("" where there is none, e.g. macOS)."""
    with contextlib.suppress(OSError):
        return next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith(field)), "")
    return ""


def cpu_has_bf16() -> bool:
    return bool({"avx512_bf16", "amx_bf16"} & set(_cpuinfo("flags").split()))


def cpu_has_fp16() -> bool:
    return bool({"avx512_fp16", "amx_fp16"} & set(_cpuinfo("flags").split()))


def autocast(device: torch.device, dtype: torch.dtype | None):
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype | None):
    """A GradScaler where fp16 on CUDA needs one, else a disabled one (the same interface)."""
    return torch.amp.GradScaler(device.type, enabled=(dtype == torch.float16 and device.type == "cuda"))


def scaled_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler, scaler) -> None:
    """One training step from a loss: backward (scaled under fp16; an overflow skips the update), schedule step."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()


def fused_optimizer(device: torch.device) -> dict:
    """``fused=True`` on CUDA: one kernel for all tensors, and fp16's overflow check stays on the GPU (no host sync)."""
    return {"fused": True} if device.type == "cuda" else {}


class Compiled:
    """``torch.compile(module)`` for the first input shape only (an epoch's smaller last batch runs eagerly, the same
    maths), so each module compiles once; CUDA graphs on CUDA. The optimiser step stays eager (fused already)."""

    def __init__(self, module: torch.nn.Module, device: torch.device):
        self.module, self.shape = module, None
        self.compiled = torch.compile(module, dynamic=False,
                                      mode="reduce-overhead" if device.type == "cuda" else None)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.shape is None:
            self.shape = x.shape
        return self.compiled(x) if x.shape == self.shape else self.module(x)


def describe(device: torch.device) -> str:
    if device.type != "cpu":
        return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    n = torch.get_num_threads()
    return f"{_cpuinfo('model name') or platform.processor() or platform.machine()} ({n} thread{'s' * (n != 1)})"
