"""Sweeps on Ray: seeds x settings side by side on the GPUs (or CPUs) of one machine or a cluster.

    pip install "tadist[ray]"
    python -m tadist_utils.runners.sweep --profile quick --seeds 0 1 2 --set experiments=direct,kd \\
        --grid student_lr=1e-3,3e-3 --gpus-per-cell 0.25
    python -m tadist_utils.runners.sweep ... --address auto       # join a running Ray cluster (`ray start --head`)

Each cell (one seed, one value of every --grid key) is one Ray task running the headless CLI's run in its own
folder, ``<results_dir>/cells/<cell>/``, so a cell writes exactly what a single run would. Cells sharing a teacher
depend on one first-stage task that trains it (and a shared S1) in ``stages/<stage>/``; its checkpoints are
hard-linked into each cell, where ``Pipeline`` loads them by spec hash. A dying cell is retried and resumes from its
checkpoints; a ``ConfigError`` is not retried. The cells are then merged through ``ResultsStore`` into
``<results_dir>`` (grids of seeds and experiments only) or one ``<key>=<value>.../`` folder per setting, which
notebooks 05/06 read as a single run's; ``sweep.json`` lists every cell: ran / reused / failed, wall time.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

from ..storage.atomic import write_atomic
from ..config import PROFILES, Config, check_seeds, make_config, with_role
from ..errors import ConfigError
from ..experiments import check, spec_hash
from ..methods import EXPERIMENTS, METHODS
from ..storage.results import ResultsStore, read_table, superseded_notice, write_csv_atomic

DEFAULT_ROOT = "results/sweep"
INSTALL = "the sweep needs Ray: pip install 'tadist[ray]' (or pip install \"ray>=2.9\")"
SAME_FOLDER = ("experiments",)  # grid keys whose cells merge into one folder: the experiment is a results column
HEARTBEAT = 30.0  # seconds: the longest the sweep stays silent while its tasks run
KILL_ENV = "TADIST_SWEEP_KILL"  # "<cell>@teacher|students": that cell's first attempt dies there (tests)


def _safe(text: str) -> str:
    return re.sub(r"[^\w.=+-]", "_", text)


def parse_grid(pairs: list[str]) -> dict[str, list[str]]:
    """``["student_lr=1e-3,3e-3", ...]`` -> ``{"student_lr": ["1e-3", "3e-3"]}`` (each key once, values in order)."""
    grid: dict[str, list[str]] = {}
    for pair in pairs:
        key, sep, values = pair.partition("=")
        key = key.strip()
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key or not vals:
            raise ConfigError(f"--grid expects key=value1,value2, got {pair!r}")
        if key in ("profile", "seed", "results_dir"):
            raise ConfigError(f"--grid {key}=... is not a grid key (use --{'seeds' if key == 'seed' else key.replace('_', '-')})")
        if key in grid:
            raise ConfigError(f"--grid {key} given twice")
        grid[key] = list(dict.fromkeys(vals))
    return grid


def plan(profile: str, seeds: list[int], sets: dict, grid: dict, root: Path, cpus: float = 1) -> tuple[list[dict], list[dict]]:
    """Every cell and first stage, each config validated now (a bad one: ConfigError, before Ray starts)."""
    seeds = check_seeds(seeds)  # in range, none twice, as every runner's --seeds
    clash = sorted(set(sets) & set(grid))
    if clash:
        raise ConfigError(f"{', '.join(clash)} given both in --set and --grid")
    base = dict(sets)
    base.setdefault("progress", "false")  # the sweep draws one bar over cells; each cell logs to its log.txt
    if "threads" not in sets and PROFILES.get(profile, {}).get("threads") is None:  # (an unknown profile: below)
        base["threads"] = str(max(1, int(cpus)))  # not every idle core for each of several cells on one machine
    cells, stages = [], {}
    for seed, combo in itertools.product(seeds, itertools.product(*grid.values())):
        values = dict(zip(grid, combo))
        cid = _safe("-".join([f"seed{seed}"] + [f"{k}={v}" for k, v in values.items()]))
        folder = _safe("-".join(f"{k}={v}" for k, v in values.items() if k not in SAME_FOLDER))
        twin = next((c for c in cells if c["id"] == cid), None)
        if twin is not None:  # _safe() made two settings one folder name: their results would overwrite each other
            raise ConfigError(f"--grid values {twin['values']} and {values} give the same cell folder {cid!r}; "
                              f"write them differently (characters other than letters, digits and . = + - become _)")
        cell_sets = {**base, **values, "results_dir": str(root / "cells" / cid)}
        cfg = check(make_config(profile, seed=seed, **cell_sets))
        conf = cfg.as_dict()
        teacher = spec_hash({k: v for k, v in conf.items() if k in with_role("teacher", cls=type(cfg))})[:8]
        s1 = spec_hash({"teacher": teacher, **{k: conf[k] for k in with_role("s1", cls=type(cfg))}})[:8] \
            if any(e in EXPERIMENTS for e in cfg.experiments) else None
        cells.append(dict(id=cid, seed=seed, values=values, sets=cell_sets, folder=folder, teacher=teacher, s1=s1,
                          stage=None))
        stages.setdefault(teacher, []).append(cells[-1])
    out = []
    for teacher, members in stages.items():
        if len(members) < 2:
            continue  # one cell: it trains its own teacher
        s1s = [c["s1"] for c in members if c["s1"]]
        shared_s1 = len(s1s) >= 2 and len(set(s1s)) == 1
        first = next(c for c in members if c["s1"]) if shared_s1 else members[0]
        sid = f"seed{first['seed']}-{teacher}"
        out.append(dict(id=sid, seed=first["seed"], s1=shared_s1, cells=[c["id"] for c in members],
                        sets={**first["sets"], "results_dir": str(root / "stages" / sid)}))
        for c in members:
            c["stage"] = sid
    return cells, out


# ----------------------------------------------------------------------------- the folders: linked, merged
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


# ----------------------------------------------------------------------------- inside the Ray tasks
def _header(run: str) -> str:
    return f"--- attempt of sweep {run} started"


@contextlib.contextmanager
def _logged(folder: Path, run: str):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "log.txt", "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        print(f"{_header(run)} {time.strftime('%Y-%m-%d %H:%M:%S')} on pid {os.getpid()}", flush=True)
        yield


def stage_task(profile: str, seed: int, sets: dict, s1: bool, run: str = "") -> dict:
    """First stage: train (or load) the teacher, and S1 when asked, into this stage's folder."""
    from ..experiments import Pipeline
    t0, ck = time.perf_counter(), checkpoint_folder(sets["results_dir"], seed)
    with _logged(Path(sets["results_dir"]), run):
        before = snapshot(ck)
        try:
            cfg = make_config(profile, seed=seed, **sets)
            pipe = Pipeline(cfg)
            pipe.teacher()
            if s1:
                pipe.students([METHODS[next(e for e in cfg.experiments if e in EXPERIMENTS)].plan(1,
                                     share_students=cfg.share_students)])
        except ConfigError as e:
            return dict(error=f"{type(e).__name__}: {e}", checkpoints=str(ck))
    return dict(checkpoints=str(ck), trained=snapshot(ck) != before, seconds=time.perf_counter() - t0, error=None)


