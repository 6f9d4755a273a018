"""A sweep's folders: checkpoints hard-linked between a first stage, its cells and the merged folder, and the
cells' results merged into one results folder per setting (``sweep.py`` runs the cells)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd

from ..storage.results import ResultsStore, write_csv_atomic, read_table, superseded_notice


def checkpoint_folder(results_dir: str, seed: int) -> Path:
    """Where a results folder keeps one seed's checkpoints (``Pipeline._path``)."""
    return Path(results_dir) / "checkpoints" / f"seed{seed}"


def snapshot(folder: Path) -> dict:
    """Each checkpoint of ``folder`` by name: (inode, mtime), which change when a stage trains or relinks it."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("*.pt")} if folder.is_dir() else {}


def link_files(src: Path, dst: Path, replace: bool = False) -> None:
    """Hard-link (copy where links fail) every checkpoint of ``src`` into ``dst``; existing ones kept unless ``replace``."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(Path(src).glob("*.pt")):
        target = dst / f.name
        if target.exists() and (not replace or target.stat().st_ino == f.stat().st_ino):
            continue
        tmp = dst / f".{f.name}.link-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        try:
            os.link(f, tmp)
        except OSError:
            shutil.copy2(f, tmp)
        os.replace(tmp, target)


def merge(root: Path, cells: list[dict]) -> list[Path]:
    """Cells' results, history, manifest and checkpoints into one folder per setting, in (seed, grid) order.

    Failed cells are left out (their own folders keep what they wrote): a partial run is not a result."""
    folders = []
    failed = [c for c in cells if c.get("status") == "failed"]
    cells = [c for c in cells if c.get("status") != "failed"]
    for name in dict.fromkeys(c["folder"] for c in cells):
        dest = root / name if name else root
        store = ResultsStore(dest)
        _drop_failed(store, [c for c in failed if c["folder"] == name], {c["seed"] for c in cells if c["folder"] == name})
        manifest, experiments = store.manifest(), {}
        for c in sorted((c for c in cells if c["folder"] == name), key=lambda c: c["seed"]):
            src = ResultsStore(c["sets"]["results_dir"])
            if not src.results_csv.exists():
                continue  # failed before writing anything
            m = src.manifest()
            moved = store.add_results(src.results().to_dict("records"))
            if moved:  # said as a run says it (Pipeline._add_results)
                print(f"[tadist] NOTICE: {superseded_notice(moved, m.get('settings') or {})}", flush=True)
            store.add_history(src.history().to_dict("records"))
            stages = {**manifest.get("stages", {}), **m.get("stages", {})}
            manifest.update({k: v for k, v in m.items() if k != "stages"}, stages=stages)
            experiments.update(dict.fromkeys(m.get("config", {}).get("experiments", [])))
            link_files(checkpoint_folder(c["sets"]["results_dir"], c["seed"]), checkpoint_folder(str(dest), c["seed"]), replace=True)
        if manifest:
            current = manifest.get("settings", {}).get("hash")
            if current:  # stages of an earlier sweep under other settings: their rows were moved to superseded/
                manifest["stages"] = {k: v for k, v in manifest.get("stages", {}).items() if v.get("settings") == current}
            # the folder's config: the last cell's (as after a run of several seeds), with every experiment merged
            manifest["config"] = {**manifest.get("config", {}), "results_dir": str(dest), "experiments": list(experiments)}
            manifest["sweep"] = str(root / "sweep.json")
            store.replace_manifest(manifest)
        folders.append(dest)
    return folders


def _drop_failed(store, failed: list[dict], merged_seeds: set) -> None:
    """Remove what an earlier sweep merged for the cells that failed now: kept, those rows would sit beside this
    sweep's under this sweep's manifest as if they were its results. A seed none of whose cells merged loses all
    its rows; otherwise only the failed cells' experiments (their names from the grid or --set; all if unknown)."""
    if not failed:
        return
    with store.lock:
        for path in (store.results_csv, store.history_csv):
            if not path.exists() or not path.stat().st_size:
                continue
            df = read_table(path)
            drop = pd.Series(False, index=df.index)
            for c in failed:
                rows = df.seed.astype(str) == str(c["seed"])
                names = c.get("values", {}).get("experiments") or c["sets"].get("experiments")
                if c["seed"] in merged_seeds and names and "experiment" in df:
                    rows &= df.experiment.isin([e.strip() for e in str(names).split(",")])
                elif c["seed"] in merged_seeds:
                    continue  # history has no experiment column: a merged cell of this seed rewrote what it shares
                drop |= rows
            if drop.any():
                write_csv_atomic(df[~drop], path)


