"""Training loops: teacher (cross-entropy), students (chunk regression), ensemble fine-tuning.

All loops checkpoint at the end of every epoch and resume from there (see ``checkpoint.py``).
Shuffling and augmentation are seeded by ``(seed, epoch)``, so a resumed run sees the batches an
uninterrupted one would have seen.

The fast path for students: all students that learn from the same parent train in one loop, so
each batch costs one parent forward pass (none at all when augmentation is off: the parent's
features for the whole training split are computed once and indexed).
"""
from __future__ import annotations

import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .storage.checkpoint import RunState, run_epochs
from .config import default_threads
from .data import Batches, DataBundle
from .engine import (Compiled, autocast, fused_optimizer, grad_scaler, prepare, resolve_device, resolve_fuse,
                     resolve_precision, scaled_step)
from .fused import FusedTrainer, fused_guides
from .losses import feature_loss, guided_loss, kd_loss


@dataclass
class Context:
    """How to run (not what to learn): device, precision, progress bars, logging."""
    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    compile: bool = False
    progress: bool = True
    log: Callable[[str], None] = print
    fuse: bool = False  # train sibling students as one network (fused.py); engine.resolve_fuse picks it

    @classmethod
    def from_config(cls, cfg) -> "Context":
        if cfg.threads or cfg.device in ("auto", "cpu"):  # None: the idle cores (config.default_threads), not all cores
            torch.set_num_threads(cfg.threads or default_threads())
        if getattr(cfg, "deterministic", False):  # recorded in the manifest (results.environment)
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it (read when CUDA starts)
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        device = resolve_device(cfg.device)
        return cls(device, resolve_precision(cfg.precision, device), cfg.channels_last and device.type != "mps",
                   cfg.compile, cfg.progress, fuse=resolve_fuse(cfg.fuse_students, device))

    def bar(self, total: int, desc: str):
        from .runners.console import bar  # tqdm, also reporting to $TADIST_PROGRESS for the runner's terminal (console.py)
        return bar(total, desc, disable=not self.progress)

    def model(self, m: nn.Module) -> nn.Module:
        return prepare(m, self.device, self.channels_last)

    def fast(self, m: nn.Module):
        """The module to call in the hot loop: compiled when asked (``engine.Compiled``), the module itself otherwise.

        Checkpoints and evaluation use the module itself, so its state dict keeps its own keys."""
        return Compiled(m, self.device) if self.compile else m


def init_seed(seed: int, key: str) -> int:
    """Per-model seed: a model's initialisation does not depend on which others train beside it."""
    return seed * 1_000_003 + zlib.crc32(key.encode()) % 1_000_003


def batches(data: DataBundle, split: str, batch_size: int, ctx: Context, *, train: bool = False,
            augment: bool = False, seed: int = 0) -> Batches:
    return Batches(getattr(data, split), data, batch_size, ctx.device, shuffle=train, augment=augment and train,
                   seed=seed, channels_last=ctx.channels_last)


@torch.no_grad()
def extract(fn: Callable[[torch.Tensor], torch.Tensor], loader: Batches, ctx: Context) -> torch.Tensor:
    """Run ``fn`` over a split in order and stack the float32 outputs (features or logits)."""
    outs = [fn(x).float() for x, _, _ in loader]
    return torch.cat(outs) if outs else torch.empty(0)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Batches, ctx: Context) -> float:
    """Top-1 accuracy (in %) of a classifier on a split."""
    was = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=ctx.device)  # summed on the device: one sync, at the end
    with autocast(ctx.device, ctx.amp_dtype):
        for x, y, _ in loader:
            correct += (model(x).argmax(1) == y).sum()
    model.train(was)
    return 100.0 * correct.item() / max(1, len(loader.split))


def classifier_step(model, opt, sched, scaler, x, y, ctx, loss_fn=None) -> torch.Tensor:
    with autocast(ctx.device, ctx.amp_dtype):
        out = model(x)
    loss = F.cross_entropy(out.float(), y) if loss_fn is None else loss_fn(out, y)
    scaled_step(loss, opt, sched, scaler)
    return loss.detach()


