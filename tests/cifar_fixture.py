"""A tiny CIFAR-100 in torchvision's on-disk layout (random pixels), so the 100-class path runs offline."""
import pickle
from pathlib import Path

import numpy as np


def write_fake_cifar100(root: Path, train_per_class: int = 4, test_per_class: int = 2, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    base = Path(root) / "cifar-100-python"
    base.mkdir(parents=True, exist_ok=True)
    for name, per in (("train", train_per_class), ("test", test_per_class)):
        labels = np.repeat(np.arange(100), per)
        # class-dependent mean colour: learnable, so a trained model beats chance
        data = (rng.integers(0, 64, (len(labels), 3072)) + (labels[:, None] * 37 % 192)).astype(np.uint8)
        with open(base / name, "wb") as f:
            pickle.dump({"data": data, "fine_labels": labels.tolist(), "coarse_labels": (labels // 5).tolist()}, f)
    with open(base / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"class{i:02d}" for i in range(100)], "coarse_label_names": []}, f)
    return Path(root)
