"""Training: one resumable epoch loop (``run_epochs``) for the teacher, the students, fine-tuning and the baselines.
Batches are seeded by ``(seed, epoch)``, so a run resumed from its checkpoint sees what an uninterrupted one would.
Students step one by one (``SeparateSteps``) or, opt-in, fused (``fused.FusedSteps``), each with its method's loss."""
from __future__ import annotations

import functools
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import std
from tqdm.auto import tqdm

from .data import Batches, DataBundle
from .engine import (Compiled, autocast, default_threads, fused_optimizer, grad_scaler, resolve_device,
                     resolve_precision, scaled_step)
from .fused import FusedSteps, fused_guides, resolve_fuse
from .losses import feature_loss, guided_loss
from .storage.checkpoint import RunState


@functools.cache
def terminal():
    """The terminal of ``python -m tadist_utils`` in a notebook kernel it runs (``$TADIST_PROGRESS``), else None."""
    fd = os.environ.get("TADIST_PROGRESS")
    return open(int(fd), "w", buffering=1, closefd=False) if fd else None


def bar(total: int, desc: str, disable: bool = False) -> tqdm:
    """A line on the runner's terminal every 30 s when there is one (no widget left in the notebook), else tqdm.auto."""
    if (out := terminal()) is not None:
        return std.tqdm(total=total, desc=desc, disable=disable, file=out, mininterval=30, miniters=1, unit="step")
    return tqdm(total=total, desc=desc, disable=disable, leave=False, dynamic_ncols=True)


def log(text: str) -> None:
    """A log line, printed and on the runner's terminal too (not the data NOTICEs: the runner says those itself)."""
    print(text, flush=True)
    if (out := terminal()) is not None and not str(text).startswith("[tadist] NOTICE:"):
        print(text, file=out)


@dataclass
class Context:
    """How to run (not what to learn): device, precision, progress bars and log lines (``bar``, ``log`` above)."""
    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    compile: bool = False
    progress: bool = True
    log: Callable[[str], None] = log
    fuse: bool = False  # train sibling students as one network (fused.py, which picks it: resolve_fuse)
    bar: Callable[..., tqdm] = bar

    @classmethod
    def from_config(cls, cfg) -> "Context":
        if cfg.threads or cfg.device in ("auto", "cpu"):  # None: the idle cores (engine.default_threads), not all cores
            torch.set_num_threads(cfg.threads or default_threads())
        if cfg.deterministic:  # recorded in the manifest (results.environment)
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it (read when CUDA starts)
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        device = resolve_device(cfg.device)
        return cls(device, resolve_precision(cfg.precision, device), cfg.channels_last and device.type != "mps",
                   cfg.compile, cfg.progress, fuse=resolve_fuse(cfg.fuse_students, device))

    def model(self, m: nn.Module) -> nn.Module:
        return m.to(self.device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)

    def compiled(self, m: nn.Module):  # what the hot loop calls; checkpoints keep the module's own keys
        return Compiled(m, self.device) if self.compile else m


def init_seed(seed: int, key) -> int:
    """Per-model seed: a model's initialisation does not depend on which others train beside it."""
    return seed * 1_000_003 + zlib.crc32(str(key).encode()) % 1_000_003


def batches(data: DataBundle, split: str, batch_size: int, ctx: Context, *, train: bool = False,
            augment: bool = False, seed: int = 0) -> Batches:
    return Batches(getattr(data, split), data, batch_size, ctx.device, shuffle=train, augment=augment and train,
                   seed=seed, channels_last=ctx.channels_last)


@torch.no_grad()
def extract(fn: Callable[[torch.Tensor], torch.Tensor], loader: Batches, ctx: Context) -> torch.Tensor:
    """``fn``'s float32 outputs (features or logits) over a split, in order."""
    return torch.cat([fn(x).float() for x, _, _ in loader] or [torch.empty(0)])


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


def cross_entropy(out: torch.Tensor, labels: torch.Tensor, teacher_logits=None) -> torch.Tensor:
    return F.cross_entropy(out.float(), labels)


def classifier_step(model, opt, sched, scaler, x, y, ctx, loss_fn=None) -> torch.Tensor:
    with autocast(ctx.device, ctx.amp_dtype):
        out = model(x)
    loss = (loss_fn or cross_entropy)(out, y)
    scaled_step(loss, opt, sched, scaler)
    return loss.detach()


