"""Tidy results on disk: what every notebook reads and writes, and the paper's tables beside ours.

``<results_dir>/results.csv``  one row per (dataset, experiment, model, seed, metric)
``<results_dir>/history.csv``  one row per (dataset, model key, seed, epoch, metric): the curves
``<results_dir>/manifest.json`` config, dataset, library versions, git commit, device, wall times
``<results_dir>/summary.csv``  n, mean, sd, 95% t-interval, min and max of the test accuracy per (dataset,
                               experiment, model) over seeds (``summary.summary_table``), rewritten with results.csv
Writes are atomic and keyed upserts, so re-running a stage replaces its rows instead of adding more. Each
read-modify-write holds ``<results_dir>/.results.lock`` (a ``filelock`` file lock), so processes writing one
folder at once (several seeds, notebooks run side by side) lose no rows and no manifest stages.

One folder, one set of settings a dataset: every row carries ``settings``, a hash of what made it (the config
fields that shape a number, the data's fingerprint, the precision; ``Pipeline.settings``). Rows written under new
settings move the dataset's rows of any other settings (or of an older version that recorded none) to
``<results_dir>/superseded/`` with the manifest they belonged to, so a table never mixes runs made differently
and nothing is deleted.
"""
from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
from pathlib import Path

import pandas as pd
from filelock import FileLock

from .atomic import write_atomic
from ..errors import ConfigError
from .summary import summary_table

RESULT_KEYS = ["dataset", "experiment", "model", "seed", "metric"]
HISTORY_KEYS = ["dataset", "key", "model", "seed", "epoch", "metric"]

# The paper's CIFAR-10 numbers (one run each), with every digit it prints:
# stored once, unrounded, and formatted only where shown, so one number never reads 85.60 in one table and
# 85.61 in another. Teacher and S1 are one model shared by its experiments; where the paper prints them with
# different precision in different tables (82.889 / 82.8889 / 82.88888889) the longest is kept. Accuracies are
# multiples of 1/81 % (a test set of 8,100 images?).
PAPER_ACCURACY = {
    "hierarchical": {"teacher": 82.88888889, 1: 85.60493827, 2: 85.5555556, 4: 84.09876543, 8: 83.08641975},
    "direct": {"teacher": 82.88888889, 1: 85.60493827, 2: 86.56790123, 4: 85.12345679, 8: 84.92592593},
    "single_ta": {"teacher": 82.88888889, 1: 85.60493827, 2: 85.32098765, 4: 83.71604938, 8: 83.9382716},
}
# Final training loss (feature MSE) per student; the hierarchical SS row is not legible in the source.
PAPER_LOSS = {
    "hierarchical": dict(S1=0.079894418, S01=0.023744282, S2=0.042217705, S11=0.030895538, S22=0.043216041,
                         S33=0.043713677, S44=0.044545129),
    "direct": dict(S1=0.079894418, S01=0.025378459, S2=0.04553935, S11=0.02932269, S22=0.045931648, S33=0.047523758,
                   S44=0.050684244, SS11=0.09173475, SS22=0.110174057, SS33=0.119646394, SS44=0.116199981,
                   SS55=0.134839853, SS66=0.129923464, SS77=0.137830899, SS88=0.145678369),
    "single_ta": dict(S1=0.079894418, S01=0.0686612, S2=0.128356292, S11=0.082879596, S22=0.118804942, S33=0.1174384,
                      S44=0.125142182, SS11=0.032402387, SS22=0.046275529, SS33=0.043223184, SS44=0.058200278,
                      SS55=0.06028414, SS66=0.050087708, SS77=0.062227251, SS88=0.0523487),
}
PAPER_FEATURE_LOSS = "mse"  # the loss behind PAPER_LOSS: a table of another loss is not comparable with it


def read_table(path: Path) -> pd.DataFrame:
    """results.csv or history.csv as written: ``settings`` as text, for a hash of 12 hex digits can read as a
    number ('012345678901' -> 12345678901, '123e45678901' -> inf) and would then never equal its run's hash."""
    return pd.read_csv(path, dtype={"settings": str})


