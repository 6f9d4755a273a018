"""Sibling students trained as one network: the same maths as separate students, a fraction of the launches.

On a GPU a tiny student costs kernel launches, not arithmetic. ``FusedTrainer`` runs every student of one
architecture as one ``models.FusedStudents`` network (grouped convolutions) stepped by *one* Adam, so a step of the
direct plan's 15 students launches about as many kernels as four students do. The maths is unchanged: the loss is
the sum of the students' own losses, Adam (with L2 weight decay) acts element by element, and BatchNorm, ReLU and
pooling act per channel, so each student's block follows its own trajectory to float rounding
(``tests/test_fused.py``). One difference: under fp16 one overflow skips the step for every fused student.

Between epochs the state lives in the ordinary per-student modules, optimisers, schedules and scalers (copied in
when an epoch starts, out by ``store``), so checkpoints, resume and ``models.Ensemble`` see plain students.
``fused_guides`` does the same for frozen parents of one architecture whose features the students regress.
"""
from __future__ import annotations

from typing import Callable

import torch

from . import models
from .engine import autocast, grad_scaler, scaled_step
from .losses import chunk_losses, guided_loss


def _arch(model: models.ConvNet) -> tuple:
    head = model.head.weight.shape if isinstance(model.head, torch.nn.Linear) else None
    return tuple(map(str, model.config)), tuple(head or ())


def _adam(params, group: dict, device: torch.device) -> torch.optim.Adam:
    """One Adam with the students' hyper-parameters: fused (one kernel for every tensor) where supported."""
    hyper = dict(lr=group["lr"], betas=group["betas"], eps=group["eps"], weight_decay=group["weight_decay"],
                 amsgrad=group["amsgrad"])
    if device.type in ("cuda", "cpu"):
        try:
            return torch.optim.Adam(params, fused=True, **hyper)
        except (RuntimeError, TypeError, ValueError):  # older torch or an unsupported device/dtype
            pass
    return torch.optim.Adam(params, foreach=device.type != "cpu", **hyper)


class FusedTrainer:
    """One epoch of several students (``train.RunState`` each, all at the same epoch) as fused networks, with the
    interface of ``train.OneByOne``."""

    def __init__(self, runs: list, targets: list[tuple[tuple[int, int, int], ...]], ctx, *, loss: str = "mse"):
        self.runs, self.ctx, self.loss = runs, ctx, loss
        first = runs[0]
        for r in runs[1:]:
            if r.scheduler.state_dict() != first.scheduler.state_dict() or (
                    r.optimizer.param_groups[0]["lr"] != first.optimizer.param_groups[0]["lr"]):
                raise ValueError("fused students must share one schedule position (train the same epoch)")
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(runs):
            groups.setdefault(_arch(r.model), []).append(i)
        self.groups = []  # (student indices, fused network, targets per student)
        for idx in groups.values():
            net = ctx.model(models.FusedStudents([runs[i].model for i in idx]))
            self.groups.append((idx, net, [targets[i] for i in idx]))
        params = [p for _, net, _ in self.groups for p in net.parameters()]
        self.optimizer = _adam(params, first.optimizer.param_groups[0], ctx.device)
        self.optimizer.load_state_dict(self._fused_optimizer_state())
        self.scheduler = type(first.scheduler)(self.optimizer, T_max=first.scheduler.T_max,
                                               eta_min=first.scheduler.eta_min)
        self.scheduler.load_state_dict(first.scheduler.state_dict())
        self.optimizer.param_groups[0]["lr"] = first.optimizer.param_groups[0]["lr"]
        self.scaler = grad_scaler(ctx.device, ctx.amp_dtype)
        self.scaler.load_state_dict(first.scaler.state_dict())
        self.fast = [ctx.fast(net) for _, net, _ in self.groups]
        self.order = torch.tensor([i for idx, _, _ in self.groups for i in idx]).argsort().to(ctx.device)

    # ------------------------------------------------------------------ state in and out
    def _slots(self):
        """(fused parameter, its key, fused network, its students' indices, their parameters) for every tensor."""
        for idx, net, _ in self.groups:
            own = [dict(self.runs[i].model.named_parameters()) for i in idx]
            for key, p in net.named_parameters():
                yield p, key, net, idx, [o[key] for o in own]

    def _fused_optimizer_state(self) -> dict:
        state = {}
        for k, (p, key, net, idx, parts) in enumerate(self._slots()):
            per = [self.runs[i].optimizer.state.get(q) or None for i, q in zip(idx, parts)]
            if all(s is None for s in per):
                continue
            if any(s is None for s in per) or len({float(s["step"]) for s in per}) != 1:
                raise ValueError("fused students must have taken the same number of optimiser steps")
            state[k] = dict(step=per[0]["step"].clone(), **{
                name: torch.cat([s[name] for s in per]).reshape(p.shape) for name in per[0] if name != "step"})
        group = {k: v for k, v in self.optimizer.param_groups[0].items() if k != "params"}
        return dict(state=state, param_groups=[dict(group, params=list(range(len(self.optimizer.param_groups[0]["params"]))))])

    @torch.no_grad()
    def store(self) -> None:
        """Write the fused state back into every student's model, optimiser, schedule and scaler."""
        for idx, net, _ in self.groups:
            net.store_students([self.runs[i].model for i in idx])
        fused_state = self.optimizer.state
        lr = self.optimizer.param_groups[0]["lr"]
        per_student: dict[int, dict] = {i: {} for i in range(len(self.runs))}
        for p, key, net, idx, parts in self._slots():
            st = fused_state.get(p)
            if not st:
                continue
            for g, (i, q) in enumerate(zip(idx, parts)):
                per_student[i][q] = {name: (v.detach().cpu().clone() if name == "step" else net.part(v, key, g).clone())
                                     for name, v in st.items()}
        for i, r in enumerate(self.runs):
            params = list(r.model.parameters())
            sd = r.optimizer.state_dict()
            sd["state"] = {k: per_student[i][q] for k, q in enumerate(params) if q in per_student[i]}
            sd["param_groups"][0]["lr"] = lr
            r.optimizer.load_state_dict(sd)
            r.scheduler.load_state_dict(self.scheduler.state_dict())
            r.scaler.load_state_dict(self.scaler.state_dict())

    # ------------------------------------------------------------------ one training step
    def train(self) -> None:
        for _, net, _ in self.groups:
            net.train()

    def step(self, x: torch.Tensor, targets: list[torch.Tensor], keep: list[list[bool]] | None = None) -> torch.Tensor:
        """One step of every student on batch ``x`` (``train.OneByOne.step``): losses in the order of ``runs``."""
        losses = []
        for (idx, net, wanted), fast in zip(self.groups, self.fast):
            with autocast(self.ctx.device, self.ctx.amp_dtype):
                out = fast(x)
            if all(len(w) == 1 for w in wanted):
                losses.append(chunk_losses(out, _gather(targets, [w[0] for w in wanted]), len(idx), self.loss))
                continue
            d = out.shape[1] // len(idx)
            per = []
            for g, (i, w) in enumerate(zip(idx, wanted)):
                per.append(guided_loss(out[:, g * d:(g + 1) * d], targets, w, keep and keep[i], self.loss))
            losses.append(torch.stack(per))
        losses = torch.cat(losses)[self.order] if len(self.groups) > 1 else losses[0]
        scaled_step(losses.sum(), self.optimizer, self.scheduler, self.scaler)
        return losses.detach()


