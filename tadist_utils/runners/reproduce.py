"""Run the numbered notebooks with papermill, or their training alone (``--headless``): the study in one command.

    python -m tadist_utils --profile quick
    python -m tadist_utils --profile paper --dataset cifar10 --seeds 0 1 2
    python -m tadist_utils --profile smoke --dataset digits --only 00 01
    python -m tadist_utils --profile quick --headless --set experiments=direct,kd   (no Jupyter: no figures)

Flags, settings, the results files already there and the data are checked before anything runs: anything wrong is
one line, ``error: ...``, exit 2. Every notebook runs even if an earlier one failed; failures are listed at the end
(exit 1). Executed copies go to ``<results_dir>/executed/`` (a subfolder per seed when several), wall times to
``<results_dir>/reproduce.json``.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import cli, console
from ..errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
DEFAULT_TIMEOUT = {"smoke": 1200}  # seconds per cell; none for the long profiles
KERNELS: list = []  # the kernel processes run_one started (subprocess.Popen), until they have exited


def check_data(cfg) -> None:
    """Read the data now (downloading CIFAR asked for by name): a bad image is named before 00 runs (``auto`` with
    nothing local falls back to digits: nothing to check)."""
    from .. import data
    if cfg.dataset != "auto" or data.find_cifar10(Path(cfg.data_dir)) is not None:
        data.load_data(cfg)


def notebooks(only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks in run order, or those whose name starts with one of ``only``."""
    found = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if unknown := [o for o in only or [] if not any(p.name.startswith(o) for p in found)]:
        raise ConfigError(f"--only {' '.join(unknown)} matches no notebook; have {', '.join(p.stem for p in found)}")
    return [p for p in found if not only or any(p.name.startswith(o) for o in only)]


def in_checkout(path, root: Path | None = None) -> str:
    """``path`` relative to the checkout (``root``, default this one) when inside it, else absolute."""
    p = Path(os.path.normpath(Path(path).absolute()))  # a symlinked folder keeps the name it was given
    try:
        return p.relative_to(REPO if root is None else root).as_posix() or "."
    except ValueError:
        return str(p)


def parameters(cfg, overrides: dict) -> dict:
    """Notebook parameters: profile, seed and only what was given; fields with a notebook place (``config.role``)
    by name, others in ``overrides`` (the executed notebook shows them as its injected cell)."""
    from ..config import with_role
    named, params = with_role("notebook"), dict(profile=cfg.profile, seed=cfg.seed)
    plain = {k: list(v) if isinstance(v := getattr(cfg, k), tuple) else v for k in overrides}
    params.update({k: in_checkout(v) if k.endswith("_dir") else v for k, v in plain.items() if k in named and k not in params})
    if rest := {k: v for k, v in plain.items() if k not in params and k not in named}:
        params["overrides"] = rest
    return params


def _first_line(text) -> str:
    return (str(text).strip().splitlines() or [""])[0][:200]


def stop_kernels(grace: float = 2.0) -> None:
    """End every kernel still running (SIGTERM, then SIGKILL after ``grace`` s) and wait for it: papermill shuts down
    only a started kernel, and one still starting when the runner stopped outlived it."""
    for process in list(KERNELS):
        for sig in (signal.SIGTERM, getattr(signal, "SIGKILL", signal.SIGTERM)):
            if process.poll() is None:
                with contextlib.suppress(OSError):  # on POSIX it leads its own session (jupyter_client)
                    os.killpg(process.pid, sig) if os.name == "posix" else process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(grace)
        if process.poll() is not None:
            KERNELS.remove(process)


def kernel_options(log: Path, running: dict) -> dict:
    """papermill options: the cell executing now in ``running["cell"]``, the kernel's stderr (plumbing) in ``log``, the
    runner's passed on as ``$TADIST_PROGRESS``, and no SIGINT to an idle kernel at shutdown (papermill sends one: the
    kernel logged ``KeyboardInterrupt caught in kernel`` after a good run)."""
    from jupyter_client import AsyncKernelManager
    terminal = os.environ.get(console.ENV)

    class KernelManager(AsyncKernelManager):
        async def _async_interrupt_kernel(self) -> None:
            if not self.shutting_down or running.get("cell") is not None:
                await super()._async_interrupt_kernel()

        async def _async_launch_kernel(self, kernel_cmd, **kw) -> None:
            with open(log, "ab") as f:  # the kernel keeps its own copy of the descriptor
                kw.update(stderr=f, pass_fds=(int(terminal),) if terminal else ())
                await super()._async_launch_kernel(kernel_cmd, **kw)
            KERNELS.append(self.provisioner.process)

    def state(busy):
        return lambda cell, **_: running.update(cell=cell if busy else None)
    return dict(kernel_manager_class=KernelManager, on_cell_execute=state(True), on_cell_executed=state(False))


