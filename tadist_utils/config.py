"""Run configuration: one dataclass (each field's default and roles beside it), its profiles (``make_config("quick",
student_epochs=5)``) and every check a config gets (``validate``, a ConfigError line each, the one importer of names)."""
from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .errors import ConfigError

RESULTS_ROOT = "results/run"  # git-ignored; a run writes under it, one folder a profile (default_results_dir)
MIN_PER_CLASS = 2  # training images per class, at the least (and batch norm needs two images in a batch)
MAX_EPOCHS = 10_000  # more is a typo (or a run that would never finish), not a schedule
SEED_LIMIT = 2**31  # seeds derived from one (train.init_seed, dense masks) stay below manual_seed's 2**63


def role(default, *, setting: bool = True, teacher: bool = True, s1: bool = False, notebook: int | None = None):
    """A Config field with its roles (``with_role``): ``setting``: it changes results.csv (``settings_fields``);
    ``teacher``/``s1``: it can change the teacher's/S1's weights (the sweep shares those); ``notebook``: its place among
    the notebooks' parameters (None: set it in ``overrides``)."""
    return field(default=default, metadata=dict(setting=setting, teacher=teacher, s1=s1, notebook=notebook))


@dataclass
class Config:
    # --- what to run -----------------------------------------------------------------------
    profile: str = role("paper", setting=False, notebook=1)
    experiments: tuple[str, ...] = role(("direct", "single_ta", "hierarchical"), setting=False, teacher=False)  # = plans.PAPER_EXPERIMENTS; any of plans.METHODS
    levels: int = role(4, teacher=False)               # 1, 2, 4, 8 students
    seed: int = role(0, setting=False, notebook=5)
    # --- data --------------------------------------------------------------------------------
    dataset: Literal["auto", "cifar10", "cifar100", "imagefolder", "digits"] = role("auto", setting=False, notebook=2)
    data_dir: str = role("data", setting=False, notebook=3)  # torchvision download dir, or the ImageFolder root (train/, test/)
    val_size: int = 5000               # stratified validation split carved from the training set
    train_size: int | None = None      # cap on training images (stratified); None = all that remain
    test_size: int | None = None       # cap on test images (stratified); None = all
    augment: bool = True               # random crop (pad 4) + horizontal flip for the teacher and 'all' fine-tuning
    student_augment: bool = role(True, teacher=False, s1=True)  # the same for students; off lets the parent's features be computed once
    # --- teacher: Adam + cosine by default; the reference and quick profiles use SGD one-cycle (docs/recipes.md)
    teacher_epochs: int = role(10, notebook=7)
    teacher_optimizer: Literal["adam", "adamw", "sgd"] = "adam"  # adam | adamw (+ cosine) | sgd (SGD Nesterov 0.9 + one-cycle)
    teacher_lr: float = 1e-3
    teacher_weight_decay: float = 5e-4
    # --- students: Adam + cosine decay on the feature-regression loss ---------------------------
    student_epochs: int = role(60, teacher=False, s1=True, notebook=8)
    student_lr: float = role(1e-3, teacher=False, s1=True)
    student_weight_decay: float = role(0.0, teacher=False, s1=True)
    feature_loss: Literal["mse", "l1", "cosine"] = role("mse", teacher=False, s1=True)  # = losses.FEATURE_LOSSES; mse: the paper's
    dense_drop: float = role(0.5, teacher=False)       # dense plan: chance that each target is dropped at a step (one always stays)
    share_students: bool = role(True, teacher=False)   # False: each experiment trains its own students below S1 (the paper; 2 more students)
    # --- baselines (labels, kd, ta_chain): the ensemble architecture trained end to end, student_epochs long
    kd_temperature: float = role(4.0, teacher=False)   # Hinton KD temperature
    kd_alpha: float = role(0.9, teacher=False)         # weight of the distillation term; 1 - alpha goes to the labels
    # --- ensemble fine-tuning: output layer initialised from the teacher's classifier ------------
    finetune_epochs: int = role(10, teacher=False, notebook=9)
    finetune_mode: Literal["head", "all"] = role("head", teacher=False)   # head: output layer only, students frozen (Malik et al.) | all
    finetune_lr: float = role(1e-3, teacher=False)
    # --- engine --------------------------------------------------------------------------------
    batch_size: int = 128
    eval_batch_size: int = role(512, setting=False, teacher=False)
    device: str = role("auto", setting=False, notebook=6)  # auto | cpu | cuda | cuda:N | mps (a pattern: validate)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto (bf16 on capable GPUs, fp16+scaler on older ones, fp32 on CPU) | fp32 | bf16 | fp16
    channels_last: bool = role(True, setting=False)
    compile: bool = role(False, setting=False)         # torch.compile the training steps (engine.Compiled; CUDA graphs on CUDA, unmeasured there; slower on the CPU: README)
    fuse_students: Literal["auto", "on", "off"] = role("auto", setting=False, teacher=False)  # train students that share a step as one network (fused.py); auto = on for GPUs
    deterministic: bool = role(False, setting=False)   # torch.use_deterministic_algorithms(warn_only) + cudnn.deterministic; recorded in the manifest
    threads: int | None = role(None, setting=False)    # CPU threads for torch; None: the cores no other process is running on (engine.default_threads)
    results_dir: str = role("", setting=False, teacher=False, notebook=4)  # CSVs, manifest, figures, checkpoints/; "": default_results_dir(profile)
    progress: bool = role(True, setting=False, teacher=False)  # tqdm bars

    def __post_init__(self):
        if self.results_dir == "":
            self.results_dir = default_results_dir(self.profile)
        if isinstance(self.experiments, (str, list)):  # "direct,dense": names, not letters
            self.experiments = tuple(e.strip() for e in self.experiments.split(",") if e.strip()) \
                if isinstance(self.experiments, str) else tuple(self.experiments)

    def replace(self, **overrides) -> "Config":
        """A copy with ``overrides``, strings read as the fields' types (a command line's, papermill's)."""
        hints = typing.get_type_hints(type(self))
        unknown = sorted(set(overrides) - set(hints))
        if unknown:
            named = [f"{u} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(u, hints, 1)) else u for u in unknown]
            raise ConfigError(f"unknown setting(s): {', '.join(named)}")
        for k, v in overrides.items():
            base = _union(hints[k])[0]
            if isinstance(v, str) and base in (int, float, bool):  # else checked as given (validate)
                try:
                    overrides[k] = None if base is not hints[k] and v.lower() == "none" else \
                        BOOLS.get(v.lower(), v) if base is bool else base(v)
                except ValueError as e:  # int("three")
                    raise ConfigError(f"{k}: bad value {v!r} ({e})") from None
        return dataclasses.replace(self, **overrides)

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "experiments": list(self.experiments)}

    def from_profile(self, name: str) -> bool:
        """Whether field ``name`` holds its profile's value, not one set by hand."""
        return getattr(self, name) == PROFILES.get(self.profile, {}).get(name, FIELDS[name].default)

    checkpoint_dir = property(lambda self: Path(self.results_dir) / "checkpoints")


