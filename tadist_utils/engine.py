"""Device, precision and seeding: the knobs that make the same loop fast on a CPU, a T4 or an H100."""
from __future__ import annotations

import contextlib
import os
import re
import warnings
from pathlib import Path
from typing import Sequence

import torch

from .config import Config
from .errors import ConfigError


def check(cfg: Config) -> None:
    """The engine's settings, before anything trains: a precision and fuse_students it knows, a device this machine has."""
    if cfg.precision not in ("auto", "fp32", "bf16", "fp16"):  # resolve_precision's and resolve_fuse's words
        raise ConfigError(f"precision must be auto, fp32, bf16 or fp16, got {cfg.precision!r}")
    if cfg.fuse_students not in ("auto", "on", "off"):
        raise ConfigError(f"fuse_students must be auto, on or off, got {cfg.fuse_students!r}")
    resolve_device(cfg.device)


def default_threads() -> int:
    """Torch CPU threads when ``threads`` is None: the cores not busy with other running processes, at least 1.

    Beside other jobs on a 2-core CPU the quick teacher trained at 26 img/s with 2 threads, 99 img/s with 1. Busy =
    processes running now (/proc/loadavg, median of 5 looks) less this one; the 1-minute load average would count
    the notebook kernel that just finished.
    """
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
    """The autocast dtype, or None for fp32. 'auto': bf16 on GPUs that support it, fp16 on older ones.

    On a CPU, 'auto' means bf16 only where the CPU has native bf16 instructions (AVX512-BF16 or
    AMX): measured 2.7x faster for the teacher on a 2-core AVX512-BF16 EPYC; elsewhere fp32, since
    emulated bf16 was ~12x *slower* than fp32 on an AVX2-only EPYC (a forced 'bf16' there warns).
    """
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


def resolve_fuse(setting: str, device: torch.device) -> bool:
    """Train sibling students as one fused network? 'auto': on accelerators, where a tiny student's cost
    is kernel launches; not on a CPU, where the per-student loop measured faster (README, Performance)."""
    if setting in ("on", "off"):
        return setting == "on"
    return device.type != "cpu"


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


def cpu_flags() -> set[str]:
    return set(_cpuinfo("flags").split())


def cpu_has_bf16() -> bool:
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def cpu_has_fp16() -> bool:
    return bool({"avx512_fp16", "amx_fp16"} & cpu_flags())


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
    """``torch.compile(module)`` for the hot loop, used for one input shape only: the first it is called with.

    An epoch's smaller last batch runs eagerly (same maths), so each module compiles once, as a static-shape
    graph. On CUDA the mode is ``"reduce-overhead"`` (CUDA graphs: what a launch-bound step of tiny students
    needs; not yet measured on a GPU). The optimiser step stays eager: the fused Adam is already one kernel, and
    a compiled one would need a tensor learning rate in the checkpointed optimiser state.
    """

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


# ----------------------------------------------------------------------------- measuring (used by analysis only)
def device_slug(device: torch.device | Sequence[torch.device]) -> str:
    """'cpu-amd-epyc-2t', 'cuda-nvidia-h100-80gb-hbm3' (several joined by '+'): how result files are named."""
    if not isinstance(device, torch.device):
        return "+".join(device_slug(d) for d in device)
    name = describe(device)
    if device.type == "cpu":
        name = re.sub(r"\s*\(\d+ threads?\)$", "", name) + f" {torch.get_num_threads()}t"
    return f"{device.type}-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def sync(device: torch.device) -> None:
    """GPU work is asynchronous: wait for it before reading the clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loadavg() -> list[float] | None:
    """1/5/15-minute load: this CPU may be shared, and readers of a timing should know how busy it was."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def describe_machine(device: torch.device) -> dict:
    """A timing report's ``machine``: versions, threads, cores and the CPU flags that decide speed (bf16 or fp16
    autocast is many times slower where it is emulated)."""
    import platform

    import torchvision
    flags = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16", "amx_tile")
    return dict(device=str(device), description=describe(device), torch=torch.__version__,
                torchvision=torchvision.__version__, python=platform.python_version(), platform=platform.platform(),
                threads=torch.get_num_threads(), cpu_count=os.cpu_count(),
                cpu_flags=[f for f in flags if f in cpu_flags()])
