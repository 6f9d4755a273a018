"""The paper's architectures: a per-layer summary of each (torchinfo) and results/models.csv (role, parameters, the
paper's count, MACs per image), from ``models.catalogue``.

    python -m tools.models_catalogue               # from the repository root
    python -m tools.models_catalogue --no-layers --out /tmp/models.csv
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Sequence

from tadist_utils.models import catalogue

COLUMNS = ["model", "role", "parameters", "paper_parameters", "macs_per_image"]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Summarise the paper's architectures and write models.csv.")
    parser.add_argument("--out", default="results/models.csv", help="CSV to write (default: results/models.csv)")
    parser.add_argument("--no-layers", action="store_true", help="skip the per-layer summaries")
    args = parser.parse_args(argv)
    rows = catalogue()
    if not args.no_layers:
        from torchinfo import summary
        for row in rows[:5]:  # the teacher and one student per level; the ensembles are those students again
            print(f"\n=== {row['model']}: {row['role']}")
            summary(row["net"], input_size=(1, 3, 32, 32), col_names=("output_size", "num_params"), depth=3,
                    device="cpu", verbose=1)
    print(f"\n{'model':<16}{'parameters':>12}{'paper':>12}{'MACs/image':>14}  role")
    for row in rows:
        print(f"{row['model']:<16}{row['parameters']:>12,}{row['paper_parameters']:>12,}{row['macs_per_image']:>14,}"
              f"  {row['role']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
