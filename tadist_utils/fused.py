"""Fusion, the opt-in accelerator: sibling students as one network (grouped convolutions) with one Adam, the same
maths in a fraction of the launches (a tiny student on a GPU costs launches, not arithmetic). Adam, BatchNorm, ReLU
and pooling act element or channel-wise, so each student follows its own trajectory to float rounding (test_fused);
under fp16 one overflow skips the step for all. Between epochs the state lives in the plain students (``write_back``)."""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
from torch import nn

from . import models
from .engine import autocast, grad_scaler, scaled_step
from .losses import chunk_losses, guided_loss


def resolve_fuse(setting: str, device: torch.device) -> bool:
    """Fuse sibling students? 'auto': on accelerators, not on a CPU (where the per-student loop measured faster)."""
    return setting == "on" if setting in ("on", "off") else device.type != "cpu"


class FusedStudents(nn.Module):
    """Same-architecture students as one wide network (``features(x)``: theirs, concatenated): student ``g``'s conv is
    group ``g`` of a grouped conv (the first, on the shared image, an ordinary one), so channel block ``g`` *is*
    student ``g``; the state dict has their keys, tensors concatenated on dim 0. ``fold_bn``: BatchNorm folded (eval)."""

    def __init__(self, students: Sequence[nn.Module], fold_bn: bool = False):
        super().__init__()
        first = (students := list(students))[0]
        if any(_arch(s) != _arch(first) or s.classifier is not None for s in students):
            raise ValueError("FusedStudents needs students of one architecture (same config and head), no classifier")
        n, self.n_students, self.fold_bn = len(students), len(students), fold_bn
        self.feature_dim = sum(s.feature_dim for s in students)
        self.student_shapes = {k: v.shape for k, v in first.state_dict().items()}
        layers: list[nn.Module] = []
        shared_input = True  # until the first conv, every student sees the same (image) tensor
        for mods in zip(*[s.body for s in students]):
            m = mods[0]
            if isinstance(m, nn.Conv2d):
                layers.append(nn.Conv2d(m.in_channels * (1 if shared_input else n), m.out_channels * n, m.kernel_size,
                                        stride=m.stride, padding=m.padding, dilation=m.dilation,
                                        groups=1 if shared_input else n, bias=m.bias is not None or fold_bn))
                shared_input = False
            elif isinstance(m, nn.BatchNorm2d):
                layers.append(nn.Identity() if fold_bn else nn.BatchNorm2d(m.num_features * n, eps=m.eps,
                                                                           momentum=m.momentum))
            else:  # ReLU, pooling: per channel, on each student's block alone
                layers.append(copy.deepcopy(m))
        self.body = nn.Sequential(*layers)
        self.pool = copy.deepcopy(first.pool)
        lin = first.head  # n Linear(in, out) heads == one grouped 1x1 conv on (B, n*in, 1, 1)
        self.head = nn.Conv2d(lin.in_features * n, lin.out_features * n, 1, groups=n, bias=lin.bias is not None) \
            if isinstance(lin, nn.Linear) else nn.Identity()
        ref = next(first.parameters())
        self.to(device=ref.device, dtype=ref.dtype)  # the students' device and precision
        self._fold(students) if fold_bn else self.load_students(students)
        self.train(first.training)  # the students' mode: eval uses running statistics, as they did

    def part(self, tensor: torch.Tensor, key: str, g: int) -> torch.Tensor:
        """Student ``g``'s block of a fused tensor stored under ``key`` (a weight, buffer or its Adam state)."""
        shape = self.student_shapes[key]
        return tensor if not shape else tensor.reshape(self.n_students, *shape)[g]

    @torch.no_grad()
    def load_students(self, students: Sequence[nn.Module]) -> None:
        """Copy the students' weights and BatchNorm buffers in (concatenated along dim 0)."""
        states = [s.state_dict() for s in students]
        for key, t in self.state_dict().items():
            t.copy_(states[0][key] if t.dim() == 0 else torch.cat([st[key] for st in states]).reshape(t.shape))

    @torch.no_grad()
    def store_students(self, students: Sequence[nn.Module]) -> None:
        """Copy the fused weights and buffers back into the students (the inverse of ``load_students``)."""
        if self.fold_bn:
            raise ValueError("a BatchNorm-folded network cannot be split back into students")
        for g, s in enumerate(students):
            own = s.state_dict()
            for key, t in self.state_dict().items():
                own[key].copy_(self.part(t, key, g))

    @torch.no_grad()
    def _fold(self, students: Sequence[nn.Module]) -> None:
        mods = list(zip(*[s.body for s in students]))
        for i, layer in enumerate(self.body):
            if isinstance(layer, nn.Conv2d):
                layer.weight.copy_(torch.cat([m.weight for m in mods[i]]))
                layer.bias.copy_(torch.cat([m.bias for m in mods[i]]) if mods[i][0].bias is not None else 0)
            elif isinstance(mods[i][0], nn.BatchNorm2d):
                bns, conv = mods[i], self.body[i - 1]
                weight, bias = torch.cat([b.weight for b in bns]), torch.cat([b.bias for b in bns])
                mean, var = torch.cat([b.running_mean for b in bns]), torch.cat([b.running_var for b in bns])
                scale = weight / torch.sqrt(var + bns[0].eps)
                conv.weight.mul_(scale.view(-1, 1, 1, 1))
                conv.bias.copy_((conv.bias - mean) * scale + bias)
        if isinstance(self.head, nn.Conv2d):
            self.head.weight.copy_(torch.cat([s.head.weight for s in students]).reshape(self.head.weight.shape))
            if self.head.bias is not None:
                self.head.bias.copy_(torch.cat([s.head.bias for s in students]))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The students' features concatenated in order: ``Ensemble.features(x)`` for an ensemble's students."""
        return torch.flatten(self.head(self.pool(self.body(x))), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class FusedEnsemble(FusedStudents):
    """A ``models.Ensemble`` as one network plus its output layer: the same logits (a copy, sharing nothing)."""

    def __init__(self, ensemble: models.Ensemble, fold_bn: bool = False):
        super().__init__(list(ensemble.students), fold_bn=fold_bn)
        self.classifier = copy.deepcopy(ensemble.classifier)
        self.train(ensemble.training)
        self.to(next(ensemble.parameters()).device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _arch(model: models.ConvNet) -> tuple:
    head = model.head.weight.shape if isinstance(model.head, torch.nn.Linear) else None
    return tuple(map(str, model.config)), tuple(head or ())


def _adam(params, group: dict, device: torch.device) -> torch.optim.Adam:
    """One Adam with the students' hyper-parameters, fused (one kernel for every tensor) where torch has it."""
    hyper = {k: group[k] for k in ("lr", "betas", "eps", "weight_decay", "amsgrad")}
    try:
        return torch.optim.Adam(params, fused=device.type in ("cuda", "cpu"), **hyper)
    except RuntimeError:  # a CPU before torch 2.4
        return torch.optim.Adam(params, foreach=device.type != "cpu", **hyper)


