"""Training loops: teacher (cross-entropy), students (chunk regression), ensemble fine-tuning.

Every loop checkpoints each epoch and resumes there; batches are seeded by ``(seed, epoch)``, so a resumed run
sees what an uninterrupted one would. ``train_students`` is the plain loop; its targets (``frozen_targets``) and
its step (``OneByOne`` or ``fused.FusedTrainer``) are swappable accelerators with one interface.
"""
from __future__ import annotations

import os
import time
import zlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .data import Batches, DataBundle
from .engine import (Compiled, autocast, default_threads, fused_optimizer, grad_scaler, prepare, resolve_device,
                     resolve_fuse, resolve_precision, scaled_step)
from .fused import FusedTrainer, fused_guides
from .losses import feature_loss, guided_loss, kd_loss
from .storage.checkpoint import RunState, run_epochs


@dataclass
class Context:
    """How to run (not what to learn): device, precision, progress bars (``bar``: tqdm's by default), logging."""
    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    compile: bool = False
    progress: bool = True
    log: Callable[[str], None] = print
    fuse: bool = False  # train sibling students as one network (fused.py); engine.resolve_fuse picks it
    bar: Callable[..., tqdm] = partial(tqdm, leave=False, dynamic_ncols=True)

    @classmethod
    def from_config(cls, cfg, bar: Callable[..., tqdm] | None = None, log: Callable[[str], None] = print) -> "Context":
        if cfg.threads or cfg.device in ("auto", "cpu"):  # None: the idle cores (engine.default_threads), not all cores
            torch.set_num_threads(cfg.threads or default_threads())
        if cfg.deterministic:  # recorded in the manifest (results.environment)
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it (read when CUDA starts)
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        device = resolve_device(cfg.device)
        return cls(device, resolve_precision(cfg.precision, device), cfg.channels_last and device.type != "mps",
                   cfg.compile, cfg.progress, log=log, fuse=resolve_fuse(cfg.fuse_students, device), bar=bar or cls.bar)

    def model(self, m: nn.Module) -> nn.Module:
        return prepare(m, self.device, self.channels_last)

    def fast(self, m: nn.Module):
        """The module to call in the hot loop, compiled when asked; checkpoints use the module itself (its own keys)."""
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
    """Start a fused SGD's missing momentum buffers at zero (what its first step makes of them, bit for bit).

    Fused SGD allocates them with ``empty_like`` and writes nothing on a step the GradScaler skips (fp16's first
    steps often are), leaving uninitialised memory that every later step builds on."""
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
    CIFAR recipe); ``adam``: Adam (coupled L2) + cosine; ``adamw``: AdamW (decoupled decay) + cosine. Fused on CUDA
    (``engine.fused_optimizer``)."""
    if kind == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay,
                              **fused_optimizer(device))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 8), pct_start=0.25)  # >= 8: tiny runs need a warm-up phase
    else:
        adam = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
        opt = adam(params, lr=lr, weight_decay=weight_decay, **fused_optimizer(device))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    return opt, sched


def train_classifier(model: nn.Module, data: DataBundle, ctx: Context, *, name: str, path: Path, spec: dict,
                     epochs: int, lr: float, weight_decay: float, batch_size: int, augment: bool, seed: int,
                     optimizer: str = "sgd", params=None, distill_from: Callable | None = None,
                     kd_temperature: float = 4.0, kd_alpha: float = 0.9, include_start: bool = False) -> RunState:
    """Cross-entropy training with the best validation epoch kept (teacher, 'all' fine-tuning, baselines).

    ``include_start``: epoch 0 takes part in the selection. ``distill_from``: a frozen model whose logits are also
    matched (``losses.kd_loss``)."""
    train = batches(data, "train", batch_size, ctx, train=True, augment=augment, seed=seed)
    val = batches(data, "val", batch_size * 4, ctx)
    params = list(params if params is not None else model.parameters())
    opt, sched = classifier_optimizer(params, optimizer, lr=lr, weight_decay=weight_decay,
                                      steps=max(1, epochs * len(train)), device=ctx.device)
    run = RunState(path, spec, model, opt, sched, grad_scaler(ctx.device, ctx.amp_dtype))
    fast = ctx.fast(model)
    soft = None
    if distill_from is not None:  # its __call__, a function: its logits (a module would give its features)
        soft = frozen_targets([distill_from.__call__], data, batch_size, ctx, augment)

    def train_epoch(epoch: int) -> dict:
        train.set_epoch(epoch)
        zero_momentum(opt)  # here, not at construction: a resumed state may hold no buffers either
        total, n = torch.zeros((), device=ctx.device), 0
        with ctx.bar(total=len(train), desc=f"{name} epoch {epoch + 1}/{epochs}", disable=not ctx.progress) as bar:
            for x, y, idx in train:
                loss_fn = None
                if soft is not None:
                    teacher_logits = soft(x, idx)[0]
                    loss_fn = lambda out, y: kd_loss(out, teacher_logits, y, kd_temperature, kd_alpha)  # noqa: E731
                total += classifier_step(fast, opt, sched, run.scaler, x, y, ctx, loss_fn) * len(y)
                n += len(y)
                bar.update()
        return dict(train_loss=total.item() / max(1, n))

    return run_epochs(run, epochs, train_epoch, lambda: dict(val_accuracy=evaluate(model, val, ctx)), ctx,
                      select="val_accuracy", include_start=include_start)


def finetune_head(head: nn.Linear, features: dict[str, torch.Tensor], data: DataBundle, ctx: Context, *,
                  name: str, path: Path, spec: dict, epochs: int, lr: float, batch_size: int, seed: int,
                  validate: Callable[[], float] | None = None) -> RunState:
    """Train only the output layer on frozen students' features; the starting layer (epoch 0) is kept unless an
    epoch beats it on validation.

    ``validate``: the validation accuracy by the very function that reports it (selecting in fp32 and reporting in
    bf16 once reported a fine-tune worse than its start); default: the head on the stored validation features."""
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
    """One student to train. ``targets``: (guide index, start, stop) per feature it regresses; empty: the slice
    ``[start:stop]`` of the last guide (the parent)."""
    name: str
    model: nn.Module
    start: int
    stop: int
    path: Path
    spec: dict
    targets: tuple[tuple[int, int, int], ...] = ()


def student_run(model: nn.Module, ctx: Context, *, lr: float, weight_decay: float = 0.0, steps: int,
                path: Path | None = None, spec: dict | None = None, fused: bool | None = None) -> RunState:
    """A student's own Adam, cosine schedule and scaler. ``fused``: None lets ``engine.fused_optimizer`` pick."""
    how = fused_optimizer(ctx.device) if fused is None else {"fused": fused}
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, **how)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    return RunState(path, spec or {}, model, opt, sched, grad_scaler(ctx.device, ctx.amp_dtype))


