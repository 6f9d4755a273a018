"""Chunked distillation: cut a parent's dense feature into equal contiguous chunks, regress them.

A student regresses ``parent_feature[:, start:stop]``. MSE is the paper's loss; L1 and cosine are
options. ``kd_loss`` is Hinton's logit distillation, used only by baselines.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def chunk_slices(dim: int, n_chunks: int) -> list[tuple[int, int]]:
    """Contiguous equal chunks of a ``dim``-d vector: ``chunk_slices(512, 2) == [(0, 256), (256, 512)]``."""
    if n_chunks <= 0 or dim % n_chunks:
        raise ValueError(f"cannot cut a {dim}-d feature into {n_chunks} equal chunks")
    size = dim // n_chunks
    return [(i * size, (i + 1) * size) for i in range(n_chunks)]


def chunk(feature: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """The ``[start:stop]`` slice of a batch of dense features (a view, no copy)."""
    return feature[:, start:stop]


NARROW = (torch.float16, torch.bfloat16)  # autocast's outputs: losses run in float32 at least (float64 is kept)

# Each feature loss twice, as the fewest kernels for each shape: one student's chunk, (batch, d) -> the mean
# loss; n students' chunks side by side, (batch, n, m) -> their n mean losses. Adding a loss is one entry.
FEATURE_LOSSES = {
    "mse": (F.mse_loss,  # the paper's
            lambda pred, target: (pred - target).square().mean(dim=(0, 2))),
    "l1": (F.l1_loss,
           lambda pred, target: (pred - target).abs().mean(dim=(0, 2))),
    "cosine": (lambda pred, target: (1 - F.cosine_similarity(pred, target, dim=1, eps=1e-8)).mean(),
               lambda pred, target: (1 - F.cosine_similarity(pred, target, dim=2, eps=1e-8)).mean(dim=0)),
}
_UNKNOWN = "unknown feature loss {!r}; choose one of " + str(tuple(FEATURE_LOSSES))


def feature_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Mean regression loss between a student's output and its chunk of the parent's feature."""
    if pred.shape != target.shape:
        raise ValueError(f"student output {tuple(pred.shape)} does not match its chunk {tuple(target.shape)}")
    if kind not in FEATURE_LOSSES:
        raise ValueError(_UNKNOWN.format(kind))
    return FEATURE_LOSSES[kind][0](pred.float() if pred.dtype in NARROW else pred,
                                   target.float() if target.dtype in NARROW else target)


def chunk_losses(pred: torch.Tensor, target: torch.Tensor, n: int, kind: str = "mse") -> torch.Tensor:
    """The ``n`` students' ``feature_loss`` (their chunks side by side) from a handful of kernels however many."""
    if pred.shape != target.shape or pred.shape[1] % n:
        raise ValueError(f"outputs {tuple(pred.shape)} and targets {tuple(target.shape)} are not {n} equal chunks")
    if kind not in FEATURE_LOSSES:
        raise ValueError(_UNKNOWN.format(kind))
    pred, target = (t.float() if t.dtype in NARROW else t for t in (pred, target))
    return FEATURE_LOSSES[kind][1](pred.reshape(len(pred), n, -1), target.reshape(len(target), n, -1))


def guided_loss(pred: torch.Tensor, feats: list[torch.Tensor], targets, keep: list[bool] | None = None,
                kind: str = "mse") -> torch.Tensor:
    """One student's loss: the mean ``feature_loss`` over its ``targets``, (guide, start, stop) each into the guides'
    ``feats``, that ``keep`` leaves in this step (all when None). One target: the paper's; several: densely guided.
    The loss is computed here, from the table (``kind`` was checked with the config): no frame between."""
    chosen = [t for t, k in zip(targets, keep) if k] if keep is not None else targets
    loss, total = FEATURE_LOSSES[kind][0], 0
    for gi, a, b in chosen:
        target = feats[gi][:, a:b]
        if pred.shape != target.shape:
            raise ValueError(f"student output {tuple(pred.shape)} does not match its chunk {tuple(target.shape)}")
        total = total + loss(pred.float() if pred.dtype in NARROW else pred,
                             target.float() if target.dtype in NARROW else target)
    return total / len(chosen)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None = None,
            temperature: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """Hinton et al.: alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels)."""
    t = temperature
    soft = F.kl_div(F.log_softmax(student_logits.float() / t, dim=1), F.softmax(teacher_logits.float() / t, dim=1),
                    reduction="batchmean") * t * t
    if labels is None or alpha == 1.0:
        return soft
    return alpha * soft + (1 - alpha) * F.cross_entropy(student_logits.float(), labels)
