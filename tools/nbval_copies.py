"""Parameterised copies of the committed notebooks for nbval (``make notebooks``): smoke on digits, nothing run.

    python tools/nbval_copies.py results/_nbval
    python -m pytest --nbval -p no:cacheprovider results/_nbval/notebooks

Refused (one line, exit 2) while a notebook differs from git's HEAD: Jupyter autosaves a run's outputs into it, and
nbval would compare against a half-run notebook (``Unrun reference cell has outputs``) instead of the committed one.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's package


def changed_since_commit(folder: Path) -> list[str]:
    """The numbered notebooks in ``folder`` that differ from git's HEAD, as ``notebooks/NAME``."""
    r = subprocess.run(["git", "diff", "--name-only", "--relative", "HEAD", "--", "[0-9][0-9]_*.ipynb"], cwd=folder,
                       capture_output=True, text=True, timeout=60)
    return [f"notebooks/{name}" for name in r.stdout.split()] if r.returncode == 0 else []


def main(results_dir: str, notebooks: Path = REPO / "notebooks") -> int:
    import papermill as pm

    from tadist_utils.config import make_config
    from tadist_utils.runners.reproduce import parameters
    if changed := changed_since_commit(notebooks):
        print(f"error: {', '.join(changed)} changed since the last commit (Jupyter saves a run's outputs into the "
              f"notebook; nbval compares against the committed ones): git checkout {' '.join(changed)} first, or "
              "commit the change", file=sys.stderr)
        return 2
    out = Path(results_dir).absolute()
    cfg = make_config("smoke", dataset="digits", data_dir=str(REPO / "data"), results_dir=str(out))
    params = parameters(cfg, dict.fromkeys(["dataset", "data_dir", "results_dir"]))  # paths relative to the checkout
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    sources = sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))
    for src in sources:
        pm.execute_notebook(str(src), str(out / "notebooks" / src.name), parameters=params, kernel_name="python3",
                            prepare_only=True)
    print(f"prepared {len(sources)} notebook(s) in {out / 'notebooks'}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