def check_files(results_dir: str | Path) -> None:
    """The results files of ``results_dir`` (and of its ``superseded/``) read as this package writes them, or one
    ConfigError naming the file: checked before anything trains, for a hand-damaged file would otherwise stop the
    run with a pandas traceback after training, at the first write. Nothing is created or changed."""
    for folder in (Path(results_dir), Path(results_dir) / SUPERSEDED):
        for name, keys in (("results.csv", RESULT_KEYS), ("history.csv", HISTORY_KEYS)):
            path = folder / name
            if not path.is_file() or not path.stat().st_size:
                continue
            try:
                missing = [k for k in [*keys, "value"] if k not in read_table(path).columns]
            except (OSError, ValueError) as e:  # pandas' ParserError and EmptyDataError, UnicodeDecodeError
                first = (str(e).strip().splitlines() or [""])[0]
                raise ConfigError(f"{path} cannot be read ({type(e).__name__}: {first}); repair it or move it "
                                  "out of the results folder") from None
            if missing:
                raise ConfigError(f"{path} lacks the column(s) {', '.join(missing)}; repair it or move it out of the "
                                  "results folder")
            _check_rows(path, keys)
    manifest = Path(results_dir) / "manifest.json"
    if manifest.is_file():
        try:
            json.loads(manifest.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"{manifest} cannot be read ({type(e).__name__}: {e}); repair it or move it out of "
                              "the results folder") from None


INTEGER_COLUMNS, NUMBER_COLUMNS = ("seed", "epoch"), ("value",)


def _check_rows(path: Path, keys: list[str]) -> None:
    """Every row of a results or history CSV as this package writes it, or one ConfigError naming the file and line:
    as many fields as the header, a value in every key column, an integer seed (and epoch), a number (or nothing)
    as value, a known experiment. pandas reads a short row with empty cells, and the next write then moved it to
    superseded/ as made under other settings and rewrote every seed as 0.0; a value ``abc`` was overwritten."""
    import csv

    from ..methods import METHODS  # the experiments a row can name: every method, and the teacher they share
    experiments = {*METHODS, "teacher"}
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        header = next(rows, [])
        for row in rows:
            if not row:
                continue  # a blank line: pandas skips it too
            cells = dict(zip(header, row))
            if len(row) != len(header):
                problem = f"{len(row)} field(s) where the header has {len(header)}"
            elif empty := [k for k in keys if not cells[k].strip()]:
                problem = f"no {', '.join(empty)}"
            elif bad := [k for k in INTEGER_COLUMNS if k in cells and not cells[k].strip().lstrip("+-").isdigit()]:
                problem = f"{bad[0]} {cells[bad[0]]!r} is not an integer"
            elif bad := [k for k in NUMBER_COLUMNS if k in cells and cells[k].strip() and not _number(cells[k])]:
                problem = f"{bad[0]} {cells[bad[0]]!r} is not a number"
            elif "experiment" in cells and cells["experiment"] not in experiments:
                problem = f"unknown experiment {cells['experiment']!r} (known: {', '.join(sorted(experiments))})"
            else:
                continue
            raise ConfigError(f"{path}, line {rows.line_num}: {problem}; repair or remove that row (nothing was "
                              "changed)")


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def write_csv_atomic(df: pd.DataFrame, path: Path) -> None:
    write_atomic(lambda tmp: df.to_csv(tmp, index=False), path)


SUPERSEDED = "superseded"  # <results_dir>/superseded/: rows and manifests of earlier settings, moved, not deleted


def _upsert(path: Path, rows: list[dict], keys: list[str], before_move=None) -> pd.DataFrame:
    """Rows into ``path`` by key; the rows' datasets' rows of other settings go to ``superseded/`` first
    (``before_move()`` is called just before, if any do).

    Returns the rows moved aside (empty when none)."""
    new = pd.DataFrame(rows)
    stale = new.iloc[:0]
    if path.exists() and path.stat().st_size:
        old = read_table(path)
        if "settings" in new:
            mine = old.dataset.astype(str).isin(new.dataset.astype(str))
            settings = old["settings"] if "settings" in old else pd.Series(float("nan"), index=old.index)
            stale = old[mine & ~settings.astype(str).isin(new.settings.astype(str))]
            if len(stale):  # written to superseded/ before it leaves path: a crash between leaves a copy, not a loss
                if before_move:
                    before_move()
                aside = path.parent / SUPERSEDED / path.name
                kept = read_table(aside) if aside.exists() and aside.stat().st_size else None
                aside.parent.mkdir(exist_ok=True)
                # a move cut short by a crash is made again; the rows it had copied already are not copied twice
                both = pd.concat([kept, stale], ignore_index=True).drop_duplicates() if kept is not None else stale
                write_csv_atomic(both, aside)
                old = old.drop(stale.index)
        merged = pd.concat([old, new], ignore_index=True)
        merged[keys] = merged[keys].astype(str)
        merged = merged.drop_duplicates(subset=keys, keep="last")
    else:
        merged = new
    path.parent.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(merged, path)
    return stale


