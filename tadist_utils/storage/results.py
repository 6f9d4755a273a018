"""Tidy results on disk: ``results.csv`` (dataset, experiment, model, seed, metric), ``history.csv`` (per epoch),
``summary.csv`` (``analysis.stats.summarise``) and ``manifest.json`` (config, data, versions, machine, stages).
Writes are atomic keyed upserts under one file lock: processes writing one folder at once lose nothing.

Every row carries ``settings``, the hash of what made it (``Pipeline.settings``). Rows written under new settings
move their dataset's rows of other settings, with their manifest, to ``superseded/``: a table never mixes runs made
differently, and nothing is deleted.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import platform
import subprocess
from pathlib import Path

import pandas as pd
from filelock import FileLock

from .checkpoint import write_atomic
from ..errors import ConfigError

RESULT_KEYS = ["dataset", "experiment", "model", "seed", "metric"]
HISTORY_KEYS = ["dataset", "key", "model", "seed", "epoch", "metric"]
SUPERSEDED = "superseded"  # <results_dir>/superseded/: rows and manifests of earlier settings, moved, not deleted


def read_table(path: Path) -> pd.DataFrame:
    """results.csv or history.csv as written: ``settings`` as text, for a hash of 12 hex digits can read as a
    number ('012345678901' -> 12345678901, '123e45678901' -> inf) and would then never equal its run's hash."""
    return pd.read_csv(path, dtype={"settings": str})


def _unreadable(path: Path, why: str) -> ConfigError:
    return ConfigError(f"{path} {why}; repair it or move it out of the results folder")


def check_files(results_dir: str | Path) -> None:
    """The results files of ``results_dir`` and its ``superseded/`` read as this package writes them, or one
    ConfigError naming the file (and line): checked before anything trains, since a hand-damaged file otherwise
    stopped the run with a traceback at the first write after training. Nothing is changed."""
    for folder in (Path(results_dir), Path(results_dir) / SUPERSEDED):
        for path, keys in ((folder / "results.csv", RESULT_KEYS), (folder / "history.csv", HISTORY_KEYS)):
            if not path.is_file() or not path.stat().st_size:
                continue
            try:
                missing = [k for k in [*keys, "value"] if k not in read_table(path).columns]
            except (OSError, ValueError) as e:  # pandas' ParserError and EmptyDataError, UnicodeDecodeError
                raise _unreadable(path, f"cannot be read ({type(e).__name__}: "
                                        f"{(str(e).strip().splitlines() or [''])[0]})") from None
            if missing:
                raise _unreadable(path, f"lacks the column(s) {', '.join(missing)}")
            _check_rows(path, keys)
    manifest = Path(results_dir) / "manifest.json"
    if manifest.is_file():
        try:
            json.loads(manifest.read_text())
        except (OSError, ValueError) as e:
            raise _unreadable(manifest, f"cannot be read ({type(e).__name__}: {e})") from None


def _number(text: str) -> bool:
    try:
        return float(text) is not None
    except ValueError:
        return False


def _check_rows(path: Path, keys: list[str]) -> None:
    """Each row as written, or a ConfigError naming its line: as many fields as the header, every key, an integer
    seed and epoch, a number (or nothing) as value, a known experiment. Read with csv, for pandas fills a short row
    with empty cells (the next write then moved it aside, every seed rewritten as 0.0) and loses line numbers."""
    from ..plans import METHODS
    known = {*METHODS, "teacher"}
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        header = next(rows, [])
        for row in filter(None, rows):  # a blank line: pandas skips it too
            c = dict(zip(header, row))
            bad = [k for k in ("seed", "epoch") if k in c and not c[k].strip().lstrip("+-").isdigit()]
            problem = (f"{len(row)} field(s) where the header has {len(header)}" if len(row) != len(header)
                       else f"no {', '.join(empty)}" if (empty := [k for k in keys if not c[k].strip()])
                       else f"{bad[0]} {c[bad[0]]!r} is not an integer" if bad
                       else f"value {c['value']!r} is not a number" if c.get("value", "").strip()
                       and not _number(c["value"])
                       else f"unknown experiment {c['experiment']!r} (known: {', '.join(sorted(known))})"
                       if c.get("experiment", "teacher") not in known else None)
            if problem:
                raise ConfigError(f"{path}, line {rows.line_num}: {problem}; repair or remove that row (nothing was "
                                  "changed)")


