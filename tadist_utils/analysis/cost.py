"""What compression buys: size, arithmetic, disk and latency of the teacher, each student and each ensemble.

    python -m tadist_utils.analysis.cost                          # CPU, and CUDA too when there is a GPU
    python -m tadist_utils.analysis.cost --device cpu --threads 1 --repeats 30
    python -m tadist_utils.analysis.cost --quick                  # one timed run of everything: a smoke test, not timing
    python -m tadist_utils.analysis.cost --models ensemble_8 --large-batch 16 --quick --out /tmp/c.json

One row per (device, model, mode): ``teacher``, ``student_level1..4`` (``mode="single"``) and ``ensemble_1/2/4/8``
(1, 2, 4, 8 students of levels 1..4) in two modes: ``sequential`` is ``models.Ensemble.forward`` (a Python loop over
the students), ``together`` is ``models.FusedEnsemble`` (the same students as *one* network of grouped convolutions,
the same logits; BatchNorm kept, so the two differ only in running the students together). Columns: parameters,
MACs of one 32x32 image, ``disk_bytes`` of the fp32 ``state_dict``, the median latency of single synchronised
forward passes at batch 1 and ``--large-batch`` (256) in fp32 eval mode, and export checks of every ensemble:
TorchScript (traced, saved, loaded, run at another batch size) and, when ``onnx`` and ``onnxruntime`` import,
ONNX under onnxruntime, each within ``EXPORT_TOL`` of eager PyTorch. TorchScript is deprecated in torch >= 2.10
but still what a C++ or mobile deployment loads without Python, so its warnings are silenced locally.
``torch.func`` (``stack_module_state`` + ``vmap``) also runs students together but exports less plainly.

Timing is honest only on an idle machine: the JSON records threads, device, versions and the load average.
Writes ``results/cost/<device-slug>.json`` (``-quick`` appended for ``--quick``) and a CSV of the same rows.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import models
from ..engine import describe, describe_machine, device_slug, loadavg, resolve_device, sync

ENSEMBLE_LEVELS = {1: 1, 2: 2, 4: 3, 8: 4}  # students in the ensemble -> their level
MODEL_NAMES = (["teacher"] + [f"student_level{lv}" for lv in models.STUDENT_LEVELS]
               + [f"ensemble_{n}" for n in ENSEMBLE_LEVELS])
# Notebook 06 on smoke: every row and export check once, within seconds (one warm pass: a cold one reads 5x slow).
SMOKE_BUDGET = dict(repeats=1, warmup=1, large_batch=8, max_seconds=0.5)
# on quick: timed briefly, batch 64 not 256 (batch-256 passes took 3-5 s each on one AVX2 thread; 86 s -> 26 s)
QUICK_BUDGET = dict(repeats=3, warmup=1, large_batch=64, max_seconds=1.0)
# what notebook 06 spends on the table per profile (the full measurement is `python -m tadist_utils.analysis.cost`)
PROFILE_BUDGETS = {"smoke": SMOKE_BUDGET, "quick": QUICK_BUDGET, "reference": QUICK_BUDGET}  # reference: rough too (its run is for learning)


# ------------------------------------------------------------------------- export checks
EXPORT_TOL = 1e-4  # max |exported - eager| allowed, relative to max(1, max |eager logits|)


@contextlib.contextmanager
def _quiet_jit():
    """torch >= 2.10 marks torch.jit deprecated with a FutureWarning on every call; silence only those."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def export_check(reference: torch.Tensor, other: torch.Tensor) -> tuple[float, bool]:
    """(max |other - reference|, whether it is within ``EXPORT_TOL`` of the logits' scale)."""
    diff = float((reference.float() - other.float()).abs().max())
    return diff, diff <= EXPORT_TOL * max(1.0, float(reference.abs().max()))


def _export_inputs(model: nn.Module, seed: int):
    """The model on the CPU in eval mode, a batch of 2 to trace and a batch of 5 to compare on."""
    g = torch.Generator().manual_seed(seed)
    return model.eval().cpu(), torch.randn(2, 3, 32, 32, generator=g), torch.randn(5, 3, 32, 32, generator=g)


def export_torchscript(model: nn.Module, folder: Path, name: str, seed: int = 0) -> dict:
    """Trace at batch 2, save, load back, run on a batch of 5: file size and max |loaded - eager|."""
    model, example, probe = _export_inputs(model, seed)
    path = folder / f"{name}.ts.pt"
    with _quiet_jit(), torch.inference_mode():
        traced = torch.jit.trace(model, example)
        torch.jit.save(traced, str(path))
        loaded = torch.jit.load(str(path), map_location="cpu")
        diff, ok = export_check(model(probe), loaded(probe))
    size = path.stat().st_size
    path.unlink()
    return dict(torchscript_bytes=size, torchscript_max_abs_diff=diff, torchscript_ok=ok)


