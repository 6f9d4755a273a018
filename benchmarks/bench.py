"""Fast path vs the obvious way: same data, same settings, one process, one JSON.

    python -m benchmarks.bench                  # teacher + 15 direct-plan students, CIFAR-10 if present
    python -m benchmarks.bench --threads 1      # on a CPU shared with other jobs (see below)
    python -m benchmarks.bench --quick          # two batches of everything; what CI runs (benchmarks/tests/test_bench.py)
    python -m benchmarks.bench --cases teacher --check-accuracy --train-size 2048 --epochs 3 --threads 1
    python -m benchmarks.bench --cases ops paper --fuse both     # operator calls; the paper profile's time
    python -m benchmarks.bench --cases guides --threads 1 --out benchmarks/results/bench/guides-cpu-1t.json
    python -m benchmarks.bench --cases ops --compile --threads 1  # also the fused step compiled (Config.compile)

Cases: ``teacher``; ``students``: the reference, the per-student loop (``fast``) and the fused path on the same
plan, alternating so that a change in load hits every path; ``ops``, ``guides``, ``paper``: ``step_profile``.
Each speed also comes as achieved TFLOP/s (``TRAIN_FLOPS_PER_MAC`` per multiply-accumulate of ``models.count_macs``).

The *reference* is what one writes first: a torchvision ``DataLoader`` over PIL images, fp32,
one model at a time, the parent's forward recomputed for every student (not the package's own per-student
loop, which is the CPU's fast path). The *fast* path is the package itself
(``train.train_classifier``, ``train.train_students``). Both use the same optimiser recipe, initial weights,
schedule and per-epoch work (a validation pass and a checkpoint per model per epoch), so the ratio is the engine's.

On a CPU shared with other jobs use ``--threads 1``: two threads that must meet at every kernel wait on each other's
time slices (the teacher and students cases took 7 minutes instead of 2.5 on the 2-core EPYC, 2026-11-22).
Writes ``benchmarks/results/bench/<device-slug>.json`` (``-quick`` appended for ``--quick``).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tadist_utils import models
from tadist_utils.config import make_config
from tadist_utils.data import DataBundle, Split, load_data
from tadist_utils.engine import resolve_device, resolve_precision
from tadist_utils.fused import resolve_fuse
from tadist_utils.plans import METHODS
from tadist_utils.plans import TEACHER
from tadist_utils.train import (Context, StudentJob, batches, classifier_optimizer, evaluate, init_seed, run_epochs,
                                student_training, train_classifier)

from .machine import describe_machine, device_slug, loadavg, sync
from .step_profile import bench_guide_ops, bench_ops, bench_paper

CASES = ("teacher", "students", "ops", "guides", "paper")
TRAIN_FLOPS_PER_MAC = 6  # a training step: forward 2 FLOPs per multiply-accumulate, backward about twice that


def parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Time the package's training engine against a plain torchvision loop.")
    p.add_argument("--cases", nargs="+", choices=CASES, default=["teacher", "students", "ops"],
                   help="teacher, students (reference / per-student loop / fused), ops (operator calls per step), "
                        "guides (operator calls per step with the parents' forward, separate vs fused, and its "
                        "CPU time; not run by default), paper (the paper profile's wall time, estimated from "
                        "timed steps; not run by default)")
    p.add_argument("--train-size", type=int, default=None, help="training images (default 256; --quick 32)")
    p.add_argument("--epochs", type=int, default=1, help="epochs for the teacher and for the students")
    p.add_argument("--teacher-optimizer", choices=("adam", "adamw", "sgd"), default=None,
                   help="both teachers' recipe (default: the config's teacher_optimizer)")
    p.add_argument("--teacher-lr", type=float, default=None, help="both teachers' (peak) learning rate "
                   "(default: the config's teacher_lr)")
    p.add_argument("--teacher-repeats", type=int, default=None,
                   help="timed teacher runs per path, alternating which goes first; the fastest is reported "
                        "(default 3; 1 with --quick or --check-accuracy). The students case runs once: its "
                        "reference alone takes minutes")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--val-size", type=int, default=None, help="validation images (default 128; --quick 16)")
    p.add_argument("--test-size", type=int, default=2000, help="test images for --check-accuracy")
    p.add_argument("--experiment", default="direct", help="whose students to train (their teacher-fed group)")
    p.add_argument("--levels", type=int, default=None, help="student levels (default 4 = 15 students; --quick 2)")
    p.add_argument("--student-augment", action=argparse.BooleanOptionalAction, default=True,
                   help="augment students' inputs (off: the fast path caches the teacher's features)")
    p.add_argument("--dataset", default="auto")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--precision", default="auto", help="the fast path's precision (auto: bf16 where native)")
    p.add_argument("--check-accuracy", action="store_true",
                   help="also report both teachers' test accuracy (meaningful only with several epochs)")
    p.add_argument("--student-repeats", type=int, default=2,
                   help="timed runs of the loop and of the fused path, alternating (the reference runs once)")
    p.add_argument("--paper-steps", type=int, default=3, help="timed steps per group for the paper estimate")
    p.add_argument("--guides-time-batch", type=int, default=128,
                   help="images per timed forward of the guides case (default 128, the paper's batch size)")
    p.add_argument("--guides-repeats", type=int, default=6, help="timed rounds of the guides' forward (1 with --quick)")
    p.add_argument("--fuse", choices=("auto", "on", "off", "both"), default="auto",
                   help="the paper estimate's student path (auto: the device's default; both: each)")
    p.add_argument("--compile", action="store_true", help="ops case: also count the fused step under Config.compile "
                   "(torch.compile; its first call takes minutes on a CPU)")
    p.add_argument("--quick", action="store_true", help="two batches of everything, no warm-up: for CI, not for timing")
    p.add_argument("--out", default="benchmarks/results/bench", help="a directory (file named by device) or a .json path")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse(argv)
    train_size = args.train_size or (32 if args.quick else 256)
    val_size = args.val_size or (16 if args.quick else 128)
    levels = args.levels or (2 if args.quick else 4)
    batch_size = 16 if args.quick and args.batch_size == 64 else args.batch_size
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    started = loadavg()
    t_start = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="tadist-bench-") as tmp:
        cfg = make_config("quick", dataset=args.dataset, data_dir=args.data_dir, train_size=train_size,
                          val_size=val_size, test_size=args.test_size if args.check_accuracy else 256,
                          teacher_epochs=args.epochs, student_epochs=args.epochs, batch_size=batch_size,
                          eval_batch_size=256, levels=levels, teacher_lr=args.teacher_lr,
                          teacher_optimizer=args.teacher_optimizer, augment=True,
                          student_augment=args.student_augment, device=args.device, precision=args.precision,
                          results_dir=tmp, progress=False)
        data = load_data(cfg)
        ctx = Context(device, resolve_precision(args.precision, device), channels_last=device.type != "mps",
                      progress=False)
        report = dict(
            benchmark="tadist fast path (device-resident data, batched augmentation, autocast, channels_last, "
                      "siblings trained together) vs a plain torchvision DataLoader/PIL fp32 loop",
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            command="python -m benchmarks.bench " + " ".join(sys.argv[1:] if argv is None else argv),
            machine=dict(**describe_machine(device), loadavg_start=started),
            settings=dict(dataset=data.name, source=data.source, train_size=len(data.train), val_size=len(data.val),
                          epochs=args.epochs, batch_size=batch_size, teacher_optimizer=cfg.teacher_optimizer,
                          teacher_lr=cfg.teacher_lr,
                          student_lr=cfg.student_lr, quick=args.quick,
                          reference=dict(precision="fp32", memory_format="contiguous",
                                         loader="DataLoader+PIL, num_workers=0"),
                          fast=dict(precision=str(ctx.amp_dtype or "fp32").replace("torch.", ""),
                                    memory_format="channels_last" if ctx.channels_last else "contiguous",
                                    loader="device-resident uint8 + batched augmentation")),
            notes=("Wall time covers training plus, per epoch, a validation pass and a checkpoint per model, "
                   "for both paths. images_per_s = training images seen per second (per experiment for "
                   "students; student_images_per_s counts every student). speedup = reference wall / fast wall; "
                   "cpu_time_ratio = the same for this process's CPU seconds. The teacher case keeps the fastest "
                   "of its repeats (all_wall_s lists them). The CPU may be shared with other jobs: see the "
                   "loadavg fields (a load above the core count means the runs were slowed, unevenly, and "
                   "more so with more threads); compare files with the same threads only."),
            cases={})
        if not args.quick:
            report["settings"]["warm_up_s"] = round(warm_up(data, ctx, levels, batch_size), 1)
        tmp = Path(tmp)
        teacher = None
        if "teacher" in args.cases:
            repeats = args.teacher_repeats or (1 if args.quick or args.check_accuracy else 3)
            report["cases"]["teacher"], teacher = bench_teacher(data, cfg, ctx, tmp, repeats, args.check_accuracy)
        if "students" in args.cases:
            report["cases"]["students"] = bench_students(data, cfg, ctx, tmp, args.experiment, teacher,
                                                         repeats=1 if args.quick else args.student_repeats)
        if "ops" in args.cases:
            report["cases"]["ops"] = bench_ops(ctx, args.experiment, levels, batch_size, args.compile)
        if "guides" in args.cases:
            report["cases"]["ops_guides"] = bench_guide_ops(ctx, batch_size, time_batch=args.guides_time_batch,
                                                            repeats=1 if args.quick else args.guides_repeats)
        if "paper" in args.cases:
            fuses = {"both": (False, True), "on": (True,), "off": (False,)}.get(
                args.fuse, (resolve_fuse("auto", device),))
            for f in fuses:
                report["cases"][f"paper_{'fused' if f else 'loop'}"] = bench_paper(ctx, args.paper_steps, f)
    report["machine"]["loadavg_end"] = loadavg()
    report["total_wall_s"] = round(time.perf_counter() - t_start, 1)

    out = Path(args.out)
    if out.suffix != ".json":
        out = out / f"{device_slug(device)}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"wrote {out}")
    return report


def print_table(report: dict) -> None:
    m = report["machine"]
    print(f"\n{m['description']} | torch {m['torch']} | {m['threads']} threads | "
          f"load {m['loadavg_start']} -> {m['loadavg_end']}")
    print(f"CPU flags: {' '.join(m.get('cpu_flags', []))}" if m["device"] == "cpu" else "", end="")
    print(f"\n{'case':<10}{'path':<11}{'wall s':>9}{'CPU s':>9}{'images/s':>10}{'speedup':>9}{'CPU ratio':>11}")
    for name, case in report["cases"].items():
        if name == "ops":
            for path in ("loop", "fused", "fused_compiled")[:2 + ("fused_compiled" in case)]:
                p = path.replace("fused_compiled", "compiled")
                c = case[path]
                print(f"{name:<10}{p:<11}{c['aten_ops']:>9} aten {c['leaf_ops']:>7} leaf {c.get('device_ops', '-'):>6} "
                      f"device ops / step"
                      + (f"   ({case['aten_ops_ratio']}x / {case['leaf_ops_ratio']}x / "
                         f"{case['device_ops_ratio']}x fewer)" if path == "fused" else "")
                      + (f"   ({case['compiled_aten_ops_ratio']}x / {case['compiled_leaf_ops_ratio']}x / "
                         f"- fewer than fused)" if path == "fused_compiled" else ""))
            continue
        if name == "ops_guides":
            for g in case["generations"]:
                head = f"{name:<12}{g['students']:>3} students, {g['guides']} guides"
                for path in ("loop", "fused", "fused_guides"):
                    print(f"{head}  {path:<13}{g[path]['aten_ops']:>7} aten {g[path]['leaf_ops']:>7} leaf "
                          f"{g[path]['device_ops']:>6} device ops / step")
                t = g["guides_forward_cpu_s"]
                print(f"{head}  fused guides: {g['leaf_ops_fused_vs_fused_guides']}x fewer leaf ops than fused "
                      f"students alone; guides' forward CPU s {t['separate']} separate, {t['fused']} fused")
            continue
        if name.startswith("paper"):
            for r in case["groups"]:
                print(f"{name:<12}{r['group'][:40]:<41}{r['models']:>3} model(s) {r['s_per_step']:>8.4f} s/step "
                      f"x {r['epochs']} epochs = {r['seconds'] / 60:>7.1f} min")
            print(f"{name:<12}estimated wall time of one seed: {case['estimated_seed_minutes']} min")
            continue
        for path in ("reference", "fast", "fused"):
            if path not in case:
                continue
            r = case[path]
            ratios = f"{case['speedup']:>8.2f}x{case['cpu_time_ratio']:>10.2f}x" if path == "fast" else ""
            ratios = f"{case['fused_speedup']:>8.2f}x (vs loop {case['fused_vs_loop']}x)" if path == "fused" else ratios
            acc = f"   test acc {r['test_accuracy']:.2f}%" if "test_accuracy" in r else ""
            tf = f"  {r['tflops']:.4f} TFLOP/s" if "tflops" in r else ""
            print(f"{name:<10}{path:<11}{r['wall_s']:>9.1f}{r['cpu_s']:>9.1f}{r['images_per_s']:>10.1f}{ratios}{tf}{acc}")


# ----------------------------------------------------------------------------- the reference: the loop one writes first
class PILDataset(Dataset):
    """uint8 (N, 3, H, W) images served one at a time as PIL images through a torchvision transform."""

    def __init__(self, split: Split, transform):
        self.images = split.images.permute(0, 2, 3, 1).contiguous().numpy()  # HWC, as PIL wants
        self.labels = split.labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image
        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def plain_loader(split: Split, data: DataBundle, batch_size: int, *, train: bool, augment: bool, seed: int = 0):
    """The textbook input pipeline. num_workers=0: the target machine has 2 cores and the training
    step already uses both, so loader workers would only compete with it for the same cores."""
    from torchvision import transforms as T
    ops = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if augment else []
    ops += [T.ToTensor(), T.Normalize(data.mean.tolist(), data.std.tolist())]
    g = torch.Generator().manual_seed(seed) if train else None
    return DataLoader(PILDataset(split, T.Compose(ops)), batch_size=batch_size, shuffle=train, num_workers=0,
                      generator=g)


@torch.no_grad()
def plain_outputs(fn, loader, device) -> torch.Tensor:
    return torch.cat([fn(x.to(device)).float() for x, _ in loader])


@torch.no_grad()
def plain_accuracy(model: nn.Module, loader, device) -> float:
    """fp32 top-1 accuracy (%), used for *both* paths' teachers so the evaluator is not what differs."""
    model.eval()
    correct = sum((model(x.to(device)).argmax(1).cpu() == y).sum().item() for x, y in loader)
    return 100.0 * correct / len(loader.dataset)