def write_csv_atomic(df: pd.DataFrame, path: Path) -> None:
    write_atomic(lambda tmp: df.to_csv(tmp, index=False), path)


def write_json(record: dict, path: Path) -> None:
    text = json.dumps(record, indent=2, default=str)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(lambda tmp: tmp.write_text(text), path)


def _upsert(path: Path, rows: list[dict], keys: list[str], before_move=None) -> pd.DataFrame:
    """Rows into ``path`` by key, after moving their datasets' rows of other settings to ``superseded/``
    (``before_move()`` first, if any move); returns the rows moved (empty when none)."""
    new = pd.DataFrame(rows)
    stale = new.iloc[:0]
    merged = new
    if path.exists() and path.stat().st_size:
        old = read_table(path)
        if "settings" in new:
            settings = old["settings"] if "settings" in old else pd.Series(float("nan"), index=old.index)
            stale = old[old.dataset.astype(str).isin(new.dataset.astype(str))
                        & ~settings.astype(str).isin(new.settings.astype(str))]
            if len(stale):  # copied aside before it leaves path: a crash between leaves a copy, not a loss
                if before_move:
                    before_move()
                aside = path.parent / SUPERSEDED / path.name
                aside.parent.mkdir(exist_ok=True)
                # a move cut short by a crash is made again; the rows it had copied already are not copied twice
                kept = read_table(aside) if aside.exists() and aside.stat().st_size else None
                write_csv_atomic(stale if kept is None else pd.concat([kept, stale], ignore_index=True)
                                 .drop_duplicates(), aside)
                old = old.drop(stale.index)
        merged = pd.concat([old, new], ignore_index=True)
        merged[keys] = merged[keys].astype(str)
        merged = merged.drop_duplicates(subset=keys, keep="last")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(merged, path)
    return stale


