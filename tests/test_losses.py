"""Chunked distillation losses against values worked out by hand."""
import math

import pytest
import torch

from tadist_utils.losses import chunk, chunk_slices, feature_loss, kd_loss

PRED = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
TARGET = torch.tensor([[0.0, 2.0], [5.0, 4.0]])


def test_chunk_slices_are_contiguous_and_equal():
    assert chunk_slices(512, 1) == [(0, 512)]
    assert chunk_slices(512, 2) == [(0, 256), (256, 512)]
    assert chunk_slices(512, 8)[3] == (192, 256)
    with pytest.raises(ValueError, match="equal chunks"):
        chunk_slices(512, 3)


def test_chunk_is_the_slice():
    f = torch.arange(16.0).view(2, 8)
    assert chunk(f, 2, 4).tolist() == [[2.0, 3.0], [10.0, 11.0]]


def test_mse_by_hand():
    # differences (1, 0), (-2, 0): (1 + 0 + 4 + 0) / 4
    assert feature_loss(PRED, TARGET, "mse").item() == pytest.approx(1.25)


def test_l1_by_hand():
    assert feature_loss(PRED, TARGET, "l1").item() == pytest.approx(0.75)


def test_cosine_by_hand():
    cos1 = 4 / (math.sqrt(5) * 2)                  # (1,2).(0,2)
    cos2 = 31 / (5 * math.sqrt(41))                # (3,4).(5,4)
    assert feature_loss(PRED, TARGET, "cosine").item() == pytest.approx(1 - (cos1 + cos2) / 2, rel=1e-5)


def test_shape_mismatch_and_unknown_loss_are_errors():
    with pytest.raises(ValueError, match="does not match"):
        feature_loss(PRED, TARGET[:, :1])
    with pytest.raises(ValueError, match="unknown feature loss"):
        feature_loss(PRED, TARGET, "huber")


def test_kd_loss_by_hand():
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[math.log(3.0), 0.0]])       # teacher probabilities (3/4, 1/4)
    kl_t1 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert kd_loss(s, t, temperature=1.0, alpha=1.0).item() == pytest.approx(kl_t1, rel=1e-5)
    p = 1 / (1 + math.exp(-math.log(3.0) / 2))     # softened teacher at T=2
    kl_t2 = p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5)
    assert kd_loss(s, t, temperature=2.0, alpha=1.0).item() == pytest.approx(4 * kl_t2, rel=1e-5)
    y = torch.tensor([1])
    mixed = kd_loss(s, t, y, temperature=1.0, alpha=0.5).item()
    assert mixed == pytest.approx(0.5 * kl_t1 + 0.5 * math.log(2.0), rel=1e-5)


def test_classifier_optimizer_adamw_decays_weights_decoupled_and_adam_couples_them():
    """``adamw`` is AdamW (the decay shrinks the weights apart from the gradient), ``adam`` adds L2 to the gradient."""
    import torch
    from tadist_utils.train import classifier_optimizer
    kinds = {}
    for kind in ("adam", "adamw", "sgd"):
        p = torch.nn.Parameter(torch.ones(3))
        opt, sched = classifier_optimizer([p], kind, lr=0.1, weight_decay=0.5, steps=10, device=torch.device("cpu"))
        kinds[kind] = type(opt)
        p.grad = torch.zeros(3)
        opt.step()
        if kind == "adamw":  # decoupled: p <- p - lr * wd * p, the zero gradient moves nothing
            assert torch.allclose(p.detach(), torch.full((3,), 1 - 0.1 * 0.5))
        if kind == "adam":  # coupled: the decay is a gradient of 0.5, normalised by Adam to a step of lr
            assert torch.allclose(p.detach(), torch.full((3,), 1 - 0.1), atol=1e-4)
    assert kinds == dict(adam=torch.optim.Adam, adamw=torch.optim.AdamW, sgd=torch.optim.SGD)
