"""What compression buys: parameters, MACs, bytes on disk and latency of the teacher, each student and each ensemble.

One row per (device, model, mode): ``teacher`` and ``student_level1..4`` (``single``), ``ensemble_1/2/4/8`` run
``sequential`` (``models.Ensemble``: one student after another) and ``together`` (``fused.FusedEnsemble``: one network
of grouped convolutions, the same logits). Latency is ``torch.utils.benchmark``'s median of fp32 eval-mode forwards
at batch 1 and ``large_batch``. Weights are random: size and speed do not depend on them. The full measurement,
export checks included: ``python -m benchmarks.cost``.
"""
from __future__ import annotations

import io
from typing import Iterable

import pandas as pd
import torch
from torch import nn
from torch.utils.benchmark import Timer

from .. import models
from ..fused import FusedEnsemble
from ..engine import describe, resolve_device

ENSEMBLE_LEVELS = {1: 1, 2: 2, 4: 3, 8: 4}  # students in the ensemble -> their level
MODEL_NAMES = (["teacher"] + [f"student_level{lv}" for lv in models.STUDENT_LEVELS]
               + [f"ensemble_{n}" for n in ENSEMBLE_LEVELS])
# what notebook 06 spends on the table: smoke every row in seconds; quick and reference briefly, batch 64 not 256
SMOKE_BUDGET = dict(min_run_time=0.01, large_batch=8)
QUICK_BUDGET = dict(min_run_time=0.2, large_batch=64)
PROFILE_BUDGETS = {"smoke": SMOKE_BUDGET, "quick": QUICK_BUDGET, "reference": QUICK_BUDGET}  # paper: in full


def build_ensemble(n: int, num_classes: int = 10) -> models.Ensemble:
    """The paper's ensemble of ``n`` students (1, 2, 4, 8), randomly initialised."""
    if n not in ENSEMBLE_LEVELS:
        raise ValueError(f"ensembles have {sorted(ENSEMBLE_LEVELS)} students, got {n}")
    return models.Ensemble([models.student(ENSEMBLE_LEVELS[n]) for _ in range(n)], num_classes)


def variants(names: Iterable[str] = MODEL_NAMES, num_classes: int = 10, seed: int = 0):
    """(model, n_students, level, mode, module in eval mode) for every name; an ensemble in both modes."""
    for name in names:
        torch.manual_seed(seed)
        if name == "teacher":
            yield name, 0, 0, "single", models.teacher(num_classes).eval()
        elif name.startswith("student_level"):
            yield name, 1, (lv := int(name.removeprefix("student_level"))), "single", models.student(lv).eval()
        else:
            n = int(name.removeprefix("ensemble_"))
            ens = build_ensemble(n, num_classes).eval()
            yield name, n, ENSEMBLE_LEVELS[n], "sequential", ens
            yield name, n, ENSEMBLE_LEVELS[n], "together", FusedEnsemble(ens).eval()


def disk_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def latency(model: nn.Module, batch: int, device: torch.device, min_run_time: float = 1.0):
    """``Timer.blocked_autorange`` of one forward on a random batch: a ``Measurement`` (``.median`` seconds, ``.times``
    per pass). Its block-size search runs the model untimed first (a cold first pass reads several times slow)."""
    x = torch.randn(batch, 3, 32, 32, device=device)
    with torch.inference_mode():
        return Timer("model(x)", globals=dict(model=model.eval(), x=x),
                     num_threads=torch.get_num_threads()).blocked_autorange(min_run_time=min_run_time)


def cost_table(device: str = "all", num_classes: int = 10, models_: Iterable[str] = MODEL_NAMES,
               large_batch: int = 256, min_run_time: float = 1.0) -> pd.DataFrame:
    """One row per (device, model, mode): parameters, MACs, disk bytes, latency at batch 1 and ``large_batch``.
    ``device``: 'all' (the CPU, and CUDA when there is one), 'cpu', 'cuda' or 'cuda:N'."""
    names = list(models_)
    if unknown := [m for m in names if m not in MODEL_NAMES]:
        raise ValueError(f"unknown model(s) {', '.join(map(repr, unknown))}; choose from {', '.join(MODEL_NAMES)}")
    devices = ([torch.device("cpu")] + [torch.device("cuda")] * torch.cuda.is_available() if device == "all"
               else [resolve_device(device)])
    rows, big = [], int(large_batch)
    for name, n, level, mode, net in variants(names, num_classes):
        base = dict(model=name, n_students=n, student_level=level or None, mode=mode,
                    parameters=models.count_params(net), macs=models.count_macs(net),
                    paper_parameters=models.PAPER_PARAMS.get(name) if num_classes == 10 else None,
                    disk_bytes=disk_bytes(net))
        for dev in devices:
            small, large = (latency(net.to(dev), b, dev, min_run_time) for b in (1, big))
            rows.append(dict(device=str(dev), device_name=describe(dev), **base, latency_ms_b1=1000 * small.median,
                             **{f"latency_ms_b{big}": 1000 * large.median, f"images_per_s_b{big}": big / large.median},
                             runs_b1=small.number_per_run * len(small.times),
                             **{f"runs_b{big}": large.number_per_run * len(large.times)}))
        net.cpu()
    return pd.DataFrame(rows)
