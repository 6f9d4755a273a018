"""Run configuration: one dataclass, the profiles, and the checks a config can make on its own.

Every choice the paper leaves open is a field with a documented default; a profile is a set of overrides
(``make_config("quick", student_epochs=5)``). Types and ranges are checked here; whether a name is known is its
owner's to say (``experiments.check``), so this module imports nothing from the package but its error.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .errors import ConfigError  # a leaf importing nothing: the error every layer raises, config included


RESULTS_ROOT = "results/run"  # git-ignored; the default results folder of each profile is a folder under it


def default_results_dir(profile: str) -> str:
    """Where a run writes by default: one folder per profile, so a ``smoke`` run does not move a ``quick`` run's rows
    aside (a results folder keeps one set of settings a dataset)."""
    return f"{RESULTS_ROOT}/{profile}"


MAX_EPOCHS = 10_000  # more is a typo (or a run that would never finish), not a schedule
# Seeds are integers 0 <= seed < 2**31, checked here for every way in (make_config, the runners' --seeds, the notebooks'
# seed/seeds, the sweep). The package derives other seeds from them (train.init_seed: seed * 1_000_003 + ...; a dense
# student's masks: init_seed(seed * 1009 + epoch, ...)); below 2**31 those stay below 2**63, which torch's
# manual_seed takes, for every epoch up to MAX_EPOCHS (--seeds 100000000000000 failed in 01 with an OverflowError).
SEED_LIMIT = 2**31


def role(default, *, setting: bool = True, teacher: bool = True, s1: bool = False, notebook: int | None = None):
    """A Config field with its roles, declared once, beside it; every list of fields by role is derived (``with_role``).

    ``setting``: it changes a number in results.csv, so rows record it in their settings hash (``settings_fields``);
    not one: which experiments and seed a run covers, where its files are, how fast or visibly it runs.
    ``teacher``: it can change the teacher's weights (the sweep shares one teacher between cells agreeing on all such).
    ``s1``: beyond the teacher, it shapes S1 (the sweep shares S1 between cells agreeing on these too).
    ``notebook``: its place among the notebooks' parameters (``nbsetup.PARAMETERS``); None: set it in ``overrides``.
    """
    return field(default=default, metadata=dict(setting=setting, teacher=teacher, s1=s1, notebook=notebook))


@dataclass
class Config:
    # --- what to run -----------------------------------------------------------------------
    profile: str = role("paper", setting=False, notebook=1)
    experiments: tuple[str, ...] = role(("direct", "single_ta", "hierarchical"), setting=False, teacher=False)  # = methods.PAPER_EXPERIMENTS; any of methods.METHODS
    levels: int = role(4, teacher=False)               # 1, 2, 4, 8 students
    seed: int = role(0, setting=False, notebook=5)
    # --- data --------------------------------------------------------------------------------
    dataset: str = role("auto", setting=False, notebook=2)  # auto | cifar10 | cifar100 | imagefolder | digits
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
    feature_loss: str = role("mse", teacher=False, s1=True)  # mse (paper) | l1 | cosine
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
    device: str = role("auto", setting=False, notebook=6)  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"            # auto (bf16 on capable GPUs, fp16+scaler on older ones, fp32 on CPU) | fp32 | bf16 | fp16
    channels_last: bool = role(True, setting=False)
    compile: bool = role(False, setting=False)         # torch.compile the training steps (engine.Compiled; CUDA graphs on CUDA, unmeasured there; slower on the CPU: README)
    fuse_students: str = role("auto", setting=False, teacher=False)  # auto | on | off: train students that share a step as one network (fused.py); auto = on for GPUs
    deterministic: bool = role(False, setting=False)   # torch.use_deterministic_algorithms(warn_only) + cudnn.deterministic; recorded in the manifest
    threads: int | None = role(None, setting=False)    # CPU threads for torch; None: the cores no other process is running on (engine.default_threads)
    results_dir: str = role("", setting=False, teacher=False, notebook=4)  # CSVs, manifest, figures, checkpoints/; "": default_results_dir(profile)
    progress: bool = role(True, setting=False, teacher=False)  # tqdm bars

    def __post_init__(self):
        if self.results_dir == "":
            self.results_dir = default_results_dir(self.profile)
        if isinstance(self.experiments, str):  # Config(experiments="direct") or "direct,dense": names, not letters
            self.experiments = tuple(e.strip() for e in self.experiments.split(",") if e.strip())
        elif isinstance(self.experiments, list):
            self.experiments = tuple(self.experiments)

    def replace(self, **overrides) -> "Config":
        return apply_overrides(self, overrides)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["experiments"] = list(self.experiments)
        return d

    def from_profile(self, name: str) -> bool:
        """Whether field ``name`` holds its profile's value, not one set by hand."""
        return getattr(self, name) == PROFILES.get(self.profile, {}).get(name, FIELDS[name].default)

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.results_dir) / "checkpoints"


