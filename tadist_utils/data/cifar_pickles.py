"""CIFAR's pickled batches, read without running any code they contain.

``pickle.load`` (torchvision's CIFAR loader) runs whatever a file names; ``ArraysOnly`` builds only numpy arrays,
dicts, lists and strings, and anything else is one ConfigError.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError

Arrays = tuple[torch.Tensor, torch.Tensor]  # uint8 images (n, 3, 32, 32), int64 labels (n,)

LAYOUT = {  # torchvision's extracted folders: (folder, train files, test file, meta file, label key, names key)
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "batches.meta",
                "labels", "label_names"),
    "cifar100": ("cifar-100-python", ["train"], "test", "meta", "fine_labels", "fine_label_names"),
}


class ArraysOnly(pickle.Unpickler):
    """Refuses every global but numpy's array reconstruction (all CIFAR's batches name), before it is looked up."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}  # the last: bytes in protocol 2

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR file never does")
        if name in ("ndarray", "dtype"):
            return getattr(np, name)
        if name == "encode":
            import codecs
            return codecs.encode
        return np.zeros(0).__reduce__()[0] if name == "_reconstruct" else _frombuffer  # numpy's own, wherever it lives


def _frombuffer(buf, dtype, shape, order):
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)


def unpickle(path: Path) -> dict:
    """One CIFAR pickle, loaded without running code from it; a refusal is one ConfigError naming the file."""
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


def read_folder(name: str, root: Path) -> tuple[Arrays, Arrays, tuple[str, ...]]:
    """Read torchvision's extracted CIFAR pickles directly: (train, test, class names), (images, labels) each."""
    folder, train_files, test_file, meta_file, label_key, names_key = LAYOUT[name]
    base = root / folder

    def load(files: list[str]) -> Arrays:
        images, labels = [], []
        for f in files:
            d = unpickle(base / f)
            try:
                images.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                labels += list(d[label_key])
            except (KeyError, ValueError, TypeError) as e:
                raise ConfigError(f"{base / f} is not a CIFAR batch ({type(e).__name__}: {e})") from None
        return torch.from_numpy(np.concatenate(images)), torch.as_tensor(labels, dtype=torch.int64)
    meta = unpickle(base / meta_file)
    if names_key not in meta:
        raise ConfigError(f"{base / meta_file} is not a CIFAR meta file (no {names_key!r})")
    classes = tuple(meta[names_key])
    return load(train_files), load([test_file]), classes
