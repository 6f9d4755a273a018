"""Hold the README's results tables to the committed CSVs: every number in them must be a value of one.

The convention (``study_tables.markdown`` writes tables that follow it):

* A results table sits right under a marker comment naming its CSV, relative to the repository root::

      <!-- table: results/quick_cifar10_seeds/summary.csv -->
      | experiment | teacher | 1 student | 2 students |
      |---|---|---|---|
      | direct | 51.50 ± 6.60 | 38.58 ± 14.44 | 41.38 ± 3.16 |

  Blank lines may separate the two; text may surround the table freely, and tables may move, so the README can
  be restructured as long as each table keeps its marker.
* The CSV has a ``label`` column. A table row's first cell (markdown emphasis and code marks removed) is the
  ``label`` of the CSV row(s) it shows; a first cell ending in " (paper)" shows the paper's numbers
  (``results.PAPER_ACCURACY``) for the experiment of that label. The first cell is a name, and its digits are
  not checked.
* When a label names several CSV rows (summary.csv: one per model), the column header picks one: "teacher" the
  teacher's row (the experiment's own, else the study's one teacher row), "N student(s)" the ``ensemble_N`` row.
* Every other number in the row (signs, thousands separators, a trailing % allowed; ranges written with an en dash,
  "20.4–30.3", so that the dash is not read as a minus) must equal, at the precision shown, a value in that CSV row:
  "41.38" matches 41.3833, "0.0492" matches 0.049201, "5,000" matches 5000, "3/3" the wins and n. A number
  right after a letter and a hyphen is part of a name (CIFAR-10) and is skipped.
* A table with a header cell that names an ensemble size ("2 students") or a verdict must have a marker: a results
  table cannot escape the check by losing it.

``check(paths)`` returns one line per problem (empty: all good); ``tests/test_readme_numbers.py`` runs it on
README.md and results/README.md.
"""
from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pandas as pd

from ..storage.results import PAPER_ACCURACY

MARKER = re.compile(r"<!--\s*table:\s*(\S+)\s*-->")
NUMBER = re.compile(r"(?<![\w.])([-+−]?)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(e[-+]?\d+)?(?![\w])")
NEEDS_MARKER = re.compile(r"^\d+ students?$|\bverdict\b", re.I)  # a header cell of a results table


def numbers(text: str) -> list[Decimal]:
    """The numbers in a cell, with the precision they are written at (``Decimal`` keeps it)."""
    out = []
    for m in NUMBER.finditer(text):
        start = m.start()
        if m.group(1) == "" and start >= 2 and text[start - 1] == "-" and text[start - 2].isalpha():
            continue  # CIFAR-10, AVX512-BF16: part of a name
        sign = "-" if m.group(1) in ("-", "−") else ""
        out.append(Decimal(sign + m.group(2).replace(",", "") + (m.group(3) or "") + (m.group(4) or "")))
    return out


def matches(shown: Decimal, values) -> bool:
    """``shown`` equals some value rounded to the precision it is written at."""
    half = Decimal(5).scaleb(shown.as_tuple().exponent - 1)  # half a unit of the last digit shown
    for v in values:
        try:
            if abs(Decimal(repr(float(v))) - shown) <= half + Decimal("1e-9"):
                return True
        except (ValueError, TypeError, ArithmeticError):
            continue
    return False


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _plain(cell: str) -> str:
    return re.sub(r"[*`]", "", cell).strip()


def tables(text: str) -> list[tuple[str | None, list[str], list[list[str]], int]]:
    """(marker path or None, header cells, body rows, line number) of every markdown table in ``text``."""
    lines = text.splitlines()
    out, i, marker = [], 0, None
    while i < len(lines):
        m = MARKER.search(lines[i])
        if m:
            marker = m.group(1)
            i += 1
            continue
        if lines[i].lstrip().startswith("|") and i + 1 < len(lines) and re.match(r"^\s*\|[\s:|-]+\|\s*$", lines[i + 1]):
            start, head = i, _cells(lines[i])
            i += 2
            body = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                body.append(_cells(lines[i]))
                i += 1
            out.append((marker, head, body, start + 1))
            marker = None
            continue
        if lines[i].strip():
            marker = None  # a marker belongs to the table right under it (blank lines allowed)
        i += 1
    return out


def _model(header: str) -> str | None:
    h = _plain(header).lower()
    if h == "teacher":
        return "teacher"
    m = re.fullmatch(r"(\d+) students?", h)
    return f"ensemble_{m.group(1)}" if m else None


def _row_values(csv: pd.DataFrame, label: str, header: str) -> tuple[list | None, str]:
    rows = csv[csv.label.astype(str) == label]
    if rows.empty:
        return None, f"no row labelled {label!r}"
    if len(rows) > 1 and "model" in csv:
        model = _model(header)
        pick = rows[rows.model == model]
        if pick.empty and model is not None:
            pick = csv[csv.model == model]  # the study's one teacher, shown in every experiment's row
        if len(pick) != 1:
            return None, f"column {header!r} picks no single row of {label!r}"
        rows = pick
    elif len(rows) > 1:
        return None, f"{len(rows)} rows labelled {label!r}"
    return list(rows.iloc[0].to_numpy()), ""


def _paper_values(csv: pd.DataFrame, label: str, header: str) -> tuple[list | None, str]:
    rows = csv[csv.label.astype(str) == label]
    exp = rows.experiment.iloc[0] if len(rows) and "experiment" in rows else None
    if exp not in PAPER_ACCURACY:
        return None, f"{label!r} is no experiment of the paper"
    model = _model(header)
    key = "teacher" if model == "teacher" else (int(model.removeprefix("ensemble_")) if model else None)
    return ([PAPER_ACCURACY[exp][key]] if key in PAPER_ACCURACY[exp] else []), ""


def check_text(text: str, root: Path, name: str = "README") -> list[str]:
    """Problems in one markdown text (paths in markers are relative to ``root``)."""
    problems = []
    for marker, head, body, line in tables(text):
        where = f"{name}:{line}"
        if marker is None:
            if any(NEEDS_MARKER.search(_plain(h)) for h in head):
                problems.append(f"{where}: a results table without a '<!-- table: <csv> -->' marker above it")
            continue
        path = root / marker
        if not path.exists():
            problems.append(f"{where}: {marker} does not exist")
            continue
        csv = pd.read_csv(path)
        if "label" not in csv:
            problems.append(f"{where}: {marker} has no label column")
            continue
        for cells in body:
            label = _plain(cells[0])
            paper = label.endswith(" (paper)")
            for header, cell in zip(head[1:], cells[1:]):
                shown = numbers(_plain(cell))
                if not shown:
                    continue
                values, why = (_paper_values(csv, label.removesuffix(" (paper)"), header) if paper
                               else _row_values(csv, label, header))
                if values is None:
                    problems.append(f"{where}: row {label!r}: {why} in {marker}")
                    break
                for x in shown:
                    if not matches(x, values):
                        problems.append(f"{where}: row {label!r}, column {_plain(header)!r}: {x} is in no column of "
                                        f"its row of {marker}" + (" (the paper's numbers)" if paper else ""))
    return problems


def check(paths, root: Path | None = None) -> list[str]:
    """Problems in every markdown file of ``paths`` (default root: the repository, two folders above here)."""
    root = Path(root) if root is not None else Path(__file__).resolve().parents[2]
    out = []
    for p in paths:
        p = Path(p)
        out += check_text(p.read_text(), root, str(p.relative_to(root) if p.is_absolute() else p))
    return out