def with_role(role_name: str, value=True, cls: type | None = None) -> tuple[str, ...]:
    """The names of ``cls``'s (default ``Config``'s) fields whose role (``role``) ``role_name`` is ``value``, in field
    order; for ``notebook``, those with a place, in that order."""
    fs = dataclasses.fields(cls or Config)
    defaults = dict(setting=True, teacher=True, s1=False, notebook=None)  # a field declared without role()
    if role_name == "notebook":
        return tuple(f.name for f in sorted((f for f in fs if f.metadata.get("notebook")), key=lambda f: f.metadata["notebook"]))
    return tuple(f.name for f in fs if f.metadata.get(role_name, defaults[role_name]) == value)


# Fields that change no number in results.csv (float rounding aside). Every other field is a *setting*: rows record a
# hash of them (``Pipeline.settings``), and a results folder keeps one set of settings a dataset.
NOT_SETTINGS = frozenset(with_role("setting", False))


def settings_fields(cfg: Config) -> dict:
    """The config fields that shape results (every ``role(setting=True)``), by name."""
    return {k: v for k, v in cfg.as_dict().items() if k in with_role("setting", cls=type(cfg))}


PROFILES: dict[str, dict] = {
    # seconds on a CPU: tiny subset, one epoch of everything. For CI and for checking a set-up. One thread: at these
    # sizes a second one gains nothing, and beside any other job two spinning threads per process were 7x slower.
    "smoke": dict(train_size=256, val_size=64, test_size=128, teacher_epochs=1, student_epochs=1,
                  finetune_epochs=1, batch_size=64, eval_batch_size=256, augment=False, student_augment=False,
                  threads=1),
    # the newcomer's main job, minutes on a 2-core CPU (README): a teacher trained well enough to be worth copying
    # (SGD one-cycle; unaugmented and batch 32, which learnt faster in 10 epochs of 2,500 images: docs/recipes.md),
    # two levels of students (S1 and the halves), the labels-only baseline beside them.
    "quick": dict(train_size=2500, val_size=500, test_size=1000, teacher_optimizer="sgd", teacher_lr=0.05,
                  teacher_epochs=10, augment=False, levels=2, student_epochs=10, finetune_epochs=5, batch_size=32,
                  student_augment=False, experiments=("direct", "single_ta", "hierarchical", "labels")),
    # the run behind the committed notebook outputs (README: "The reference run"), with the recipes the pilot chose on
    # validation (docs/recipes.md): the teacher SGD one-cycle + crop/flip for 40 epochs, the labels-only baseline (and
    # the students, who share student_epochs) Adam for 40, unaugmented. 06 runs labels only.
    "reference": dict(train_size=5000, val_size=1000, test_size=2000, teacher_optimizer="sgd", teacher_lr=0.05,
                      teacher_weight_decay=5e-4, augment=True, teacher_epochs=40, student_augment=False,
                      student_epochs=40, finetune_epochs=10, batch_size=64,
                      experiments=("direct", "single_ta", "hierarchical", "labels")),
    # the paper's schedule on the full dataset, each experiment with its own S01/S2 as in the paper.
    "paper": dict(share_students=False),
}

FIELDS = {f.name: f for f in dataclasses.fields(Config)}
BOOLS = {**dict.fromkeys(("1", "true", "yes", "on"), True), **dict.fromkeys(("0", "false", "no", "off"), False)}
KINDS = {int: (lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool), "an integer"),
         float: (lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v), "a finite number"),
         bool: (lambda v: isinstance(v, bool), "true or false"), str: (lambda v: isinstance(v, str), "a string"),
         type(None): (lambda v: v is None, "None")}


def _coerce(value, hint):
    """A string from the command line or papermill, read as the field's type; anything else is checked as given
    (``_check_types``). ``Config.__post_init__`` splits ``experiments``."""
    if not isinstance(value, str) or typing.get_origin(hint) in (Literal, tuple) or hint is str:
        return value
    base = typing.get_args(hint)[0] if typing.get_origin(hint) is types.UnionType else hint  # int | None
    if base is not hint and value.lower() == "none":
        return None
    return BOOLS.get(value.lower(), value) if base is bool else base(value)  # int("three"): ValueError


