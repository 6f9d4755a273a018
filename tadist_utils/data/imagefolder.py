"""ImageFolder trees (``train/<class>/<image>``, ``test/<class>/<image>``): checked and listed without decoding,
decoded to 32x32 RGB uint8, and a decoded copy cached as ``.tadist-cache.npz`` beside the tree.

Listing reads names and bytes, not pixels, so labels are known before any image is decoded: ``data.load_data``
picks its splits from the labels first and decodes only the images it keeps.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CACHE = ".tadist-cache.npz"
PARTS = ("train", "test")


def _is_image(entry: os.DirEntry) -> bool:
    return os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES and entry.is_file()


def image_entries(folder: Path) -> list[os.DirEntry]:
    """``folder``'s images sorted by name, as ``os.scandir`` entries: no Path object, no stat to list them (CIFAR-10's
    60,000 files: ~0.1 s, against ~1.6 s with Path.iterdir + is_file), one stat call for an entry's ``stat()``."""
    with os.scandir(folder) as it:
        return sorted((e for e in it if _is_image(e)), key=lambda e: os.path.normcase(e.name))


def _has_image(folder: Path) -> bool:
    with os.scandir(folder) as it:
        return any(map(_is_image, it))  # stops at the first image: no listing of the whole folder


def check_imagefolder(root: Path) -> list[str]:
    """The class names of an ImageFolder tree, or one ConfigError: at least two classes, every class folder
    holding images in train/ and test/, and the same classes in both (a cheap listing, no decoding)."""
    root = Path(root)
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if not classes:
        raise ConfigError(f"{root / 'train'} has no class folders (ImageFolder layout: train/<class>/<image>)")
    if len(classes) < 2:
        raise ConfigError(f"{root / 'train'} has one class folder ({classes[0]}); classification needs at least two")
    test = sorted(p.name for p in (root / "test").iterdir() if p.is_dir())
    if test != classes:
        missing, extra = sorted(set(classes) - set(test)), sorted(set(test) - set(classes))
        raise ConfigError(f"{root / 'test'} does not have the classes of train/: "
                          + "; ".join(filter(None, [missing and f"missing {', '.join(missing)}",
                                                    extra and f"not in train/: {', '.join(extra)}"])))
    for split in PARTS:
        for cls in classes:
            if not _has_image(root / split / cls):
                raise ConfigError(f"{root / split / cls} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return classes


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
    if not images:
        return torch.empty((0, 3, 32, 32), dtype=torch.uint8)
    return torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy())


@dataclass
class Listing:
    """Every image file of a tree with its label (the class folder's index), per part, in a fixed order; ``key``
    covers every file's path and content: a changed, added or removed image changes it, even one replaced with its
    size and modification time kept (``cp -p``, ``rsync -t``, a tar extraction). Hashing CIFAR-10's 55 MB of
    JPEGs took ~1 s on this project's busy 2-core CPU (the stat calls it replaced: ~0.4 s); decoding them, ~60 s."""
    root: Path
    classes: list[str]
    files: dict[str, tuple[list[Path], torch.Tensor]]
    key: str

    @classmethod
    def of(cls, root: Path) -> "Listing":
        root = Path(root)
        classes = check_imagefolder(root)
        h, files = hashlib.sha256(), {}
        for part in PARTS:
            paths, labels = [], []
            for label, name in enumerate(classes):
                folder = root / part / name
                for entry in image_entries(folder):
                    with open(entry.path, "rb") as f:
                        h.update(f"{part}/{name}/{entry.name}\0".encode() + hashlib.file_digest(f, "sha256").digest())
                    paths.append(folder / entry.name)
                    labels.append(label)
            files[part] = (paths, torch.tensor(labels, dtype=torch.int64))
        return cls(root, classes, files, h.hexdigest())

    def __len__(self) -> int:
        return sum(len(labels) for _, labels in self.files.values())

    def cached(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
        """Every image decoded, per part, from the cache when it matches this listing; None otherwise."""
        try:
            with np.load(self.root / CACHE, allow_pickle=False) as z:
                if "key" in z and str(z["key"]) == self.key and list(z["classes"]) == self.classes:
                    return {p: (torch.from_numpy(z[f"{p}_x"]), torch.from_numpy(z[f"{p}_y"])) for p in PARTS}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # absent or unreadable cache: decode again (and rewrite it)
        return None

    def decode_all(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Every image decoded, per part, and written to the cache (a read-only or full disk: not cached)."""
        out = {p: (decode(paths), labels) for p, (paths, labels) in self.files.items()}
        tmp = self.root / f".tadist-cache.tmp-{os.getpid()}.npz"
        try:
            np.savez(tmp, key=np.array(self.key), classes=np.array(self.classes),
                     **{f"{p}_{k}": t.numpy() for p, (x, y) in out.items() for k, t in (("x", x), ("y", y))})
            tmp.replace(self.root / CACHE)
        except OSError:
            tmp.unlink(missing_ok=True)
        return out
