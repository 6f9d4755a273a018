"""Run the numbered notebooks with papermill: the whole study in one command.

    python -m tadist_utils --profile quick
    python -m tadist_utils --profile paper --dataset cifar10 --seeds 0 1 2
    python -m tadist_utils --profile smoke --dataset digits --only 00 01
    python -m tadist_utils --profile smoke --dataset digits --results-dir results/_nbval --prepare-only

Flags, settings, the results files already there and the data are checked before any notebook starts: anything
wrong is one line, ``error: ...``, exit 2. Every notebook runs even if an earlier one failed; failures are listed
at the end (exit 1) with the notebook, cell and error. Executed copies go to ``<results_dir>/executed/`` (a
subfolder per seed when several), wall times to ``<results_dir>/reproduce.json``; ``--prepare-only`` writes
parameterised copies to ``<results_dir>/notebooks/`` for ``pytest --nbval``.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shlex
import sys
import time
from pathlib import Path

from . import cli, console
from ..errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
DEFAULT_TIMEOUT = {"smoke": 1200}  # seconds per cell; none for the long profiles


def check_data(cfg) -> None:
    """The data is there and readable before any notebook starts, else one ConfigError line: an absent CIFAR asked
    for by name is downloaded now, local data is read once (a bad image or class is named before 00 runs, not in 02).
    ``auto`` with nothing local needs no check: it falls back to digits, loudly."""
    from .. import data
    if cfg.dataset == "auto" and data.find_cifar10(Path(cfg.data_dir)) is None:
        return
    data.load_data(cfg)


def notebooks(only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks in run order, optionally only those whose name starts with one of ``only``."""
    found = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if not only:
        return found
    unknown = [o for o in only if not any(p.name.startswith(o) for p in found)]
    if unknown:
        raise ConfigError(f"--only {' '.join(unknown)} matches no notebook; have {', '.join(p.stem for p in found)}")
    return [p for p in found if any(p.name.startswith(o) for o in only)]