def zero_momentum(opt: torch.optim.Optimizer) -> None:
    """Start a fused SGD's missing momentum buffers at zero, what its first step makes of them: it allocates them with
    ``empty_like`` and writes nothing on a step the GradScaler skips (fp16's first steps often are)."""
    for g in opt.param_groups if isinstance(opt, torch.optim.SGD) else ():
        if g.get("fused") and g["momentum"] != 0 and g["dampening"] == 0:
            for p in g["params"]:
                if p.requires_grad and opt.state[p].get("momentum_buffer") is None:
                    opt.state[p]["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)


def classifier_optimizer(params, kind: str, *, lr: float, weight_decay: float, steps: int, device: torch.device,
                         fused: bool | None = None):
    """An optimiser and schedule over ``steps``: sgd: SGD Nesterov + one-cycle; adam (coupled L2), adamw (decoupled
    decay): + cosine. ``fused``: None lets ``engine.fused_optimizer`` pick."""
    how = fused_optimizer(device) if fused is None else {"fused": fused}
    if kind == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay, **how)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 8), pct_start=0.25)  # >= 8: tiny runs need a warm-up phase
    else:
        adam = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
        opt = adam(params, lr=lr, weight_decay=weight_decay, **how)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    return opt, sched


@dataclass
class Training:
    """Runs that train together: ``begin(epoch, active)`` gives ``(step, batches)``, each batch ``(images, *args)`` and
    ``step(*args)`` the active runs' losses; ``end(sums, images)`` their means; ``validate(run)`` a run's metrics."""
    runs: list[RunState]
    epochs: int
    steps: int  # batches an epoch
    begin: Callable
    end: Callable
    validate: Callable[[RunState], dict]
    desc: str | Callable[[int], str]  # or of the number of runs left to train
    select: str | None = None  # the validation metric whose best epoch is kept
    include_start: bool = False  # a fresh run's starting weights are epoch 0 and can be chosen


def run_epochs(t: Training, ctx: Context) -> list[RunState]:
    """The one epoch loop: restore each run; each epoch, for the runs at it (a run resumed later joins at its own):
    train, validate, record, select, save; last, load the chosen weights."""
    fresh = [not r.restore(ctx.log) for r in t.runs]
    for r in (r for r, new in zip(t.runs, fresh) if new and t.include_start):
        r.model.eval()
        r.record(t.validate(r), t.select)
    todo = [r for r in t.runs if r.epoch < t.epochs]
    total = sum(t.epochs - r.epoch for r in todo) * t.steps
    desc = t.desc(len(todo)) if callable(t.desc) else t.desc
    with ctx.bar(total=total, desc=desc, disable=not (ctx.progress and todo)) as bar:
        for epoch in range(min((r.epoch for r in todo), default=t.epochs), t.epochs):
            active = [r for r in todo if r.epoch == epoch]
            if not active:
                continue
            bar.set_postfix_str(f"epoch {epoch + 1}/{t.epochs}", refresh=False)
            t0 = time.perf_counter()
            for r in active:
                r.model.train()
            step, batches = t.begin(epoch, active)
            sums, n = torch.zeros(len(active), device=ctx.device), 0
            for size, *args in batches:
                sums += step(*args) * size
                n += size
                bar.update(len(active))
            train_loss = t.end(sums, n)
            share = (time.perf_counter() - t0) / len(active)
            for r, loss in zip(active, train_loss):
                t0 = time.perf_counter()
                r.model.eval()
                metrics = dict(train_loss=loss, **t.validate(r))
                r.epoch += 1
                r.seconds += share + time.perf_counter() - t0
                r.record(metrics, t.select)
                r.save(t.epochs)
    for r in t.runs:
        r.finish()
    return t.runs


def _mean(sums: torch.Tensor, n: int) -> list[float]:  # one run's, divided on the host as classifiers always were
    return [sums[0].item() / max(1, n)]


def train_classifier(model: nn.Module, data: DataBundle, ctx: Context, *, name: str, path: Path, spec: dict,
                     epochs: int, lr: float, weight_decay: float, batch_size: int, augment: bool, seed: int,
                     optimizer: str = "sgd", params=None, distill_from: Callable | None = None,
                     loss: Callable = cross_entropy, include_start: bool = False) -> RunState:
    """Classifier training with the best validation epoch kept (teacher, 'all' fine-tuning, baselines): ``loss(out,
    labels, teacher_logits)``, the logits of the frozen ``distill_from`` (None without it)."""
    train = batches(data, "train", batch_size, ctx, train=True, augment=augment, seed=seed)
    val = batches(data, "val", batch_size * 4, ctx)
    params = list(params if params is not None else model.parameters())
    opt, sched = classifier_optimizer(params, optimizer, lr=lr, weight_decay=weight_decay,
                                      steps=max(1, epochs * len(train)), device=ctx.device)
    run = RunState(path, spec, model, opt, sched, grad_scaler(ctx.device, ctx.amp_dtype))
    net = ctx.compiled(model)
    soft = None
    if distill_from is not None:  # its __call__, a function: its logits (a module would give its features)
        soft = frozen_features([distill_from.__call__], data, batch_size, ctx, augment)

    def step(x, y, idx) -> torch.Tensor:
        teacher_logits = soft(x, idx)[0] if soft is not None else None
        return classifier_step(net, opt, sched, run.scaler, x, y, ctx, lambda out, y: loss(out, y, teacher_logits))

    def begin(epoch: int, active):
        train.set_epoch(epoch)
        zero_momentum(opt)  # here, not at construction: a resumed state may hold no buffers either
        return step, ((len(y), x, y, idx) for x, y, idx in train)

    return run_epochs(Training([run], epochs, len(train), begin, _mean, lambda r: dict(val_accuracy=evaluate(
        model, val, ctx)), name, "val_accuracy", include_start), ctx)[0]


