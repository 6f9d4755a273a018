"""The package's budget (issue 29): its lines, the method's share, and the path of one experiment through it.

    python tools/budget.py          # the table and the checks; exit status 1 when a check fails
    python tools/budget.py --lines  # lines only (no training run)

Lines are `wc -l` of every ``tadist_utils/**/*.py``. The path is traced with ``sys.setprofile`` while a tiny run
(smoke profile, scikit-learn digits, one level of students) calls ``Pipeline.run_experiment("direct")``, its teacher
already trained: every package module a call enters on the way to results.csv, and how many package calls below
``run_experiment`` each function of losses.py runs while a loss is computed (comprehensions' frames not counted).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tadist_utils"
METHOD = ("models.py", "losses.py", "plans.py", "train.py", "fused.py", "experiments.py")  # plans holds the methods
MAX_LINES, MIN_METHOD_SHARE, MAX_MODULES, MAX_LOSS_DEPTH = 3500, 0.35, 10, 4


def lines() -> dict[str, int]:
    return {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in sorted(PACKAGE.rglob("*.py"))}


def trace() -> tuple[set[str], dict[tuple[str, ...], int]]:
    """Modules entered during one ``run_experiment`` and, per chain of calls reaching losses.py, its depth."""
    sys.path.insert(0, str(ROOT))
    from tadist_utils.config import make_config
    from tadist_utils.experiments import Pipeline

    with tempfile.TemporaryDirectory() as tmp:
        pipe = Pipeline(make_config("smoke", dataset="digits", levels=1, experiments="direct", results_dir=tmp,
                                    progress=False))
        pipe.teacher()
        modules, chains, top = set(), {}, None

        def profile(frame, event, arg):
            nonlocal top
            if event != "call" or not frame.f_code.co_filename.startswith(str(PACKAGE)):
                return
            path = Path(frame.f_code.co_filename)
            modules.add(str(path.relative_to(PACKAGE)))
            if frame.f_code.co_name == "run_experiment":
                top = frame
            if path.name == "losses.py" and top is not None:  # package frames up to run_experiment
                chain, f = [], frame
                while f is not None and f is not top:
                    if f.f_code.co_filename.startswith(str(PACKAGE)) and not f.f_code.co_name.startswith("<"):
                        chain.append(f.f_code.co_name)  # comprehensions' own frames (Python < 3.12) not counted
                    f = f.f_back
                if f is top and any("loss" in name for name in chain):  # a loss, not a plan's chunk_slices
                    chains[tuple(reversed(chain))] = len(chain)

        sys.setprofile(profile)
        try:
            pipe.run_experiment("direct")
        finally:
            sys.setprofile(None)
    return modules, chains


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", action="store_true", help="lines only, no training run")
    only_lines = parser.parse_args(argv).lines
    counts = lines()
    total = sum(counts.values())
    method = sum(n for m, n in counts.items() if m in METHOD)
    for m, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"{n:6d}  {m}{'  (method)' if m in METHOD else ''}")
    checks = [(f"package {total} lines <= {MAX_LINES}", total <= MAX_LINES),
              (f"method {method} lines = {method / total:.0%} of the package >= {MIN_METHOD_SHARE:.0%}",
               method / total >= MIN_METHOD_SHARE)]
    if not only_lines:
        modules, chains = trace()
        print(f"\nrun_experiment('direct') enters {len(modules)} package modules: {', '.join(sorted(modules))}")
        for chain, depth in sorted(chains.items(), key=lambda kv: kv[1]):
            print(f"  loss {depth} calls below run_experiment: {' -> '.join(chain)}")
        deepest = max(chains.values(), default=0)
        checks += [(f"{len(modules)} modules on one experiment's path <= {MAX_MODULES}", len(modules) <= MAX_MODULES),
                   (f"the loss at most {deepest} calls below run_experiment <= {MAX_LOSS_DEPTH}",
                    0 < deepest <= MAX_LOSS_DEPTH)]
    print()
    for text, ok in checks:
        print(f"{'ok  ' if ok else 'FAIL'}  {text}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
