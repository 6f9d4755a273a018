"""Write a run's executed notebooks over notebooks/ (the committed outputs: README, "The reference run").

    python -m tadist_utils --profile reference --dataset cifar10 --seeds 0 1 2 --results-dir results/reference_cifar10
    python tools/publish_notebooks.py results/reference_cifar10

Refused unless every notebook of the run (``reproduce.json``) went fine; the first seed's copies are published.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def publish(executed: Path, dest: Path) -> None:
    """An executed notebook as a committed source: outputs kept; papermill's injected cell (Run All would run the
    published profile), its metadata and widgets dropped; the checkout's path made relative."""
    import nbformat
    nb = nbformat.read(executed, as_version=4)
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    for key in ("papermill", "widgets"):
        nb.metadata.pop(key, None)
    for cell in nb.cells:
        for key in ("papermill", "execution"):
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if "application/vnd.jupyter.widget-view+json" not in o.get("data", {})]
            for o in cell.outputs:
                for d, key in [(o, "text"), *((o["data"], m) for m in o.get("data", {}) if m.startswith("text/"))]:
                    if isinstance(d.get(key), str):
                        d[key] = d[key].replace(f"{REPO}/", "")
    nbformat.write(nb, dest)


def main(results_dir: str) -> int:
    report = json.loads((Path(results_dir) / "reproduce.json").read_text())
    runs = report["notebooks"]
    if report.get("interrupted") or not runs or any(n["status"] != "ok" for n in runs):
        sys.exit(f"error: {results_dir} holds an interrupted or failed run: nothing published")
    first = [n for n in runs if n["seed"] == runs[0]["seed"]]
    for n in first:
        publish(REPO / n["executed"], REPO / "notebooks" / n["notebook"])  # executed: relative to REPO, or absolute
    print(f"wrote the outputs of seed {runs[0]['seed']} into {len(first)} notebook(s) in {REPO / 'notebooks'}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