def cell_task(profile: str, seed: int, sets: dict, stage: dict | None, kill: str = "", run: str = "") -> dict:
    """One cell: the headless CLI's run of one config, in its own folder, after linking in its stage's models."""
    from ..experiments import Pipeline
    folder, t0 = Path(sets["results_dir"]), time.perf_counter()
    ck = checkpoint_folder(sets["results_dir"], seed)
    if stage and stage.get("error"):
        return dict(status="failed", error=f"its first stage failed: {stage['error']}", seconds=0.0)
    with _logged(folder, run):
        if stage:
            link_files(Path(stage["checkpoints"]), ck)
        before = snapshot(ck)
        try:
            pipe = Pipeline(make_config(profile, seed=seed, **sets))
            if kill:  # tests: the named cell's first attempt dies once its teacher, then its students, are saved
                for point in ("teacher", "students"):
                    setattr(pipe, point, _dying(getattr(pipe, point), kill, folder, point, ck))
            pipe.run()
        except ConfigError as e:  # the user's to fix: retrying would fail the same way
            return dict(status="failed", error=f"{type(e).__name__}: {e}", seconds=time.perf_counter() - t0)
    return dict(status="ran" if snapshot(ck) != before else "reused", error=None, seconds=time.perf_counter() - t0)


def _dying(stage, kill: str, folder: Path, point: str, ck: Path):
    """Fault injection for tests, kept off the real path: ``stage`` (a pipeline method), then the named cell's first
    attempt exits at ``point``, as a killed worker would."""
    def run(*args, **kwargs):
        out = stage(*args, **kwargs)
        if kill == f"{folder.name}@{point}" and not (folder / ".killed").exists():
            (folder / ".killed").write_text(json.dumps({k: v[1] for k, v in snapshot(ck).items()}))
            sys.stdout.flush()
            os._exit(1)
        return out
    return run


# ----------------------------------------------------------------------------- the driver
def _one_line(e: BaseException) -> str:
    cause = getattr(e, "cause", None)  # ray.exceptions.RayTaskError wraps the task's own exception
    if cause is not None:
        e = cause
    name = type(e).__name__
    if name in ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError"):
        return f"{name}: the worker died on every attempt (killed, or out of memory)"
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return f"{name}: {lines[-1] if lines else ''}"[:300]