def plain_step(loss: torch.Tensor, opt, sched) -> float:
    """One optimiser step of the reference loops: no autocast, no scaler, a sync per step (.item())."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return loss.item()


def reference_teacher(model: nn.Module, data: DataBundle, cfg, device, ckpt: Path) -> dict:
    """train_classifier's recipe (Adam + cosine, or SGD + Nesterov + one-cycle) in the plainest loop."""
    train = plain_loader(data.train, data, cfg.batch_size, train=True, augment=cfg.augment, seed=cfg.seed)
    val = plain_loader(data.val, data, cfg.batch_size * 4, train=False, augment=False)
    steps = cfg.teacher_epochs * len(train)
    # the same recipe as train_classifier, never the fused optimiser (the CPU's choice): the reference stays plain
    opt, sched = classifier_optimizer(model.parameters(), cfg.teacher_optimizer, lr=cfg.teacher_lr,
                                      weight_decay=cfg.teacher_weight_decay, steps=steps, device=torch.device("cpu"))
    best, history = None, []
    for epoch in range(cfg.teacher_epochs):
        model.train()
        total = 0.0
        for x, y in train:
            x, y = x.to(device), y.to(device)
            total += plain_step(F.cross_entropy(model(x), y), opt, sched) * len(y)
        acc = plain_accuracy(model, val, device)
        history.append(dict(train_loss=total / len(train.dataset), val_accuracy=acc))
        if best is None or acc > best[0]:
            best = (acc, copy.deepcopy(model.state_dict()))
        torch.save(model.state_dict(), ckpt)
    model.load_state_dict(best[1])  # the best validation epoch, as train_classifier keeps
    model.eval()
    return dict(history=history)


