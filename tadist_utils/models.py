"""The paper's networks, from compact VGG-style configs (parameter counts: the paper's, to the unit). Every model maps
a 32x32 image to a *dense feature*: the teacher's, the 512-d input of its classifier; a student's, its chunk."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

# "M" is a 2x2 max-pool; an int is a 3x3 conv (pad 1) + BatchNorm + ReLU with that many channels.
TEACHER_CONFIG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]

# Student levels: level 1 is S1 (whole 512-d feature), level k regresses a 512 / 2**(k-1) chunk.
STUDENT_LEVELS: dict[int, dict] = {
    1: dict(config=[32, 32, "M", 64, 64, "M", 128, 128, "M", 256, 256, "M", 512, "M"], head=(512, 512)),
    2: dict(config=[32, 32, "M", 64, 64, "M", 128, 128, "M", 256, 256, "M", "M"], head=(256, 256)),
    3: dict(config=[32, "M", 32, "M", 64, 64, "M", 128, 128, "M", 128, 128, "M"], head=(128, 128)),
    4: dict(config=[32, 32, "M", 32, 32, "M", 32, 64, "M", 64, 64, "M", 64, 64, 64, "M"], head=None),
}

# Parameter counts printed in the paper; tests and the summary compare against them.
PAPER_PARAMS = dict(teacher=14_728_266, student_level1=2_618_016, student_level2=1_239_968, student_level3=600_096,
                    student_level4=242_112, ensemble_1=2_623_146, ensemble_2=2_485_066, ensemble_4=2_405_514,
                    ensemble_8=1_942_026)


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


class ConvNet(nn.Module):
    """Conv stack, global average pool, optional linear head; ``features(x)`` is the dense feature."""

    def __init__(self, config: Sequence[int | str], head: tuple[int, int] | None, classifier: int | None = None):
        super().__init__()
        self.config = list(config)
        self.body = conv_stack(config)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(*head) if head else nn.Identity()
        self.feature_dim = head[1] if head else [c for c in config if c != "M"][-1]
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
    """Students concatenated in chunk order, then one output layer; initialised from the teacher's classifier
    (``init_from``), students that reproduce their chunks reproduce the teacher's logits."""

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
    """Multiply-accumulates of one forward pass on one image: convs and matmuls only (``FlopCounterMode`` / 2; not
    torchinfo's, which also counts biases and BatchNorm weights)."""
    was_training = model.training
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, 3, image_size, image_size))
    model.train(was_training)
    return counter.get_total_flops() // 2


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