def apply_overrides(cfg: Config, overrides: dict) -> Config:
    hints = typing.get_type_hints(type(cfg))
    unknown = sorted(set(overrides) - set(hints))
    if unknown:
        named = [f"{u} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(u, hints, 1)) else u for u in unknown]
        raise ConfigError(f"unknown setting(s): {', '.join(named)}")
    values = {}
    for k, v in overrides.items():
        try:
            values[k] = _coerce(v, hints[k])
        except ValueError as e:
            raise ConfigError(f"{k}: bad value {v!r} ({e})") from None
    return dataclasses.replace(cfg, **values)


def make_config(profile: str = "quick", **overrides) -> Config:
    """The named profile with any fields overridden; types and ranges checked (``validate``: one ConfigError line).
    ``experiments.check`` (which ``Pipeline`` runs) checks the rest against each setting's owner."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    cfg = apply_overrides(Config(profile=profile), PROFILES[profile])
    cfg = apply_overrides(cfg, {k: v for k, v in overrides.items() if v is not None or k in ("train_size", "test_size")})
    validate(cfg)
    return cfg


def _kinds(name: str, hint) -> list[tuple[typing.Callable, str]]:
    """(test, words) for each alternative of a field's type: a bool is no number, a float is finite, a path not empty."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is types.UnionType:  # int | None
        return [k for a in args for k in _kinds(name, a)]
    if origin is Literal:
        return [(lambda v: v in args, " or ".join(map(repr, args)))]
    if origin is tuple:
        return [(lambda v: isinstance(v, tuple) and all(isinstance(e, str) for e in v), "a tuple of names")]
    if name.endswith("_dir"):
        return [(lambda v: isinstance(v, (str, os.PathLike)) and str(v) != "", "a path")]
    return [KINDS[hint]]


def check_seed(seed, name: str = "seed") -> None:
    """One seed: an integer in [0, SEED_LIMIT), else one ConfigError line (``validate``, ``check_seeds``)."""
    if not KINDS[int][0](seed) or not 0 <= seed < SEED_LIMIT:
        raise ConfigError(f"{name} must be an integer from 0 to {SEED_LIMIT - 1:,}, got {seed!r}")


def check_seeds(seeds, name: str = "seeds") -> list[int]:
    """A list of seeds (the runners' ``--seeds``, the notebooks' ``seeds``, the sweep's): each an integer in range
    (``check_seed``; a string of digits, as papermill or a command line passes it, is read as one), none twice, for
    a seed named twice would train twice over the same checkpoints and rows. Returns them as integers, in order."""
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (list, tuple)):
        raise ConfigError(f"{name} must be a list of integers, got {seeds!r}")
    values = [int(s) if isinstance(s, str) and s.strip().lstrip("+-").isdigit() else s for s in seeds]
    if not all(KINDS[int][0](v) for v in values):
        raise ConfigError(f"{name} must be a list of integers, got {seeds!r}")
    for v in values:
        check_seed(v)
    twice = [s for s in dict.fromkeys(values) if values.count(s) > 1]
    if twice:
        raise ConfigError(f"{name} names {' '.join(map(str, twice))} more than once; give each seed once")
    return [int(v) for v in values]


def _check_types(cfg: Config) -> None:
    """Each field holds a value of its declared type (``Config(...)`` built directly skips ``_coerce``)."""
    for name, hint in typing.get_type_hints(type(cfg)).items():
        v, kinds = getattr(cfg, name), _kinds(name, hint)
        if not any(ok(v) for ok, _ in kinds):
            raise ConfigError(f"{name} must be {' or '.join(words for _, words in kinds)}, got {v!r}")


def validate(cfg: Config) -> None:
    """What the config can check on its own (types, ranges, a writable results_dir), each failure one line."""
    _check_types(cfg)
    check_seed(cfg.seed)

    def need(ok: typing.Callable, names: tuple[str, ...], what: str) -> None:
        for name in names:
            if not ok(getattr(cfg, name)):
                raise ConfigError(f"{name} must be {what}, got {getattr(cfg, name)!r}")
    need(lambda v: v > 0, ("levels", "val_size", "teacher_epochs", "student_epochs", "batch_size", "eval_batch_size"),
         "a positive integer")
    need(lambda v: v is None or v > 0, ("train_size", "test_size", "threads"), "a positive integer or None")
    need(lambda v: v >= 0, ("finetune_epochs",), "zero or a positive integer")
    need(lambda v: v <= MAX_EPOCHS, ("teacher_epochs", "student_epochs", "finetune_epochs"), f"at most {MAX_EPOCHS:,}")
    need(lambda v: v > 0, ("teacher_lr", "student_lr", "finetune_lr", "kd_temperature"), "positive")
    need(lambda v: v >= 0, ("teacher_weight_decay", "student_weight_decay"), "zero or positive")
    need(lambda v: 0 <= v < 1, ("dense_drop",), "in [0, 1)")
    need(lambda v: 0 <= v <= 1, ("kd_alpha",), "in [0, 1]")
    probe = Path(cfg.results_dir)
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise ConfigError(f"results_dir {str(cfg.results_dir)!r} is not writable")
