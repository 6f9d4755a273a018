"""Data: stratified splits, on-device augmentation, the offline fallback, ImageFolder decoding."""
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from tadist_utils import data as data_mod
from tadist_utils.config import ConfigError, make_config
from tadist_utils.data import Batches, augment_draws, crop_flip, load_data, stratified_split


def test_stratified_split_keeps_class_proportions_and_is_deterministic():
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    picked, rest = stratified_split(labels, 20, seed=3)
    assert sorted(torch.bincount(labels[picked]).tolist()) == [2, 6, 12]
    assert len(set(picked.tolist()) | set(rest.tolist())) == 100 and not set(picked.tolist()) & set(rest.tolist())
    assert torch.equal(picked, stratified_split(labels, 20, seed=3)[0])


def test_validation_split_is_disjoint_from_training_and_never_the_test_set(smoke_cfg):
    b = load_data(smoke_cfg(train_size=None, val_size=100))
    train_rows = {tuple(x.flatten().tolist()) for x in b.train.images[:, 0, ::4, ::4]}
    val_rows = [tuple(x.flatten().tolist()) for x in b.val.images[:, 0, ::4, ::4]]
    assert len(b.val) == 100
    assert sum(r in train_rows for r in val_rows) < 10  # digits has a few exact duplicates, nothing more


def test_crop_flip_crops_and_flips_exactly():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).view(2, 1, 4, 4)
    g = torch.Generator().manual_seed(0)
    out = crop_flip(x, augment_draws(2, g, pad=0), pad=0)  # no padding: the only change left is the flip
    for i in range(2):
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1))
    out = crop_flip(x, augment_draws(2, torch.Generator().manual_seed(1), pad=2), pad=2)
    assert out.shape == x.shape and out.dtype == torch.uint8


def test_batches_are_the_same_for_the_same_epoch(smoke_cfg):
    b = load_data(smoke_cfg())
    loader = Batches(b.train, b, 32, torch.device("cpu"), shuffle=True, augment=True, seed=5)
    loader.set_epoch(2)
    first = [x for x, _, _ in loader]
    loader.set_epoch(3)
    other = next(iter(loader))[0]
    loader.set_epoch(2)
    again = [x for x, _, _ in loader]
    assert all(torch.equal(a, c) for a, c in zip(first, again))
    assert not torch.equal(first[0], other)
    assert abs(torch.cat(first).mean().item()) < 0.5  # normalised with the training split's statistics


def test_auto_falls_back_to_digits_loudly(tmp_path, monkeypatch):
    def no_network(*a, **k):
        raise OSError("no network")
    monkeypatch.setattr(data_mod, "_torchvision_cifar", no_network)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        b = load_data(make_config("smoke", dataset="auto", data_dir=str(tmp_path), results_dir=str(tmp_path / "r")))
    assert b.name == "digits" and "FELL BACK" in b.notice
    with pytest.raises(ConfigError, match="could not be downloaded"):
        load_data(make_config("smoke", dataset="cifar10", data_dir=str(tmp_path), results_dir=str(tmp_path / "r")))


def test_imagefolder_decodes_resizes_and_caches(tmp_path):
    for split in ("train", "test"):
        for c, colour in (("cat", 10), ("dog", 200)):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(6):
                Image.fromarray(np.full((40, 40, 3), colour + i, np.uint8)).save(tmp_path / split / c / f"{i}.png")
    cfg = make_config("smoke", dataset="imagefolder", data_dir=str(tmp_path), val_size=2,
                      results_dir=str(tmp_path / "r"))
    b = load_data(cfg)
    assert b.classes == ("cat", "dog") and b.train.images.shape[1:] == (3, 32, 32)
    assert len(b.train) + len(b.val) == 12 and len(b.test) == 12
    assert (tmp_path / ".tadist-cache.npz").exists()
    assert load_data(cfg).fingerprint() == b.fingerprint()


def test_digits_read_without_scikit_learn_are_scikit_learns_digits():
    """The digits come from the CSV scikit-learn ships, read directly (no sklearn/SciPy import): the same arrays."""
    from sklearn.datasets import load_digits
    images, target = data_mod.digits_arrays()
    d = load_digits()
    assert images.shape == (1797, 8, 8) and np.array_equal(images, d.images) and np.array_equal(target, d.target)


def test_a_capped_imagefolder_decodes_only_the_picked_images_and_gets_the_same_ones(tmp_path, monkeypatch):
    """Caps pick from the labels (the class folders) before decoding: of 60 images a 6/4/4 run decodes 14, writes
    no cache, and gets exactly the images, order and fingerprint that a run reading the full decoded cache gets."""
    for split, per_class in (("train", 20), ("test", 10)):
        for c, colour in (("cat", 10), ("dog", 120), ("emu", 230)):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(np.full((32, 32, 3), colour + i, np.uint8)).save(tmp_path / split / c / f"{i}.png")
    capped = make_config("smoke", dataset="imagefolder", data_dir=str(tmp_path), train_size=6, val_size=4,
                         test_size=4, results_dir=str(tmp_path / "r"))
    decoded = []
    real_decode = data_mod.decode
    monkeypatch.setattr(data_mod, "decode", lambda paths: decoded.extend(paths) or real_decode(paths))
    lazy = load_data(capped)
    assert len(decoded) == len(set(decoded)) == 6 + 4 + 4 and not (tmp_path / ".tadist-cache.npz").exists()
    load_data(capped.replace(train_size=None, test_size=None))  # every image used: all decoded once, cached
    assert (tmp_path / ".tadist-cache.npz").exists()
    from_cache = load_data(capped)
    for part in ("train", "val", "test"):
        a, b = getattr(lazy, part), getattr(from_cache, part)
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels), part
    assert lazy.fingerprint() == from_cache.fingerprint() and torch.equal(lazy.mean, from_cache.mean)


def test_a_last_training_batch_of_one_image_joins_the_batch_before(smoke_cfg):
    """Batch norm cannot train on one image: 65 images at batch size 64 are one batch of 65 in training."""
    b = load_data(smoke_cfg())
    split = b.train.subset(torch.arange(65))
    train = Batches(split, b, 64, torch.device("cpu"), shuffle=True)
    assert len(train) == 1 and [len(y) for _, y, _ in train] == [65]
    assert sorted(torch.cat([i for _, _, i in train]).tolist()) == list(range(65))
    assert [len(y) for _, y, _ in Batches(split, b, 64, torch.device("cpu"))] == [64, 1]  # evaluation: unchanged
    assert [len(y) for _, y, _ in Batches(b.train.subset(torch.arange(66)), b, 64, torch.device("cpu"),
                                          shuffle=True)] == [64, 2]
