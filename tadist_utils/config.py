"""Run configuration: one dataclass, three profiles, validation before any training.

Every choice the paper leaves open is a field here with a documented default; a profile is a set of
overrides; any field can be overridden again (``make_config("quick", student_epochs=5)``).
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path

from .data import MIN_PER_CLASS
from .engine import resolve_device
from .errors import ConfigError, RunError  # noqa: F401  (re-exported: config.ConfigError is public)
from .data.imagefolder import check_imagefolder
from .losses import FEATURE_LOSSES
from .methods import METHODS, PAPER_EXPERIMENTS
from .models import STUDENT_LEVELS


RESULTS_ROOT = "results/run"  # git-ignored; the default results folder of each profile is a folder under it


def default_results_dir(profile: str) -> str:
    """``results/run/<profile>``: where a run writes when no ``results_dir`` is given (Config, the notebooks,
    reproduce, experiments). One folder per profile, so a notebook opened in Jupyter on ``smoke`` does not move a
    ``quick`` run's rows aside (a results folder keeps one set of settings a dataset, ``results.py``)."""
    return f"{RESULTS_ROOT}/{profile}"


MAX_EPOCHS = 10_000  # more is a typo (or a run that would never finish), not a schedule


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
    experiments: tuple[str, ...] = role(PAPER_EXPERIMENTS, setting=False, teacher=False)  # any of direct, single_ta, hierarchical, dense, labels, kd, ta_chain
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
    # --- teacher: Adam + cosine (on 5,000 CIFAR-10 images it learnt faster than SGD one-cycle; README)
    teacher_epochs: int = role(10, notebook=7)
    teacher_optimizer: str = "adam"    # adam (Adam + cosine) | sgd (SGD Nesterov 0.9 + one-cycle; try teacher_lr=0.05)
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
    finetune_mode: str = role("head", teacher=False)   # head: output layer only, students frozen (Malik et al.) | all
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
    threads: int | None = role(None, setting=False)    # CPU threads for torch; None: the cores no other process is running on (default_threads)
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
    # the newcomer's main job, at most about 10 minutes on a 2-core CPU without native bf16 (README has the measured
    # times): a CIFAR-10 subset, students 1 epoch, 06 the labels-only baseline alone. It checks the whole pipeline on
    # real images; its ensembles are far from converged (the reference profile is where the method shows). Nothing is
    # augmented for time (each parent's features computed once), not for accuracy: no accuracy was compared.
    "quick": dict(train_size=1500, val_size=300, test_size=1000, teacher_epochs=4, augment=False, student_epochs=1,
                  finetune_epochs=3, batch_size=64, student_augment=False,
                  experiments=("direct", "single_ta", "hierarchical", "labels")),
    # the run behind the committed notebook outputs (README: "The reference run"): a CIFAR-10 subset on which a
    # 2-core CPU trains students until their feature losses flatten. Nothing is augmented, so each parent's
    # features are computed once and more student epochs cost only the students' own passes.
    # 06 trains the labels-only baseline only: dense, kd and ta_chain would add about 60% to the run.
    "reference": dict(train_size=5000, val_size=1000, test_size=2000, teacher_epochs=10, augment=False,
                      student_augment=False, student_epochs=10, finetune_epochs=10, batch_size=64,
                      experiments=("direct", "single_ta", "hierarchical", "labels")),
    # the paper's schedule on the full dataset, each experiment with its own S01/S2 as in the paper.
    "paper": dict(share_students=False),
}

DATASETS = ("auto", "cifar10", "cifar100", "imagefolder", "digits")
FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def _coerce(name: str, value):
    """Accept strings from the command line / papermill for typed fields."""
    f = FIELDS[name]
    kind = str(f.type)
    if value is None or not isinstance(value, str):
        if name == "experiments" and isinstance(value, (list, tuple)):
            return tuple(value)
        return value
    if name == "experiments":
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if kind.startswith("int"):
        return None if value.lower() == "none" else int(value)
    if kind.startswith("float"):
        return float(value)
    if kind == "bool":
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return value


