"""Sweeps on Ray Tune: seeds x ``--grid`` values, each cell a trial running a headless run in ``<root>/cells/<cell>/``,
its teacher (and S1) linked from a shared first stage in ``stages/``, retried (``FailureConfig``) from its checkpoints,
merged into ``<root>`` or one ``<key>=<value>/`` folder per setting; ``sweep.json`` lists every cell."""
from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path

import pandas as pd

from ..config import PROFILES, Config, check_seeds, make_config, with_role
from ..errors import ConfigError
from ..experiments import spec_hash
from ..plans import EXPERIMENTS, METHODS
from ..storage.results import ResultsStore, read_table, superseded_notice, write_csv_atomic, write_json

DEFAULT_ROOT = "results/sweep"
INSTALL = "the sweep needs Ray: pip install 'tadist[ray]' (or pip install \"ray[tune]>=2.44\")"
SAME_FOLDER = ("experiments",)  # grid keys whose cells merge into one folder: the experiment is a results column
HEADER = "--- attempt of sweep {} started"  # each attempt writes it to its folder's log.txt: they count the attempts


def parse_grid(pairs: list[str]) -> dict[str, list[str]]:
    """``["student_lr=1e-3,3e-3", ...]`` -> ``{"student_lr": ["1e-3", "3e-3"]}`` (each key once, values in order)."""
    grid: dict[str, list[str]] = {}
    for pair in pairs:
        key, sep, values = (s.strip() for s in pair.partition("="))
        if not (sep and key and (vals := [v.strip() for v in values.split(",") if v.strip()])):
            raise ConfigError(f"--grid expects key=value1,value2, got {pair!r}")
        if key in ("profile", "seed", "results_dir") or key in grid:
            raise ConfigError(f"--grid {key} given twice" if key in grid else f"--grid {key}=... is not a grid key "
                              f"(use --{'seeds' if key == 'seed' else key.replace('_', '-')})")
        grid[key] = list(dict.fromkeys(vals))
    return grid


def plan(profile: str, seeds: list[int], sets: dict, grid: dict, root: Path, cpus: float = 1) -> tuple[list, list]:
    """Every cell and first stage, each config validated now (a bad one: ConfigError, before Ray starts)."""
    seeds, safe = check_seeds(seeds), lambda text: re.sub(r"[^\w.=+-]", "_", text)
    if clash := sorted(set(sets) & set(grid)):
        raise ConfigError(f"{', '.join(clash)} given both in --set and --grid")
    base = {"progress": "false", **sets}  # each cell logs to its log.txt
    if "threads" not in sets and PROFILES.get(profile, {}).get("threads") is None:  # not every core for every cell
        base["threads"] = str(max(1, int(cpus)))
    cells, teachers = [], {}
    for seed, combo in itertools.product(seeds, itertools.product(*grid.values())):
        values = dict(zip(grid, combo))
        cid = safe("-".join([f"seed{seed}"] + [f"{k}={v}" for k, v in values.items()]))
        if twin := next((c for c in cells if c["id"] == cid), None):  # their results would overwrite each other
            raise ConfigError(f"--grid values {twin['values']} and {values} give the same cell folder {cid!r}; write "
                              f"them differently (characters other than letters, digits and . = + - become _)")
        cell_sets = {**base, **values, "results_dir": str(root / "cells" / cid)}
        cfg = make_config(profile, seed=seed, **cell_sets)
        conf, roles = cfg.as_dict(), {r: with_role(r, cls=type(cfg)) for r in ("teacher", "s1")}
        teacher = spec_hash({k: v for k, v in conf.items() if k in roles["teacher"]})[:8]
        s1 = spec_hash({"teacher": teacher, **{k: conf[k] for k in roles["s1"]}})[:8] \
            if any(e in EXPERIMENTS for e in cfg.experiments) else None
        cells.append(dict(id=cid, seed=seed, values=values, sets=cell_sets, teacher=teacher, s1=s1, stage=None,
                          folder=safe("-".join(f"{k}={v}" for k, v in values.items() if k not in SAME_FOLDER))))
        teachers.setdefault(teacher, []).append(cells[-1])
    stages = []
    for teacher, members in ((t, m) for t, m in teachers.items() if len(m) > 1):  # one cell trains its own teacher
        s1s = [c["s1"] for c in members if c["s1"]]
        shared_s1 = len(s1s) >= 2 and len(set(s1s)) == 1
        first = next(c for c in members if c["s1"]) if shared_s1 else members[0]
        sid = f"seed{first['seed']}-{teacher}"
        stages.append(dict(id=sid, seed=first["seed"], s1=shared_s1, cells=[c["id"] for c in members],
                           sets={**first["sets"], "results_dir": str(root / "stages" / sid)}))
        for c in members:
            c["stage"] = sid
    return cells, stages


