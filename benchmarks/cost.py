"""The cost table measured in full (``tadist_utils.analysis.cost``, what notebook 06 shows on a budget) with every
ensemble's export checks (``export``), written as a JSON with the machine and a CSV of the same rows.

    python -m benchmarks.cost                          # CPU, and CUDA too when there is a GPU
    python -m benchmarks.cost --device cpu --threads 1 --min-run-time 5
    python -m benchmarks.cost --quick                  # a brief timing of everything: a smoke test, not timing
    python -m benchmarks.cost --models ensemble_8 --large-batch 16 --quick --out /tmp/c.json

Timing is honest only on an idle machine: the JSON records threads, device, versions and the load average.
Writes ``benchmarks/results/cost/<device-slug>.json`` (``-quick`` appended for ``--quick``) and a CSV beside it.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

from tadist_utils.analysis.cost import MODEL_NAMES, SMOKE_BUDGET, cost_table, variants
from tadist_utils.engine import resolve_device

from .export import EXPORT_TOL, export_failures, export_onnx, export_torchscript, onnx_available
from .machine import describe, describe_machine, device_slug, loadavg


def exports(names, num_classes: int = 10) -> pd.DataFrame:
    """TorchScript and ONNX round trips of every ensemble in both modes: one row per (model, mode)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="tadist-export-") as tmp:
        for name, _, _, mode, net in variants(names, num_classes):
            if mode != "single":
                rows.append(dict(model=name, mode=mode, **export_torchscript(net, Path(tmp), f"{name}-{mode}"),
                                 **export_onnx(net, Path(tmp), f"{name}-{mode}")))
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["model", "mode"])


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
    p.add_argument("--min-run-time", type=float, default=2.0,
                   help="seconds of timed forwards per measurement (torch.utils.benchmark's blocked_autorange)")
    p.add_argument("--quick", action="store_true", help="notebook 06's smoke budget: a smoke test, not timing")
    p.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES, metavar="MODEL",
                   help=f"which models (default all: {' '.join(MODEL_NAMES)})")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--large-batch", type=int, default=256, help="the large batch size (default 256)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-export", action="store_true", help="skip the TorchScript / ONNX checks")
    p.add_argument("--cudnn-benchmark", action="store_true",
                   help="let cuDNN try its algorithms per shape first (torch.backends.cudnn.benchmark)")
    p.add_argument("--out", default="benchmarks/results/cost", help="a directory (file named by device) or a .json "
                   "path; a .csv with the same rows is written beside it")
    return p.parse_args(argv)


def main(argv=None) -> pd.DataFrame:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    names = [n for d in args.device for n in (["cpu"] + ["cuda"] * torch.cuda.is_available() if d == "all" else [d])]
    devices = [resolve_device(d) for d in dict.fromkeys(names)]
    started, t_start = loadavg(), time.perf_counter()
    min_run_time = SMOKE_BUDGET["min_run_time"] if args.quick else args.min_run_time
    df = pd.concat([cost_table(str(d), args.num_classes, args.models, args.large_batch, min_run_time)
                    for d in devices], ignore_index=True)
    if not args.no_export:
        df = df.merge(exports(args.models, args.num_classes), on=["model", "mode"], how="left")
    machine = describe_machine(devices[0])
    report = dict(
        what="tadist cost: what compression buys (parameters, MACs, fp32 state_dict bytes, forward latency)",
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        command="python -m benchmarks.cost " + " ".join(sys.argv[1:] if argv is None else argv),
        machine=dict(devices=[dict(device=str(d), description=describe(d)) for d in devices],
                     **{k: v for k, v in machine.items() if k not in ("device", "description")},
                     cudnn_allow_tf32=torch.backends.cudnn.allow_tf32 if torch.cuda.is_available() else None,
                     cudnn_benchmark=args.cudnn_benchmark, loadavg_start=started, loadavg_end=loadavg()),
        settings=dict(min_run_time=min_run_time, quick=args.quick, large_batch=args.large_batch,
                      num_classes=args.num_classes, precision="fp32", memory_format="contiguous",
                      weights="random init; BatchNorm at its initial running statistics",
                      export_tolerance=f"{EXPORT_TOL} * max(1, max |logits|)",
                      onnx=onnx_available() or f"onnx {__import__('onnx').__version__}, "
                                                 f"onnxruntime {__import__('onnxruntime').__version__}"),
        notes=("sequential = models.Ensemble.forward (students one after another, concat, output layer); "
               "together = FusedEnsemble (all students in one network of grouped convolutions, same logits). "
               "Latency = torch.utils.benchmark's median per forward (blocked_autorange); runs_* = forwards timed. "
               "Compare rows of the same file only: the load average says how busy the machine was."),
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
    if len(failed := export_failures(df)):
        raise SystemExit(f"export check failed for {len(failed)} row(s); see {out}")
    return df


if __name__ == "__main__":
    main()
