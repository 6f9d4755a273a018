"""Config.compile=True: compiled fused training steps are the eager steps, in float32, on the CPU (inductor).

Cheap on purpose (torch.compile of a real student costs minutes on a 2-core CPU): two tiny ConvNet students,
which have every layer kind a student has (conv-BN-ReLU, max-pool, average pool, Linear head), fuse into one
network that is compiled once (forward and backward). The steps' losses must agree to float32 rounding; so
must every weight, BatchNorm buffer and Adam moment, except where float32 cannot agree: a conv bias in front
of a BatchNorm has a gradient of pure rounding noise, which Adam scales up to steps of up to ``lr`` in either
implementation (tests/test_fused.py's docstring), so those biases (and the BatchNorm running means they
shift) are allowed ``lr`` per step.
"""
import copy
import shutil

import pytest
import torch
import torch._inductor.config
from torch._dynamo.utils import counters

from tadist_utils import models
from tadist_utils.engine import Compiled, grad_scaler
from tadist_utils.fused import FusedSteps
from tadist_utils.train import Context, RunState

pytestmark = pytest.mark.skipif(not any(map(shutil.which, ("g++", "clang++", "c++"))),
                                reason="inductor compiles CPU kernels with a C++ compiler; none on PATH")

CPU = torch.device("cpu")
LR = 1e-3
TOL = dict(atol=2e-5, rtol=1e-4)  # float32: ~1e-7 relative per op, a few steps of a tiny network


def tiny_runs(students):
    runs = []
    for m in students:
        opt = torch.optim.Adam(m.parameters(), lr=LR, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
        runs.append(RunState(None, {}, m, opt, sched, grad_scaler(CPU, None)))
    return runs


def noise_keys(model: models.ConvNet) -> set[str]:
    """State keys that float32 rounding moves by up to an Adam step: pre-BatchNorm conv biases, running means."""
    keys = set()
    for i, (m, nxt) in enumerate(zip(model.body, list(model.body)[1:])):
        if isinstance(m, torch.nn.Conv2d) and isinstance(nxt, torch.nn.BatchNorm2d):
            keys |= {f"body.{i}.bias", f"body.{i + 1}.running_mean"}
    return keys


def test_compiled_fused_steps_equal_eager_steps_float32(monkeypatch):
    # no pool of compile workers: starting them (each imports torch) costs more than it saves on a 2-core CI box
    monkeypatch.setattr(torch._inductor.config, "compile_threads", 1)
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    students = [models.ConvNet([8, "M", 16], head=(16, 16)).train() for _ in range(2)]
    eager, compiled = tiny_runs(copy.deepcopy(students)), tiny_runs(copy.deepcopy(students))
    wanted = [((0, 0, 16),), ((0, 16, 32),)]
    fa = FusedSteps(eager, wanted, Context(CPU, progress=False, fuse=True))
    fb = FusedSteps(compiled, wanted, Context(CPU, progress=False, fuse=True, compile=True))
    assert all(isinstance(f, Compiled) for f in fb.nets)
    fa.train()
    fb.train()
    g = torch.Generator().manual_seed(1)
    sizes = (8, 8, 8, 5)  # an epoch's last, smaller batch runs eagerly: no second compile
    for bs in sizes:
        x, targets = torch.randn(bs, 3, 32, 32, generator=g), [torch.randn(bs, 32, generator=g)]
        torch.testing.assert_close(fb.step(x, targets), fa.step(x, targets), **TOL)
    assert counters["stats"]["unique_graphs"] == 1  # one compiled graph (forward + backward) for every step
    fa.write_back()
    fb.write_back()
    noisy = noise_keys(students[0])
    for ra, rb in zip(eager, compiled):
        for (k, p), q in zip(ra.model.state_dict().items(), rb.model.state_dict().values()):
            tol = dict(atol=LR * len(sizes), rtol=0) if k in noisy else TOL
            torch.testing.assert_close(q, p, **tol, msg=lambda m: f"{k}: {m}")
        for (k, p), q in zip(ra.model.named_parameters(), rb.model.parameters()):
            if k in noisy:
                continue
            sa, sb = ra.optimizer.state[p], rb.optimizer.state[q]
            assert float(sa["step"]) == float(sb["step"]) == len(sizes)
            for name in ("exp_avg", "exp_avg_sq"):
                torch.testing.assert_close(sb[name], sa[name], **TOL, msg=lambda m: f"{k} {name}: {m}")
        assert rb.optimizer.param_groups[0]["lr"] == pytest.approx(ra.optimizer.param_groups[0]["lr"], rel=1e-12)
