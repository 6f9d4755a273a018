"""Datasets as uint8 tensors held on the training device, with batching and augmentation done there.

CIFAR, an ImageFolder tree or scikit-learn's digits (the offline fallback), decoded once to ``(N, 3, 32, 32)``
uint8. A fixed stratified validation split comes from the training set: the test set never selects a model.
``Batches`` crops, flips and normalises on the device in one batched op: no worker processes, no PIL in the loop.
"""
from __future__ import annotations

import hashlib
import importlib.util
import socket
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import cifar_pickles
from ..config import MIN_PER_CLASS, Config
from ..errors import ConfigError
from .imagefolder import Listing, decode, list_images

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
JPEG_FOLDER = "cifar10-jpeg"  # where ../shared/data/cifar10-jpeg.tar.gz is unpacked inside data_dir


@dataclass
class Split:
    images: torch.Tensor  # uint8 (N, 3, H, W); with ``listing``: int64 (N,) positions of files not decoded yet
    labels: torch.Tensor  # int64 (N,)
    listing: Listing | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: torch.Tensor) -> "Split":
        return Split(self.images[idx], self.labels[idx], self.listing)

    def to(self, device: torch.device) -> "Split":
        return Split(self.images.to(device), self.labels.to(device))


@dataclass
class DataBundle:
    name: str
    classes: tuple[str, ...]
    train: Split
    val: Split
    test: Split
    mean: torch.Tensor = field(default=None)  # per-channel, of the training split, in [0, 1]
    std: torch.Tensor = field(default=None)
    source: str = ""
    notice: str = ""  # non-empty when something the user should know happened (fallback, clamping)
    _fingerprint: str | None = field(default=None, init=False, repr=False, compare=False)  # not copied by replace()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def fingerprint(self) -> str:
        """Identifies every pixel and label of every split: checkpoints are only reused on a match."""
        if self._fingerprint is None:
            h = hashlib.sha256(self.name.encode())
            for s in (self.train, self.val, self.test):
                h.update(str(tuple(s.images.shape)).encode())
                h.update(s.labels.cpu().numpy().tobytes())
                h.update(s.images.cpu().contiguous().numpy().tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def describe(self) -> dict:
        return dict(name=self.name, source=self.source, classes=list(self.classes), train=len(self.train),
                    val=len(self.val), test=len(self.test), fingerprint=self.fingerprint(), notice=self.notice)


# ----------------------------------------------------------------------------------- loaders
def _torchvision_cifar(name: str, root: Path) -> tuple[Split, Split, tuple[str, ...]]:
    """CIFAR from torchvision's extracted files, downloaded (and checksummed) first when absent."""
    if not (root / cifar_pickles.LAYOUT[name][0]).is_dir():
        import torchvision
        from torchvision.datasets.utils import download_and_extract_archive
        cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(15)  # a machine without network should fail in seconds, not minutes
        try:
            download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
        finally:
            socket.setdefaulttimeout(old)
    train, test, classes = cifar_pickles.read_folder(name, root)
    return Split(*train), Split(*test), classes


def _imagefolder(root: Path) -> tuple[Split, Split, tuple[str, ...]]:
    """An ImageFolder tree: from its decoded cache while that matches the tree (file list and contents), else
    listed only (``_decoded`` decodes what the splits keep), so any change decodes again."""
    listing = Listing.of(root)
    x = listing.cached()
    x, ref = (torch.arange(len(listing)), listing) if x is None else (x, None)
    n, y = listing.n_train, listing.labels
    return Split(x[:n], y[:n], ref), Split(x[n:], y[n:], ref), tuple(listing.classes)


def _decoded(*splits: Split) -> tuple[Split, ...]:
    """``splits`` decoded: the whole folder at once (and cached) when they use every image, else only the picked
    files (a capped run on all of CIFAR-10 decodes thousands, not 60,000)."""
    listing = splits[0].listing
    if listing is None:
        return splits
    if sum(map(len, splits)) == len(listing):
        every = listing.decode_all()
        return tuple(Split(every[s.images], s.labels) for s in splits)
    return tuple(Split(decode([listing.files[i] for i in s.images.tolist()]), s.labels) for s in splits)


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (images (1797, 8, 8), labels), read from the CSV it ships, without importing it:
    scikit-learn and SciPy cost ~1 s of CPU in every process and notebook kernel that loads digits."""
    spec = importlib.util.find_spec("sklearn")
    csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if csv is not None and csv.is_file():
        d = np.loadtxt(csv, delimiter=",")
        return d[:, :-1].reshape(-1, 8, 8), d[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits  # another release's layout (or not installed: its ImportError)
    d = load_digits()
    return d.images, d.target


def _digits() -> tuple[Split, Split, tuple[str, ...]]:
    """scikit-learn's 8x8 digits (ships inside the package), upsampled to 32x32 RGB; fixed 80/20 split."""
    images, target = digits_arrays()
    x = torch.tensor(images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).clamp(0, 1)
    x = (x * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    y = torch.tensor(target, dtype=torch.int64)
    test_idx, train_idx = stratified_split(y, len(y) // 5, seed=0)
    return Split(x[train_idx], y[train_idx]), Split(x[test_idx], y[test_idx]), tuple(str(i) for i in range(10))


def stratified_split(labels: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick ``n`` indices with class proportions kept; returns (picked, rest). Deterministic in ``seed``."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(labels), generator=g)
    lab = labels[perm]
    rank = torch.zeros(len(labels))
    for c in lab.unique():
        m = lab == c
        rank[m] = torch.arange(int(m.sum()), dtype=torch.float32) / float(m.sum())
    order = torch.argsort(rank, stable=True)
    return perm[order[:n]], perm[order[n:]]


def find_cifar10(root: Path) -> str | None:
    """Where CIFAR-10 already sits under data_dir: torchvision's files or the unpacked JPEG copy."""
    if (root / "cifar-10-batches-py").is_dir():
        return "torchvision"
    if (root / JPEG_FOLDER / "train").is_dir() and (root / JPEG_FOLDER / "test").is_dir():
        return "jpeg"
    return None


def _source(cfg: Config) -> str:
    """What ``load_raw`` reads: digits, imagefolder, jpeg (CIFAR-10's JPEG copy), cifar10 or cifar100 (torchvision's)."""
    if cfg.dataset in ("cifar10", "auto"):
        return "jpeg" if find_cifar10(Path(cfg.data_dir)) == "jpeg" else "cifar10"
    return cfg.dataset


def is_present(cfg: Config) -> bool:
    """Whether an explicitly requested CIFAR is already in ``data_dir`` (no download needed)."""
    root = Path(cfg.data_dir)
    return {"cifar10": find_cifar10(root) is not None,
            "cifar100": (root / cifar_pickles.LAYOUT["cifar100"][0]).is_dir()}.get(cfg.dataset, True)


def locate(cfg: Config) -> tuple[str, int | None, int | None]:
    """(what and where, training images, test images) of what ``load_raw`` would read, without decoding or
    downloading: the runners say it first. Counts are None where only reading the data would tell."""
    root, source = Path(cfg.data_dir), _source(cfg)
    if source == "digits":
        n = len(digits_arrays()[1])
        return "scikit-learn digits (8x8, upsampled to 32x32)", n - n // 5, n // 5  # _digits' fixed 80/20 split
    if source in ("imagefolder", "jpeg"):
        classes, items = list_images(root / JPEG_FOLDER if source == "jpeg" else root)
        what = f"CIFAR-10 JPEG copy at {root / JPEG_FOLDER}" if source == "jpeg" else \
            f"ImageFolder {root} ({len(classes)} classes)"
        return what, len(items["train"]), len(items["test"])
    name = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}[source]
    if (root / cifar_pickles.LAYOUT[source][0]).is_dir():
        return f"{name} (torchvision's files) at {root}", None, None
    else_digits = ", else scikit-learn digits" if cfg.dataset == "auto" else ""
    return f"{name}, not in {root}: downloading it with torchvision{else_digits}", None, None


def split_sizes(cfg: Config, n_train: int, n_test: int) -> tuple[int, int, int]:
    """(train, validation, test) images ``load_data`` keeps from ``n_train`` + ``n_test``: the same arithmetic."""
    val = min(cfg.val_size, n_train // 5)
    train = n_train - val if cfg.train_size is None else min(cfg.train_size, n_train - val)
    test = n_test if cfg.test_size is None else min(cfg.test_size, n_test)
    return train, val, test


def load_raw(cfg: Config) -> tuple[str, str, Split, Split, tuple[str, ...], str]:
    """(name, source, train, test, classes, notice) before any splitting; an ImageFolder not decoded yet."""
    root, source = Path(cfg.data_dir), _source(cfg)
    if source == "digits":
        return "digits", "scikit-learn load_digits, 32x32 RGB", *_digits(), ""
    if source == "imagefolder":
        return root.name, f"ImageFolder {root}", *_imagefolder(root), ""
    if source == "jpeg":
        return "cifar10", f"CIFAR-10 JPEG copy at {root / JPEG_FOLDER}", *_imagefolder(root / JPEG_FOLDER), ""
    try:
        return source, f"torchvision {source.upper()} at {root}", *_torchvision_cifar(source, root), ""
    except ConfigError:  # files there but refused (not CIFAR, or naming code to run): never fall back silently
        raise
    except Exception as e:  # no network, no files
        if cfg.dataset != "auto":
            name = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}[source]
            raise ConfigError(f"{name} is not in {root} and could not be downloaded ({type(e).__name__})") from None
        notice = (f"CIFAR-10 was neither in {root} nor downloadable ({type(e).__name__}); "
                  "FELL BACK to scikit-learn digits. These results are NOT CIFAR-10 results.")
        warnings.warn(notice)
        print("!" * 8, notice)
        return "digits", "scikit-learn load_digits (auto fallback)", *_digits(), notice


def load_data(cfg: Config) -> DataBundle:
    """Load, carve the stratified validation split, apply the size caps.

    A profile's ``val_size`` above 20% of the training images is clamped to 20% with a NOTICE (profiles meet small
    datasets); one set by hand that is not below the number of training images is refused."""
    name, source, train, test, classes, notice = load_raw(cfg)
    val_size = cfg.val_size
    if val_size >= len(train) and not cfg.from_profile("val_size"):
        raise ConfigError(f"val_size={val_size} is not below the {len(train):,} training images of {name}, which the "
                          f"validation split is carved from (at most 20% of them, {len(train) // 5:,}, are used)")
    if val_size > len(train) // 5:
        val_size = len(train) // 5
        notice = (notice + " " if notice else "") + f"val_size clamped to {val_size} (20% of {len(train)} training images)."
    val_idx, train_idx = stratified_split(train.labels, val_size, seed=1234)  # fixed: independent of the run seed
    val, train = train.subset(val_idx), train.subset(train_idx)
    if cfg.train_size is not None and cfg.train_size < len(train):
        train = train.subset(stratified_split(train.labels, cfg.train_size, seed=1235)[0])
    if cfg.test_size is not None and cfg.test_size < len(test):
        test = test.subset(stratified_split(test.labels, cfg.test_size, seed=1236)[0])
    train, val, test = _decoded(train, val, test)
    if len(train) < MIN_PER_CLASS * len(classes):
        raise ConfigError(f"{len(train)} training image(s) left after the validation split is too few: "
                          f"at least {MIN_PER_CLASS} per class are needed ({MIN_PER_CLASS * len(classes)} "
                          f"for {len(classes)} classes); raise train_size or add images")
    x = train.images.float() / 255
    mean, std = x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return DataBundle(name, tuple(classes), train, val, test, mean, std, source, notice)


# ----------------------------------------------------------------------------------- batching
def augment_draws(n: int, g: torch.Generator, pad: int = 4) -> torch.Tensor:
    """The random numbers of one batch's augmentation, drawn on the host: (3, n) int64 rows of crop offsets
    (row, column) and flips (0/1); their draw order fixes a seed's crops."""
    off = torch.randint(0, 2 * pad + 1, (2, n), generator=g)
    flip = torch.rand(n, generator=g) < 0.5
    return torch.cat([off, flip[None].long()])


def crop_flip(x: torch.Tensor, draws: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Random crop with zero padding and horizontal flip of a uint8 batch, from ``augment_draws`` on its device."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = draws[0, :, None] + torch.arange(h, device=x.device)                     # (n, h)
    cols = draws[1, :, None] + torch.arange(w, device=x.device)                     # (n, w)
    cols = torch.where(draws[2, :, None].bool(), cols.flip(1), cols)
    return padded[torch.arange(n, device=x.device)[:, None, None, None], torch.arange(c, device=x.device)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


class Batches:
    """Iterate ``(x, y, idx)`` over a device-resident split; seeded by ``(seed, epoch)``, so an epoch's batches are
    the same whether the run was interrupted or not."""

    def __init__(self, split: Split, bundle: DataBundle, batch_size: int, device: torch.device, *,
                 shuffle: bool = False, augment: bool = False, seed: int = 0, channels_last: bool = False):
        self.split = split.to(device)
        self.batch_size, self.device = batch_size, device
        self.shuffle, self.augment, self.seed, self.channels_last = shuffle, augment, seed, channels_last
        self.mean = (bundle.mean * 255).view(1, -1, 1, 1).to(device)
        self.inv_std = (1 / (bundle.std * 255)).view(1, -1, 1, 1).to(device)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._starts())

    def _starts(self) -> range:
        """Batch start offsets; in training, a last batch of one image joins the batch before it (batch norm)."""
        n, bs = len(self.split), self.batch_size
        return range(0, n - 1 if self.shuffle and n > bs and n % bs == 1 else n, bs)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.float() - self.mean) * self.inv_std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def __iter__(self):
        """An epoch's order and augmentation are drawn on the host and copied to the device once: a host copy syncs
        the stream, so one per batch would stall a GPU's queue every step (``tests/test_host_traffic.py``)."""
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        n = len(self.split)
        bounds = [(i, min(i + self.batch_size, n)) for i in self._starts()]
        if bounds:  # a last batch of one joins the one before it (``_starts``)
            bounds[-1] = (bounds[-1][0], n)
        if not (self.shuffle or self.augment):  # evaluation: in order, nothing drawn
            order, draws = torch.arange(n, device=self.device), None
        else:
            plan = (torch.randperm(n, generator=g) if self.shuffle else torch.arange(n))[None]
            if self.augment and bounds:  # batch by batch, in the generator order the per-batch draws always had
                plan = torch.cat([plan, torch.cat([augment_draws(b - a, g) for a, b in bounds], dim=1)])
            plan = plan.to(self.device)  # the epoch's one copy to the device
            order, draws = plan[0], plan[1:]
        for a, b in bounds:
            idx = order[a:b]
            x = self.split.images[idx]
            if self.augment:
                x = crop_flip(x, draws[:, a:b])
            yield self.normalise(x), self.split.labels[idx], idx
