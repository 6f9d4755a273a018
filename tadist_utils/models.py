"""The paper's networks, from compact VGG-style configs; parameter counts match the paper's to the unit.

Every model maps a 32x32 image to a *dense feature* (the teacher's: the 512-d input of its classifier; a
student's: its chunk). ``python -m tadist_utils.models`` prints a per-layer summary and writes models.csv.
"""
from __future__ import annotations

import argparse
import copy
import csv
from pathlib import Path
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
    """Conv stack, global average pool, optional linear head; ``features(x)`` is the dense feature."""

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


class FusedStudents(nn.Module):
    """Same-architecture students as one wide network: ``features(x)`` is their outputs concatenated in order.

    Student ``g``'s conv becomes group ``g`` of one grouped conv (the first conv, on the shared image, an ordinary
    one with ``n * c`` outputs); BatchNorm, ReLU and pooling act per channel, so channel block ``g`` *is* student
    ``g``, in train mode too. ``n`` times fewer kernel launches: what tiny students cost on a GPU. The state dict
    has the students' keys, their tensors concatenated along dim 0. ``fold_bn``: BatchNorm folded into the conv
    before it, the same function in eval mode only (inference, ``cost.py``).
    """

    def __init__(self, students: Sequence[nn.Module], fold_bn: bool = False):
        super().__init__()
        students = list(students)
        if not students:
            raise ValueError("FusedStudents needs at least one student")
        first = students[0]
        for s in students:
            if not isinstance(s, ConvNet) or s.classifier is not None:
                raise TypeError("FusedStudents fuses models.ConvNet students without a classifier")
            if s.config != first.config or type(s.head) is not type(first.head) or (
                    isinstance(s.head, nn.Linear) and s.head.weight.shape != first.head.weight.shape):
                raise ValueError("FusedStudents needs students of one architecture (same config and head)")
        n = self.n_students = len(students)
        self.fold_bn = fold_bn
        self.feature_dim = sum(s.feature_dim for s in students)
        self.student_shapes = {k: v.shape for k, v in first.state_dict().items()}
        layers: list[nn.Module] = []
        shared_input = True  # until the first conv, every student sees the same (image) tensor
        for mods in zip(*[s.body for s in students]):
            m = mods[0]
            if isinstance(m, nn.Conv2d):
                if m.groups != 1 or m.padding_mode != "zeros":
                    raise ValueError("FusedStudents fuses ordinary (groups=1, zero-padded) convolutions only")
                layers.append(nn.Conv2d(m.in_channels * (1 if shared_input else n), m.out_channels * n, m.kernel_size,
                                        stride=m.stride, padding=m.padding, dilation=m.dilation,
                                        groups=1 if shared_input else n, bias=m.bias is not None or fold_bn))
                shared_input = False
            elif isinstance(m, nn.BatchNorm2d):
                if not all(b.track_running_stats and b.affine and b.eps == m.eps for b in mods):
                    raise ValueError("FusedStudents needs affine BatchNorm with running statistics and one eps")
                if fold_bn and not isinstance(layers[-1], nn.Conv2d):
                    raise ValueError("fold_bn needs every BatchNorm to follow a conv")
                layers.append(nn.Identity() if fold_bn else nn.BatchNorm2d(m.num_features * n, eps=m.eps,
                                                                           momentum=m.momentum))
            elif isinstance(m, (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.Identity)):
                if any(type(x) is not type(m) or repr(x) != repr(m) for x in mods):
                    raise ValueError(f"students differ at layer {m}")
                layers.append(copy.deepcopy(m))  # per-channel: acts on each student's block alone
            else:
                raise TypeError(f"FusedStudents cannot fuse a {type(m).__name__}")
        self.body = nn.Sequential(*layers)
        self.pool = copy.deepcopy(first.pool)
        if isinstance(first.head, nn.Linear):  # n Linear(in, out) heads == one grouped 1x1 conv on (B, n*in, 1, 1)
            lin = first.head
            self.head = nn.Conv2d(lin.in_features * n, lin.out_features * n, 1, groups=n, bias=lin.bias is not None)
        else:
            self.head = nn.Identity()
        ref = next(first.parameters())
        self.to(device=ref.device, dtype=ref.dtype)  # the students' device and precision
        if fold_bn:
            self._fold(students)
        else:
            self.load_students(students)
        self.train(first.training)  # the students' mode: eval uses running statistics, as they did

    def part(self, tensor: torch.Tensor, key: str, g: int) -> torch.Tensor:
        """Student ``g``'s block of a fused tensor stored under ``key`` (a weight, buffer or its Adam state)."""
        shape = self.student_shapes[key]
        return tensor if not shape else tensor.reshape(self.n_students, *shape)[g]

    @torch.no_grad()
    def load_students(self, students: Sequence[nn.Module]) -> None:
        """Copy the students' weights and BatchNorm buffers in (concatenated along dim 0)."""
        states = [s.state_dict() for s in students]
        for key, t in self.state_dict().items():
            t.copy_(states[0][key] if t.dim() == 0 else torch.cat([st[key] for st in states]).reshape(t.shape))

    @torch.no_grad()
    def store_students(self, students: Sequence[nn.Module]) -> None:
        """Copy the fused weights and buffers back into the students (the inverse of ``load_students``)."""
        if self.fold_bn:
            raise ValueError("a BatchNorm-folded network cannot be split back into students")
        for g, s in enumerate(students):
            own = s.state_dict()
            for key, t in self.state_dict().items():
                own[key].copy_(self.part(t, key, g))

    @torch.no_grad()
    def _fold(self, students: Sequence[nn.Module]) -> None:
        mods = list(zip(*[s.body for s in students]))
        for i, layer in enumerate(self.body):
            if isinstance(layer, nn.Conv2d):
                layer.weight.copy_(torch.cat([m.weight for m in mods[i]]))
                layer.bias.copy_(torch.cat([m.bias for m in mods[i]]) if mods[i][0].bias is not None else 0)
            elif isinstance(mods[i][0], nn.BatchNorm2d):
                bns, conv = mods[i], self.body[i - 1]
                weight, bias = torch.cat([b.weight for b in bns]), torch.cat([b.bias for b in bns])
                mean, var = torch.cat([b.running_mean for b in bns]), torch.cat([b.running_var for b in bns])
                scale = weight / torch.sqrt(var + bns[0].eps)
                conv.weight.mul_(scale.view(-1, 1, 1, 1))
                conv.bias.copy_((conv.bias - mean) * scale + bias)
        if isinstance(self.head, nn.Conv2d):
            self.head.weight.copy_(torch.cat([s.head.weight for s in students]).reshape(self.head.weight.shape))
            if self.head.bias is not None:
                self.head.bias.copy_(torch.cat([s.head.bias for s in students]))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The students' features concatenated in order: ``Ensemble.features(x)`` for an ensemble's students."""
        return torch.flatten(self.head(self.pool(self.body(x))), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class FusedEnsemble(FusedStudents):
    """An ``Ensemble`` as one network plus its output layer: the same logits. A copy at construction, sharing
    nothing with the Ensemble."""

    def __init__(self, ensemble: Ensemble, fold_bn: bool = False):
        super().__init__(list(ensemble.students), fold_bn=fold_bn)
        self.classifier = copy.deepcopy(ensemble.classifier)
        self.train(ensemble.training)
        self.to(next(ensemble.parameters()).device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, image_size: int = 32) -> int:
    """Multiply-accumulates of one forward pass on one image: convs and matmuls only (``FlopCounterMode`` / 2).

    Not ``torchinfo``'s ``total_mult_adds``: it also counts biases and BatchNorm weights, which would change every
    ``macs_per_image`` written so far."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, image_size, image_size))
    finally:
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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Summarise the paper's architectures and write models.csv.")
    parser.add_argument("--out", default="results/models.csv", help="CSV to write (default: results/models.csv)")
    parser.add_argument("--no-layers", action="store_true", help="skip the per-layer summaries")
    args = parser.parse_args(argv)
    rows = catalogue()
    if not args.no_layers:
        from torchinfo import summary
        for row in rows[:5]:
            print(f"\n=== {row['model']}: {row['role']}")
            summary(row["net"], input_size=(1, 3, 32, 32), col_names=("output_size", "num_params"), depth=3,
                    device="cpu", verbose=1)
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