def fused_guides(guides: list, ctx, fold_bn: bool = False) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    """``x -> [features of each guide]``: guides that are frozen students of one architecture run as one network.

    ``guides``: models (their ``features`` are the targets) or feature functions. Two or more eval-mode students
    (``models.ConvNet`` without a classifier) sharing architecture, dtype and device become one ``FusedStudents``
    (a copy of the weights as they are now: only frozen guides belong here); the rest run as before.
    ``fold_bn`` folds BatchNorm into the convolutions (fewer launches, but under bf16 the targets round
    differently: off in training, measured by ``analysis.step_profile.bench_guide_ops``).
    """
    groups: dict[tuple, list[int]] = {}
    for i, g in enumerate(guides):
        if isinstance(g, models.ConvNet) and g.classifier is None and not g.training:
            p = next(g.parameters())
            groups.setdefault((_arch(g), p.dtype, p.device), []).append(i)
    nets = []  # (guide indices, their fused network)
    for idx in groups.values():
        if len(idx) > 1:
            net = models.FusedStudents([guides[i] for i in idx], fold_bn=fold_bn)
            nets.append((idx, ctx.model(net).eval().requires_grad_(False)))
    fused = {i for idx, _ in nets for i in idx}
    alone = [(i, g.features if isinstance(g, torch.nn.Module) else g) for i, g in enumerate(guides) if i not in fused]

    def forward(x: torch.Tensor) -> list[torch.Tensor]:
        out: list = [None] * len(guides)
        for i, fn in alone:
            out[i] = fn(x)
        for idx, net in nets:
            for i, f in zip(idx, net(x).split([guides[i].feature_dim for i in idx], dim=1)):
                out[i] = f
        return out

    return forward


def _gather(targets: list[torch.Tensor], slices: list[tuple[int, int, int]]) -> torch.Tensor:
    """The students' target chunks side by side: one view when they are contiguous slices of one guide."""
    gi, lo, hi = slices[0]
    contiguous = all(s[0] == gi and s[1] == prev[2] for prev, s in zip(slices, slices[1:]))
    if contiguous:
        return targets[gi][:, lo:slices[-1][2]]
    return torch.cat([targets[g][:, a:b] for g, a, b in slices], dim=1)