def onnx_available() -> str | None:
    """None when ONNX export can be checked, else why not."""
    missing = []
    for mod in ("onnx", "onnxruntime"):
        try:
            __import__(mod)
        except Exception:  # ImportError, or a broken install
            missing.append(mod)
    return f"skipped: {' and '.join(missing)} not installed" if missing else None


def export_onnx(model: nn.Module, folder: Path, name: str, seed: int = 0) -> dict:
    """ONNX (dynamic batch) run by onnxruntime on CPU, or the reason it was skipped or failed."""
    skipped = onnx_available()
    if skipped:
        return dict(onnx_status=skipped, onnx_bytes=None, onnx_max_abs_diff=None, onnx_ok=None)
    import onnxruntime as ort
    model, example, probe = _export_inputs(model, seed)
    path = folder / f"{name}.onnx"
    try:
        with _quiet_jit(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            # dynamo=False: needs only `onnx` (the default needs onnxscript too); torch >= 2.9 calls it legacy
            torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=["images"],
                              output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        out = session.run(None, {"images": probe.numpy()})[0]
        with torch.inference_mode():
            diff, ok = export_check(model(probe), torch.from_numpy(np.asarray(out)))
        size = path.stat().st_size
        for f in folder.glob(f"{name}.onnx*"):  # external data files, if the exporter wrote any
            f.unlink()
        return dict(onnx_status="ok" if ok else "mismatch", onnx_bytes=size, onnx_max_abs_diff=diff, onnx_ok=ok)
    except Exception as e:  # noqa: BLE001 - the exporter's many failure types all mean "could not check"
        return dict(onnx_status=f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}",
                    onnx_bytes=None, onnx_max_abs_diff=None, onnx_ok=False)


# ------------------------------------------------------------------------- the table

def build_ensemble(n: int, num_classes: int = 10) -> models.Ensemble:
    """The paper's ensemble of ``n`` students (1, 2, 4, 8), randomly initialised."""
    if n not in ENSEMBLE_LEVELS:
        raise ValueError(f"ensembles have {sorted(ENSEMBLE_LEVELS)} students, got {n}")
    return models.Ensemble([models.student(ENSEMBLE_LEVELS[n]) for _ in range(n)], num_classes)


def variants(names: Iterable[str] = MODEL_NAMES, num_classes: int = 10, seed: int = 0):
    """(model, n_students, level, mode, module) for every requested model, in eval mode; ensembles in both modes.
    Weights are random: speed and size do not depend on them."""
    for name in names:
        torch.manual_seed(seed)
        if name == "teacher":
            yield name, 0, 0, "single", models.teacher(num_classes).eval()
        elif name.startswith("student_level"):
            level = int(name.removeprefix("student_level"))
            yield name, 1, level, "single", models.student(level).eval()
        elif name.startswith("ensemble_"):
            n = int(name.removeprefix("ensemble_"))
            ens = build_ensemble(n, num_classes).eval()
            yield name, n, ENSEMBLE_LEVELS[n], "sequential", ens
            yield name, n, ENSEMBLE_LEVELS[n], "together", models.FusedEnsemble(ens).eval()
        else:
            raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")


# ----------------------------------------------------------------------------- measuring
def disk_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())`` (parameters and buffers as stored, fp32 here)."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def latency(model: nn.Module, batch: int, device: torch.device, repeats: int = 20, warmup: int = 3,
            max_seconds: float | None = None, image_size: int = 32) -> dict:
    """Median milliseconds of one forward pass on a random batch, after ``warmup`` untimed passes.

    Each timed run is one pass between two clock reads, the GPU synchronised before both (``Timer.timeit(1)`` ran
    two untimed passes per sample). Stops after at least 3 runs once ``max_seconds`` have passed: the teacher at
    batch 256 on one CPU thread takes seconds.
    """
    model.eval()
    x = torch.randn(batch, 3, image_size, image_size, device=device)
    times: list[float] = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        start = time.perf_counter()
        for i in range(max(1, repeats)):
            sync(device)
            t0 = time.perf_counter()
            model(x)
            sync(device)
            times.append(time.perf_counter() - t0)
            if max_seconds is not None and i + 1 >= min(3, repeats) and time.perf_counter() - start > max_seconds:
                break
    return dict(ms=1000 * statistics.median(times), min_ms=1000 * min(times), runs=len(times))


