"""Datasets (CIFAR, an ImageFolder tree, scikit-learn's digits offline) as uint8 ``(N, 3, 32, 32)`` tensors, a fixed
stratified validation split from the training set, and ``Batches``: crop, flip, normalise on the device, no workers."""
from __future__ import annotations

import codecs
import hashlib
import importlib.util
import pickle
import socket
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import MIN_PER_CLASS, Config
from ..errors import ConfigError
from .imagefolder import PARTS, Listing, decode, list_images

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
JPEG_FOLDER = "cifar10-jpeg"  # where ../shared/data/cifar10-jpeg.tar.gz is unpacked inside data_dir
CIFAR = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


@dataclass
class Split:
    images: torch.Tensor  # uint8 (N, 3, H, W); with ``listing``: int64 (N,) positions of files not decoded yet
    labels: torch.Tensor  # int64 (N,)
    listing: Listing | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: torch.Tensor) -> "Split":
        return Split(self.images[idx], self.labels[idx], self.listing)


@dataclass
class DataBundle:
    name: str
    classes: tuple[str, ...]
    train: Split
    val: Split
    test: Split
    mean: torch.Tensor = None  # per-channel, of the training split, in [0, 1]
    std: torch.Tensor = None
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
            for s in (self.train, self.val, self.test):  # one update of the three: the same digest
                h.update(str(tuple(s.images.shape)).encode() + s.labels.cpu().numpy().tobytes()
                         + s.images.cpu().contiguous().numpy().tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def describe(self) -> dict:
        return dict(name=self.name, source=self.source, classes=list(self.classes), train=len(self.train),
                    val=len(self.val), test=len(self.test), fingerprint=self.fingerprint(), notice=self.notice)


# ----------------------------------------------------------------------------------- loaders
LAYOUT = {  # torchvision's extracted folders: (folder, train files, test file, meta file, label key, names key)
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "batches.meta",
                "labels", "label_names"),
    "cifar100": ("cifar-100-python", ["train"], "test", "meta", "fine_labels", "fine_label_names")}