def finetune_head(head: nn.Linear, features: dict[str, torch.Tensor], data: DataBundle, ctx: Context, *,
                  name: str, path: Path, spec: dict, epochs: int, lr: float, batch_size: int, seed: int,
                  validate: Callable[[], float] | None = None) -> RunState:
    """Train only the output layer on frozen students' features, the starting layer (epoch 0) kept unless an epoch
    beats it. ``validate``: the accuracy by the very function that reports it (selecting in fp32 and reporting in
    bf16 once kept a fine-tune worse than its start); default: the head on the stored validation features."""
    x_train, y_train = features["train"], data.train.labels.to(ctx.device)
    steps = (len(y_train) + batch_size - 1) // batch_size
    run = student_run(head, ctx, lr=lr, steps=max(1, epochs * steps), path=path, spec=spec)
    run.scaler = grad_scaler(ctx.device, None)  # unscaled, as the head always trained

    def step(idx) -> torch.Tensor:
        return classifier_step(head, run.optimizer, run.scheduler, run.scaler, x_train[idx], y_train[idx], ctx)

    def begin(epoch: int, active):
        order = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        return step, ((len(idx), idx) for idx in order.to(ctx.device).split(batch_size))

    def head_accuracy() -> float:
        labels = data.val.labels.to(ctx.device)
        with torch.no_grad(), autocast(ctx.device, ctx.amp_dtype):
            correct = (head(features["val"]).argmax(1) == labels).sum()
        return 100.0 * correct.item() / max(1, len(labels))

    score = head_accuracy if validate is None else validate
    return run_epochs(Training([run], epochs, steps, begin, _mean, lambda r: dict(val_accuracy=score()), name,
                               "val_accuracy", include_start=True), ctx)[0]


# ------------------------------------------------------------------------- students
@dataclass
class StudentJob:
    """One student to train. ``targets``: (guide index, start, stop) per feature it regresses; empty: the slice
    ``[start:stop]`` of the last guide (the parent). ``loss``: its method's (``plans.Chunked.loss``)."""
    name: str
    model: nn.Module
    start: int
    stop: int
    path: Path
    spec: dict
    targets: tuple[tuple[int, int, int], ...] = ()
    loss: Callable = guided_loss


def student_run(model: nn.Module, ctx: Context, *, lr: float, weight_decay: float = 0.0, steps: int,
                path: Path | None = None, spec: dict | None = None, fused: bool | None = None) -> RunState:
    """A student's own Adam, cosine schedule and scaler."""
    opt, sched = classifier_optimizer(model.parameters(), "adam", lr=lr, weight_decay=weight_decay, steps=steps,
                                      device=ctx.device, fused=fused)
    return RunState(path, spec or {}, model, opt, sched, grad_scaler(ctx.device, ctx.amp_dtype))


def _features(guide) -> Callable[[torch.Tensor], torch.Tensor]:
    return guide.features if isinstance(guide, nn.Module) else guide