def link_files(src: Path, dst: Path, replace: bool = False) -> None:
    """Hard-link (copy where links fail) every checkpoint of ``src`` into ``dst``; existing ones kept unless ``replace``."""
    dst.mkdir(parents=True, exist_ok=True)
    for f, target in ((f, dst / f.name) for f in sorted(Path(src).glob("*.pt"))):
        if not target.exists() or replace and target.stat().st_ino != f.stat().st_ino:
            (tmp := dst / f".{f.name}.link-{os.getpid()}").unlink(missing_ok=True)
            try:
                os.link(f, tmp)
            except OSError:
                shutil.copy2(f, tmp)
            os.replace(tmp, target)


def merge(root: Path, cells: list[dict]) -> list[Path]:
    """Cells' results, history, manifests and checkpoints into one folder per setting, in seed order. Failed cells are
    left out (a partial run is not a result), and so is what an earlier sweep merged for them (``_drop_failed``)."""
    folders, failed = [], [c for c in cells if c.get("status") == "failed"]
    for name in dict.fromkeys(c["folder"] for c in cells if c not in failed):
        dest, mine = root / name, sorted((c for c in cells if c["folder"] == name and c not in failed), key=lambda c: c["seed"])
        store = ResultsStore(dest)
        _drop_failed(store, [c for c in failed if c["folder"] == name], {c["seed"] for c in mine})
        manifest, experiments = store.manifest(), {}
        for c in (c for c in mine if (Path(c["sets"]["results_dir"]) / "results.csv").exists()):  # wrote something
            src, ck = ResultsStore(c["sets"]["results_dir"]), Path("checkpoints") / f"seed{c['seed']}"
            if moved := store.add_results(src.results().to_dict("records")):  # said as a run says it
                print(f"[tadist] NOTICE: {superseded_notice(moved, src.manifest().get('settings') or {})}", flush=True)
            store.add_history(src.history().to_dict("records"))
            m = src.manifest()
            manifest.update({k: v for k, v in m.items() if k != "stages"}, stages={**manifest.get("stages", {}), **m.get("stages", {})})
            experiments.update(dict.fromkeys(m.get("config", {}).get("experiments", [])))
            link_files(src.dir / ck, dest / ck, replace=True)
        if current := manifest.get("settings", {}).get("hash"):  # an earlier sweep's stages went with its rows
            manifest["stages"] = {k: v for k, v in manifest.get("stages", {}).items() if v.get("settings") == current}
        if manifest:  # the config: the last cell's (as after a run of several seeds), with every experiment merged
            store.replace_manifest({**manifest, "sweep": str(root / "sweep.json"), "config": {
                **manifest.get("config", {}), "results_dir": str(dest), "experiments": list(experiments)}})
        folders.append(dest)
    return folders


def _drop_failed(store: ResultsStore, failed: list[dict], merged_seeds: set) -> None:
    """Remove the rows an earlier sweep merged for cells that failed now, lest they pass for this sweep's: all of a seed
    none of whose cells merged, else the failed cells' experiments (history has none: a merged cell rewrote it)."""
    with store.lock if failed else contextlib.nullcontext():
        for path in (p for p in (store.results_csv, store.history_csv) if failed and p.exists() and p.stat().st_size):
            df = read_table(path)
            experiment, drop = df.experiment if "experiment" in df else pd.Series(None, df.index), False
            for c in failed:
                mine, names = df.seed.astype(str) == str(c["seed"]), str(c["sets"].get("experiments") or "")
                drop |= mine if c["seed"] not in merged_seeds else mine & experiment.isin(names.replace(" ", "").split(","))
            if drop.any():
                write_csv_atomic(df[~drop], path)


