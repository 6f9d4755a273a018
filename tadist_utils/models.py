"""The paper's networks, built from compact VGG-style conv configs.

Every model maps a 32x32 image to a *dense feature*: the teacher's is the 512-d input of its
classifier, a student's is its chunk-sized output. Ensembles concatenate students' features in
chunk order and put one output layer on top. Parameter counts match SPEC.md to the unit
(``tests/test_models.py`` checks them).

Run ``python -m tadist_utils.models`` for a per-layer summary and ``results/models.csv``.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

# "M" is a 2x2 max-pool; an int is a 3x3 conv (pad 1) + BatchNorm + ReLU with that many channels.
TEACHER_CONFIG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]

# Student levels: level 1 is S1 (whole 512-d feature), level k regresses a 512 / 2**(k-1) chunk.
STUDENT_LEVELS: dict[int, dict] = {
    1: dict(config=[32, 32, "M", 64, 64, "M", 128, 128, "M", 256, 256, "M", 512, "M"], head=(512, 512)),
    2: dict(config=[32, 32, "M", 64, 64, "M", 128, 128, "M", 256, 256, "M", "M"], head=(256, 256)),
    3: dict(config=[32, "M", 32, "M", 64, 64, "M", 128, 128, "M", 128, 128, "M"], head=(128, 128)),
    4: dict(config=[32, 32, "M", 32, 32, "M", 32, 64, "M", 64, 64, "M", 64, 64, 64, "M"], head=None),
}

# Parameter counts printed in the paper (SPEC.md); tests and the summary compare against them.
PAPER_PARAMS = {
    "teacher": 14_728_266,
    "student_level1": 2_618_016,
    "student_level2": 1_239_968,
    "student_level3": 600_096,
    "student_level4": 242_112,
    "ensemble_1": 2_623_146,
    "ensemble_2": 2_485_066,
    "ensemble_4": 2_405_514,
    "ensemble_8": 1_942_026,
}


def conv_stack(config: Sequence[int | str], in_channels: int = 3) -> nn.Sequential:
    """Turn a VGG-style config into conv-BN-ReLU / max-pool layers."""
    layers: list[nn.Module] = []
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(in_channels, int(item), 3, padding=1), nn.BatchNorm2d(int(item)), nn.ReLU(inplace=True)]
            in_channels = int(item)
    return nn.Sequential(*layers)


def _out_channels(config: Sequence[int | str]) -> int:
    return [c for c in config if c != "M"][-1]


class ConvNet(nn.Module):
    """Conv stack, global average pool, optional linear head.

    ``features(x)`` is the dense feature: for the teacher the pooled 512-d vector that enters
    ``classifier``; for a student the output of its regression head (or of the pool if it has none).
    """

    def __init__(self, config: Sequence[int | str], head: tuple[int, int] | None, classifier: int | None = None):
        super().__init__()
        self.config = list(config)
        self.body = conv_stack(config)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(*head) if head else nn.Identity()
        self.feature_dim = head[1] if head else _out_channels(config)
        self.classifier = nn.Linear(self.feature_dim, classifier) if classifier else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.body(x)), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return self.classifier(f) if self.classifier is not None else f


def teacher(num_classes: int = 10) -> ConvNet:
    """VGG16-BN for 32x32 inputs: dense feature = 512-d input of ``classifier``."""
    return ConvNet(TEACHER_CONFIG, head=None, classifier=num_classes)


def student(level: int) -> ConvNet:
    """A student of the given level (1 = S1 ... 4 = SS), outputting a 512 / 2**(level-1) vector."""
    if level not in STUDENT_LEVELS:
        raise ValueError(f"student level must be one of {sorted(STUDENT_LEVELS)}, got {level}")
    spec = STUDENT_LEVELS[level]
    return ConvNet(spec["config"], spec["head"])


class Ensemble(nn.Module):
    """Students concatenated in chunk order, then one output layer.

    The output layer is typically initialised from the teacher's classifier (``init_from``), so that
    students which reproduce their chunks exactly reproduce the teacher's logits exactly.
    """

    def __init__(self, students: Sequence[nn.Module], num_classes: int = 10, init_from: nn.Linear | None = None):
        super().__init__()
        self.students = nn.ModuleList(students)
        self.feature_dim = sum(s.feature_dim for s in students)
        self.classifier = nn.Linear(self.feature_dim, num_classes)
        if init_from is not None:
            self.classifier.load_state_dict(init_from.state_dict())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([s.features(x) for s in self.students], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, image_size: int = 32) -> int:
    """Multiply-accumulates of one forward pass on one image (convolutions and linear layers)."""
    total = 0

    def conv_hook(m: nn.Conv2d, _inp, out):
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total += out.shape[1] * out.shape[2] * out.shape[3] * k

    def linear_hook(m: nn.Linear, _inp, out):
        nonlocal total
        total += m.in_features * m.out_features

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(linear_hook) for m in model.modules() if isinstance(m, nn.Linear)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return total


def catalogue(num_classes: int = 10) -> list[dict]:
    """Every architecture of the paper with its role, parameters and MACs (rows of models.csv)."""
    rows = [dict(model="teacher", role="VGG16-BN teacher", net=teacher(num_classes))]
    for level in STUDENT_LEVELS:
        rows.append(dict(model=f"student_level{level}", role=f"one level-{level} student ({512 >> (level - 1)}-d chunk)",
                         net=student(level)))
    for n, level in [(1, 1), (2, 2), (4, 3), (8, 4)]:
        rows.append(dict(model=f"ensemble_{n}", role=f"{n} level-{level} student(s) + Linear(512,{num_classes})",
                         net=Ensemble([student(level) for _ in range(n)], num_classes)))
    for row in rows:
        row["parameters"] = count_params(row["net"])
        row["macs_per_image"] = count_macs(row["net"])
        row["paper_parameters"] = PAPER_PARAMS[row["model"]] if num_classes == 10 else ""
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Summarise the paper's architectures and write models.csv.")
    parser.add_argument("--out", default="results/models.csv", help="CSV to write (default: results/models.csv)")
    parser.add_argument("--no-layers", action="store_true", help="skip the per-layer summaries")
    args = parser.parse_args(argv)
    rows = catalogue()
    if not args.no_layers:
        try:
            from torchinfo import summary
        except ImportError:  # torchinfo is optional; the totals below do not need it
            summary = None
        for row in rows[:5]:
            print(f"\n=== {row['model']}: {row['role']}")
            if summary is not None:
                summary(row["net"], input_size=(1, 3, 32, 32), col_names=("output_size", "num_params"),
                        depth=3, device="cpu", verbose=1)
            else:
                print(row["net"])
    print(f"\n{'model':<16}{'parameters':>12}{'paper':>12}{'MACs/image':>14}  role")
    for row in rows:
        print(f"{row['model']:<16}{row['parameters']:>12,}{row['paper_parameters']:>12,}{row['macs_per_image']:>14,}  {row['role']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["model", "role", "parameters", "paper_parameters", "macs_per_image"])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in writer.fieldnames})
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