class ArraysOnly(pickle.Unpickler):
    """Unpickles CIFAR's files without running code from them (``pickle.load``, torchvision's loader, runs whatever a
    file names): every global but numpy's array reconstruction (all CIFAR's batches name) is refused unlooked-up."""
    SAFE = dict(_reconstruct=np.zeros(0).__reduce__()[0],  # numpy's own, wherever this numpy keeps it
                _frombuffer=lambda buf, dtype, shape, order: np.frombuffer(buf, dtype=dtype).reshape(shape, order=order),
                ndarray=np.ndarray, dtype=np.dtype, encode=codecs.encode)  # encode: bytes in protocol 2
    ALLOWED = {(f"{core}.{m}", n) for core in ("numpy.core", "numpy._core")
               for m, n in (("multiarray", "_reconstruct"), ("numeric", "_frombuffer"))} | \
        {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR file never does")
        return self.SAFE[name]


def unpickle(path: Path) -> dict:
    """One CIFAR pickle, loaded with ``ArraysOnly``; a refusal is one ConfigError naming the file."""
    try:
        with open(path, "rb") as fh:
            d = ArraysOnly(fh, encoding="latin1").load()
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing (an incomplete CIFAR folder; delete {path.parent} to download it again)") from None
    except Exception as e:  # UnpicklingError (refused or corrupt), EOFError, ValueError, ...
        raise ConfigError(f"refusing to load {path}: {type(e).__name__}: {e}; not a CIFAR file "
                          f"(delete {path.parent} to download it again)") from None
    if not isinstance(d, dict):
        raise ConfigError(f"refusing to load {path}: not a CIFAR file (holds a {type(d).__name__}, not a dict)")
    return d


def _torchvision_cifar(name: str, root: Path) -> tuple[Split, Split, tuple[str, ...]]:
    """CIFAR from torchvision's extracted files (downloaded and checksummed first when absent), read by ``unpickle``."""
    folder, train_files, test_file, meta_file, label_key, names_key = LAYOUT[name]
    if not (root / folder).is_dir():
        import torchvision
        from torchvision.datasets.utils import download_and_extract_archive
        cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(15)  # a machine without network should fail in seconds, not minutes
        try:
            download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
        finally:
            socket.setdefaulttimeout(old)
    if names_key not in (meta := unpickle(root / folder / meta_file)):
        raise ConfigError(f"{root / folder / meta_file} is not a CIFAR meta file (no {names_key!r})")

    def split(files: list[str]) -> Split:
        images, labels = [], []
        for f in files:
            d = unpickle(root / folder / f)
            try:
                images.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                labels += list(d[label_key])
            except (KeyError, ValueError, TypeError) as e:
                raise ConfigError(f"{root / folder / f} is not a CIFAR batch ({type(e).__name__}: {e})") from None
        return Split(torch.from_numpy(np.concatenate(images)), torch.as_tensor(labels, dtype=torch.int64))
    return split(train_files), split([test_file]), tuple(meta[names_key])


def _imagefolder(root: Path) -> tuple[Split, Split, tuple[str, ...]]:
    """An ImageFolder tree, decoded from its cache while that matches (``Listing.key``), else listed only."""
    listing = Listing.of(root)
    x, ref = (torch.arange(len(listing.files)), listing) if (x := listing.cached()) is None else (x, None)
    n, y = listing.n_train, listing.labels
    return Split(x[:n], y[:n], ref), Split(x[n:], y[n:], ref), tuple(listing.classes)


def _decoded(*splits: Split) -> tuple[Split, ...]:
    """``splits`` decoded: all at once (and cached) when they use every image, else the picked files alone."""
    listing = splits[0].listing
    if listing is None:
        return splits
    if sum(map(len, splits)) == len(listing.files):
        every = listing.decode_all()
        return tuple(Split(every[s.images], s.labels) for s in splits)
    return tuple(Split(decode([listing.files[i] for i in s.images.tolist()]), s.labels) for s in splits)


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits (images (1797, 8, 8), labels) from the CSV it ships: importing it costs ~1 s of CPU."""
    spec = importlib.util.find_spec("sklearn")
    if spec and spec.origin and (csv := Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz").is_file():
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
    return "torchvision" if (root / LAYOUT["cifar10"][0]).is_dir() else \
        "jpeg" if all((root / JPEG_FOLDER / p).is_dir() for p in PARTS) else None


def _source(cfg: Config) -> str:
    """What ``load_raw`` reads: digits, imagefolder, jpeg (CIFAR-10's JPEG copy), cifar10 or cifar100 (torchvision's)."""
    auto = cfg.dataset in ("cifar10", "auto")
    return ("jpeg" if find_cifar10(Path(cfg.data_dir)) == "jpeg" else "cifar10") if auto else cfg.dataset


def is_present(cfg: Config) -> bool:
    """Whether an explicitly requested CIFAR is already in ``data_dir`` (no download needed)."""
    root = Path(cfg.data_dir)
    return cfg.dataset not in CIFAR or (root / LAYOUT[cfg.dataset][0]).is_dir() or \
        (cfg.dataset == "cifar10" and find_cifar10(root) is not None)


def locate(cfg: Config) -> tuple[str, int | None, int | None]:
    """(what and where, training images, test images) ``load_raw`` would read, from a listing (None: not counted)."""
    root, source = Path(cfg.data_dir), _source(cfg)
    if source == "digits":
        n = len(digits_arrays()[1])
        return "scikit-learn digits (8x8, upsampled to 32x32)", n - n // 5, n // 5  # _digits' fixed 80/20 split
    if source in ("imagefolder", "jpeg"):
        classes, items = list_images(root / JPEG_FOLDER if source == "jpeg" else root)
        what = f"CIFAR-10 JPEG copy at {root / JPEG_FOLDER}" if source == "jpeg" else \
            f"ImageFolder {root} ({len(classes)} classes)"
        return what, len(items["train"]), len(items["test"])
    if (root / LAYOUT[source][0]).is_dir():
        return f"{CIFAR[source]} (torchvision's files) at {root}", None, None
    else_digits = ", else scikit-learn digits" if cfg.dataset == "auto" else ""
    return f"{CIFAR[source]}, not in {root}: downloading it with torchvision{else_digits}", None, None


def split_sizes(cfg: Config, n_train: int, n_test: int) -> tuple[int, int, int]:
    """(train, validation, test) images ``load_data`` keeps from ``n_train`` + ``n_test``."""
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
            raise ConfigError(f"{CIFAR[source]} is not in {root} and could not be downloaded ({type(e).__name__})") from None
        notice = (f"CIFAR-10 was neither in {root} nor downloadable ({type(e).__name__}); "
                  "FELL BACK to scikit-learn digits. These results are NOT CIFAR-10 results.")
        warnings.warn(notice)
        print("!" * 8, notice)
        return "digits", "scikit-learn load_digits (auto fallback)", *_digits(), notice


def load_data(cfg: Config) -> DataBundle:
    """Load, carve the stratified validation split, apply the size caps. A profile's ``val_size`` above 20% of the
    training images is clamped to 20%, said in a NOTICE; one set by hand not below the training images is refused."""
    name, source, train, test, classes, notice = load_raw(cfg)
    if cfg.val_size >= len(train) and not cfg.from_profile("val_size"):
        raise ConfigError(f"val_size={cfg.val_size} is not below the {len(train):,} training images of {name}, which the "
                          f"validation split is carved from (at most 20% of them, {len(train) // 5:,}, are used)")
    n_train, val_size, n_test = split_sizes(cfg, len(train), len(test))
    if val_size < cfg.val_size:
        notice = (notice + " " if notice else "") + f"val_size clamped to {val_size} (20% of {len(train)} training images)."
    val_idx, train_idx = stratified_split(train.labels, val_size, seed=1234)  # fixed: independent of the run seed
    val, train = train.subset(val_idx), train.subset(train_idx)
    if n_train < len(train):
        train = train.subset(stratified_split(train.labels, n_train, seed=1235)[0])
    if n_test < len(test):
        test = test.subset(stratified_split(test.labels, n_test, seed=1236)[0])
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
    """One batch's crop offsets (row, column) and flips (0/1), (3, n) int64 drawn on the host, in a fixed order."""
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
    """``(x, y, idx)`` over a device-resident split, seeded by ``(seed, epoch)``: the same, interrupted or not."""

    def __init__(self, split: Split, bundle: DataBundle, batch_size: int, device: torch.device, *,
                 shuffle: bool = False, augment: bool = False, seed: int = 0, channels_last: bool = False):
        self.split = Split(split.images.to(device), split.labels.to(device))
        self.batch_size, self.device = batch_size, device
        self.shuffle, self.augment, self.seed, self.channels_last = shuffle, augment, seed, channels_last
        self.mean = (bundle.mean * 255).view(1, -1, 1, 1).to(device)
        self.inv_std = (1 / (bundle.std * 255)).view(1, -1, 1, 1).to(device)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._bounds())

    def _bounds(self) -> list[tuple[int, int]]:
        """(start, stop) of each batch; in training, a last batch of one image joins the one before it (batch norm)."""
        n, bs = len(self.split), self.batch_size
        starts = range(0, n - 1 if self.shuffle and n > bs and n % bs == 1 else n, bs)
        return [(a, n if a == starts[-1] else a + bs) for a in starts]

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.float() - self.mean) * self.inv_std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def __iter__(self):
        """An epoch's order and crops, drawn on the host, go to the device in one copy (one a batch stalls a GPU)."""
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        n, bounds = len(self.split), self._bounds()
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
