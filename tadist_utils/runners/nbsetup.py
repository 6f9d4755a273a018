"""The set-up every numbered notebook shares after its parameters cell: ``cfg, cfgs = nbsetup.start(globals())``.
Relative folders resolve against the checkout found from the cwd (``repo_root``), as ``python -m tadist_utils`` does."""
from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import sys
from pathlib import Path

import pandas as pd

from . import console
from ..config import FIELDS, Config, check_seeds, default_results_dir, make_config, with_role
from ..errors import ConfigError
from ..storage.results import ResultsStore, is_checkout
from .reproduce import in_checkout

DRIVE_ROOT = Path("/content/drive/MyDrive/tadist")  # Colab: where results go when use_drive is on
PACKAGE = Path(__file__).resolve().parents[1]  # the tadist_utils this process imported
RUNNER_ENV = "TADIST_RUNNER"  # set by `python -m tadist_utils`, which says the data itself


def notebook_parameters() -> tuple[str, ...]:
    """Every notebook's parameters: Config fields with a notebook place (``config.role``), use_drive, seeds, overrides."""
    beside = dict(results_dir=("use_drive",), seed=("seeds",))
    return (*(n for f in with_role("notebook") for n in (f, *beside.get(f, ()))), "overrides")


PARAMETERS = notebook_parameters()


def repo_root() -> Path:
    """The cwd or the nearest folder above it that is a checkout, else the cwd (an installed package)."""
    cwd = Path.cwd()
    return next((d for d in (cwd, *cwd.parents) if is_checkout(d)), cwd)


def where_lines(root: Path, cfg: Config) -> list[str]:
    """What a reader must know first about the folders: nothing when the checkout's own package is imported."""
    if not is_checkout(root):
        def shown(path):
            return path if os.path.isabs(path := in_checkout(path, root)) else f"./{path}"
        return [f"[tadist] not in a tadist checkout (an installed package): data in {shown(cfg.data_dir)}, results in "
                f"{shown(cfg.results_dir)}, under {root}"]
    if PACKAGE != (root / "tadist_utils").resolve():
        return [f"!!! [tadist] this notebook is in the checkout {root} but imports tadist_utils from {PACKAGE} (another "
                f"clone installed editable?): that code, this checkout's folders. Run `pip install -e .` here, or put "
                f"this checkout first on PYTHONPATH"]
    return []


def data_lines(cfg: Config, root: Path) -> tuple[str, str]:
    """(the runners' data line, the fallback notice or ""), paths relative to ``root``."""
    notice = console.data_notice(cfg)
    line = console.data_line(cfg, fallback=bool(notice))
    return line.replace(f"{root}{os.sep}", ""), notice.replace(f"{root}{os.sep}", "")


def to_terminal(lines: list[str]) -> None:
    """``lines`` also on a plain papermill run's terminal (ipykernel's copy of the stderr descriptor); not under
    `python -m tadist_utils`, which says them itself."""
    fd = getattr(sys.stderr, "_original_stdstream_copy", None)
    if lines and fd is not None and not os.environ.get(RUNNER_ENV):
        with contextlib.suppress(OSError):
            os.write(fd, "".join(f"\n{line}" for line in lines).encode() + b"\n")  # off papermill's bar's line


def repo_path(path: str | Path, drive: bool = False) -> str:
    """Absolute paths stay; relative ones sit under the repo root (or under Google Drive when ``drive``)."""
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (DRIVE_ROOT if drive else repo_root()) / p)


def results_path(path: str | Path | None, drive: bool = False, *, profile: str) -> str:
    """``repo_path`` of a notebook's ``results_dir``; None: the profile's ``config.default_results_dir``."""
    return repo_path(default_results_dir(profile) if path in (None, "") else path, drive)


def check_parameters(history, declared=PARAMETERS) -> None:
    """Fail on a papermill parameter this notebook does not declare (papermill only warns, and ``-p teacher_epoch 3``
    would train silently with the profile's ``teacher_epochs``). ``history``: IPython's ``In``."""
    def hint(name):
        if name in FIELDS:
            return f"{name} (a Config field: pass it inside overrides)"
        match = difflib.get_close_matches(name, declared, 1) or difflib.get_close_matches(name, FIELDS, 1)
        return f"{name} (did you mean {match[0]}?)" if match else name
    source = next((s for s in reversed(list(history or [])) if isinstance(s, str)  # the cell papermill injected last
                   and s.lstrip().startswith("# Parameters")), "")
    if unknown := [n for n in dict.fromkeys(re.findall(r"^(\w+) = ", source, re.M)) if n not in declared]:
        raise ConfigError(
            f"unknown notebook parameter(s): {', '.join(map(hint, unknown))}; this notebook takes "
            f"{', '.join(declared)}, and any other Config field inside overrides, e.g. -y 'overrides: {{student_lr: 0.002}}'")