def default_results_dir(profile: str) -> str:  # one folder a profile: a smoke run leaves a quick run's rows alone
    return f"{RESULTS_ROOT}/{profile}"


def with_role(role_name: str, value=True, cls: type | None = None) -> tuple[str, ...]:
    """``cls``'s (default ``Config``'s) fields whose ``role_name`` is ``value``, in field order (``notebook``: by place)."""
    fs = dataclasses.fields(cls or Config)
    if role_name == "notebook":
        return tuple(f.name for f in sorted((f for f in fs if f.metadata.get("notebook")), key=lambda f: f.metadata["notebook"]))
    default = dict(setting=True, teacher=True, s1=False)[role_name]  # a field declared without role()
    return tuple(f.name for f in fs if f.metadata.get(role_name, default) == value)


def settings_fields(cfg: Config) -> dict:
    """The fields that shape a number in results.csv (``role(setting=True)``), by name: rows record their hash."""
    return {k: v for k, v in cfg.as_dict().items() if k in with_role("setting", cls=type(cfg))}


PROFILES: dict[str, dict] = {
    # seconds on a CPU, one epoch of everything: CI, checking a set-up. One thread (two beside any other job: 7x slower)
    "smoke": dict(train_size=256, val_size=64, test_size=128, teacher_epochs=1, student_epochs=1, finetune_epochs=1,
                  batch_size=64, eval_batch_size=256, augment=False, student_augment=False, threads=1),
    # minutes on a 2-core CPU (README): a teacher worth copying (SGD one-cycle, unaugmented, batch 32: docs/recipes.md),
    # S1 and the halves, the labels-only baseline beside them
    "quick": dict(train_size=2500, val_size=500, test_size=1000, teacher_optimizer="sgd", teacher_lr=0.05,
                  teacher_epochs=10, augment=False, levels=2, student_epochs=10, finetune_epochs=5, batch_size=32,
                  student_augment=False, experiments=("direct", "single_ta", "hierarchical", "labels")),
    # behind the committed notebook outputs (README), with the recipes the pilot chose on validation (docs/recipes.md)
    "reference": dict(train_size=5000, val_size=1000, test_size=2000, teacher_optimizer="sgd", teacher_lr=0.05,
                      teacher_weight_decay=5e-4, augment=True, teacher_epochs=40, student_augment=False, student_epochs=40,
                      finetune_epochs=10, batch_size=64, experiments=("direct", "single_ta", "hierarchical", "labels")),
    # the paper's schedule on the full dataset, each experiment with its own S01/S2 as in the paper.
    "paper": dict(share_students=False),
}