def run(profile: str, seeds: list[int], sets: dict, grid: dict, *, address: str | None = None,
        num_cpus: int | None = None, cpus_per_cell: float = 1.0, gpus_per_cell: float | None = None,
        retries: int = 2, progress: bool = True) -> dict:
    """Plan, run on Ray (started here unless one is running or ``address`` names a cluster), merge; the summary."""
    # absolute paths: a worker on another node (or in another folder) reads and writes the same places
    root = Path(sets.get("results_dir") or DEFAULT_ROOT).resolve()
    if "data_dir" in grid:
        grid = {**grid, "data_dir": [str(Path(v).resolve()) for v in grid["data_dir"]]}
    else:
        sets = {**sets, "data_dir": str(Path(sets.get("data_dir") or Config.data_dir).resolve())}
    cells, stages = plan(profile, seeds, {k: v for k, v in sets.items() if k != "results_dir"}, grid, root, cpus_per_cell)
    try:  # after the settings are checked: a bad one is named first, Ray or not
        import ray
    except ImportError:
        raise ConfigError(INSTALL) from None
    started = not ray.is_initialized()
    if started and address:
        _check_address(address)  # ray.init would retry an address where nothing answers for minutes, silently
    if started:  # a local instance's workers import this very package (a checkout run without installing it)
        here = str(Path(__file__).resolve().parents[2])
        env = None if address else {"env_vars": {"PYTHONPATH": os.pathsep.join(
            p for p in (here, os.environ.get("PYTHONPATH")) if p)}}
        ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
                 logging_level="ERROR", log_to_driver=False, runtime_env=env)
    t0 = time.perf_counter()
    try:
        if gpus_per_cell is None:  # a GPU for each cell where the cluster has GPUs; --gpus-per-cell 0.25 shares one
            gpus_per_cell = 1.0 if ray.cluster_resources().get("GPU", 0) else 0.0
        opts = dict(num_cpus=cpus_per_cell, num_gpus=gpus_per_cell, max_retries=retries, retry_exceptions=True)
        stage_fn, cell_fn = ray.remote(stage_task).options(**opts), ray.remote(cell_task).options(**opts)
        kill, run_id = os.environ.get(KILL_ENV, ""), f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        refs = {s["id"]: stage_fn.remote(profile, s["seed"], s["sets"], s["s1"], run_id) for s in stages}
        pending = {cell_fn.remote(profile, c["seed"], c["sets"], refs.get(c["stage"]), kill, run_id): c for c in cells}
        from tqdm.auto import tqdm
        with tqdm(total=len(cells), desc="sweep", unit="cell", disable=not progress, dynamic_ncols=True) as bar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=HEARTBEAT)
                if not done:  # a first stage trains a teacher for minutes: never silent for longer than HEARTBEAT
                    if progress:
                        staged, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=0) if refs else ([], [])
                        tqdm.write(heartbeat(time.perf_counter() - t0, len(cells) - len(pending), len(cells),
                                             len(staged), len(refs)))
                    continue
                c = pending.pop(done[0])
                try:
                    c.update(ray.get(done[0]))
                except Exception as e:  # every retry used up, or its stage failed
                    c.update(status="failed", error=_one_line(e), seconds=None)
                c["attempts"] = _attempts(c, run_id)  # from the headers the attempts wrote to log.txt
                bar.set_postfix_str(f"{c['id']}: {c['status']}", refresh=False)
                bar.update(1)
        stage_info = []
        for s in stages:
            try:
                info = ray.get(refs[s["id"]])
            except Exception as e:
                info = dict(error=_one_line(e))
            stage_info.append(dict(id=s["id"], s1=s["s1"], cells=s["cells"], error=info.get("error"),
                                   status="failed" if info.get("error") else "trained" if info.get("trained") else "reused",
                                   seconds=info.get("seconds")))
    finally:
        if started:
            ray.shutdown()
    folders = merge(root, cells)
    summary = dict(root=str(root), profile=profile, seeds=seeds, sets=sets, grid=grid, seconds=round(time.perf_counter() - t0, 2),
                   merged=[str(f) for f in folders], stages=stage_info,
                   cells=[{k: c.get(k) for k in ("id", "seed", "values", "status", "attempts", "seconds", "error",
                                                 "stage", "folder")} | {"results_dir": c["sets"]["results_dir"]}
                          for c in cells])
    root.mkdir(parents=True, exist_ok=True)
    text = json.dumps(summary, indent=2, default=str)
    write_atomic(lambda tmp: tmp.write_text(text), root / "sweep.json")
    return summary