def guide_features(guides: list, ctx: Context, fuse: bool, fold_bn: bool = False) -> Callable[[torch.Tensor], list]:
    """``x -> [each guide's features, float32]``, frozen; with ``fuse``, same-architecture guides run as one network."""
    run = fused_guides(guides, ctx, fold_bn) if fuse else (lambda x: [_features(g)(x) for g in guides])

    def feats(x: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad(), autocast(ctx.device, ctx.amp_dtype):
            return [t.float() for t in run(x)]
    return feats


def frozen_features(guides: list, data: DataBundle, batch_size: int, ctx: Context, augment: bool,
                    fuse: bool = False) -> Callable[[torch.Tensor, torch.Tensor], list[torch.Tensor]]:
    """``(x, idx) -> [each guide's output for the batch]``: the guides' forward when augmenting, else a lookup in
    their outputs over the training split, computed once (the same numbers, no forward pass per step)."""
    if augment:
        forward = guide_features(guides, ctx, fuse)
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


class SeparateSteps:
    """Students' steps one after another, each with its own optimiser (``fused.FusedSteps``: the opt-in twin)."""

    def __init__(self, runs: list[RunState], targets, ctx: Context, *, kind: str = "mse",
                 unit_losses: list[Callable] | None = None):
        self.runs, self.targets, self.ctx, self.kind = runs, targets, ctx, kind
        self.unit_losses = unit_losses or [guided_loss] * len(runs)
        self.nets = [ctx.compiled(r.model) for r in runs]

    def train(self) -> None:
        for r in self.runs:
            r.model.train()

    def step(self, x: torch.Tensor, feats: list[torch.Tensor], keep: list[list[bool]] | None = None):
        """One step of each student on batch ``x``; returns their losses (not synced to the host)."""
        out_losses = []
        for i, (r, net, loss) in enumerate(zip(self.runs, self.nets, self.unit_losses)):
            with autocast(self.ctx.device, self.ctx.amp_dtype):
                out = net(x)
            value = loss(out, feats, self.targets[i], keep and keep[i], self.kind)
            scaled_step(value, r.optimizer, r.scheduler, r.scaler)
            out_losses.append(value.detach())
        return torch.stack(out_losses)


def student_training(guides, jobs: list[StudentJob], data: DataBundle, ctx: Context, *, epochs: int, lr: float,
                     weight_decay: float, batch_size: int, augment: bool, seed: int, kind: str = "mse",
                     group: str = "", drop: float = 0.0) -> Training:
    """Sibling students trained together (``run_epochs(student_training(...), ctx)``): each batch, the guides' features,
    then every student's step with its method's loss. ``guides``: the parent, or a list (ancestors first, parent last).
    Each student keeps its own optimiser, schedule and checkpoint, so each resumes at its own epoch."""
    guides = list(guides) if isinstance(guides, (list, tuple)) else [guides]
    train = batches(data, "train", batch_size, ctx, train=True, augment=augment, seed=seed)
    val = batches(data, "val", batch_size * 4, ctx)
    runs = [student_run(j.model, ctx, lr=lr, weight_decay=weight_decay, steps=max(1, epochs * len(train)),
                        path=j.path, spec=j.spec) for j in jobs]
    targets = [j.targets or ((len(guides) - 1, j.start, j.stop),) for j in jobs]  # (guide, start, stop): parent last
    pos = {id(r): i for i, r in enumerate(runs)}
    lazy: dict = {}  # the guides' features, computed on the first epoch to train (none when all are finished)

    def begin(epoch: int, active: list[RunState]):
        ids = [pos[id(r)] for r in active]
        if not lazy:
            with torch.no_grad(), autocast(ctx.device, ctx.amp_dtype):  # the parents' features on the validation split
                parents = {targets[pos[id(r)]][-1][0] for r in runs if r.epoch < epochs}
                lazy["val"] = {gi: extract(_features(guides[gi]), val, ctx) for gi in parents}
            lazy["feats"] = frozen_features(guides, data, batch_size, ctx, augment, ctx.fuse)
        step = lazy.get("step")
        if step is None or list(map(id, step.runs)) != list(map(id, active)):  # kept: compiled once
            step = lazy["step"] = (FusedSteps if ctx.fuse else SeparateSteps)(
                active, [targets[i] for i in ids], ctx, kind=kind, unit_losses=[jobs[i].loss for i in ids])
        train.set_epoch(epoch)
        masks = [torch.Generator().manual_seed(init_seed(seed * 1009 + epoch, jobs[i].name)) for i in ids]
        dense = drop > 0 and any(len(targets[i]) > 1 for i in ids)
        step.train()
        return step.step, ((len(idx), x, lazy["feats"](x, idx), [keep_mask(len(targets[i]), drop, m)
                            if len(targets[i]) > 1 else [True] for i, m in zip(ids, masks)] if dense else None)
                           for x, _, idx in train)

    def end(sums: torch.Tensor, n: int) -> list[float]:
        if ctx.fuse:
            lazy["step"].write_back()
        return (sums / max(1, n)).tolist()

    def validate(r: RunState) -> dict:
        with torch.no_grad(), autocast(ctx.device, ctx.amp_dtype):
            pred = extract(r.model, val, ctx)
        gi, a, b = targets[pos[id(r)]][-1]  # the parent: last of a student's targets
        return dict(val_loss=feature_loss(pred, lazy["val"][gi][:, a:b], kind).item())

    return Training(runs, epochs, len(train), begin, end, validate,
                    lambda n: f"{group or 'students'} ({n} student(s))")