FIELDS = {f.name: f for f in dataclasses.fields(Config)}
BOOLS = {**dict.fromkeys(("1", "true", "yes", "on"), True), **dict.fromkeys(("0", "false", "no", "off"), False)}
KINDS = {  # (test, words) of each type a field may have: a bool is no number, a float is finite, a path not empty
    int: (lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool), "an integer"),
    float: (lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v), "a finite number"),
    bool: (lambda v: isinstance(v, bool), "true or false"), str: (lambda v: isinstance(v, str), "a string"),
    type(None): (lambda v: v is None, "None"), "path": (lambda v: isinstance(v, (str, os.PathLike)) and str(v) != "", "a path"),
    tuple: (lambda v: isinstance(v, tuple) and all(isinstance(e, str) for e in v), "a tuple of names")}
RANGES = [  # (test, fields, words)
    (lambda v: v > 0, ("levels", "val_size", "teacher_epochs", "student_epochs", "batch_size", "eval_batch_size"),
     "a positive integer"), (lambda v: v is None or v > 0, ("train_size", "test_size", "threads"), "a positive integer or None"),
    (lambda v: v >= 0, ("finetune_epochs",), "zero or a positive integer"),
    (lambda v: v <= MAX_EPOCHS, ("teacher_epochs", "student_epochs", "finetune_epochs"), f"at most {MAX_EPOCHS:,}"),
    (lambda v: v > 0, ("teacher_lr", "student_lr", "finetune_lr", "kd_temperature"), "positive"),
    (lambda v: v >= 0, ("teacher_weight_decay", "student_weight_decay"), "zero or positive"),
    (lambda v: 0 <= v < 1, ("dense_drop",), "in [0, 1)"), (lambda v: 0 <= v <= 1, ("kd_alpha",), "in [0, 1]")]


def make_config(profile: str = "quick", **overrides) -> Config:
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    cfg = Config(profile=profile).replace(**PROFILES[profile])
    return validate(cfg.replace(**{k: v for k, v in overrides.items() if v is not None or k in ("train_size", "test_size")}))


def _union(hint) -> tuple:
    return typing.get_args(hint) if typing.get_origin(hint) is types.UnionType else (hint,)  # int | None