def heartbeat(seconds: float, cells_done: int, cells: int, stages_done: int, stages: int) -> str:
    """The line the sweep prints every ``HEARTBEAT`` s while nothing finishes: elapsed, cells and first stages done."""
    m, s = divmod(int(seconds), 60)
    first = f", {stages_done}/{stages} first stage(s) (shared teachers) done" if stages else ""
    return f"sweep: {m}:{s:02d} elapsed, {cells_done}/{cells} cell(s) finished{first}; still running"


def _check_address(address: str, timeout: float = 10.0) -> None:
    """A ``host:port`` or ``ray://host:port`` address must answer a TCP connection: one ConfigError line if not."""
    if address in ("auto", "local"):
        return  # Ray finds (or refuses) these itself, at once
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--address expects auto, host:port or ray://host:port, got {address!r}")
    import socket
    hosts = [host.strip("[]")]
    if hosts[0] in ("localhost", "127.0.0.1", "::1"):  # Ray itself dials this machine's node IP for these
        import ray.util
        hosts.append(ray.util.get_node_ip_address())
    for h in hosts:
        try:
            socket.create_connection((h, int(port)), timeout=timeout).close()
            return
        except OSError as e:
            why = e.strerror or str(e)
    raise ConfigError(f"--address {address}: nothing answers at {host}:{port} ({why}); "
                      f"is the cluster up (`ray start --head`) and the address right?")


def _attempts(c: dict, run: str) -> int:
    log = Path(c["sets"]["results_dir"]) / "log.txt"
    return log.read_text().count(_header(run)) if log.exists() else 0


def report(summary: dict) -> str:
    cells = summary["cells"]
    counts = {s: sum(c["status"] == s for c in cells) for s in ("ran", "reused", "failed")}
    shared = [s for s in summary["stages"] if s["status"] != "failed"]
    lines = [f"sweep: {len(cells)} cell(s) in {summary['seconds']:.1f}s: {counts['ran']} ran, {counts['reused']} reused, "
             f"{counts['failed']} failed; {len(shared)} first stage(s) shared a teacher"
             f"{' (and S1)' if any(s['s1'] for s in shared) else ''} between cells"]
    width = max(len(c["id"]) for c in cells)
    for c in cells:
        secs = " " * 8 if c["seconds"] is None else f"{c['seconds']:7.1f}s"
        tries = f"  {c['attempts']} attempts" if (c["attempts"] or 0) > 1 else ""
        lines.append(f"  {c['id']:<{width}}  {c['status']:<6} {secs}{tries}" + (f"  {c['error']}" if c["error"] else ""))
    for s in summary["stages"]:
        if s["error"]:
            lines.append(f"  stage {s['id']} failed: {s['error']}")
    lines.append(f"merged results: {', '.join(summary['merged']) or 'none (every cell failed)'}; "
                 f"every cell: {summary['root']}/sweep.json")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """A grid of headless runs as Ray tasks: seeds x --grid values, each cell a single run's results folder.

        python -m tadist_utils.runners.sweep --profile smoke --seeds 0 1 --set dataset=digits --grid student_lr=1e-3,3e-3
        python -m tadist_utils.runners.sweep --profile quick --seeds 0 1 2 --gpus-per-cell 0.25      # 4 cells per GPU
        python -m tadist_utils.runners.sweep --profile paper --seeds 0 1 2 --address auto            # a running cluster
    Needs Ray: pip install "tadist[ray]". Writes <results_dir>/cells/, stages/, sweep.json and the merged
    results (<results_dir>, or one <key>=<value> folder per setting) that notebooks 05/06 read.
    """
    from . import cli
    ap = cli.parser("python -m tadist_utils.runners.sweep", main.__doc__, results_dir=DEFAULT_ROOT)
    ap.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", nargs="+",
                    help="one cell per value (several --grid keys: every combination), e.g. --grid student_lr=1e-3,3e-3")
    ap.add_argument("--address", help="a running Ray cluster (auto, or ray://host:10001); default: start one here")
    ap.add_argument("--num-cpus", type=int, help="CPUs of the Ray instance started here (default: all)")
    ap.add_argument("--cpus-per-cell", type=float, default=1.0, help="Ray num_cpus of each cell (default 1)")
    ap.add_argument("--gpus-per-cell", type=float, help="Ray num_gpus of each cell, fractional to share a GPU "
                                                        "(default: 1 where the cluster has GPUs, else 0)")
    ap.add_argument("--retries", type=int, default=2, help="times a died or failed cell is retried (default 2)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    try:
        sets = cli.overrides(args)
        grid = parse_grid([p for group in args.grid for p in group])
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
