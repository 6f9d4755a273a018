"""The bench's ``teacher`` and ``students`` cases: wall time of the reference loop, the package's per-student loop
(``fast``) and its fused path on the same data, alternating so that a change in load hits every path.

Each speed also comes as achieved TFLOP/s (``TRAIN_FLOPS_PER_MAC`` FLOPs per multiply-accumulate of
``models.count_macs``). The reference is ``reference_loop``; the fast path is the package itself.
"""
from __future__ import annotations

import copy
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import models
from ..data import DataBundle
from ..engine import resolve_fuse
from ..methods import build
from ..plans import TEACHER
from ..train import Context, StudentJob, batches, evaluate, init_seed, train_classifier, train_students
from .machine import loadavg, sync
from .reference_loop import plain_accuracy, plain_loader, reference_students, reference_teacher

TRAIN_FLOPS_PER_MAC = 6  # a training step: forward 2 FLOPs per multiply-accumulate, backward about twice that


# ----------------------------------------------------------------------------- the fast path
def fast_teacher(model: nn.Module, data: DataBundle, cfg, ctx: Context, ckpt: Path) -> dict:
    run = train_classifier(model, data, ctx, name="teacher", path=ckpt, spec=dict(bench="teacher"),
                           epochs=cfg.teacher_epochs, lr=cfg.teacher_lr, weight_decay=cfg.teacher_weight_decay,
                           batch_size=cfg.batch_size, augment=cfg.augment, seed=cfg.seed,
                           optimizer=cfg.teacher_optimizer)
    return dict(history=run.history)


def fast_students(teacher: nn.Module, nodes, data: DataBundle, cfg, ctx: Context, ckpt_dir: Path) -> dict:
    jobs = []
    tag = "fused" if ctx.fuse else "loop"
    for node in nodes:
        torch.manual_seed(init_seed(cfg.seed, node.key))
        jobs.append(StudentJob(node.name, ctx.model(models.student(node.level)), node.start, node.stop,
                               ckpt_dir / f"{tag}-{node.name}.pt", dict(bench=node.key)))
    runs = train_students(teacher.features, jobs, data, ctx, epochs=cfg.student_epochs, lr=cfg.student_lr,
                          weight_decay=cfg.student_weight_decay, batch_size=cfg.batch_size,
                          augment=cfg.student_augment, seed=cfg.seed, loss="mse", group="bench")
    return {j.name: dict(train_loss=r.history[-1]["train_loss"], val_loss=r.history[-1]["val_loss"])
            for j, r in zip(jobs, runs)}


def timed(fn, device) -> tuple[object, float, float]:
    """(output, wall seconds, CPU seconds of this process): CPU time moves less when others share the CPU."""
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0, time.process_time() - c0


def warm_up(data: DataBundle, ctx: Context, levels: int, batch_size: int) -> float:
    """One untimed step per architecture in both modes: one-time kernel set-up (oneDNN primitives,
    cuDNN plans) should not be billed to whichever path happens to run first."""
    t0 = time.perf_counter()
    x = (data.train.images[:batch_size].float() / 255).to(ctx.device)
    nets = [models.teacher(data.num_classes)] + [models.student(lv) for lv in range(1, levels + 1)]
    for net in nets:
        for fast in (False, True):
            m = copy.deepcopy(net).to(ctx.device)
            xi = x
            if fast and ctx.channels_last:
                m, xi = m.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
            opt = torch.optim.SGD(m.parameters(), lr=1e-3)
            with torch.autocast(ctx.device.type, dtype=ctx.amp_dtype, enabled=fast and ctx.amp_dtype is not None):
                loss = m(xi).float().square().mean()
            loss.backward()
            opt.step()
    sync(ctx.device)
    return time.perf_counter() - t0


def result(walls: list[float], cpus: list[float], images: int, **extra) -> dict:
    """The fastest of the repeats (the one least disturbed by other jobs), and all of them."""
    i = min(range(len(walls)), key=walls.__getitem__)
    return dict(wall_s=round(walls[i], 3), cpu_s=round(cpus[i], 3), images=images,
                images_per_s=round(images / walls[i], 2), all_wall_s=[round(w, 2) for w in walls], **extra)