def check_seed(seed, name: str = "seed") -> None:
    if not KINDS[int][0](seed) or not 0 <= seed < SEED_LIMIT:
        raise ConfigError(f"{name} must be an integer from 0 to {SEED_LIMIT - 1:,}, got {seed!r}")


def check_seeds(seeds, name: str = "seeds") -> list[int]:
    """Seeds as integers, in order: each in range (digits read as one), none twice (same checkpoints and rows)."""
    values = [int(s) if isinstance(s, str) and s.strip().lstrip("+-").isdigit() else s for s in seeds] \
        if isinstance(seeds, (list, tuple)) else None
    if values is None or not all(KINDS[int][0](v) for v in values):
        raise ConfigError(f"{name} must be a list of integers, got {seeds!r}")
    for v in values:
        check_seed(v)
    if twice := [s for s in dict.fromkeys(values) if values.count(s) > 1]:
        raise ConfigError(f"{name} names {' '.join(map(str, twice))} more than once; give each seed once")
    return [int(v) for v in values]


def check_device(name: str) -> None:
    """A device this machine has (the runners', engine.resolve_device's), or one ConfigError line."""
    import torch
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", name):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    kind, _, index = name.partition(":")
    have = torch.cuda.device_count() if kind == "cuda" else torch.backends.mps.is_available() if kind == "mps" else 1
    if int(index or 0) >= have:
        raise ConfigError(f"device {name!r} requested but this machine has " + (f"only {have} CUDA device(s)" if have
                          else f"no {'CUDA GPU' if kind == 'cuda' else 'MPS'} (use device='auto' or 'cpu')"))


def validate(cfg: Config) -> Config:
    """``cfg``, checked before anything trains: types (the annotations), ranges, names against their owners, a device
    this machine has, the data's layout (a listing, no decoding), a writable results_dir."""
    from . import models
    from .data.imagefolder import list_images
    from .plans import METHODS
    for name, hint in typing.get_type_hints(type(cfg)).items():
        v, choices = getattr(cfg, name), typing.get_args(hint)
        if typing.get_origin(hint) is Literal:
            if v not in choices:
                raise ConfigError(f"unknown {name} {v!r}; choose from {', '.join(choices)}")
            continue
        kinds = [KINDS["path"]] if name.endswith("_dir") else [KINDS[typing.get_origin(t) or t] for t in _union(hint)]
        if not any(ok(v) for ok, _ in kinds):
            raise ConfigError(f"{name} must be {' or '.join(words for _, words in kinds)}, got {v!r}")
    check_seed(cfg.seed)
    for ok, names, words in RANGES:
        if bad := [n for n in names if not ok(getattr(cfg, n))]:
            raise ConfigError(f"{bad[0]} must be {words}, got {getattr(cfg, bad[0])!r}")
    check_device(cfg.device)
    if (bad := [e for e in cfg.experiments if e not in METHODS]) or not cfg.experiments:
        raise ConfigError(f"unknown experiment(s) {bad or '(none given)'}; choose from {', '.join(METHODS)}")
    if cfg.levels > max(models.STUDENT_LEVELS):
        raise ConfigError(f"levels={cfg.levels} needs a student architecture for every level; "
                          f"defined levels are {sorted(models.STUDENT_LEVELS)} (add one to models.STUDENT_LEVELS)")
    classes = len(list_images(Path(cfg.data_dir))[0]) if cfg.dataset == "imagefolder" else \
        100 if cfg.dataset == "cifar100" else 10
    if cfg.train_size is not None and cfg.train_size < MIN_PER_CLASS * classes:
        raise ConfigError(f"train_size={cfg.train_size} is too small: at least {MIN_PER_CLASS} training images per "
                          f"class are needed ({MIN_PER_CLASS * classes} for {classes} classes)")
    probe = Path(cfg.results_dir)
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise ConfigError(f"results_dir {str(cfg.results_dir)!r} is not writable")
    return cfg
