"""The bench's ``ops``, ``guides`` and ``paper`` cases: what one training step costs, counted and timed.

On a GPU the students are launch-bound, so operator calls per step are what their speed follows, and those can be
counted on any machine (``torch.profiler`` and ``DeviceOps``). ``bench_paper`` estimates the ``paper`` profile's
wall time for one seed from a few timed steps of every training group.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.benchmark import Timer

from tadist_utils import models
from tadist_utils.config import make_config
from tadist_utils.engine import grad_scaler
from tadist_utils.experiments import lineages, student_groups
from tadist_utils.fused import FusedSteps
from tadist_utils.plans import METHODS, PAPER_EXPERIMENTS
from tadist_utils.plans import TEACHER, TEACHER_LINEAGE
from tadist_utils.train import (Context, RunState, SeparateSteps, classifier_optimizer, classifier_step, guide_features,
                                init_seed, student_run)

from .machine import sync


# ----------------------------------------------------------------------------- launches: operator calls per step
def student_runs(nodes, ctx: Context, total_steps: int = 1000, fused: bool | None = None) -> list[RunState]:
    """Fresh students with the optimiser and schedule train_students gives them (``fused``: ``train.student_run``)."""
    runs = []
    for n in nodes:
        torch.manual_seed(init_seed(0, n.key))
        net = ctx.model(models.student(n.level)).train()
        runs.append(student_run(net, ctx, lr=1e-3, steps=total_steps, path=Path(), fused=fused))
    return runs


_aten = torch.ops.aten
# ops that launch no kernel on a GPU: allocation, metadata, a read back to the host (``HostTraffic`` counts those)
# (in-place view ops such as ``squeeze_`` or ``detach_`` only restride: ``is_view`` is False for them)
_NO_KERNEL = {_aten.empty, _aten.empty_strided, _aten.empty_like, _aten.empty_permuted, _aten.new_empty,
              _aten.new_empty_strided, _aten._unsafe_view, _aten.as_strided_, _aten.set_, _aten.resize_,
              _aten.resize_as_, _aten.lift_fresh, _aten._local_scalar_dense, _aten.detach_, _aten.squeeze_,
              _aten.unsqueeze_, _aten.t_, _aten.transpose_, _aten.swapdims_, _aten.swapaxes_}


class DeviceOps(TorchDispatchMode):
    """Counts the operators that reach the device's kernels (below autograd, as a GPU would launch them): the
    profiler's leaves minus a CPU kernel's inner calls, views, metadata-only ops and the profiler's markers.

    A lower bound on CUDA's launches by a roughly constant factor per layer (a cuDNN conv's bias and its gradient
    are extra kernels; a fused optimiser op launches once per ~36 tensors), so loop/fused ratios hold better than
    absolute counts. Compiled code is not counted: dynamo runs the eager ops while a dispatch mode is active."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if isinstance(func, torch._ops.OpOverload) and func.namespace == "aten":
            self.n += not (func.is_view or func.overloadpacket in _NO_KERNEL)
        return func(*args, **(kwargs or {}))


def student_step(runs, wanted, ctx: Context, fuse: bool):
    """A callable ``(x, targets) -> losses``: one training step of every student, fused or one by one."""
    step = (FusedSteps if fuse else SeparateSteps)(runs, wanted, ctx)
    step.train()
    return step.step