def zero_momentum(opt: torch.optim.Optimizer) -> None:
    """Start a fused SGD's missing momentum buffers at zero, which is what its first step makes of them (dampening 0:
    ``0.9 * 0 + g == g``, bit for bit).

    Fused SGD allocates them with ``torch.empty_like`` on its first step, and its kernel returns without writing
    anything when the GradScaler found an overflow (fp16's first steps often do, from a scale of 2**16): the
    buffers keep uninitialised memory and every later step builds on it (NaN or huge weights). Unfused SGD is
    not called at all on such a step, so it needs nothing."""
    if not isinstance(opt, torch.optim.SGD):
        return
    for g in opt.param_groups:
        if g.get("fused") and g["momentum"] != 0 and g["dampening"] == 0:
            for p in g["params"]:
                if p.requires_grad and opt.state[p].get("momentum_buffer") is None:
                    opt.state[p]["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)


# ------------------------------------------------------------------------- classifiers
def classifier_optimizer(params, kind: str, *, lr: float, weight_decay: float, steps: int, device: torch.device):
    """A classifier's optimiser and schedule over ``steps``: ``sgd``: SGD + Nesterov momentum + one-cycle (fast
    CIFAR recipe); ``adam``: Adam + cosine. Fused on CUDA (``engine.fused_optimizer``)."""
    if kind == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay,
                              **fused_optimizer(device))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 8), pct_start=0.25)  # >= 8: tiny runs need a warm-up phase
    else:
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **fused_optimizer(device))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    return opt, sched


def train_classifier(model: nn.Module, data: DataBundle, ctx: Context, *, name: str, path: Path, spec: dict,
                     epochs: int, lr: float, weight_decay: float, batch_size: int, augment: bool, seed: int,
                     optimizer: str = "sgd", params=None, distill_from: Callable | None = None,
                     kd_temperature: float = 4.0, kd_alpha: float = 0.9, include_start: bool = False) -> RunState:
    """Cross-entropy training with the best validation epoch kept (teacher, 'all' fine-tuning, baselines).

    ``include_start``: the untrained model (epoch 0) takes part in the selection ('all' fine-tuning).

    ``optimizer``: ``sgd`` or ``adam`` (``classifier_optimizer``).
    ``distill_from``: a frozen model whose logits the model also matches (Hinton KD, ``losses.kd_loss``);
    without augmentation its logits are computed once for the whole training split.
    """
    train = batches(data, "train", batch_size, ctx, train=True, augment=augment, seed=seed)
    val = batches(data, "val", batch_size * 4, ctx)
    params = list(params if params is not None else model.parameters())
    opt, sched = classifier_optimizer(params, optimizer, lr=lr, weight_decay=weight_decay,
                                      steps=max(1, epochs * len(train)), device=ctx.device)
    run = RunState(path, spec, model, opt, sched, grad_scaler(ctx.device, ctx.amp_dtype))
    fast = ctx.fast(model)
    soft = _SoftTargets(distill_from, data, batch_size, ctx, augment) if distill_from is not None else None

    def train_epoch(epoch: int) -> dict:
        train.set_epoch(epoch)
        zero_momentum(opt)  # here, not at construction: a resumed state may hold no buffers either
        total, n = torch.zeros((), device=ctx.device), 0
        with ctx.bar(len(train), f"{name} epoch {epoch + 1}/{epochs}") as bar:
            for x, y, idx in train:
                loss_fn = None
                if soft is not None:
                    teacher_logits = soft(x, idx)
                    loss_fn = lambda out, y: kd_loss(out, teacher_logits, y, kd_temperature, kd_alpha)  # noqa: E731
                total += classifier_step(fast, opt, sched, run.scaler, x, y, ctx, loss_fn) * len(y)
                n += len(y)
                bar.update()
        return dict(train_loss=total.item() / max(1, n))

    return run_epochs(run, epochs, train_epoch, lambda: dict(val_accuracy=evaluate(model, val, ctx)), ctx,
                      select="val_accuracy", include_start=include_start)


class _SoftTargets:
    """A frozen model's logits for a batch: looked up from one pass over the split, or computed per batch."""

    def __init__(self, model: Callable, data: DataBundle, batch_size: int, ctx: Context, augment: bool):
        self.model, self.ctx, self.cached = model, ctx, None
        if not augment:
            with torch.no_grad(), autocast(ctx.device, ctx.amp_dtype):
                self.cached = extract(model, batches(data, "train", batch_size * 4, ctx), ctx)

    def __call__(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        if self.cached is not None:
            return self.cached[idx]
        with torch.no_grad(), autocast(self.ctx.device, self.ctx.amp_dtype):
            return self.model(x).float()


def finetune_head(head: nn.Linear, features: dict[str, torch.Tensor], data: DataBundle, ctx: Context, *,
                  name: str, path: Path, spec: dict, epochs: int, lr: float, batch_size: int, seed: int,
                  validate: Callable[[], float] | None = None) -> RunState:
    """Train only the output layer on frozen students' features (computed once, unaugmented).

    The layer as given (epoch 0, before fine-tuning) takes part in the selection: when no epoch beats it on
    the validation split, the starting weights are kept.

    ``validate``: the validation accuracy (%) with the head as it is now, computed by the very function that
    reports it, so the epochs are ranked by the number that will be reported (the pipeline passes ``evaluate`` of
    the whole ensemble, which runs under the context's autocast). Default: the head on the stored validation
    features under that same autocast. Selecting in fp32 and reporting in bf16 once reported a fine-tune worse
    than the ensemble it started from."""
    x_train, y_train = features["train"], data.train.labels.to(ctx.device)
    opt = torch.optim.Adam(head.parameters(), lr=lr, **fused_optimizer(ctx.device))
    steps_per_epoch = (len(y_train) + batch_size - 1) // batch_size
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs * steps_per_epoch))
    run = RunState(path, spec, head, opt, sched, grad_scaler(ctx.device, None))

    def train_epoch(epoch: int) -> dict:
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(len(y_train), generator=g).to(ctx.device)
        total = torch.zeros((), device=ctx.device)
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            total += classifier_step(head, opt, sched, run.scaler, x_train[idx], y_train[idx], ctx) * len(idx)
        return dict(train_loss=total.item() / max(1, len(order)))

    def head_accuracy() -> float:
        labels = data.val.labels.to(ctx.device)
        with torch.no_grad(), autocast(ctx.device, ctx.amp_dtype):
            correct = (head(features["val"]).argmax(1) == labels).sum()
        return 100.0 * correct.item() / max(1, len(labels))

    score = head_accuracy if validate is None else validate
    return run_epochs(run, epochs, train_epoch, lambda: dict(val_accuracy=score()), ctx, select="val_accuracy",
                      include_start=True)


