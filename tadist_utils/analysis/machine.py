"""What a measurement needs to know about the machine: waiting for the GPU, how busy the CPU is, its flags.

Used by ``bench`` and ``cost`` only; the method's own description of a device (``engine.describe``, written
to every manifest) and the result files' names (``engine.device_slug``) stay in ``engine``.
"""
from __future__ import annotations

import os
import platform

import torch

from .. import engine
from ..engine import describe


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


def cpu_flags() -> list[str]:
    """The CPU features that decide speed here (bf16 or fp16 autocast is many times slower where it is emulated)."""
    have = engine.cpu_flags()
    return [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16", "amx_tile")
            if f in have]


def describe_machine(device: torch.device) -> dict:
    """The bench report's ``machine``: device, torch/torchvision/python versions, threads, cores, CPU flags.

    ``cost`` records the same, with its devices (it may measure several) listed under ``devices``."""
    import torchvision
    return dict(device=str(device), description=describe(device), torch=torch.__version__,
                torchvision=torchvision.__version__, python=platform.python_version(), platform=platform.platform(),
                threads=torch.get_num_threads(), cpu_count=os.cpu_count(), cpu_flags=cpu_flags())