def changed_since_commit(paths: list[Path]) -> list[str]:
    """The notebooks among ``paths`` that differ from git's HEAD, as ``notebooks/NAME``; [] outside a git checkout.

    Jupyter autosaves a notebook's outputs as it runs: nbval would then compare against a half-run notebook's outputs
    (``Unrun reference cell has outputs``) instead of the committed ones."""
    import subprocess
    try:
        r = subprocess.run(["git", "diff", "--name-only", "--relative", "HEAD", "--", *(p.name for p in paths)],
                           cwd=NOTEBOOKS, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [f"notebooks/{name}" for name in r.stdout.split()] if r.returncode == 0 else []


def in_checkout(path, root: Path | None = None) -> str:
    """``path`` relative to the checkout (``root``, default this one) when it lies inside it (the notebooks resolve
    relative paths against their checkout: ``nbsetup.repo_path``), else absolute: an output names no machine's folders."""
    p = Path(os.path.normpath(Path(path).absolute()))  # a symlinked folder keeps the name it was given
    try:
        return p.relative_to(REPO if root is None else root).as_posix() or "."
    except ValueError:
        return str(p)


def parameters(cfg, overrides: dict) -> dict:
    """Notebook parameters: profile, seed and only what was given, typed; fields with a notebook place
    (``config.role``) by name, others in ``overrides``. Short: the executed notebook shows them as its injected cell."""
    from ..config import with_role

    def plain(v):
        return list(v) if isinstance(v, tuple) else v
    named = with_role("notebook")
    params = dict(profile=cfg.profile, seed=cfg.seed)
    for k in named:
        if k in overrides and k not in params:
            params[k] = in_checkout(getattr(cfg, k)) if k.endswith("_dir") else plain(getattr(cfg, k))
    rest = {k: plain(getattr(cfg, k)) for k in overrides if k not in params and k not in named}
    if rest:
        params["overrides"] = rest
    return params


def _first_line(text: str) -> str:
    return (str(text).strip().splitlines() or [""])[0][:200]


def _cell_label(exec_count, index) -> str:
    """``In [7]``, as Jupyter and papermill's error banner show it in the executed copy; else the cell's index."""
    return f"In [{exec_count}]" if exec_count is not None else f"#{index}"


def _failed_cell(path: Path) -> tuple[str | None, str]:
    """(label, first source line) of the last cell papermill started: the one that timed out or died."""
    try:
        import nbformat
        cells = nbformat.read(path, as_version=4).cells
    except Exception:
        return None, ""
    started = [i for i, c in enumerate(cells) if c.get("metadata", {}).get("papermill", {}).get("start_time")]
    if not started:
        return None, ""
    cell = cells[started[-1]]
    return _cell_label(cell.get("execution_count"), started[-1]), _first_line(cell.source)


KERNELS: list = []  # the kernel processes run_one started (subprocess.Popen), until they have exited


def stop_kernels(grace: float = 2.0) -> None:
    """End every kernel still running, SIGTERM then SIGKILL after ``grace`` s, and wait for it: a runner stopped while
    papermill was starting a kernel (its shutdown covers only a started one) left it to die on its own, up to a second
    after the runner (ipykernel polls its parent's pid)."""
    import signal
    import subprocess
    for process in list(KERNELS):
        for sig in ((signal.SIGTERM, signal.SIGKILL) if os.name == "posix" else (None,)):
            if process.poll() is not None:
                break
            with contextlib.suppress(OSError):
                if sig is None:
                    process.kill()
                elif os.getpgid(process.pid) == process.pid:  # it leads its own session (jupyter_client): its group
                    os.killpg(process.pid, sig)
                else:
                    process.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(grace)
        if process.poll() is not None:
            KERNELS.remove(process)


def kernel_options(log: Path) -> dict:
    """papermill options: jupyter_client's kernel manager without the SIGINT it sends an idle kernel at shutdown,
    and with the kernel's own stderr in ``log``.

    That SIGINT often lands in the kernel's handler of papermill's last info request, and a run that went fine
    ended with ``KeyboardInterrupt caught in kernel`` on stderr; ``shutdown_request`` alone stops an idle kernel,
    and a running cell (Ctrl-C, SIGTERM, a timeout) is still interrupted. ``log`` keeps the kernel's plumbing
    (a ZMQ traceback when a stop mid-cell races the shutdown) in a file beside the executed notebook."""
    from jupyter_client import AsyncKernelManager
    running = {"cell": False}

    class KernelManager(AsyncKernelManager):
        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down and not running["cell"]:
                return  # an idle kernel: nothing to interrupt, and a SIGINT could land in a request's handler
            await super()._async_interrupt_kernel()

        async def _async_launch_kernel(self, kernel_cmd, **kw) -> None:  # jupyter_client's hook for launching
            with open(log, "ab") as f:  # the kernel keeps its own copy of the descriptor
                await super()._async_launch_kernel(kernel_cmd, **{**kw, "stderr": f})
            if (process := getattr(self.provisioner, "process", None)) is not None:
                KERNELS.append(process)  # for stop_kernels

    def busy(**_):
        running["cell"] = True

    def idle(**_):
        running["cell"] = False
    return dict(kernel_manager_class=KernelManager, on_cell_execute=busy, on_cell_executed=idle, on_cell_error=idle)


def run_one(src: Path, out: Path, params: dict, timeout: int | None) -> str | None:
    """Execute one notebook; None on success, else one line saying where it failed (and the kernel's log if any)."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError
    log = out.with_suffix(".kernel.log")  # the kernel's own stderr, beside the executed notebook
    log.unlink(missing_ok=True)
    try:
        pm.execute_notebook(str(src), str(out), parameters=params, kernel_name="python3", cwd=str(src.parent),
                            execution_timeout=timeout, progress_bar=False, log_output=False,
                            extra_arguments=["--IPKernelApp.log_level=ERROR"],  # no kernel start-up chatter
                            **kernel_options(log))
        return None
    except (KeyboardInterrupt, console.Stopped):  # Ctrl-C or SIGTERM: no kernel outlives the runner
        stop_kernels()
        raise
    except PapermillExecutionError as e:
        return f"cell {_cell_label(e.exec_count, e.cell_index)} `{_first_line(e.source)}`: {e.ename}: {_first_line(e.evalue)}"
    except Exception as e:  # a cell timeout, a dead kernel: papermill saved the notebook up to that cell
        label, line = _failed_cell(out)
        where = f"cell {label} `{line}`" if label is not None else "before any cell"
        logged = f" (the kernel's log: {log})" if log.is_file() and log.stat().st_size else ""
        return f"{where}: {type(e).__name__}: {_first_line(e)}{logged}"
    finally:
        KERNELS[:] = [p for p in KERNELS if p.poll() is None]
        if log.is_file() and not log.stat().st_size:
            log.unlink()


INJECTED = "injected-parameters"  # the tag of the cell papermill adds after the `parameters` cell


def publish(executed: Path, dest: Path) -> None:
    """An executed notebook as a committed source: its outputs kept, papermill's injected parameters cell, its
    metadata (the run's machine paths and timings) and progress widgets dropped, and the checkout's absolute path made
    relative in every output. Without the injected cell, Run All in Jupyter runs the `parameters` cell's defaults
    (smoke, into results/run/smoke), not the published run's profile into its committed folder."""
    import nbformat
    nb = nbformat.read(executed, as_version=4)
    nb.cells = [c for c in nb.cells if INJECTED not in c.metadata.get("tags", [])]
    for key in ("papermill", "widgets"):
        nb.metadata.pop(key, None)
    root = f"{REPO}/"
    for cell in nb.cells:
        for key in ("papermill", "execution"):
            cell.metadata.pop(key, None)
        if cell.cell_type != "code":
            continue
        cell.outputs = [o for o in cell.outputs if "application/vnd.jupyter.widget-view+json" not in o.get("data", {})]
        for o in cell.outputs:
            if "text" in o:
                o["text"] = o["text"].replace(root, "")
            for mime, value in o.get("data", {}).items():
                if mime.startswith("text/") and isinstance(value, str):
                    o["data"][mime] = value.replace(root, "")
    nbformat.write(nb, dest)


def _manifest_notice(results_dir: Path) -> str:
    """The data notice the notebooks recorded in the manifest (a fallback the runner's own check did not see)."""
    try:
        return json.loads((results_dir / "manifest.json").read_text()).get("dataset", {}).get("notice", "")
    except (OSError, ValueError, AttributeError):
        return ""


def _superseded(results_dir: Path) -> dict:
    """What ``<results_dir>/superseded/`` holds (name -> size), compared before and after the notebooks run."""
    from ..storage.results import SUPERSEDED
    folder = results_dir / SUPERSEDED
    return {p.name: p.stat().st_size for p in folder.iterdir()} if folder.is_dir() else {}


def moved_aside_line(before: dict, results_dir: Path) -> str:
    """One line if the notebooks moved rows of other settings aside: their NOTICE is inside a kernel, unseen here."""
    if _superseded(results_dir) == before:
        return ""
    return (f"NOTICE: rows made under other settings were moved to {results_dir / 'superseded'}/ during this run (the "
            "executed notebook that moved them says which and why); 05 and 06 show only this run's settings")


def main(argv: list[str] | None = None) -> int:
    ap = cli.parser("python -m tadist_utils", __doc__)
    ap.add_argument("--timeout", type=int, help="papermill execution_timeout: seconds any one cell of a notebook may "
                                                "take (training is one cell); default 1200 for smoke, none otherwise")
    ap.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks, e.g. --only 02 03")
    ap.add_argument("--prepare-only", action="store_true",
                    help="write parameterised copies to <results_dir>/notebooks/ without running them (for nbval)")
    ap.add_argument("--quiet", action="store_true", help="no live training progress, one line per notebook")
    ap.add_argument("--update-notebooks", action="store_true",
                    help="after a run without failures, write the first seed's executed notebooks over notebooks/ "
                         "(the committed outputs: README, 'The reference run')")
    args = ap.parse_args(argv)
    from ..config import Config, default_results_dir, make_config
    from ..experiments import check  # torch (~2 s): not for a bad flag or --help

    try:  # everything that can be wrong with the input is reported here, before any notebook runs
        if args.timeout is not None and args.timeout <= 0:
            raise ConfigError(f"--timeout must be a positive number of seconds, got {args.timeout}")
        overrides = cli.overrides(args)
        defaults = dict(data_dir=Config.data_dir, results_dir=default_results_dir(args.profile))
        for key, default in defaults.items():  # given paths: relative to the cwd; defaults: to the repo root
            overrides[key] = str(Path(os.path.normpath(Path(overrides[key]).absolute())) if overrides.get(key)
                                 else REPO / default)
        configs = [check(make_config(args.profile, seed=s, **overrides)) for s in args.seeds]
        selected = notebooks(args.only)
        if args.prepare_only and (changed := changed_since_commit(selected)):  # for nbval: the committed outputs
            raise ConfigError(f"{', '.join(changed)} changed since the last commit (Jupyter saves a run's outputs into "
                              f"the notebook; nbval compares against the committed ones): git checkout {' '.join(changed)} "
                              "first, or commit the change")
        notice = "" if args.prepare_only else console.data_notice(configs[0])  # auto: the download tried now
        check_data(configs[0])
        from ..storage.results import check_files
        check_files(configs[0].results_dir)
        line = "" if args.prepare_only else console.data_line(configs[0], fallback=bool(notice))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if line:  # which data, said first; the fallback as a banner, and again at the end
        console.announce(notice)
        print(line, flush=True)

    results_dir = Path(configs[0].results_dir)
    console.remove_stale(results_dir)  # progress files of runners killed earlier (--quiet or not)
    timeout = args.timeout if args.timeout is not None else DEFAULT_TIMEOUT.get(args.profile)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])  # kernels import this checkout
    os.environ["TADIST_RUNNER"] = "1"  # nbsetup.RUNNER_ENV: the data is said here, not again by each kernel

    if args.prepare_only:
        import papermill as pm
        out = results_dir / "notebooks"
        out.mkdir(parents=True, exist_ok=True)
        for src in selected:
            pm.execute_notebook(str(src), str(out / src.name), parameters=parameters(configs[0], overrides),
                                kernel_name="python3", prepare_only=True)
        print(f"prepared {len(selected)} notebook(s) in {out}; run: python -m pytest --nbval -p no:cacheprovider {out}")
        return 0

    report = dict(profile=args.profile, profile_settings=console.profile_settings(args.profile), seeds=args.seeds,
                  results_dir=in_checkout(results_dir), timeout_per_cell=timeout,
                  started=dt.datetime.now().isoformat(timespec="seconds"), notebooks=[])
    failures = []
    job = console.JobClock([(cfg.seed, src.stem) for cfg in configs for src in selected],
                           *console.reference_times(args.profile, [s.stem for s in selected], results_dir, REPO))
    print(f"{len(selected)} notebook(s) x {len(configs)} seed(s), profile {args.profile}, results in {results_dir}")
    t_all, superseded = time.perf_counter(), _superseded(results_dir)
    cfg, src, t0 = configs[0], selected[0], t_all  # where a stop lands, updated as the notebooks run
    try:
        with console.stop_on_sigterm():
            for cfg in configs:
                executed = results_dir / "executed" / (f"seed{cfg.seed}" if len(configs) > 1 else "")
                executed.mkdir(parents=True, exist_ok=True)
                for src in selected:
                    label = f"[seed {cfg.seed}] {src.name}"
                    live = not args.quiet  # training progress read from the kernel (console.py), a line per epoch or 30 s
                    print(f"{label} ({job.position()}) ...", end="\n" if live else " ", flush=True)
                    t0 = time.perf_counter()
                    with (console.ProgressPrinter(results_dir / f".progress-{os.getpid()}.jsonl", src.stem,
                                                  cfg.batch_size, suffix=lambda: job.short(time.perf_counter() - t0))
                          if live else contextlib.nullcontext()):
                        error = run_one(src, executed / src.name, parameters(cfg, overrides), timeout)
                    seconds = time.perf_counter() - t0
                    job.finish(cfg.seed, src.stem, seconds)
                    status = "ok" if error is None else "FAILED"
                    print(f"{label} {status}" if live else status, f"in {seconds:.1f}s", flush=True)
                    if error:
                        failures.append(f"{src.name} (seed {cfg.seed}): {error}")
                    report["notebooks"].append(dict(seed=cfg.seed, notebook=src.name,
                                                    status="ok" if error is None else "failed", seconds=round(seconds, 1),
                                                    executed=in_checkout(executed / src.name), error=error))
                    report.update(finished=dt.datetime.now().isoformat(timespec="seconds"),
                                  total_seconds=round(time.perf_counter() - t_all, 1))
                    (results_dir / "reproduce.json").write_text(json.dumps(report, indent=2))
    except (KeyboardInterrupt, console.Stopped) as stop:  # Ctrl-C or SIGTERM: say where, what finished, how to resume
        where = f"{src.name}" + (f" (seed {cfg.seed})" if len(configs) > 1 else "")
        finished = [f"{n['notebook'].removesuffix('.ipynb')}" + (f" (seed {n['seed']})" if len(configs) > 1 else "")
                    for n in report["notebooks"] if n["status"] == "ok"]
        command = "python -m tadist_utils " + shlex.join(sys.argv[1:] if argv is None else argv)
        report.update(interrupted=f"{where} after {time.perf_counter() - t0:.0f}s",
                      finished=dt.datetime.now().isoformat(timespec="seconds"),
                      total_seconds=round(time.perf_counter() - t_all, 1))
        with contextlib.suppress(OSError):
            (results_dir / "reproduce.json").write_text(json.dumps(report, indent=2))
        if args.quiet:
            print(flush=True)  # end the line the notebook's name began
        print(console.interrupted_line(stop, where, time.perf_counter() - t_all, finished, command.strip(),
                                       results_dir / "checkpoints"), file=sys.stderr, flush=True)
        return console.exit_status(stop)
    print(f"done in {time.perf_counter() - t_all:.1f}s; executed notebooks in {results_dir / 'executed'}")
    console.announce(notice or _manifest_notice(results_dir), final=True)
    if moved := moved_aside_line(superseded, results_dir):
        print(moved, flush=True)
    if args.update_notebooks and not failures:
        first = results_dir / "executed" / (f"seed{configs[0].seed}" if len(configs) > 1 else "")
        for src in selected:
            publish(first / src.name, src)
        print(f"wrote the outputs of seed {configs[0].seed} into {len(selected)} notebook(s) in {NOTEBOOKS}", flush=True)
    if failures:
        print(f"{len(failures)} notebook(s) failed; their executed copies, kept up to the failing cell, are in "
              f"{results_dir / 'executed'}:", file=sys.stderr)
        for line in failures:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