def bench_teacher(data, cfg, ctx, tmp: Path, repeats: int, check_accuracy: bool) -> tuple[dict, nn.Module]:
    images = len(data.train) * cfg.teacher_epochs
    case = dict(what=f"VGG16-BN teacher, {cfg.teacher_epochs} epoch(s) of {len(data.train)} images, "
                     f"batch {cfg.batch_size}, augment={cfg.augment}", repeats=repeats, loadavg_before=loadavg())
    torch.manual_seed(init_seed(cfg.seed, "teacher"))
    init = models.teacher(data.num_classes).state_dict()

    def run(path: str, r: int):
        """Train a fresh teacher from the same initial weights; a fresh checkpoint path, so nothing resumes."""
        net = models.teacher(data.num_classes)
        net.load_state_dict(init)
        ckpt = tmp / f"{path}-teacher-{r}.pt"
        if path == "reference":
            out = reference_teacher(net.to(ctx.device), data, cfg, ctx.device, ckpt)
        else:
            out = fast_teacher(ctx.model(net), data, cfg, ctx, ckpt)
        ckpt.unlink(missing_ok=True)
        return net, out

    walls, cpus, nets, losses = {}, {}, {}, {}
    for r in range(repeats):  # alternate which path goes first, so a change in load hits both
        for path in ("reference", "fast") if r % 2 == 0 else ("fast", "reference"):
            (nets[path], out), wall, cpu = timed(lambda: run(path, r), ctx.device)
            walls.setdefault(path, []).append(wall)
            cpus.setdefault(path, []).append(cpu)
            losses[path] = round(out["history"][-1]["train_loss"], 4)
    flops = TRAIN_FLOPS_PER_MAC * models.count_macs(models.teacher(data.num_classes)) * images
    for path in ("reference", "fast"):
        case[path] = result(walls[path], cpus[path], images, final_train_loss=losses[path])
        case[path]["tflops"] = round(flops / case[path]["wall_s"] / 1e12, 4)
    case["speedup"] = round(case["reference"]["wall_s"] / case["fast"]["wall_s"], 2)
    case["cpu_time_ratio"] = round(case["reference"]["cpu_s"] / case["fast"]["cpu_s"], 2)

    ref, fast = nets["reference"], nets["fast"]
    if check_accuracy:  # same fp32 evaluator for both, plus the package's own (autocast) evaluator
        t0 = time.perf_counter()
        test = plain_loader(data.test, data, cfg.eval_batch_size, train=False, augment=False)
        case["reference"]["test_accuracy"] = round(plain_accuracy(ref, test, ctx.device), 2)
        contiguous = copy.deepcopy(fast).to(memory_format=torch.contiguous_format)
        case["fast"]["test_accuracy"] = round(plain_accuracy(contiguous, test, ctx.device), 2)
        case["fast"]["test_accuracy_package_evaluator"] = round(
            evaluate(fast, batches(data, "test", cfg.eval_batch_size, ctx), ctx), 2)
        case["test_images"] = len(data.test)
        case["accuracy_eval_s"] = round(time.perf_counter() - t0, 1)
    case["loadavg_after"] = loadavg()
    return case, fast


def bench_students(data, cfg, ctx, tmp: Path, experiment: str, teacher: nn.Module | None, repeats: int = 2) -> dict:
    plan = build(experiment, cfg.levels)
    nodes = list(plan.nodes)
    if any(n.parent != TEACHER for n in nodes):
        # single_ta / hierarchical need trained parents; the engine's saving is the same per group.
        nodes = [n for n in nodes if n.parent == TEACHER]
    weights = "trained by the teacher case (fast path)" if teacher is not None else "random init (timing only)"
    if teacher is None:
        torch.manual_seed(init_seed(cfg.seed, "teacher"))
        teacher = ctx.model(models.teacher(data.num_classes))
    teacher.eval().requires_grad_(False)
    ref_teacher = copy.deepcopy(teacher).to(memory_format=torch.contiguous_format)

    images = len(data.train) * cfg.student_epochs
    case = dict(what=f"'{experiment}' plan, {len(nodes)} students ({', '.join(n.name for n in nodes)}) learning "
                     f"from the teacher, {cfg.student_epochs} epoch(s) of {len(data.train)} images, "
                     f"batch {cfg.batch_size}, augment={cfg.student_augment}",
                students=len(nodes), teacher_weights=weights, loadavg_before=loadavg())
    flops = TRAIN_FLOPS_PER_MAC * sum(models.count_macs(models.student(n.level)) for n in nodes) * images
    loop, fused = replace(ctx, fuse=False), replace(ctx, fuse=True)
    paths = {"reference": lambda r: reference_students(ref_teacher, nodes, data, cfg, ctx.device, tmp),
             "fast": lambda r: fast_students(teacher, nodes, data, cfg, loop, tmp / f"loop{r}"),
             "fused": lambda r: fast_students(teacher, nodes, data, cfg, fused, tmp / f"fused{r}")}
    order = ["reference"] + [p for r in range(repeats) for p in (("fast", "fused") if r % 2 == 0 else ("fused", "fast"))]
    walls, cpus, outs, seen = {}, {}, {}, {}
    for path in order:  # the loop and the fused path alternate, so a change in load hits both
        r = seen[path] = seen.get(path, -1) + 1
        (tmp / f"loop{r}").mkdir(exist_ok=True)
        (tmp / f"fused{r}").mkdir(exist_ok=True)
        outs[path], wall, cpu = timed(lambda: paths[path](r), ctx.device)
        walls.setdefault(path, []).append(wall)
        cpus.setdefault(path, []).append(cpu)
    for path in paths:
        case[path] = result(walls[path], cpus[path], images,
                            student_images_per_s=round(images * len(nodes) / min(walls[path]), 2),
                            tflops=round(flops / min(walls[path]) / 1e12, 4),
                            mean_final_train_loss=round(float(np.mean([v["train_loss"] for v in outs[path].values()])), 4))
    case["speedup"] = round(case["reference"]["wall_s"] / case["fast"]["wall_s"], 2)
    case["cpu_time_ratio"] = round(case["reference"]["cpu_s"] / case["fast"]["cpu_s"], 2)
    case["fused_speedup"] = round(case["reference"]["wall_s"] / case["fused"]["wall_s"], 2)
    case["fused_vs_loop"] = round(case["fast"]["wall_s"] / case["fused"]["wall_s"], 2)
    case["default_path"] = "fused" if resolve_fuse("auto", ctx.device) else "fast (per-student loop)"
    case["loadavg_after"] = loadavg()
    return case