class ResultsStore:
    def __init__(self, results_dir: str | Path):
        self.dir = Path(results_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.lock = FileLock(self.dir / ".results.lock")  # one writer at a time, across processes
        self.results_csv, self.history_csv = self.dir / "results.csv", self.dir / "history.csv"
        self.manifest_json, self.summary_csv = self.dir / "manifest.json", self.dir / "summary.csv"

    def write_summary(self) -> pd.DataFrame:
        """Rewrite ``summary.csv`` from ``results.csv`` (``summary.summary_table``) and return it; ``add_results``
        calls it, so a folder's summary always describes its results."""
        with self.lock:
            table = summary_table(read_table(self.results_csv)) if self.results_csv.exists() else summary_table(
                pd.DataFrame(columns=RESULT_KEYS + ["value"]))
            write_csv_atomic(table, self.summary_csv)
        return table

    def add_results(self, rows: list[dict]) -> dict | None:
        """Upsert rows; if that moved rows of other settings aside (module docstring), what moved, else None.

        The manifest those rows belonged to is copied beside them and loses its stages of other settings."""
        if not rows:
            return None
        with self.lock:  # the manifest is copied aside before the rows leave results.csv (a crash loses neither)
            stale = _upsert(self.results_csv, rows, RESULT_KEYS, before_move=self._manifest_aside)
            self.write_summary()  # the lock is reentrant (filelock, same thread)
            if not len(stale):
                return None
            old = self.manifest()
            previous = old.get("settings") or {}
            if old:
                current = {str(r.get("settings")) for r in rows}
                old["stages"] = {k: v for k, v in old.get("stages", {}).items() if str(v.get("settings")) in current}
                self._write_manifest(old)
        return dict(rows=len(stale), datasets=sorted(set(stale.dataset.astype(str))),
                    settings=sorted(set(stale["settings"].fillna("unrecorded").astype(str))) if "settings" in stale else ["unrecorded"],
                    previous=previous, folder=str(self.dir / SUPERSEDED))

    def _manifest_aside(self) -> None:
        """Copy the manifest to superseded/manifest-<its settings hash>.json (.2, .3, ... if that name is taken)."""
        m = self.manifest()
        if m:
            stem = self.dir / SUPERSEDED / f"manifest-{(m.get('settings') or {}).get('hash') or 'unrecorded'}"
            n = 1
            while (target := stem.with_name(stem.name + (f".{n}" if n > 1 else "") + ".json")).exists():
                n += 1
            text = json.dumps(m, indent=2, default=str)
            target.parent.mkdir(exist_ok=True)
            write_atomic(lambda tmp: tmp.write_text(text), target)

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

    def update_manifest(self, stage: str, cfg, data_info: dict, device: str, seconds: float, extra: dict | None = None,
                        settings: dict | None = None) -> dict:
        """Record which config, data, versions and machine produced this directory, stage by stage.

        ``settings``: ``Pipeline.settings()``, what the rows' ``settings`` hash stands for; each stage names it."""
        env = environment(device)  # outside the lock: it runs git
        config, data_info = portable(cfg.as_dict(), self.dir), portable(data_info, self.dir)
        with self.lock:
            m = json.loads(self.manifest_json.read_text()) if self.manifest_json.exists() else {}
            m.update(config=config, dataset=data_info, environment=env)
            tag = {}
            if settings:
                m["settings"] = settings
                tag = dict(settings=settings["hash"])
            m.setdefault("stages", {})[stage] = dict(seconds=round(seconds, 2), finished=_now(), **tag, **(extra or {}))
            self._write_manifest(m)
        return m

    def replace_manifest(self, m: dict) -> None:
        """Write a whole manifest (a merge of several runs' manifests: ``sweep.merge``)."""
        with self.lock:
            self._write_manifest(m)

    def _write_manifest(self, m: dict) -> None:  # the caller holds the lock
        text = json.dumps(m, indent=2, default=str)
        write_atomic(lambda tmp: tmp.write_text(text), self.manifest_json)

    def manifest(self) -> dict:
        return json.loads(self.manifest_json.read_text()) if self.manifest_json.exists() else {}


def is_checkout(folder: Path) -> bool:
    """A tadist checkout: the folder holding notebooks/ and tadist_utils/ (what manifests and notebooks resolve against)."""
    return (folder / "notebooks").is_dir() and (folder / "tadist_utils").is_dir()


def portable(record: dict, results_dir: Path) -> dict:
    """``record`` with the absolute path of the checkout holding ``results_dir`` cut from its strings, so a committed
    manifest names ``data/cifar10-jpeg``, not one machine's folders. Outside a checkout, paths stay absolute."""
    here = Path(results_dir).absolute()
    root = next((p for p in (here, *here.parents) if is_checkout(p)), None)
    if root is None:
        return record
    prefix = f"{root}/"
    return {k: (v.replace(prefix, "") if v != str(root) else ".") if isinstance(v, str) else v for k, v in record.items()}


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
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True,
                               text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
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


# ------------------------------------------------------------------------- the paper's tables
def _select(df: pd.DataFrame, metric: str, seed: int | None, dataset: str | None) -> pd.DataFrame:
    d = df[df.metric == metric]
    if dataset is not None:
        d = d[d.dataset == dataset]
    return d if seed is None else d[d.seed == seed]


def accuracy_table(df: pd.DataFrame, seed: int | None = None, metric: str = "test_accuracy",
                   dataset: str | None = None) -> pd.DataFrame:
    """Rows: experiment; columns: Teacher, 1, 2, 4, 8 students; ours (mean over seeds) beside the paper's."""
    d = _select(df, metric, seed, dataset)
    teacher = d[d.model == "teacher"].value.mean()
    rows = []
    for exp in [e for e in PAPER_ACCURACY if e in set(d.experiment)]:
        row = {"experiment": exp, "teacher": teacher}
        for n in (1, 2, 4, 8):
            v = d[(d.experiment == exp) & (d.model == f"ensemble_{n}")].value
            row[students_label(n)] = v.mean() if len(v) else float("nan")
        rows.append(row)
        rows.append({"experiment": f"{exp} (paper)", "teacher": PAPER_ACCURACY[exp]["teacher"],
                     **{students_label(n): PAPER_ACCURACY[exp][n] for n in (1, 2, 4, 8)}})
    columns = ["experiment", "teacher"] + [students_label(n) for n in (1, 2, 4, 8)]  # no experiment yet: no rows
    return pd.DataFrame(rows, columns=columns).set_index("experiment").round(2)


def students_label(n: int) -> str:
    """'1 student', '2 students': every table's column header."""
    return f"{n} student{'s' * (n != 1)}"


def loss_table(df: pd.DataFrame, seed: int | None = None, metric: str = "final_train_loss",
               dataset: str | None = None, feature_loss: str = PAPER_FEATURE_LOSS) -> pd.DataFrame:
    """Final feature loss per student (S1, S01, ..., SS88), ours beside the paper's.

    ``feature_loss``: the loss our students were trained and measured with (``Config.feature_loss``, in the
    manifest). The first column, ``loss``, names the loss of each row: the paper's are MSE, so with another loss
    ("cosine" beside "mse") the two are visibly not one column of like numbers."""
    d = _select(df, metric, seed, dataset)
    order = ["S1", "S01", "S2", "S11", "S22", "S33", "S44"] + [f"SS{i}{i}" for i in range(1, 9)]
    rows = []
    for exp in [e for e in PAPER_LOSS if e in set(d.experiment)]:
        ours = d[d.experiment == exp].groupby("model").value.mean()
        rows.append({"experiment": exp, "loss": feature_loss, **{m: ours.get(m, float("nan")) for m in order}})
        rows.append({"experiment": f"{exp} (paper)", "loss": PAPER_FEATURE_LOSS,
                     **{m: PAPER_LOSS[exp].get(m, float("nan")) for m in order}})
    return pd.DataFrame(rows, columns=["experiment", "loss"] + order).set_index("experiment").round(4)