# ------------------------------------------------------------------------- students
@dataclass
class StudentJob:
    """One student to train: its model, which slice of the parent it regresses, where it checkpoints.

    ``targets``: (guide index, start, stop) for each feature it regresses; empty means the slice
    ``[start:stop]`` of the last guide (the parent). Densely guided students list one per ancestor.
    """
    name: str
    model: nn.Module
    start: int
    stop: int
    path: Path
    spec: dict
    targets: tuple[tuple[int, int, int], ...] = ()


def student_run(model: nn.Module, ctx: Context, *, lr: float, weight_decay: float = 0.0, steps: int,
                path: Path | None = None, spec: dict | None = None, fused: bool | None = None) -> RunState:
    """A student's own Adam, cosine schedule over ``steps`` and scaler: what every student trains with.

    ``fused``: the Adam implementation; None: what ``engine.fused_optimizer`` picks for the device (the bench
    counts a CUDA step's operators on a CPU with ``True``)."""
    how = fused_optimizer(ctx.device) if fused is None else {"fused": fused}
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, **how)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    return RunState(path, spec or {}, model, opt, sched, grad_scaler(ctx.device, ctx.amp_dtype))


def guide_targets(guides: list, ctx: Context, fuse: bool, fold_bn: bool = False) -> Callable[[torch.Tensor], list]:
    """``x -> [each guide's features, float32]``, frozen (no grad, under autocast): what a student regresses each
    augmented step. ``guides``: models (their ``features``) or feature functions; with ``fuse``, same-architecture
    student guides run as one network (``fused.fused_guides``: the same features, fewer launches)."""
    run = fused_guides(guides, ctx, fold_bn) if fuse else \
        (lambda x: [(g.features if isinstance(g, nn.Module) else g)(x) for g in guides])

    def targets(x: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad(), autocast(ctx.device, ctx.amp_dtype):
            return [t.float() for t in run(x)]
    return targets


def keep_mask(n: int, drop: float, g: torch.Generator) -> list[bool]:
    """Which of ``n`` targets a densely guided step keeps: each dropped with chance ``drop``, never all."""
    keep = (torch.rand(n, generator=g) >= drop).tolist()
    if not any(keep):
        keep[int(torch.randint(n, (1,), generator=g))] = True
    return keep


def loop_step(runs: list[RunState], nets: list, wanted, x: torch.Tensor, targets: list[torch.Tensor],
              keep: list[list[bool]] | None, loss: str, ctx: Context) -> torch.Tensor:
    """One step of each student in turn, each with its own optimiser (the CPU's path; ``fused.py`` on GPUs).

    ``wanted[i]``: student ``i``'s (guide, start, stop) targets; ``keep[i]``: which count at this step.
    Returns the students' losses (not synced to the host)."""
    losses = []
    for i, (r, net) in enumerate(zip(runs, nets)):
        with autocast(ctx.device, ctx.amp_dtype):
            out = net(x)
        l = guided_loss(out, targets, wanted[i], keep and keep[i], loss)
        scaled_step(l, r.optimizer, r.scheduler, r.scaler)
        losses.append(l.detach())
    return torch.stack(losses)


def train_students(guides, jobs: list[StudentJob], data: DataBundle, ctx: Context, *, epochs: int, lr: float,
                   weight_decay: float, batch_size: int, augment: bool, seed: int, loss: str = "mse",
                   group: str = "", drop: float = 0.0) -> list[RunState]:
    """Train sibling students together: one batch, one parent forward (or a cached one), every step.

    ``guides``: the parent (a frozen model, whose ``features`` are the targets, or a feature function), or
    a list of them (ancestors first, parent last) for densely guided students or a fused generation; a
    densely guided student's loss is the mean over the targets kept at that step (``drop``). With
    ``ctx.fuse`` and augmentation, guides that are students of one architecture run as one network
    each step (``fused.fused_guides``: the same features, fewer launches).
    Each student keeps its own optimizer, schedule and checkpoint, so finished students are skipped
    and unfinished ones resume at their own epoch. With ``ctx.fuse`` the students of one epoch step as
    fused networks (``fused.FusedTrainer``), otherwise one after another (``loop_step``): the same maths.
    Reports mean train loss and val loss (against the parent: a student's last target) per epoch.
    """
    guides = list(guides) if isinstance(guides, (list, tuple)) else [guides]
    feats = [g.features if isinstance(g, nn.Module) else g for g in guides]
    parent = len(guides) - 1
    train = batches(data, "train", batch_size, ctx, train=True, augment=augment, seed=seed)
    val = batches(data, "val", batch_size * 4, ctx)
    steps = max(1, epochs * len(train))
    runs = []
    for job in jobs:
        run = student_run(job.model, ctx, lr=lr, weight_decay=weight_decay, steps=steps, path=job.path, spec=job.spec)
        run.restore(ctx.log)
        runs.append(run)
    todo = [(j, r) for j, r in zip(jobs, runs) if r.epoch < epochs]
    if todo:
        with torch.no_grad(), autocast(ctx.device, ctx.amp_dtype):
            parents = {(j.targets or ((parent, j.start, j.stop),))[-1][0] for j, _ in todo}
            val_targets = {gi: extract(feats[gi], val, ctx) for gi in parents}
            full = batches(data, "train", batch_size * 4, ctx)
            cached = None if augment else [extract(f, full, ctx) for f in feats]
        guide_forward = guide_targets(guides, ctx, fuse=ctx.fuse) if cached is None else None
        fast = {} if ctx.fuse else {id(j): ctx.fast(j.model) for j, _ in todo}
        first = min(r.epoch for _, r in todo)
        total = sum(epochs - r.epoch for _, r in todo) * len(train)
        fused = None
        with ctx.bar(total, f"{group or 'students'} ({len(todo)} student(s))") as bar:
            for epoch in range(first, epochs):
                active = [(j, r) for j, r in todo if r.epoch == epoch]
                if not active:
                    continue
                train.set_epoch(epoch)
                bar.set_postfix_str(f"epoch {epoch + 1}/{epochs}", refresh=False)
                t0 = time.perf_counter()
                wanted = [j.targets or ((parent, j.start, j.stop),) for j, _ in active]
                dense = drop > 0 and any(len(w) > 1 for w in wanted)
                masks = [torch.Generator().manual_seed(init_seed(seed * 1009 + epoch, j.name)) for j, _ in active]
                for j, _ in active:
                    j.model.train()
                if ctx.fuse and (fused is None or list(map(id, fused.runs)) != [id(r) for _, r in active]):
                    # fused networks live while the same students train (a compiled step is compiled once);
                    # a new set (students resumed at other epochs) gets a new one
                    fused = FusedTrainer([r for _, r in active], wanted, ctx, loss=loss)
                if fused is not None:
                    fused.train()
                sums = torch.zeros(len(active), device=ctx.device)
                n = 0
                for x, _, idx in train:
                    if cached is not None:
                        target = [c[idx] for c in cached]
                    else:
                        target = guide_forward(x)
                    keep = [keep_mask(len(w), drop, m) if len(w) > 1 else [True] for w, m in zip(wanted, masks)] \
                        if dense else None
                    if fused is not None:
                        sums += fused.step(x, target, keep) * len(idx)
                    else:
                        sums += loop_step([r for _, r in active], [fast[id(j)] for j, _ in active], wanted, x,
                                          target, keep, loss, ctx) * len(idx)
                    n += len(idx)
                    bar.update(len(active))
                if fused is not None:
                    fused.store()
                share = (time.perf_counter() - t0) / len(active)
                train_loss = (sums / max(1, n)).tolist()
                for i, (j, r) in enumerate(active):
                    j.model.eval()
                    with torch.no_grad(), autocast(ctx.device, ctx.amp_dtype):
                        pred = extract(j.model, val, ctx)
                    gi, a, b = wanted[i][-1]  # the parent: last of a student's targets
                    val_loss = feature_loss(pred, val_targets[gi][:, a:b], loss).item()
                    r.epoch += 1
                    r.seconds += share
                    r.record(dict(train_loss=train_loss[i], val_loss=val_loss), select=None)
                    r.save(epochs)
    for r in runs:
        r.finish()
    return runs