def apply_overrides(cfg: Config, overrides: dict) -> Config:
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        import difflib
        hints = [f"{u} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(u, FIELDS, 1)) else u for u in unknown]
        raise ConfigError(f"unknown setting(s): {', '.join(hints)}")
    values = {}
    for k, v in overrides.items():
        try:
            values[k] = _coerce(k, v)
        except ValueError as e:
            raise ConfigError(f"{k}: bad value {v!r} ({e})") from None
    return dataclasses.replace(cfg, **values)


def make_config(profile: str = "quick", **overrides) -> Config:
    """The named profile with any fields overridden; validated (raises ConfigError with one line)."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    cfg = apply_overrides(Config(profile=profile), PROFILES[profile])
    cfg = apply_overrides(cfg, {k: v for k, v in overrides.items() if v is not None or k in ("train_size", "test_size")})
    validate(cfg)
    return cfg


def _check_types(cfg: Config) -> None:
    """Each field holds a value of its declared type (``Config(...)`` built directly skips ``_coerce``)."""
    for name, f in FIELDS.items():
        v, kind = getattr(cfg, name), str(f.type).replace(" ", "")
        if v is None and kind.endswith("|None"):
            continue
        base = kind.split("|")[0]
        if base == "int":
            ok, what = isinstance(v, numbers.Integral) and not isinstance(v, bool), "an integer"
        elif base == "float":
            ok, what = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v), "a finite number"
        elif base == "bool":
            ok, what = isinstance(v, bool), "true or false"
        elif base == "str" and name.endswith("_dir"):
            ok, what = isinstance(v, (str, os.PathLike)) and str(v) != "", "a path"
        elif base == "str":
            ok, what = isinstance(v, str), "a string"
        elif base.startswith("tuple[str"):
            ok, what = isinstance(v, tuple) and all(isinstance(e, str) for e in v), "a tuple of names"
        else:
            continue
        if not ok:
            raise ConfigError(f"{name} must be {what}{' or None' if kind.endswith('|None') else ''}, got {v!r}")


def validate(cfg: Config) -> None:
    """Everything that can be checked before training starts, each failure one line."""
    _check_types(cfg)
    for name in ("teacher_epochs", "student_epochs", "finetune_epochs"):
        if getattr(cfg, name) > MAX_EPOCHS:
            raise ConfigError(f"{name} must be at most {MAX_EPOCHS:,}, got {getattr(cfg, name)!r}")
    for name in ("teacher_epochs", "student_epochs", "batch_size", "eval_batch_size", "levels"):
        if not isinstance(getattr(cfg, name), int) or getattr(cfg, name) <= 0:
            raise ConfigError(f"{name} must be a positive integer, got {getattr(cfg, name)!r}")
    if not isinstance(cfg.finetune_epochs, int) or cfg.finetune_epochs < 0:
        raise ConfigError(f"finetune_epochs must be zero or a positive integer, got {cfg.finetune_epochs!r}")
    for name in ("train_size", "test_size", "threads"):
        v = getattr(cfg, name)
        if v is not None and (not isinstance(v, int) or v <= 0):
            raise ConfigError(f"{name} must be a positive integer or None, got {v!r}")
    if not isinstance(cfg.val_size, int) or cfg.val_size <= 0:
        raise ConfigError(f"val_size must be a positive integer, got {cfg.val_size!r}")
    for name in ("teacher_lr", "student_lr", "finetune_lr"):
        if not getattr(cfg, name) > 0:
            raise ConfigError(f"{name} must be positive, got {getattr(cfg, name)!r}")
    for name in ("teacher_weight_decay", "student_weight_decay"):
        if not getattr(cfg, name) >= 0:
            raise ConfigError(f"{name} must be zero or positive, got {getattr(cfg, name)!r}")
    bad = [e for e in cfg.experiments if e not in METHODS]
    if bad or not cfg.experiments:
        raise ConfigError(f"unknown experiment(s) {bad or '(none given)'}; choose from {', '.join(METHODS)}")
    if not 0 <= cfg.dense_drop < 1:
        raise ConfigError(f"dense_drop must be in [0, 1), got {cfg.dense_drop!r}")
    if not cfg.kd_temperature > 0 or not 0 <= cfg.kd_alpha <= 1:
        raise ConfigError(f"kd_temperature must be positive and kd_alpha in [0, 1], got {cfg.kd_temperature!r}, {cfg.kd_alpha!r}")
    if cfg.levels > max(STUDENT_LEVELS):
        raise ConfigError(f"levels={cfg.levels} needs a student architecture for every level; "
                          f"defined levels are {sorted(STUDENT_LEVELS)} (add one to models.STUDENT_LEVELS)")
    if cfg.dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {cfg.dataset!r}; choose from {', '.join(DATASETS)}")
    if cfg.dataset == "imagefolder":
        root = Path(cfg.data_dir)
        if not root.is_dir():
            raise ConfigError(f"data_dir {str(root)!r} does not exist")
        missing = [s for s in ("train", "test") if not (root / s).is_dir()]
        if missing:
            raise ConfigError(f"data_dir {str(root)!r} lacks {' and '.join(s + '/' for s in missing)} (ImageFolder layout)")
    classes = len(check_imagefolder(Path(cfg.data_dir))) if cfg.dataset == "imagefolder" else \
        100 if cfg.dataset == "cifar100" else 10
    if cfg.train_size is not None and cfg.train_size < MIN_PER_CLASS * classes:
        raise ConfigError(f"train_size={cfg.train_size} is too small: at least {MIN_PER_CLASS} training images per "
                          f"class are needed ({MIN_PER_CLASS * classes} for {classes} classes)")
    if cfg.feature_loss not in FEATURE_LOSSES:
        raise ConfigError(f"unknown feature_loss {cfg.feature_loss!r}; choose from {', '.join(FEATURE_LOSSES)}")
    if cfg.teacher_optimizer not in ("adam", "sgd"):
        raise ConfigError(f"teacher_optimizer must be 'adam' or 'sgd', got {cfg.teacher_optimizer!r}")
    if cfg.finetune_mode not in ("head", "all"):
        raise ConfigError(f"finetune_mode must be 'head' or 'all', got {cfg.finetune_mode!r}")
    if cfg.fuse_students not in ("auto", "on", "off"):
        raise ConfigError(f"fuse_students must be auto, on or off, got {cfg.fuse_students!r}")
    if cfg.precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ConfigError(f"precision must be auto, fp32, bf16 or fp16, got {cfg.precision!r}")
    resolve_device(cfg.device)  # raises ConfigError for unknown or absent devices
    _check_writable(Path(cfg.results_dir))


def default_threads() -> int:
    """Torch CPU threads when ``threads`` is None: the cores not busy with other running processes, at least 1.

    Measured on this project's 2-core CPU beside other jobs (load 3-4): the quick teacher trained at 26 img/s with
    torch's default 2 threads and at 99 img/s with 1; smoke's direct students 7.7x slower with 2. On an idle machine
    every core is used. Busy = processes running now (Linux /proc/loadavg, median of 5 looks 20 ms apart) less this
    one; the 1-minute load average would count the kernel of the notebook that just finished.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        import statistics
        import time
        running = []
        for _ in range(5):
            running.append(int(Path("/proc/loadavg").read_text().split()[3].split("/")[0]))
            time.sleep(0.02)
        busy = max(0, int(statistics.median(running)) - 1)
    except (OSError, ValueError, IndexError):
        busy = 0
    return max(1, cores - busy)


def _check_writable(path: Path) -> None:
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise ConfigError(f"results_dir {str(path)!r} is not writable")