def _features(guide) -> Callable[[torch.Tensor], torch.Tensor]:
    return guide.features if isinstance(guide, nn.Module) else guide


def guide_targets(guides: list, ctx: Context, fuse: bool, fold_bn: bool = False) -> Callable[[torch.Tensor], list]:
    """``x -> [each guide's features, float32]``, frozen; with ``fuse``, same-architecture guides run as one network."""
    run = fused_guides(guides, ctx, fold_bn) if fuse else (lambda x: [_features(g)(x) for g in guides])

    def targets(x: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad(), autocast(ctx.device, ctx.amp_dtype):
            return [t.float() for t in run(x)]
    return targets


def frozen_targets(guides: list, data: DataBundle, batch_size: int, ctx: Context, augment: bool,
                   fuse: bool = False) -> Callable[[torch.Tensor, torch.Tensor], list[torch.Tensor]]:
    """``(x, idx) -> [each guide's output for the batch]``: the guides' forward when augmenting, else a lookup in
    their outputs over the training split, computed once (the same numbers, no forward pass per step)."""
    if augment:
        forward = guide_targets(guides, ctx, fuse)
        return lambda x, idx: forward(x)
    with torch.no_grad(), autocast(ctx.device, ctx.amp_dtype):
        full = batches(data, "train", batch_size * 4, ctx)
        cached = [extract(_features(g), full, ctx) for g in guides]
    return lambda x, idx: [c[idx] for c in cached]


def keep_mask(n: int, drop: float, g: torch.Generator) -> list[bool]:
    """Which of ``n`` targets a densely guided step keeps: each dropped with chance ``drop``, never all."""
    keep = (torch.rand(n, generator=g) >= drop).tolist()
    if not any(keep):
        keep[int(torch.randint(n, (1,), generator=g))] = True
    return keep


class OneByOne:
    """Students stepped one after another, each with its own optimiser (the CPU's default; ``fused.FusedTrainer``
    has the same interface)."""

    def __init__(self, runs: list[RunState], wanted, ctx: Context, *, loss: str = "mse"):
        self.runs, self.wanted, self.ctx, self.loss = runs, wanted, ctx, loss
        self.nets = [ctx.fast(r.model) for r in runs]

    def train(self) -> None:
        for r in self.runs:
            r.model.train()

    def step(self, x: torch.Tensor, targets: list[torch.Tensor], keep: list[list[bool]] | None = None):
        """One step of each student on batch ``x``; returns their losses (not synced to the host)."""
        losses = []
        for i, (r, net) in enumerate(zip(self.runs, self.nets)):
            with autocast(self.ctx.device, self.ctx.amp_dtype):
                out = net(x)
            loss = guided_loss(out, targets, self.wanted[i], keep and keep[i], self.loss)
            scaled_step(loss, r.optimizer, r.scheduler, r.scaler)
            losses.append(loss.detach())
        return torch.stack(losses)

    def store(self) -> None:
        """Nothing to copy back: each student stepped its own model and optimiser."""


def train_students(guides, jobs: list[StudentJob], data: DataBundle, ctx: Context, *, epochs: int, lr: float,
                   weight_decay: float, batch_size: int, augment: bool, seed: int, loss: str = "mse",
                   group: str = "", drop: float = 0.0) -> list[RunState]:
    """Train sibling students together: each batch, the guides' features as targets, every student's step.

    ``guides``: the parent, or a list (ancestors first, parent last) for densely guided students or a fused
    generation. Each student keeps its own optimiser, schedule and checkpoint, so each resumes at its own epoch.
    """
    guides = list(guides) if isinstance(guides, (list, tuple)) else [guides]
    train = batches(data, "train", batch_size, ctx, train=True, augment=augment, seed=seed)
    val = batches(data, "val", batch_size * 4, ctx)
    runs = [student_run(j.model, ctx, lr=lr, weight_decay=weight_decay, steps=max(1, epochs * len(train)),
                        path=j.path, spec=j.spec) for j in jobs]
    for r in runs:
        r.restore(ctx.log)  # from its checkpoint: finished, or the epoch to resume at
    wanted = [j.targets or ((len(guides) - 1, j.start, j.stop),) for j in jobs]  # (guide, start, stop): parent last
    todo = [i for i, r in enumerate(runs) if r.epoch < epochs]
    if not todo:  # all finished: nothing to load, run or show
        for r in runs:
            r.finish()
        return runs
    with torch.no_grad(), autocast(ctx.device, ctx.amp_dtype):  # the parents' features on the validation split
        val_targets = {gi: extract(_features(guides[gi]), val, ctx) for gi in {wanted[i][-1][0] for i in todo}}
    targets = frozen_targets(guides, data, batch_size, ctx, augment, ctx.fuse)
    step = None
    total = sum(epochs - runs[i].epoch for i in todo) * len(train)
    with ctx.bar(total=total, desc=f"{group or 'students'} ({len(todo)} student(s))", disable=not ctx.progress) as bar:
        for epoch in range(min(runs[i].epoch for i in todo), epochs):
            active = [i for i in todo if runs[i].epoch == epoch]  # students resumed later join at their epoch
            if not active:
                continue
            train.set_epoch(epoch)
            bar.set_postfix_str(f"epoch {epoch + 1}/{epochs}", refresh=False)
            t0 = time.perf_counter()
            if step is None or list(map(id, step.runs)) != [id(runs[i]) for i in active]:  # kept: compiled once
                step = (FusedTrainer if ctx.fuse else OneByOne)([runs[i] for i in active], [wanted[i] for i in active],
                                                                ctx, loss=loss)
            masks = [torch.Generator().manual_seed(init_seed(seed * 1009 + epoch, jobs[i].name)) for i in active]
            dense = drop > 0 and any(len(wanted[i]) > 1 for i in active)
            step.train()
            sums, n = torch.zeros(len(active), device=ctx.device), 0
            for x, _, idx in train:
                keep = [keep_mask(len(wanted[i]), drop, m) if len(wanted[i]) > 1 else [True]
                        for i, m in zip(active, masks)] if dense else None
                sums += step.step(x, targets(x, idx), keep) * len(idx)
                n += len(idx)
                bar.update(len(active))
            step.store()
            share, train_loss = (time.perf_counter() - t0) / len(active), (sums / max(1, n)).tolist()
            for k, i in enumerate(active):
                r = runs[i]
                r.model.eval()
                with torch.no_grad(), autocast(ctx.device, ctx.amp_dtype):
                    pred = extract(r.model, val, ctx)
                gi, a, b = wanted[i][-1]  # the parent: last of a student's targets
                val_loss = feature_loss(pred, val_targets[gi][:, a:b], loss).item()
                r.epoch += 1
                r.seconds += share
                r.record(dict(train_loss=train_loss[k], val_loss=val_loss), select=None)
                r.save(epochs)
    for r in runs:
        r.finish()
    return runs