def reference_students(teacher: nn.Module, nodes, data: DataBundle, cfg, device, ckpt_dir: Path) -> dict:
    """Each student on its own: a full pass over the data, the teacher's forward recomputed every batch."""
    train = plain_loader(data.train, data, cfg.batch_size, train=True, augment=cfg.student_augment, seed=cfg.seed)
    val = plain_loader(data.val, data, cfg.batch_size * 4, train=False, augment=False)
    teacher.eval()
    losses = {}
    for node in nodes:
        torch.manual_seed(init_seed(cfg.seed, node.key))
        student = models.student(node.level).to(device)
        opt = torch.optim.Adam(student.parameters(), lr=cfg.student_lr, weight_decay=cfg.student_weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.student_epochs * len(train)))
        train.generator.manual_seed(cfg.seed)  # every student sees the same order of batches
        for epoch in range(cfg.student_epochs):
            student.train()
            total = 0.0
            for x, _ in train:
                x = x.to(device)
                with torch.no_grad():
                    target = teacher.features(x)[:, node.start:node.stop]
                total += plain_step(F.mse_loss(student(x), target), opt, sched) * len(x)
            student.eval()
            val_target = plain_outputs(teacher.features, val, device)[:, node.start:node.stop]
            val_loss = F.mse_loss(plain_outputs(student, val, device), val_target).item()
            torch.save(student.state_dict(), ckpt_dir / f"ref-{node.name}.pt")
        losses[node.name] = dict(train_loss=total / len(train.dataset), val_loss=val_loss)
    return losses


