"""Host round trips per training step, counted without a GPU: what stalls a GPU's queue besides launches.

A GPU runs kernels while the host queues the next ones, as long as the host never waits for it: a device value read
on the host (``.item()``, ``float(t)``, a copy to the CPU) or a pageable host-to-device copy (PyTorch synchronises
after it) each stop the host from running ahead, which CUDA graphs and launch-bound tiny students need most.

Counted on any machine: the loop runs on ``meta`` (shapes, no data) and ``HostTraffic`` counts every copy between
the host and that device and every value read back, answering reads with zeros so the loop goes on. ``per_step``
compares runs of two lengths, so set-up and each epoch's ends cancel out. With ``TADIST_TRAFFIC_DEVICE=cuda``
(``.ci/gpu-check``) the device is the GPU and ``count`` reports ``syncs``, what ``torch.cuda.set_sync_debug_mode``
flags: the real thing ``meta`` stands in for.
"""
from __future__ import annotations

import os
import warnings
from typing import Callable

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

DEVICE = torch.device(os.environ.get("TADIST_TRAFFIC_DEVICE", "meta"))  # the stand-in accelerator, or a real GPU
_aten = torch.ops.aten
_READS = {_aten._local_scalar_dense.default, _aten.nonzero.default, _aten.masked_select.default}  # value-dependent
_FROM_HOST = {"tensor", "as_tensor", "asarray", "new_tensor"}  # host data (a list, a number, an array) made a tensor


class _HostData(TorchFunctionMode):
    """What never reaches a dispatch mode: host data made into a device tensor (``torch.tensor(list, device=...)``,
    a list as an index) is copied inside the op, and printing a device tensor reads it."""

    def __init__(self, traffic: "HostTraffic"):
        super().__init__()
        self.traffic = traffic

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if name in _FROM_HOST and isinstance(out, torch.Tensor) and out.device == DEVICE:
            data = args[1] if name == "new_tensor" else args[0] if args else next(iter(kwargs.values()), None)
            self.traffic.copies += not isinstance(data, torch.Tensor)  # a tensor's copy is seen as ``_to_copy``
        elif name in ("__getitem__", "__setitem__") and args[0].device == DEVICE:
            index = args[1] if isinstance(args[1], tuple) else (args[1],)
            self.traffic.copies += any(isinstance(i, list) for i in index)
        elif name == "__repr__" and args[0].device == DEVICE:
            self.traffic.reads += 1
        return out


class HostTraffic(TorchDispatchMode):
    """Counts ``reads`` (device values the host waits for) and ``copies`` (host memory copied to the device)."""

    def __init__(self):
        super().__init__()
        self.reads, self.copies = 0, 0
        self._host_data = _HostData(self)

    def __enter__(self):
        self._host_data.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self._host_data.__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if func in _READS and any(t.device == DEVICE for t in tensors):
            self.reads += 1
            if func is _aten._local_scalar_dense.default:
                return False if args[0].dtype == torch.bool else 0  # no data on meta: the loop goes on with zeros
        if func in (_aten._to_copy.default, _aten.copy_.default):
            src = args[0] if func is _aten._to_copy.default else args[1]
            dst = (kwargs.get("device") or src.device) if func is _aten._to_copy.default else args[0].device
            if src.device == DEVICE and torch.device(dst).type == "cpu":
                self.reads += 1
                if func is _aten._to_copy.default:
                    return torch.zeros(src.shape, dtype=kwargs.get("dtype") or src.dtype)
                return args[0].zero_()
            if src.device.type == "cpu" and torch.device(dst) == DEVICE:
                self.copies += 1
        elif any(t.device == DEVICE for t in tensors) and any(t.device.type == "cpu" and t.dim() for t in tensors):
            self.copies += 1  # a host tensor (not a scalar) as an operand, e.g. an index: copied inside the op
        return func(*args, **kwargs)


def count(fn: Callable[[], object]) -> dict:
    """What one call of ``fn`` (whose device tensors are on ``DEVICE``) makes the host wait for: ``reads`` and
    ``copies`` on ``meta``; on a GPU, ``syncs`` (the calls that synchronise with it)."""
    if DEVICE.type != "cuda":
        with HostTraffic() as traffic:
            fn()
        return dict(reads=traffic.reads, copies=traffic.copies)
    before = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("warn")  # each synchronising call warns ("called a synchronizing CUDA operation")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
    finally:
        torch.cuda.set_sync_debug_mode(before)
    return dict(syncs=sum("synchroniz" in str(w.message) for w in caught))


def per_step(run: Callable[[int], object], steps: tuple[int, int] = (2, 7)) -> dict:
    """Host round trips that each training step adds: ``run(n)`` trains one epoch of ``n`` steps on ``DEVICE``.

    Counted for two epoch lengths after an uncounted run of ``steps[0] - 1`` (one-time set-up; a length of its own,
    so a run resuming its own checkpoint starts afresh). 2 and 7: a round trip every k-th step shows for every
    k up to 7; with 2 and 4 one every 5th step did not."""
    if not 2 <= steps[0] < steps[1]:
        raise ValueError(f"steps must be two lengths, 2 <= short < long; got {steps}")
    count(lambda: run(steps[0] - 1))  # counted and dropped: meta answers reads only inside the count
    short, long = (count(lambda n=n: run(n)) for n in steps)
    extra = steps[1] - steps[0]
    return {k: (long[k] - short[k]) / extra for k in short}