class ResultsStore:
    def __init__(self, results_dir: str | Path):
        self.dir = Path(results_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.lock = FileLock(self.dir / ".results.lock")  # one writer at a time, across processes; reentrant
        self.results_csv, self.history_csv = self.dir / "results.csv", self.dir / "history.csv"
        self.manifest_json, self.summary_csv = self.dir / "manifest.json", self.dir / "summary.csv"

    def write_summary(self) -> pd.DataFrame:
        """Rewrite ``summary.csv`` from ``results.csv`` and return it (``add_results`` calls it)."""
        from ..analysis.stats import summarise
        with self.lock:
            results = read_table(self.results_csv) if self.results_csv.exists() else \
                pd.DataFrame(columns=RESULT_KEYS + ["value"])
            table = summarise(results, dataset="*")
            write_csv_atomic(table, self.summary_csv)
        return table

    def add_results(self, rows: list[dict]) -> dict | None:
        """Upsert rows; what moved aside if that moved rows of other settings (module docstring), else None. The
        manifest those rows belonged to is copied beside them first, then loses its stages of other settings."""
        if not rows:
            return None
        with self.lock:
            stale = _upsert(self.results_csv, rows, RESULT_KEYS, before_move=self._manifest_aside)
            self.write_summary()
            if not len(stale):
                return None
            old = self.manifest()
            previous = old.get("settings") or {}
            if old:
                current = {str(r.get("settings")) for r in rows}
                old["stages"] = {k: v for k, v in old.get("stages", {}).items() if str(v.get("settings")) in current}
                write_json(old, self.manifest_json)
        settings = stale["settings"].fillna("unrecorded").astype(str) if "settings" in stale else ["unrecorded"]
        return dict(rows=len(stale), datasets=sorted(set(stale.dataset.astype(str))), settings=sorted(set(settings)),
                    previous=previous, folder=str(self.dir / SUPERSEDED))

    def _manifest_aside(self) -> None:
        """Copy the manifest to superseded/manifest-<its settings hash>.json (.2, .3, ... if that name is taken)."""
        if m := self.manifest():
            stem = f"manifest-{(m.get('settings') or {}).get('hash') or 'unrecorded'}"
            n = 1
            while (target := self.dir / SUPERSEDED / f"{stem}{f'.{n}' if n > 1 else ''}.json").exists():
                n += 1
            write_json(m, target)

    def add_history(self, rows: list[dict]) -> None:
        if rows:
            with self.lock:
                _upsert(self.history_csv, rows, HISTORY_KEYS)

    def results(self) -> pd.DataFrame:
        if not self.results_csv.exists():
            raise FileNotFoundError(f"{self.results_csv} does not exist yet: run the training notebooks (or "
                                    "`python -m tadist_utils`) first")
        return read_table(self.results_csv)

    def history(self) -> pd.DataFrame:
        return read_table(self.history_csv) if self.history_csv.exists() else pd.DataFrame(columns=HISTORY_KEYS + ["value"])

    def update_manifest(self, stage: str, config: dict, data_info: dict, device: str, seconds: float,
                        extra: dict | None = None, settings: dict | None = None) -> dict:
        """Record the config, data, versions and machine that made this folder, and the stage (``settings``:
        ``Pipeline.settings()``, what the rows' hash stands for; each stage names it)."""
        env = environment(device)  # outside the lock: it runs git
        config, data_info = portable(config, self.dir), portable(data_info, self.dir)
        with self.lock:
            m = self.manifest()
            m.update(config=config, dataset=data_info, environment=env, **({"settings": settings} if settings else {}))
            tag = dict(settings=settings["hash"]) if settings else {}
            m.setdefault("stages", {})[stage] = dict(seconds=round(seconds, 2), finished=_now(), **tag, **(extra or {}))
            write_json(m, self.manifest_json)
        return m

    def replace_manifest(self, m: dict) -> None:
        """Write a whole manifest (a merge of several runs' manifests: ``sweep.merge``)."""
        with self.lock:
            write_json(m, self.manifest_json)

    def manifest(self) -> dict:
        return json.loads(self.manifest_json.read_text()) if self.manifest_json.exists() else {}


def is_checkout(folder: Path) -> bool:
    """A tadist checkout: the folder holding notebooks/ and tadist_utils/ (what manifests and notebooks resolve against)."""
    return (folder / "notebooks").is_dir() and (folder / "tadist_utils").is_dir()


def portable(record: dict, results_dir: Path) -> dict:
    """``record`` with the absolute path of the checkout holding ``results_dir`` cut from its strings (a committed
    manifest names ``data/cifar10-jpeg``, not one machine's folders); outside a checkout, paths stay absolute."""
    here = Path(results_dir).absolute()
    root = next((p for p in (here, *here.parents) if is_checkout(p)), None)
    if root is None:
        return record
    return {k: (v.replace(f"{root}/", "") if v != str(root) else ".") if isinstance(v, str) else v
            for k, v in record.items()}


def superseded_notice(moved: dict, settings: dict) -> str:
    """One line: which rows ``add_results`` moved aside, and which settings changed (from the old manifest, when
    the rows were made under its settings: another process, or another dataset, may have written it since)."""
    recorded = [s for s in moved["settings"] if s != "unrecorded"]
    before = moved.get("previous") or {}
    changed = [f"{k} {before.get(k)!r} -> {v!r}" for k, v in settings.items()
               if k != "hash" and before.get("hash") in recorded and before.get(k) != v]
    why = ("settings changed: " + ", ".join(changed)) if changed else \
        "they were made under other settings" if recorded else "they were made by a version that did not record its settings"
    return (f"{moved['rows']} result row(s) for {', '.join(moved['datasets'])} in this results_dir were moved to "
            f"{moved['folder']}/ ({why}); tables show only this run's settings")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def git_commit() -> str:
    """The checkout's short commit, ``-dirty`` with uncommitted changes to tracked files; "unknown" without git."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5,
                              check=True).stdout.strip()
    try:
        return git("rev-parse", "--short", "HEAD") + "-dirty" * bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(device: str) -> dict:
    import torch
    import torchvision
    from .. import __version__
    return dict(tadist=__version__, git_commit=git_commit(), python=platform.python_version(), torch=torch.__version__,
                torchvision=torchvision.__version__, platform=platform.platform(), device=device,
                cpu_threads=torch.get_num_threads(),
                deterministic_algorithms=torch.are_deterministic_algorithms_enabled(),
                cudnn_deterministic=torch.backends.cudnn.deterministic)