def parse_overrides(overrides) -> dict:
    """The ``overrides`` parameter as a dict; a string (``papermill -p overrides '{...}'``) is read as JSON."""
    if isinstance(overrides, str):
        try:
            overrides = json.loads(overrides) if overrides.strip() else {}
        except json.JSONDecodeError as e:
            raise ConfigError(f"overrides must be a JSON object such as '{{\"student_lr\": 0.002}}', got {overrides!r} "
                              f"({e.msg})") from None
    overrides = {} if overrides is None else overrides
    if not isinstance(overrides, dict) or not all(isinstance(k, str) for k in overrides):
        raise ConfigError(f"overrides must be a mapping of Config fields to values, got {overrides!r}")
    return overrides


def per_seed(cfg: Config, seeds) -> list[Config]:
    """The config once per seed to train in this notebook: ``seeds`` if given, else ``cfg.seed`` alone."""
    if seeds is None or (isinstance(seeds, (list, tuple)) and not seeds):
        return [cfg]
    return [cfg.replace(seed=s) for s in check_seeds(seeds)]  # in range, none twice, as --seeds


def summary(cfg: Config, data: str = "") -> pd.Series:
    """The settings a reader needs to interpret a notebook's numbers; ``data``: which data ``dataset`` resolved to."""
    keys = ["profile", "dataset", "seed", "device", "precision", "teacher_epochs", "student_epochs", "finetune_epochs",
            "finetune_mode", "feature_loss", "train_size", "val_size", "test_size", "batch_size", "results_dir"]
    shown = {k: getattr(cfg, k) for k in keys}
    shown["results_dir"] = in_checkout(cfg.results_dir, repo_root())  # no machine's path in an output
    if data:
        shown["dataset"] = f"{cfg.dataset}: {data.removeprefix('data: ')}"
    return pd.Series(shown, name="value", dtype=object)


def start(namespace: dict, show: bool = True) -> tuple[Config, list[Config]]:
    """Check the parameters in ``namespace`` (the notebook's globals), mount Drive (Colab, ``use_drive``), build the
    config (profile, ``overrides``, the parameters not None), show it; (the first config, one per seed to train)."""
    check_parameters(namespace.get("In"))
    if missing := [name for name in PARAMETERS if name not in namespace]:
        raise ConfigError(f"the parameters cell does not set {', '.join(missing)}; every notebook's "
                          f"parameters cell declares {', '.join(PARAMETERS)}")
    p = {name: namespace[name] for name in PARAMETERS}
    if drive := "google.colab" in sys.modules and bool(p["use_drive"]):  # results (and checkpoints) on Google Drive
        from google.colab import drive as google_drive
        google_drive.mount("/content/drive")
    named = {k: v for k, v in p.items() if k in with_role("notebook") and k != "profile" and v is not None}
    named.update(data_dir=repo_path(p["data_dir"]),
                 results_dir=results_path(p["results_dir"], drive=drive, profile=p["profile"]))
    cfg = make_config(p["profile"], **{**parse_overrides(p["overrides"]), **named})
    cfgs = per_seed(cfg, p["seeds"])
    if show:  # first the folders and the data, in the notebook and in a plain papermill run's terminal
        root = repo_root()
        line, notice = data_lines(cfg, root)
        if first := [*where_lines(root, cfg), *([f"!!! DATA: {notice}"] if notice else [])]:
            print("\n".join(first), flush=True)
        to_terminal([*first, line])  # the data line is in the table below
        from IPython.display import display  # a table in Jupyter, printed elsewhere
        with pd.option_context("display.max_colwidth", None):  # the data line whole
            display(summary(cfgs[0], line).to_frame())
    return cfgs[0], cfgs


def load(cfg: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results, history) of ``cfg.results_dir`` for the dataset last trained on and, where rows of several settings
    were put together by hand, the manifest's settings (with a NOTICE)."""
    store = ResultsStore(cfg.results_dir)
    results, history, manifest = store.results(), store.history(), store.manifest()
    if (name := manifest.get("dataset", {}).get("name")) is not None:
        results, history = results[results.dataset == name], history[history.dataset == name]

    def tags(df):  # rows of a version that recorded no settings: "unrecorded"
        return df.settings.fillna("unrecorded").astype(str) if "settings" in df else pd.Series("unrecorded", df.index)
    if len(kinds := set(tags(results))) > 1:
        mine = str((manifest.get("settings") or {}).get("hash"))
        shown = f"showing only the manifest's ({mine})" if mine in kinds else "showing them all, mixed"
        print(f"[tadist] NOTICE: {store.results_csv} holds rows of {len(kinds)} settings for one dataset; {shown}")
        if mine in kinds:
            results, history = results[tags(results) == mine], history[tags(history) == mine]
    return results.reset_index(drop=True), history.reset_index(drop=True)
