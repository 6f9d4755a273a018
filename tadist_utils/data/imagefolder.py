"""ImageFolder trees (``train/<class>/<image>``, ``test/<class>/<image>``): listed and checked without decoding,
decoded to 32x32 RGB uint8, cached as ``.tadist-cache.npz`` beside them."""
from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets.folder import make_dataset

from ..errors import ConfigError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CACHE = ".tadist-cache.npz"
PARTS = ("train", "test")


def _is_image(path: str) -> bool:  # by suffix (a hidden ".jpg" has none), as torchvision's ``extensions`` is not
    return os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES


def list_images(root: Path) -> tuple[list[str], dict[str, list[tuple[str, int]]]]:
    """The class names and each part's (path, label), sorted by class then name; or one ConfigError: train/ and test/
    there, at least two classes, the same in both, images in every class folder."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"data_dir {str(root)!r} does not exist")
    if missing := [s for s in PARTS if not (root / s).is_dir()]:
        raise ConfigError(f"data_dir {str(root)!r} lacks {' and '.join(s + '/' for s in missing)} (ImageFolder layout)")
    # torchvision's find_classes, less its error when there are none: a folder's folders, sorted
    classes, test = (sorted(e.name for e in os.scandir(root / p) if e.is_dir()) for p in PARTS)
    if not classes:
        raise ConfigError(f"{root / 'train'} has no class folders (ImageFolder layout: train/<class>/<image>)")
    if len(classes) < 2:
        raise ConfigError(f"{root / 'train'} has one class folder ({classes[0]}); classification needs at least two")
    if test != classes:
        missing, extra = sorted(set(classes) - set(test)), sorted(set(test) - set(classes))
        raise ConfigError(f"{root / 'test'} does not have the classes of train/: "
                          + "; ".join(filter(None, [missing and f"missing {', '.join(missing)}",
                                                    extra and f"not in train/: {', '.join(extra)}"])))
    index = {c: i for i, c in enumerate(classes)}
    items = {p: make_dataset(root / p, index, is_valid_file=_is_image, allow_empty=True) for p in PARTS}
    for part in PARTS:
        if empty := sorted(set(range(len(classes))) - {label for _, label in items[part]}):
            raise ConfigError(f"{root / part / classes[empty[0]]} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return classes, items


def decode(paths: list[Path]) -> torch.Tensor:
    """The images at ``paths``, in that order, as uint8 ``(N, 3, 32, 32)`` (resized when not 32x32)."""
    from PIL import Image
    images = []
    for path in paths:
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if im.size != (32, 32):
                    im = im.resize((32, 32), Image.BILINEAR)
                images.append(np.asarray(im, dtype=np.uint8))
        except Exception as e:  # truncated, not an image at all, unsupported mode: name the file
            raise ConfigError(f"cannot decode image {path} ({type(e).__name__}: {e}); fix or remove it") from None
    return torch.from_numpy((np.stack(images) if images else np.zeros((0, 32, 32, 3), np.uint8)).transpose(0, 3, 1, 2).copy())


@dataclass
class Listing:
    """Every image file of a tree, train/'s then test/'s, with its label; ``key`` hashes every path and content (not
    size and mtime, which ``cp -p`` or a tar extraction keep): ~1 s for CIFAR-10, against ~60 s to decode."""
    root: Path
    classes: list[str]
    files: list[Path]
    labels: torch.Tensor  # int64, one a file
    n_train: int
    key: str

    @classmethod
    def of(cls, root: Path) -> "Listing":
        root = Path(root)
        classes, items = list_images(root)
        h, files = hashlib.sha256(), items["train"] + items["test"]
        for i, (path, label) in enumerate(files):
            try:
                with open(path, "rb") as f:
                    digest = hashlib.file_digest(f, "sha256").digest()
            except OSError as e:  # a dangling symlink, no read permission: name the file
                raise ConfigError(f"cannot read image {path} ({type(e).__name__}: {e.strerror or e}); fix or "
                                  "remove it") from None
            part = "train" if i < len(items["train"]) else "test"
            h.update(f"{part}/{classes[label]}/{os.path.basename(path)}\0".encode() + digest)
        return cls(root, classes, [Path(p) for p, _ in files], torch.tensor([y for _, y in files], dtype=torch.int64),
                   len(items["train"]), h.hexdigest())

    def cached(self) -> torch.Tensor | None:
        """Every image decoded, from the cache when it matches this listing; None otherwise."""
        try:
            with np.load(self.root / CACHE, allow_pickle=False) as z:
                if "key" in z and str(z["key"]) == self.key and list(z["classes"]) == self.classes:
                    return torch.from_numpy(np.concatenate([z["train_x"], z["test_x"]]))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # absent or unreadable cache: decode again (and rewrite it)
        return None

    def decode_all(self) -> torch.Tensor:
        """Every image decoded and written to the cache (a read-only or full disk: not cached)."""
        x, n = decode(self.files), self.n_train
        tmp = self.root / f".tadist-cache.tmp-{os.getpid()}.npz"
        try:
            np.savez(tmp, key=np.array(self.key), classes=np.array(self.classes), train_x=x[:n].numpy(),
                     train_y=self.labels[:n].numpy(), test_x=x[n:].numpy(), test_y=self.labels[n:].numpy())
            tmp.replace(self.root / CACHE)
        except OSError:
            tmp.unlink(missing_ok=True)
        return x