def count_ops(fn, device: torch.device, device_ops: bool = True) -> dict:
    """Operator calls of one call of ``fn`` (after one untimed call): what a launch-bound GPU step pays for.

    ``aten_ops``: every ATen operator dispatched (nested included); ``leaf_ops``: those calling no other;
    ``device_ops``: ``DeviceOps`` (off for a compiled ``fn``, which a dispatch mode would run eagerly);
    ``gpu_kernels``: kernels the profiler saw on the GPU (CUDA only).
    """
    from torch.profiler import ProfilerActivity, profile
    fn()
    sync(device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        fn()
        sync(device)
    events = prof.events()
    aten = [e for e in events if e.name.startswith("aten::")]
    leaf = [e for e in aten if not any(c.name.startswith("aten::") for c in e.cpu_children)]
    out = dict(aten_ops=len(aten), leaf_ops=len(leaf))
    if device_ops:
        counter = DeviceOps()
        with counter:
            fn()
            sync(device)
        out["device_ops"] = counter.n
    if device.type == "cuda":
        out["gpu_kernels"] = sum(1 for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    return out


def bench_ops(ctx: Context, experiment: str, levels: int, batch_size: int, compiled: bool = False) -> dict:
    """Operator calls per training step of a plan's teacher-fed students: the per-student loop vs fused.

    ``compiled``: also the fused step under ``Config.compile`` (its first call takes minutes on a CPU); inductor's
    kernels run outside the dispatcher, so only the ATen operators it still calls (convolutions) show."""
    nodes = [n for n in METHODS[experiment].plan(levels).nodes if n.parent == TEACHER]
    wanted = [((0, n.start, n.stop),) for n in nodes]
    x = torch.randn(batch_size, 3, 32, 32, device=ctx.device)
    if ctx.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    targets = [torch.randn(batch_size, 512, device=ctx.device)]
    case = dict(what=f"one training step of the '{experiment}' plan's {len(nodes)} teacher-fed students, batch "
                     f"{batch_size}, the teacher's features cached (as without augmentation); each looped student "
                     f"with a fused Adam, as on CUDA (engine.fused_optimizer)", students=len(nodes))
    paths = [("loop", False, ctx), ("fused", True, ctx)] + [("fused_compiled", True, replace(ctx, compile=True))] * compiled
    for path, fuse, path_ctx in paths:
        step = student_step(student_runs(nodes, path_ctx, fused=True), wanted, path_ctx, fuse)
        case[path] = count_ops(lambda: step(x, targets), ctx.device, device_ops=path != "fused_compiled")
    for k in case["fused"]:
        case[f"{k}_ratio"] = round(case["loop"][k] / max(1, case["fused"][k]), 2)
        if compiled and k in case["fused_compiled"]:
            case[f"compiled_{k}_ratio"] = round(case["fused"][k] / max(1, case["fused_compiled"][k]), 2)
    return case

def _paper_generations(ctx: Context):
    """The paper profile's fused generations whose guides are two or more students: (group, guide models, wanted)."""
    cfg = make_config("paper", dataset="digits", device=str(ctx.device), progress=False)
    nodes, guide_keys = lineages([METHODS[e].plan(cfg.levels, share_students=cfg.share_students) for e in PAPER_EXPERIMENTS])
    for group, guides, _ in student_groups(nodes, guide_keys, fuse=True):
        if sum(k != TEACHER_LINEAGE for k in guides) < 2:
            continue
        torch.manual_seed(0)
        models_ = [ctx.model(models.teacher()) if k == TEACHER_LINEAGE else ctx.model(models.student(nodes[k].level))
                   for k in guides]
        wanted = [tuple((guides.index(k), a, b) for k, a, b in guide_keys[n.key]) for n in group]
        yield group, [m.eval().requires_grad_(False) for m in models_], wanted


def bench_guide_ops(ctx: Context, batch_size: int, time_batch: int = 128, repeats: int = 5, loop: bool = True) -> dict:
    """Operator calls per augmented training step (the guides' forward included) of the paper profile's
    generations with several student guides: per-student loop, fused students, fused students and guides.
    Also the guides' forward alone: operator calls, and the median CPU seconds at ``time_batch`` images over
    ``repeats`` rounds taking turns (separate, fused, fused with BatchNorm folded). ``loop=False`` leaves out
    the per-student loop (most of the profiling time)."""
    x = torch.randn(batch_size, 3, 32, 32, device=ctx.device)
    xt = torch.randn(time_batch, 3, 32, 32, device=ctx.device)
    if ctx.channels_last:
        x, xt = (t.contiguous(memory_format=torch.channels_last) for t in (x, xt))
    out = dict(what=f"one augmented training step (guides' forward + students' step) of each paper-profile "
                    f"generation whose guides are several students, batch {batch_size}; guides' forward CPU "
                    f"seconds at batch {time_batch}, median of {repeats} rounds taking turns", generations=[])
    for group, guides, wanted in _paper_generations(ctx):
        row = dict(students=len(group), levels=sorted({n.level for n in group}), guides=len(guides))
        forwards = {"separate": guide_features(guides, ctx, False), "fused": guide_features(guides, ctx, True),
                    "fused_folded": guide_features(guides, ctx, True, fold_bn=True)}
        row["guides_forward"] = {k: count_ops(lambda: fw(x), ctx.device) for k, fw in forwards.items()}
        paths = (("loop", False, False),) * loop + (("fused", True, False), ("fused_guides", True, True))
        for path, fuse, fuse_guides in paths:
            step_ctx = replace(ctx, fuse=fuse)
            step = student_step(student_runs(group, step_ctx, fused=True), wanted, step_ctx, fuse)  # Adams as on CUDA
            fw = forwards["fused" if fuse_guides else "separate"]
            row[path] = count_ops(lambda: step(x, fw(x)), ctx.device)
        for k in ("aten_ops", "leaf_ops", "device_ops"):
            row[f"{k}_fused_vs_fused_guides"] = round(row["fused"][k] / max(1, row["fused_guides"][k]), 2)
            if loop:
                row[f"{k}_loop_vs_fused_guides"] = round(row["loop"][k] / max(1, row["fused_guides"][k]), 2)
        names, times = list(forwards), {k: [] for k in forwards}
        for fw in forwards.values():
            fw(xt)  # warm-up
        # by hand, not Timer: the forwards take turns (the first of each round rotating), so load hits each alike
        for i in range(repeats):
            for k in names[i % len(names):] + names[:i % len(names)]:
                sync(ctx.device)
                t0 = time.process_time()
                forwards[k](xt)
                sync(ctx.device)
                times[k].append(time.process_time() - t0)
        med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
        row["guides_forward_cpu_s"] = {k: round(v, 4) for k, v in med.items()}
        row["guides_forward_cpu_ratio"] = round(med["separate"] / max(med["fused"], 1e-9), 2)  # > 1: fused faster
        out["generations"].append(row)
    return out


# ----------------------------------------------------------------------------- the paper profile, estimated
def bench_paper(ctx: Context, steps: int, fuse: bool, batch_size: int | None = None) -> dict:
    """Seconds per step of every training group of the ``paper`` profile, extrapolated to its whole schedule.

    Times ``steps`` steps (after one untimed) of the teacher and of each group of students as the pipeline forms
    them, with augmentation (every parent's forward each batch). Weights are random: speed does not depend on
    them. Validation, checkpoints and the output layers' fine-tuning are left out: the estimate is a lower bound.
    """
    cfg = make_config("paper", dataset="digits", device=str(ctx.device), progress=False)
    train_images = 50_000 - cfg.val_size  # CIFAR-10's training set less the validation split
    bs, step_ctx = batch_size or cfg.batch_size, replace(ctx, fuse=fuse)
    steps_per_epoch = -(-train_images // bs)
    x = torch.randn(bs, 3, 32, 32, device=ctx.device)
    x = x.contiguous(memory_format=torch.channels_last) if ctx.channels_last else x
    y = torch.randint(0, 10, (bs,), device=ctx.device)

    def per_step(fn) -> float:  # after two untimed steps; the GPU synchronised before each clock read
        return Timer("fn()", globals=dict(fn=fn), num_threads=torch.get_num_threads()).timeit(steps).mean

    teacher = ctx.model(models.teacher()).train()
    opt, sched = classifier_optimizer(teacher.parameters(), cfg.teacher_optimizer, lr=cfg.teacher_lr,
                                      weight_decay=cfg.teacher_weight_decay, steps=10_000, device=ctx.device)
    scaler = grad_scaler(ctx.device, ctx.amp_dtype)
    t_step = per_step(lambda: classifier_step(teacher, opt, sched, scaler, x, y, ctx))
    rows = [dict(group="teacher", models=1, s_per_step=round(t_step, 4), epochs=cfg.teacher_epochs,
                 seconds=round(t_step * steps_per_epoch * cfg.teacher_epochs, 1))]
    teacher.eval()
    nodes, guide_keys = lineages([METHODS[e].plan(cfg.levels, share_students=cfg.share_students) for e in PAPER_EXPERIMENTS])
    trained = {TEACHER_LINEAGE: teacher}
    for group, guides, parent_keys in student_groups(nodes, guide_keys, fuse):
        for k in guides:
            if k not in trained:
                trained[k] = ctx.model(models.student(nodes[k].level)).eval()
        runs = student_runs(group, step_ctx, total_steps=10_000)
        wanted = [tuple((guides.index(k), a, b) for k, a, b in guide_keys[n.key]) for n in group]
        step = student_step(runs, wanted, step_ctx, fuse)
        targets = guide_features([trained[k] for k in guides], step_ctx, fuse)  # as train_students runs them

        def one():
            step(x, targets(x))

        s = per_step(one)
        label = ", ".join(dict.fromkeys("teacher" if k == TEACHER_LINEAGE else nodes[k].name for k in parent_keys))
        rows.append(dict(group=f"students of {label}", models=len(group), s_per_step=round(s, 4),
                         epochs=cfg.student_epochs, seconds=round(s * steps_per_epoch * cfg.student_epochs, 1)))
    total = sum(r["seconds"] for r in rows)
    return dict(what=f"the paper profile's training steps (batch {bs}, {train_images} images an epoch, teacher "
                     f"{cfg.teacher_epochs} epochs, students {cfg.student_epochs}, share_students="
                     f"{cfg.share_students}), {'fused' if fuse else 'per-student loop'}; {steps} timed steps a group",
                fused=fuse, groups=rows, students=sum(r["models"] for r in rows[1:]),
                student_seconds_per_epoch=round(sum(r["seconds"] / r["epochs"] for r in rows[1:]), 1),
                estimated_seed_seconds=round(total, 1), estimated_seed_minutes=round(total / 60, 1))