class FusedSteps:
    """Training steps of several students (``RunState`` each, all at one epoch) as fused networks: the interface of
    ``train.SeparateSteps``, plus ``write_back`` at the end of an epoch."""

    def __init__(self, runs: list, targets: list[tuple[tuple[int, int, int], ...]], ctx, *, kind: str = "mse",
                 unit_losses: list[Callable] | None = None):
        self.runs, self.ctx, self.kind = runs, ctx, kind
        unit_losses = unit_losses or [guided_loss] * len(runs)
        first, lr = runs[0], runs[0].optimizer.param_groups[0]["lr"]
        if any(r.scheduler.state_dict() != first.scheduler.state_dict() or r.optimizer.param_groups[0]["lr"] != lr
               for r in runs):
            raise ValueError("fused students must share one schedule position (train the same epoch)")
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(runs):
            groups.setdefault(_arch(r.model), []).append(i)
        self.groups = [(idx, ctx.model(FusedStudents([runs[i].model for i in idx])), [targets[i] for i in idx],
                        [unit_losses[i] for i in idx]) for idx in groups.values()]  # (students, net, targets, losses)
        params = [p for _, net, _, _ in self.groups for p in net.parameters()]
        self.optimizer = _adam(params, first.optimizer.param_groups[0], ctx.device)
        self.optimizer.load_state_dict(self._fused_optimizer_state())
        self.scheduler = type(first.scheduler)(self.optimizer, T_max=first.scheduler.T_max,
                                               eta_min=first.scheduler.eta_min)
        self.scheduler.load_state_dict(first.scheduler.state_dict())
        self.optimizer.param_groups[0]["lr"] = lr
        self.scaler = grad_scaler(ctx.device, ctx.amp_dtype)
        self.scaler.load_state_dict(first.scaler.state_dict())
        self.nets = [ctx.compiled(net) for _, net, _, _ in self.groups]
        self.order = torch.tensor([i for idx, *_ in self.groups for i in idx]).argsort().to(ctx.device)

    def _slots(self):
        """(fused parameter, its key, fused network, its students' indices, their parameters) for every tensor."""
        for idx, net, *_ in self.groups:
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
        return dict(state=state, param_groups=self.optimizer.state_dict()["param_groups"])

    @torch.no_grad()
    def write_back(self) -> None:
        """Write the fused state back into every student's model, optimiser, schedule and scaler."""
        for idx, net, *_ in self.groups:
            net.store_students([self.runs[i].model for i in idx])
        states: list[dict] = [{} for _ in self.runs]
        for p, key, net, idx, parts in self._slots():
            for g, (i, q) in enumerate(zip(idx, parts)):
                if st := self.optimizer.state.get(p):
                    states[i][q] = {name: v.cpu().clone() if name == "step" else net.part(v, key, g).clone()
                                    for name, v in st.items()}
        for r, own in zip(self.runs, states):
            sd = r.optimizer.state_dict()
            sd["state"] = {k: own[q] for k, q in enumerate(r.model.parameters()) if q in own}
            sd["param_groups"][0]["lr"] = self.optimizer.param_groups[0]["lr"]
            r.optimizer.load_state_dict(sd)
            r.scheduler.load_state_dict(self.scheduler.state_dict())
            r.scaler.load_state_dict(self.scaler.state_dict())

    def train(self) -> None:
        for _, net, *_ in self.groups:
            net.train()

    def step(self, x: torch.Tensor, feats: list[torch.Tensor], keep: list[list[bool]] | None = None) -> torch.Tensor:
        """One step of every student on batch ``x``: their losses in the order of ``runs`` (not synced)."""
        out_losses = []
        for (idx, _, targets, fns), net in zip(self.groups, self.nets):
            with autocast(self.ctx.device, self.ctx.amp_dtype):
                out = net(x)
            if all(len(t) == 1 for t in targets) and all(f is guided_loss for f in fns):  # the stock loss, batched
                out_losses.append(chunk_losses(out, _gather(feats, [t[0] for t in targets]), len(idx), self.kind))
                continue
            d = out.shape[1] // len(idx)
            out_losses.append(torch.stack([fn(out[:, g * d:(g + 1) * d], feats, t, keep and keep[i], self.kind)
                                           for g, (i, t, fn) in enumerate(zip(idx, targets, fns))]))
        out_losses = torch.cat(out_losses)[self.order] if len(self.groups) > 1 else out_losses[0]
        scaled_step(out_losses.sum(), self.optimizer, self.scheduler, self.scaler)
        return out_losses.detach()


