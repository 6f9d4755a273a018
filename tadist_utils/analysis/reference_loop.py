"""The reference the bench measures the package against: the training loop one writes first, data pipeline included.

A torchvision ``DataLoader`` over PIL images (``RandomCrop``/``RandomHorizontalFlip``/``ToTensor``/``Normalize``),
fp32, contiguous tensors, one model at a time and, for students, the parent's forward recomputed for every student
and batch. Not the package's own per-student loop, which is the CPU's fast path. Same recipe, initial weights,
schedule and per-epoch work as ``train.train_classifier`` / ``train.train_students``, so the bench's ratio is the
engine's.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .. import models
from ..data import DataBundle, Split
from ..train import init_seed


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
    if cfg.teacher_optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=cfg.teacher_lr, momentum=0.9, nesterov=True,
                              weight_decay=cfg.teacher_weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.teacher_lr, total_steps=max(steps, 8),
                                                    pct_start=0.25)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.teacher_lr, weight_decay=cfg.teacher_weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
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