# ----------------------------------------------------------------------------- the table
def resolve_devices(device: str | Sequence[str]) -> list[torch.device]:
    """'all': the CPU, and CUDA when available; 'cpu', 'cuda', 'cuda:1', or a list of those."""
    out: list[torch.device] = []
    for name in [device] if isinstance(device, str) else device:
        if name == "all":
            out += [torch.device("cpu")] + [torch.device("cuda")] * torch.cuda.is_available()
        elif (dev := resolve_device(name)).type in ("cpu", "cuda"):
            out.append(dev)
        else:
            raise ValueError(f"cost measures on cpu or cuda, got {name!r}")
    return out


def cost_table(device: str | Sequence[str] = "all", repeats: int = 20, *, warmup: int | None = None,
               models_: Iterable[str] = MODEL_NAMES, num_classes: int = 10, large_batch: int = 256,
               max_seconds: float | None = 30.0, export: bool = True, strict: bool = True,
               quick: bool = False, progress: bool = False) -> pd.DataFrame:
    """One row per (device, model, mode) with parameters, MACs, disk size, latency and export checks.

    ``quick``: one timed run and one warm-up per measurement (a smoke test). ``strict``: raise ``AssertionError``
    if an export check failed (a skipped ONNX check is not a failure). Column names follow ``large_batch``.
    """
    if quick:
        repeats = 1
    warmup = (1 if quick else 3) if warmup is None else warmup
    devices = resolve_devices(device)
    big = int(large_batch)
    names = list(models_)
    unknown = [m for m in names if m not in MODEL_NAMES]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(map(repr, unknown))}; choose from {', '.join(MODEL_NAMES)}")
    rows, exports = [], {}
    with tempfile.TemporaryDirectory(prefix="tadist-cost-") as tmp:
        for name, n, level, mode, net in variants(names, num_classes):
            base = dict(model=name, n_students=n, student_level=level or None, mode=mode,
                        parameters=models.count_params(net), macs=models.count_macs(net),
                        paper_parameters=models.PAPER_PARAMS.get(name) if num_classes == 10 else None,
                        disk_bytes=disk_bytes(net))
            if export and mode in ("sequential", "together"):
                t0 = time.perf_counter()
                exports[(name, mode)] = {**export_torchscript(net, Path(tmp), f"{name}-{mode}"),
                                         **export_onnx(net, Path(tmp), f"{name}-{mode}")}
                if progress:
                    print(f"  exported {name} {mode} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
            for dev in devices:
                net = net.to(dev)
                t0 = time.perf_counter()
                small = latency(net, 1, dev, repeats, warmup, max_seconds)
                large = latency(net, big, dev, repeats, warmup, max_seconds)
                rows.append(dict(device=dev.type if dev.index is None else str(dev), device_name=describe(dev),
                                 **base, latency_ms_b1=small["ms"], **{f"latency_ms_b{big}": large["ms"]},
                                 **{f"images_per_s_b{big}": big / (large["ms"] / 1000)},
                                 min_ms_b1=small["min_ms"], **{f"min_ms_b{big}": large["min_ms"]},
                                 runs_b1=small["runs"], **{f"runs_b{big}": large["runs"]},
                                 **exports.get((name, mode), {})))
                if progress:
                    print(f"  {dev.type:<5}{name:<16}{mode:<11}{small['ms']:>9.2f} ms  {large['ms']:>10.1f} ms "
                          f"({time.perf_counter() - t0:.1f}s)", file=sys.stderr)
            net.cpu()
    df = pd.DataFrame(rows)
    if strict:
        bad = export_failures(df)
        if len(bad):
            raise AssertionError("exported models differ from PyTorch:\n" + bad[
                ["model", "mode", "torchscript_max_abs_diff", "onnx_status", "onnx_max_abs_diff"]].to_string())
    return df


def export_failures(df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose TorchScript or ONNX output differs from PyTorch (or whose ONNX export broke)."""
    bad = pd.Series(False, index=df.index)
    for col in ("torchscript_ok", "onnx_ok"):
        if col in df:
            bad |= df[col].map(lambda v: v is False or v is np.False_)
    return df[bad]


# ----------------------------------------------------------------------------- CLI
def format_table(df: pd.DataFrame, large_batch: int = 256) -> str:
    """The table as text: sizes in M / MB, latencies in ms, images/s, and the export checks in short."""
    big = large_batch
    t = pd.DataFrame({
        "device": df.device, "model": df.model, "mode": df["mode"],
        "params (M)": (df.parameters / 1e6).map("{:.3f}".format),
        "MMACs": (df.macs / 1e6).map("{:.1f}".format),
        "disk (MB)": (df.disk_bytes / 1e6).map("{:.2f}".format),
        "ms @1": df.latency_ms_b1.map("{:.2f}".format),
        f"ms @{big}": df[f"latency_ms_b{big}"].map("{:.1f}".format),
        f"img/s @{big}": df[f"images_per_s_b{big}"].map("{:,.0f}".format),
    })
    if "torchscript_max_abs_diff" in df:
        t["TorchScript"] = [("" if pd.isna(d) else f"{'ok' if ok else 'BAD'} {d:.0e}")
                            for d, ok in zip(df.torchscript_max_abs_diff, df.torchscript_ok)]
    if "onnx_status" in df:
        t["ONNX"] = [("" if not isinstance(s, str) else s.split(":")[0] if pd.isna(d) else f"{s} {d:.0e}")
                     for s, d in zip(df.onnx_status, df.onnx_max_abs_diff)]
    return t.to_string(index=False)


def parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Parameters, MACs, disk size, latency and export checks of every "
                                            "model and ensemble, students run one after another and together.")
    p.add_argument("--device", nargs="+", default=["all"], help="cpu, cuda, cuda:N or all (default: CPU, "
                   "and CUDA when available)")
    p.add_argument("--repeats", type=int, default=20, help="timed runs per measurement; the median is reported")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs before the first timed one (default 3; "
                   "--quick 1)")
    p.add_argument("--max-seconds", type=float, default=30.0,
                   help="stop a measurement's timed runs after this long (at least 3 runs; 0: never)")
    p.add_argument("--quick", action="store_true", help="one timed run per measurement: a smoke test, not timing")
    p.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES, metavar="MODEL",
                   help=f"which models (default all: {' '.join(MODEL_NAMES)})")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--large-batch", type=int, default=256, help="the large batch size (default 256)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-export", action="store_true", help="skip the TorchScript / ONNX checks")
    p.add_argument("--cudnn-benchmark", action="store_true",
                   help="let cuDNN try its algorithms per shape first (torch.backends.cudnn.benchmark)")
    p.add_argument("--out", default="results/cost", help="a directory (file named by device) or a .json path; "
                   "a .csv with the same rows is written beside it")
    return p.parse_args(argv)


def main(argv=None) -> pd.DataFrame:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    devices = resolve_devices(args.device)
    started, t_start = loadavg(), time.perf_counter()
    df = cost_table([str(d) for d in devices], args.repeats, warmup=args.warmup, models_=args.models,
                    num_classes=args.num_classes, large_batch=args.large_batch,
                    max_seconds=args.max_seconds or None, export=not args.no_export, strict=False,
                    quick=args.quick, progress=True)
    report = dict(
        what="tadist cost: what compression buys (parameters, MACs, fp32 state_dict bytes, forward latency)",
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        command="python -m tadist_utils.analysis.cost " + " ".join(sys.argv[1:] if argv is None else argv),
        machine=dict(devices=[dict(device=str(d), description=describe(d)) for d in devices],
                     **{k: v for k, v in describe_machine(devices[0]).items() if k not in ("device", "description")},
                     cudnn_allow_tf32=torch.backends.cudnn.allow_tf32 if torch.cuda.is_available() else None,
                     cudnn_benchmark=torch.backends.cudnn.benchmark if torch.cuda.is_available() else None,
                     loadavg_start=started, loadavg_end=loadavg()),
        settings=dict(repeats=1 if args.quick else args.repeats,
                      warmup=args.warmup if args.warmup is not None else (1 if args.quick else 3),
                      max_seconds=args.max_seconds or None, quick=args.quick, large_batch=args.large_batch,
                      num_classes=args.num_classes, precision="fp32", memory_format="contiguous",
                      weights="random init; BatchNorm at its initial running statistics",
                      export_tolerance=f"{EXPORT_TOL} * max(1, max |logits|)",
                      onnx=onnx_available() or f"onnx {__import__('onnx').__version__}, "
                                                 f"onnxruntime {__import__('onnxruntime').__version__}"),
        notes=("sequential = models.Ensemble.forward (students one after another, concat, output layer); "
               "together = FusedEnsemble (all students in one network of grouped convolutions, same logits). "
               "Latency = median of the timed runs (min_ms_* = fastest); runs_* = how many. Compare rows of the "
               "same file only: the load average says how busy the machine was."),
        total_wall_s=round(time.perf_counter() - t_start, 1),
        rows=json.loads(df.to_json(orient="records")))
    out = Path(args.out)
    if out.suffix != ".json":
        out = out / f"{device_slug(devices)}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    df.to_csv(out.with_suffix(".csv"), index=False)
    m = report["machine"]
    print(f"\n{' | '.join(d['description'] for d in m['devices'])} | torch {m['torch']} | {m['threads']} threads | "
          f"load {m['loadavg_start']} -> {m['loadavg_end']}")
    print(format_table(df, args.large_batch))
    print(f"wrote {out} and {out.with_suffix('.csv').name}")
    failed = export_failures(df)
    if len(failed):
        raise SystemExit(f"export check failed for {len(failed)} row(s); see {out}")
    return df


if __name__ == "__main__":
    main()
