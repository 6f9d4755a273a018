"""What a timing ran on: torch's own environment report (``torch.utils.collect_env``), the CPU's model and the flags
that decide its speed (``lscpu``), the load average, and the slug a result file is named by."""
from __future__ import annotations

import functools
import os
import platform
import re
from typing import Sequence

import torch
from torch.utils import collect_env

# bf16 or fp16 autocast is many times slower where these are missing (emulated)
FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16", "amx_tile")


@functools.lru_cache(maxsize=1)
def lscpu() -> dict:
    """``lscpu``'s fields ({} where it is missing, e.g. macOS), read through collect_env."""
    lines = (collect_env.get_cpu_info(collect_env.run) or "").splitlines()
    return {k.strip(): v.strip() for k, sep, v in (ln.partition(":") for ln in lines) if sep}


def describe(device: torch.device) -> str:
    """'AMD EPYC 9R14 (2 threads)', 'NVIDIA H100 80GB HBM3'."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        n = torch.get_num_threads()
        return f"{lscpu().get('Model name') or platform.machine()} ({n} thread{'s' if n != 1 else ''})"
    return device.type


def device_slug(device: torch.device | Sequence[torch.device]) -> str:
    """'cpu-amd-epyc-2t', 'cuda-nvidia-h100-80gb-hbm3' (several joined by '+'): how result files are named."""
    if not isinstance(device, torch.device):
        return "+".join(device_slug(d) for d in device)
    name = describe(device)
    if device.type == "cpu":
        name = re.sub(r"\s*\(\d+ threads?\)$", "", name) + f" {torch.get_num_threads()}t"
    return f"{device.type}-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def loadavg() -> list[float] | None:
    """1/5/15-minute load: the CPU may be shared, and a reader of a timing should know how busy it was."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def describe_machine(device: torch.device) -> dict:
    """A timing report's ``machine``: the device, versions, threads, cores, speed-deciding CPU flags, collect_env."""
    import torchvision
    env = collect_env.get_env_info()
    flags = set(lscpu().get("Flags", "").split())
    return dict(device=str(device), description=describe(device), torch=torch.__version__,
                torchvision=torchvision.__version__, python=platform.python_version(), platform=platform.platform(),
                threads=torch.get_num_threads(), cpu_count=os.cpu_count(), cpu_flags=[f for f in FLAGS if f in flags],
                os=env.os, cuda_runtime=env.cuda_runtime_version, cudnn=env.cudnn_version,
                gpus=env.nvidia_gpu_models, driver=env.nvidia_driver_version)


def sync(device: torch.device) -> None:
    """GPU work is asynchronous: wait for it before reading the clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