def trial(config: dict, jobs: dict, profile: str, run: str) -> dict:
    """One Tune trial: a first stage (teacher, and S1 when shared) or a cell (a whole run, its stage's models linked in)."""
    from ..experiments import Pipeline
    job, t0, pts = jobs[config["job"]], time.perf_counter(), lambda: {p: p.stat().st_mtime_ns for p in ck.glob("*.pt")}
    folder = Path(job["sets"]["results_dir"])
    (ck := folder / "checkpoints" / f"seed{job['seed']}").mkdir(parents=True, exist_ok=True)
    with open(folder / "log.txt", "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        print(f"{HEADER.format(run)} {time.strftime('%Y-%m-%d %H:%M:%S')} on pid {os.getpid()}", flush=True)
        if job.get("checkpoints"):
            link_files(Path(job["checkpoints"]), ck)
        before = pts()
        try:
            pipe = Pipeline(cfg := make_config(profile, seed=job["seed"], **job["sets"]))
            if "cells" not in job:
                pipe.run()
            elif job["s1"]:  # trains (or loads) the teacher first
                pipe.students([METHODS[next(e for e in cfg.experiments if e in EXPERIMENTS)].plan(
                    1, share_students=cfg.share_students)])
            else:
                pipe.teacher()
        except ConfigError as e:  # the user's to fix: retrying would fail the same way
            return dict(status="failed", error=f"{type(e).__name__}: {e}", seconds=time.perf_counter() - t0)
    done = ("ran", "trained")["cells" in job] if pts() != before else "reused"
    return dict(status=done, error=None, seconds=time.perf_counter() - t0, checkpoints=str(ck))


def _fit(jobs: list[dict], name: str, root: Path, resources: dict, retries: int, verbose: int, **params) -> None:
    """``jobs`` as the trials of one Tuner, each updated with its outcome (Tune reports their status every 30 s)."""
    from ray import tune
    by_id = {j["id"]: j for j in jobs}
    trainable = tune.with_resources(tune.with_parameters(trial, jobs=by_id, **params), resources)
    conf = tune.RunConfig(name=name, storage_path=str(root / "tune"), verbose=verbose,
                          failure_config=tune.FailureConfig(max_failures=retries))
    for r in tune.Tuner(trainable, param_space={"job": tune.grid_search(list(by_id))}, run_config=conf).fit() if jobs else []:
        cause = getattr(r.error, "cause", None) or r.error  # a RayTaskError wraps the trial's own exception
        last = ([ln for ln in str(cause).splitlines() if ln.strip()] or [""])[-1]
        by_id[r.config["job"]].update(dict(status="failed", error=f"{type(cause).__name__}: {last}"[:300], seconds=None)
                                      if r.error else {k: r.metrics.get(k) for k in ("status", "error", "seconds", "checkpoints")})
    for j, log in ((j, Path(j["sets"]["results_dir"]) / "log.txt") for j in jobs):
        j["attempts"] = log.read_text().count(HEADER.format(params["run"])) if log.exists() else 0


def run(profile: str, seeds: list[int], sets: dict, grid: dict, *, address: str | None = None,
        num_cpus: int | None = None, cpus_per_cell: float = 1.0, gpus_per_cell: float | None = None,
        retries: int = 2, progress: bool = True) -> dict:
    """Plan, run the first stages then the cells on Ray Tune (Ray started here unless running), merge; the summary."""
    root = Path(sets.get("results_dir") or DEFAULT_ROOT).resolve()  # absolute: a worker elsewhere sees the same places
    if "data_dir" not in grid:
        sets = {**sets, "data_dir": str(Path(sets.get("data_dir") or Config.data_dir).resolve())}
    grid = {k: [str(Path(v).resolve()) for v in vs] if k == "data_dir" else vs for k, vs in grid.items()}
    cells, stages = plan(profile, seeds, {k: v for k, v in sets.items() if k != "results_dir"}, grid, root, cpus_per_cell)
    try:  # after the settings are checked: a bad one is named first, Ray or not
        import ray.tune  # binds ray
    except ImportError:
        raise ConfigError(INSTALL) from None
    if started := not ray.is_initialized():
        here = str(Path(__file__).resolve().parents[2])  # a local instance's workers import this very checkout
        ray.init(address=_check_address(address), num_cpus=None if address else num_cpus, include_dashboard=False,
                 logging_level="ERROR", log_to_driver=False, runtime_env=None if address else {"env_vars": {
                     "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)}})
    t0, run_id = time.perf_counter(), f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    try:
        gpus = (1.0 if ray.cluster_resources().get("GPU", 0) else 0.0) if gpus_per_cell is None else gpus_per_cell
        opts = dict(root=root, resources={"cpu": cpus_per_cell, "gpu": gpus}, retries=retries, verbose=int(progress),
                    profile=profile, run=run_id)
        _fit(stages, f"stages-{run_id}", **opts)
        for c, s in ((c, next((s for s in stages if s["id"] == c["stage"]), {})) for c in cells):
            c.update(checkpoints=s.get("checkpoints"), **(dict(status="failed", seconds=0.0, attempts=0,
                     error=f"its first stage failed: {s['error']}") if s.get("error") else {}))
        _fit([c for c in cells if "status" not in c], f"cells-{run_id}", **opts)
    finally:
        if started:
            ray.shutdown()
    summary = dict(root=str(root), profile=profile, seeds=seeds, sets=sets, grid=grid, merged=list(map(str, merge(root, cells))),
                   stages=[{k: s.get(k) for k in ("id", "s1", "cells", "status", "error", "seconds")} for s in stages],
                   cells=[{k: c.get(k) for k in ("id", "seed", "values", "status", "attempts", "seconds", "error", "stage",
                                                 "folder")} | {"results_dir": c["sets"]["results_dir"]} for c in cells],
                   seconds=round(time.perf_counter() - t0, 2))
    write_json(summary, root / "sweep.json")
    return summary


def _check_address(address: str | None) -> str | None:
    """``host:port`` must answer a TCP connection: ray.init waits minutes, silently, where nothing does."""
    host, sep, port = str(address).removeprefix("ray://").rpartition(":")
    if address in (None, "auto", "local"):
        return address
    if not (sep and host and port.isdigit()):
        raise ConfigError(f"--address expects auto, host:port or ray://host:port, got {address!r}")
    import ray.util
    loopback = host.strip("[]") in ("localhost", "127.0.0.1", "::1")  # Ray dials this machine's node IP too
    for h in [host.strip("[]")] + ([ray.util.get_node_ip_address()] if loopback else []):
        with contextlib.suppress(OSError):
            return socket.create_connection((h, int(port)), timeout=10).close() or address
    raise ConfigError(f"--address {address}: nothing answers at {host}:{port}; is the cluster up (`ray start --head`) "
                      f"and the address right?")


def report(summary: dict) -> str:
    cells, shared = pd.DataFrame(summary["cells"]), [s for s in summary["stages"] if s["status"] != "failed"]
    counts = ", ".join(f"{sum(cells.status == s)} {s}" for s in ("ran", "reused", "failed"))
    return "\n".join([f"sweep: {len(cells)} cell(s) in {summary['seconds']:.1f}s: {counts}; {len(shared)} first stage(s) "
                      f"shared a teacher{' (and S1)' if any(s['s1'] for s in shared) else ''} between cells",
                      cells.set_index("id")[["status", "seconds", "attempts", "error"]].round(1).fillna("").to_string()]
                     + [f"stage {s['id']} failed: {s['error']}" for s in summary["stages"] if s["error"]]
                     + [f"merged: {', '.join(summary['merged']) or 'none (every cell failed)'}; all: {summary['root']}/sweep.json"])


def main(argv: list[str] | None = None) -> int:
    """A grid of headless runs on Ray Tune: seeds x --grid values, each cell a single run's results folder, merged into
    <results_dir> (or one <key>=<value> folder per setting) for notebooks 05/06. Needs pip install "tadist[ray]".

        python -m tadist_utils.runners.sweep --profile smoke --seeds 0 1 --set dataset=digits --grid student_lr=1e-3,3e-3
        python -m tadist_utils.runners.sweep --profile paper --seeds 0 1 2 --address auto --gpus-per-cell 0.25
    """
    from . import cli
    ap = cli.parser("python -m tadist_utils.runners.sweep", main.__doc__, results_dir=DEFAULT_ROOT)
    ap.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", nargs="+",
                    help="one cell per value (several --grid keys: every combination), e.g. --grid student_lr=1e-3,3e-3")
    ap.add_argument("--address", help="a running Ray cluster (auto, or ray://host:10001); default: start one here")
    ap.add_argument("--num-cpus", type=int, help="CPUs of the Ray instance started here (default: all)")
    ap.add_argument("--cpus-per-cell", type=float, default=1.0, help="CPUs of each cell (default 1)")
    ap.add_argument("--gpus-per-cell", type=float, help="GPUs of each cell, fractional to share (default: 1 if any, else 0)")
    ap.add_argument("--retries", type=int, default=2, help="times a died or failed cell is retried (default 2)")
    ap.add_argument("--quiet", action="store_true", help="no progress")
    args = ap.parse_args(argv)
    try:
        sets, grid = cli.overrides(args), parse_grid([p for group in args.grid for p in group])
        if args.retries < 0 or args.cpus_per_cell <= 0 or (args.gpus_per_cell or 0) < 0:
            raise ConfigError("--retries, --cpus-per-cell and --gpus-per-cell must not be negative")
        summary = run(args.profile, args.seeds, sets, grid, address=args.address, num_cpus=args.num_cpus,
                      cpus_per_cell=args.cpus_per_cell, gpus_per_cell=args.gpus_per_cell, retries=args.retries,
                      progress=not args.quiet)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report(summary), flush=True)
    return 1 if any(c["status"] == "failed" for c in summary["cells"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