def fused_guides(guides: list, ctx, fold_bn: bool = False) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    """``x -> [features of each guide]``: two or more frozen (eval-mode, classifier-less) ``models.ConvNet`` guides
    of one architecture, dtype and device run as one ``FusedStudents`` (a copy of their weights now); the rest
    (models or feature functions) run alone. ``fold_bn``: fewer launches, but bf16 targets round differently."""
    groups: dict[tuple, list[int]] = {}
    for i, g in enumerate(guides):
        if isinstance(g, models.ConvNet) and g.classifier is None and not g.training:
            p = next(g.parameters())
            groups.setdefault((_arch(g), p.dtype, p.device), []).append(i)
    nets = [(idx, ctx.model(FusedStudents([guides[i] for i in idx], fold_bn=fold_bn)).eval().requires_grad_(False))
            for idx in groups.values() if len(idx) > 1]
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


def _gather(feats: list[torch.Tensor], slices: list[tuple[int, int, int]]) -> torch.Tensor:
    """The students' target chunks side by side: one view when they are contiguous slices of one guide."""
    gi, lo, hi = slices[0]
    if all(s[0] == gi and s[1] == prev[2] for prev, s in zip(slices, slices[1:])):
        return feats[gi][:, lo:slices[-1][2]]
    return torch.cat([feats[g][:, a:b] for g, a, b in slices], dim=1)