# ----------------------------------------------------------------------------- the fast path
def fast_students(teacher: nn.Module, nodes, data: DataBundle, cfg, ctx: Context, ckpt_dir: Path) -> dict:
    jobs = []
    tag = "fused" if ctx.fuse else "loop"
    for node in nodes:
        torch.manual_seed(init_seed(cfg.seed, node.key))
        jobs.append(StudentJob(node.name, ctx.model(models.student(node.level)), node.start, node.stop,
                               ckpt_dir / f"{tag}-{node.name}.pt", dict(bench=str(node.key))))
    runs = run_epochs(student_training(teacher.features, jobs, data, ctx, epochs=cfg.student_epochs, lr=cfg.student_lr,
                                       weight_decay=cfg.student_weight_decay, batch_size=cfg.batch_size,
                                       augment=cfg.student_augment, seed=cfg.seed, kind="mse", group="bench"), ctx)
    return {j.name: dict(train_loss=r.history[-1]["train_loss"], val_loss=r.history[-1]["val_loss"])
            for j, r in zip(jobs, runs)}


def timed(fn, device, walls: list, cpus: list):
    """``fn()``, its wall seconds and this process's CPU seconds (which move less when others share the CPU)
    appended to ``walls`` and ``cpus``. By hand: a training run is timed once, and ``torch.utils.benchmark`` keeps no
    CPU time."""
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    sync(device)
    walls.append(time.perf_counter() - t0)
    cpus.append(time.process_time() - c0)
    return out


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
            out = dict(history=train_classifier(
                ctx.model(net), data, ctx, name="teacher", path=ckpt, spec=dict(bench="teacher"),
                epochs=cfg.teacher_epochs, lr=cfg.teacher_lr, weight_decay=cfg.teacher_weight_decay,
                batch_size=cfg.batch_size, augment=cfg.augment, seed=cfg.seed, optimizer=cfg.teacher_optimizer).history)
        ckpt.unlink(missing_ok=True)
        return net, out

    walls, cpus, nets, losses = {"reference": [], "fast": []}, {"reference": [], "fast": []}, {}, {}
    for r in range(repeats):  # alternate which path goes first, so a change in load hits both
        for path in ("reference", "fast") if r % 2 == 0 else ("fast", "reference"):
            nets[path], out = timed(lambda: run(path, r), ctx.device, walls[path], cpus[path])
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
    # the teacher-fed students only: others need trained parents, and the engine's saving is the same per group
    nodes = [n for n in METHODS[experiment].plan(cfg.levels).nodes if n.parent == TEACHER]
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
    walls, cpus, outs = {p: [] for p in paths}, {p: [] for p in paths}, {}
    for path in order:  # the loop and the fused path alternate, so a change in load hits both
        r = len(walls[path])
        (tmp / f"loop{r}").mkdir(exist_ok=True)
        (tmp / f"fused{r}").mkdir(exist_ok=True)
        outs[path] = timed(lambda: paths[path](r), ctx.device, walls[path], cpus[path])
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


if __name__ == "__main__":
    main()