def run_one(src: Path, out: Path, params: dict, timeout: int | None) -> str | None:
    """Execute one notebook; None on success, else one line saying where it failed (and the kernel's log if any)."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError
    log = out.with_suffix(".kernel.log")
    log.unlink(missing_ok=True)
    running: dict = {}
    try:
        pm.execute_notebook(str(src), str(out), parameters=params, kernel_name="python3", cwd=str(src.parent),
                            execution_timeout=timeout, progress_bar=False, log_output=False,
                            extra_arguments=["--IPKernelApp.log_level=ERROR"], **kernel_options(log, running))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: no kernel outlives the runner
        stop_kernels()
        raise
    except PapermillExecutionError as e:
        return f"cell In [{e.exec_count}] `{_first_line(e.source)}`: {e.ename}: {_first_line(e.evalue)}"
    except Exception as e:  # a cell timeout, a dead kernel: papermill saved the notebook up to that cell
        cell, logged = running.get("cell"), f" (the kernel's log: {log})" if log.is_file() and log.stat().st_size else ""
        where = f"cell In [{cell.get('execution_count')}] `{_first_line(cell.source)}`" if cell else "before any cell"
        return f"{where}: {type(e).__name__}: {_first_line(e)}{logged}"
    finally:
        KERNELS[:] = [p for p in KERNELS if p.poll() is None]
        if log.is_file() and not log.stat().st_size:
            log.unlink()


def _superseded(results_dir: Path) -> dict:
    """What ``<results_dir>/superseded/`` holds (name -> size): compared after the notebooks ran."""
    from ..storage.results import SUPERSEDED
    folder = results_dir / SUPERSEDED
    return {p.name: p.stat().st_size for p in folder.iterdir()} if folder.is_dir() else {}


def headless(configs, notice: str, command: str) -> int:
    """The notebooks' training without Jupyter (and without their figures), seed after seed, into the same files."""
    from ..experiments import Pipeline
    finished, t_all, cfg = [], time.perf_counter(), configs[0]
    folder = Path(cfg.results_dir).absolute()
    created = next((p for p in [*reversed(folder.parents), folder] if not p.exists()), None)  # what a refusal removes
    try:
        with console.stop_on_sigterm():
            for cfg in configs:
                t0 = time.perf_counter()
                try:
                    Pipeline(cfg).run()
                except ConfigError as e:  # bad data found on loading, a full disk, a diverged loss: one line
                    if created and all(p.is_dir() or p.name == ".results.lock" for p in created.rglob("*")):
                        shutil.rmtree(created, ignore_errors=True)
                    print(f"error: {e}", file=sys.stderr)
                    return 2
                print(f"seed {cfg.seed}: done in {time.perf_counter() - t0:.1f}s; results in {cfg.results_dir}", flush=True)
                finished.append(f"seed {cfg.seed}")
    except KeyboardInterrupt as stop:
        return console.interrupted(stop, f"seed {cfg.seed}", time.perf_counter() - t_all, finished, command,
                                   Path(cfg.results_dir) / "checkpoints")
    console.announce(notice, final=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = cli.parser("python -m tadist_utils", __doc__)
    ap.add_argument("--timeout", type=int, help="papermill execution_timeout: seconds any one cell of a notebook may "
                                                "take (training is one cell); default 1200 for smoke, none otherwise")
    ap.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks, e.g. --only 02 03")
    ap.add_argument("--headless", action="store_true", help="train without Jupyter: the notebooks' training and "
                    "results files, none of their figures (run 05 and 06 on them afterwards)")
    ap.add_argument("--quiet", action="store_true", help="no live training progress, one line per notebook")
    args = ap.parse_args(argv)
    command = shlex.join(["python", "-m", "tadist_utils", *(sys.argv[1:] if argv is None else argv)])
    from ..config import Config, default_results_dir, make_config
    from ..storage.results import check_files

    try:  # everything that can be wrong with the input is reported here, before anything runs
        if args.timeout is not None and args.timeout <= 0:
            raise ConfigError(f"--timeout must be a positive number of seconds, got {args.timeout}")
        if args.headless and (given := [f for f in ("only", "timeout", "quiet") if getattr(args, f)]):
            raise ConfigError(f"--{', --'.join(given)}: for the notebooks, not --headless")
        overrides = cli.overrides(args)
        for key, default in dict(data_dir=Config.data_dir, results_dir=default_results_dir(args.profile)).items():
            given = overrides.get(key)  # given paths: relative to the cwd; defaults: to the repo root
            overrides[key] = str(Path(os.path.normpath(Path(given).absolute())) if given else REPO / default)
        configs = [make_config(args.profile, seed=s, **overrides) for s in args.seeds]
        selected = notebooks(args.only)
        notice = console.data_notice(configs[0])  # auto: the download tried now
        if not args.headless:  # headless: the pipeline reads it (and a refusal removes the folder it made)
            check_data(configs[0])
        check_files(configs[0].results_dir)
        line = console.data_line(configs[0], fallback=bool(notice))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    console.announce(notice)  # which data, said first; the fallback as a banner, and again at the end
    print(line, flush=True)
    if args.headless:
        return headless(configs, notice, command)

    results_dir = Path(configs[0].results_dir)
    timeout = args.timeout if args.timeout is not None else DEFAULT_TIMEOUT.get(args.profile)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])  # this checkout
    os.environ["TADIST_RUNNER"] = "1"  # nbsetup.RUNNER_ENV: the data is said here, not again by each kernel

    from tqdm.std import tqdm
    report = dict(profile=args.profile, seeds=args.seeds, results_dir=in_checkout(results_dir), timeout_per_cell=timeout,
                  started=dt.datetime.now().isoformat(timespec="seconds"), notebooks=[])
    failures, steps = [], [(cfg, src) for cfg in configs for src in selected]

    def save(**extra):
        report.update(extra, finished=dt.datetime.now().isoformat(timespec="seconds"),
                      total_seconds=round(time.perf_counter() - t_all, 1))
        (results_dir / "reproduce.json").write_text(json.dumps(report, indent=2))
    print(f"{len(selected)} notebook(s) x {len(configs)} seed(s), profile {args.profile}, results in {results_dir}")
    t_all, superseded = time.perf_counter(), _superseded(results_dir)
    cfg, src, t0 = configs[0], selected[0], t_all  # where a stop lands
    terminal = None if args.quiet or os.name != "posix" else os.dup(2)  # for the kernels' bars (POSIX: pass_fds)
    if terminal is not None:
        os.environ[console.ENV] = str(terminal)
    try:
        with console.stop_on_sigterm():
            for i, (cfg, src) in enumerate(steps):
                executed = results_dir / "executed" / (f"seed{cfg.seed}" if len(configs) > 1 else "")
                executed.mkdir(parents=True, exist_ok=True)
                label = f"[seed {cfg.seed}] {src.name}"
                elapsed = time.perf_counter() - t_all  # the job's ETA at this run's pace so far
                eta = tqdm.format_meter(i, len(steps), elapsed, bar_format="; job ETA {remaining}") if i else ""
                print(f"{label} (notebook {i + 1}/{len(steps)}{eta}) ...", end=" " if args.quiet else "\n", flush=True)
                t0 = time.perf_counter()
                error = run_one(src, executed / src.name, parameters(cfg, overrides), timeout)
                seconds = time.perf_counter() - t0
                print(("" if args.quiet else f"{label} ") + ("ok" if error is None else "FAILED"), f"in {seconds:.1f}s", flush=True)
                if error:
                    failures.append(f"{src.name} (seed {cfg.seed}): {error}")
                report["notebooks"].append(dict(seed=cfg.seed, notebook=src.name, status="failed" if error else "ok", error=error,
                                                seconds=round(seconds, 1), executed=in_checkout(executed / src.name)))
                save()
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: say where, what finished, how to resume
        where, several = src.name, len(configs) > 1
        with contextlib.suppress(OSError):
            save(interrupted=f"{where} after {time.perf_counter() - t0:.0f}s")
        if args.quiet:
            print(flush=True)  # end the line the notebook's name began
        done = [n["notebook"].removesuffix(".ipynb") + (f" (seed {n['seed']})" if several else "")
                for n in report["notebooks"] if n["status"] == "ok"]
        return console.interrupted(stop, where + (f" (seed {cfg.seed})" if several else ""), time.perf_counter() - t_all,
                                   done, command, results_dir / "checkpoints")
    finally:
        if terminal is not None:
            os.environ.pop(console.ENV, None)
            os.close(terminal)
    print(f"done in {time.perf_counter() - t_all:.1f}s; executed notebooks in {results_dir / 'executed'}")
    with contextlib.suppress(OSError, ValueError, AttributeError):  # a fallback the runner's own check did not see
        notice = notice or json.loads((results_dir / "manifest.json").read_text()).get("dataset", {}).get("notice", "")
    console.announce(notice, final=True)
    if _superseded(results_dir) != superseded:  # the notebooks' NOTICE is inside a kernel, unseen here
        print(f"NOTICE: rows made under other settings were moved to {results_dir / 'superseded'}/ during this run (the "
              "executed notebook that moved them says which and why); 05 and 06 show only this run's settings", flush=True)
    if failures:
        print(f"{len(failures)} notebook(s) failed; their executed copies, kept up to the failing cell, are in "
              f"{results_dir / 'executed'}:", *(f"  {line}" for line in failures), sep="\n", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
