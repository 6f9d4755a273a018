"""A study's tables, written beside its ``results.csv``, and the README tables built from them.

``write(results_dir)`` writes ``summary.csv`` (per experiment and model), ``claims.csv`` (every comparison of every
declared family) and ``verdicts.csv`` (one row per claim of the paper). ``markdown`` renders one as a README table;
``check(paths)`` holds the README's tables to the committed CSVs, one line per problem, by this convention:

* A results table sits right under a marker comment naming its CSV, relative to the repository root::

      <!-- table: results/quick_cifar10_seeds/summary.csv -->
      | experiment | teacher | 1 student | 2 students |
      |---|---|---|---|
      | direct | 51.50 ± 6.60 | 38.58 ± 14.44 | 41.38 ± 3.16 |

  Blank lines may separate the two; tables may move as long as each keeps its marker.
* The CSV has a ``label`` column. A table row's first cell (markdown emphasis and code marks removed) is the
  ``label`` of the CSV row(s) it shows; a first cell ending in " (paper)" shows the paper's numbers
  (``analysis.paper.PAPER_ACCURACY``) for the experiment of that label. The first cell is a name, and its digits are
  not checked.
* When a label names several CSV rows (summary.csv: one per model), the column header picks one: "teacher" the
  teacher's row (the experiment's own, else the study's one teacher row), "N student(s)" the ``ensemble_N`` row.
* Every other number in the row (signs, thousands separators, a trailing % allowed; ranges written with an en dash,
  "20.4–30.3", so that the dash is not read as a minus) must equal, at the precision shown, a value in that CSV row:
  "41.38" matches 41.3833, "0.0492" matches 0.049201, "5,000" matches 5000, "3/3" the wins and n. A number
  right after a letter and a hyphen is part of a name (CIFAR-10) and is skipped.
* A table with a header cell that names an ensemble size ("2 students") or a verdict must have a marker: a results
  table cannot escape the check by losing it.

From the repository root::

    python -m tools.study_tables results/quick_cifar10_seeds            # write the CSVs
    python -m tools.study_tables results/quick_cifar10_seeds --markdown # and print the tables
"""
from __future__ import annotations

import argparse
import re
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

from tadist_utils.analysis.claims import FAMILIES, PAPER_FAMILIES, comparisons, conclusions, regime
from tadist_utils.analysis.paper import PAPER_ACCURACY
from tadist_utils.analysis.stats import EQUAL, accuracy_table, share_students
from tadist_utils.storage.results import ResultsStore

CLAIM_COLUMNS = ["dataset", "family", "label", "comparison", "n", "mean_diff", "ci_low", "ci_high", "min_diff",
                 "max_diff", "wins", "p", "p_holm", "p_perm", "p_perm_holm", "family_size", "detectable",
                 "seeds_needed", "outcome", "outcome_perm", "decided", "identical", "duplicate_of"]
VERDICT_COLUMNS = ["dataset", "family", "label", "claim", "verdict", "verdict_perm", "decided", "rests_on",
                   "family_size", "n_seeds", "p_perm_floor", "p_min", "p_perm_min", "detectable_min", "detectable_max",
                   "seeds_needed", "profile", "train_images", "test_images", "teacher_epochs", "student_epochs",
                   "finetune_epochs", "teacher_accuracy", "seeds", "regime"]


def tables(results_dir) -> dict[str, pd.DataFrame]:
    """summary, claims and verdicts of a results folder (what ``write`` writes), one dataset after another."""
    store = ResultsStore(results_dir)
    results, manifest = store.results(), store.manifest()
    shared = share_students(manifest)
    claims, verdicts = [], []
    for ds in sorted(results.dataset.astype(str).unique()):
        c = comparisons(results, dataset=ds, share_students=shared, families=tuple(FAMILIES))
        claims.append(c.assign(dataset=ds, family=c.family_key, label=c.family_key + " · " + c.comparison,
                               family_size=c.family))
        v = conclusions(results, dataset=ds, share_students=shared, manifest=manifest)
        where = {k: val for k, val in regime(results, manifest, ds).items() if k not in ("text", "dataset")}
        verdicts.append(v.assign(dataset=ds, family=v.family_key, label=v.family_key + " · " + v.claim, **where))
    return dict(summary=pd.read_csv(store.summary_csv) if store.summary_csv.exists() else store.write_summary(),
                claims=pd.concat(claims, ignore_index=True)[CLAIM_COLUMNS],
                verdicts=pd.concat(verdicts, ignore_index=True)[VERDICT_COLUMNS])


def write(results_dir) -> dict[str, pd.DataFrame]:
    """Write summary.csv, claims.csv and verdicts.csv into ``results_dir`` (from its results.csv and manifest)
    and return them."""
    store = ResultsStore(results_dir)
    store.write_summary()
    out = tables(results_dir)
    for name in ("claims", "verdicts"):
        out[name].to_csv(store.dir / f"{name}.csv", index=False)
    return out


# ------------------------------------------------------------------------- README tables
def _num(x, digits: int = 2, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "—"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _int(x) -> str:
    try:
        return f"{int(x):,}"
    except (TypeError, ValueError):
        return "unrecorded"


def _p(x) -> str:
    return "—" if not np.isfinite(x) else f"{x:.3g}"


def accuracy_markdown(summary: pd.DataFrame, paper: bool = False, dataset: str | None = None,
                      experiments=None) -> str:
    """``stats.accuracy_table`` (without the counts) as markdown, each experiment by summary.csv's ``label``."""
    s = summary if dataset is None else summary[summary.dataset.astype(str) == dataset]
    t = accuracy_table(s, paper, counts=False, experiments=experiments)
    label = dict(zip(s.experiment, s.label))
    label |= {f"{e} (paper)": f"{lb} (paper)" for e, lb in label.items()}
    lines = ["| " + " | ".join(["experiment", *t.columns]) + " |", "|" + "---|" * (len(t.columns) + 1)]
    return "\n".join(lines + [f"| {label[e]} | " + " | ".join(r) + " |" for e, r in zip(t.index, t.to_numpy())])


def verdicts_markdown(verdicts: pd.DataFrame) -> str:
    """One row per claim: regime, verdict from the t-tests and from the exact sign-flip tests, what it rests
    on, tests in the family, smallest Holm p of each test, 80%-power detectable difference, seeds for 1 point."""
    lines = ["| claim (the paper's, as it states it) | regime | verdict: t-test | verdict: exact sign-flip test | "
             "tests in family (Holm) | smallest Holm p: t-test / sign-flip | detectable at 80% power (points) | "
             "seeds to detect 1 point at 80% power |", "|---|---|---|---|---|---|---|---|"]
    for r in verdicts.itertuples():
        where = (f"`{r.profile}` as recorded: {_int(r.train_images)} train / {_int(r.test_images)} test images; "
                 f"epochs {_int(r.teacher_epochs)} / {_int(r.student_epochs)} / {_int(r.finetune_epochs)} (teacher / "
                 f"students / fine-tuning); teacher {r.teacher_accuracy:.2f}%; {int(r.seeds)} seed"
                 + "s" * (int(r.seeds) != 1))
        t = f"**{r.verdict}**" + (" (rests on the t-test alone)" if str(r.rests_on).startswith("the t-test alone") else "")
        if r.verdict_perm == "not run" or int(r.n_seeds) >= 2 and r.p_perm_floor <= 0.05 / max(1, int(r.family_size)):
            perm = r.verdict_perm
        elif int(r.n_seeds) < 2:
            perm = f"— (no test with {int(r.n_seeds)} seed)"
        else:  # its smallest possible p cannot pass Holm's first step
            perm = f"— (cannot go below p = {_p(r.p_perm_floor)} with {int(r.n_seeds)} seeds)"
        lo, hi = _num(r.detectable_min, 1), _num(r.detectable_max, 1)
        det = lo if hi == lo else f"{lo}–{hi}"
        lines.append(f"| {r.label} | {where} | {t} | {perm} | {int(r.family_size)} | {_p(r.p_min)} / "
                     f"{_p(r.p_perm_min)} | {det} | {_num(r.seeds_needed, 0)} |")
    return "\n".join(lines)


def claims_markdown(claims: pd.DataFrame, families=PAPER_FAMILIES, min_students: int = 1) -> str:
    """One row per comparison of ``families``: mean difference [95% CI], per-seed range, wins, t-test p and its
    Holm p, sign-flip p and its Holm p, 80%-power detectable difference, seeds for 1 point, outcome."""
    c = claims[claims.family.isin(list(families))]
    c = c[c.label.str.extract(r"\((\d+) students\)$")[0].astype(float).fillna(99) >= min_students]
    lines = ["| comparison | mean difference [95% CI] | per seed | wins | t-test p / Holm | sign-flip p / Holm | "
             "detectable at 80% power | seeds for 1 point | outcome |", "|---|---|---|---|---|---|---|---|---|"]
    for r in c.itertuples():
        if r.identical:
            lines.append(f"| {r.label} | — | — | — | — | — | — | — | {EQUAL} (not a test) |")
            continue
        if isinstance(r.duplicate_of, str) and r.duplicate_of:
            lines.append(f"| {r.label} | — | — | — | — | — | — | — | the same test as the row it repeats "
                         "(shared students): not counted again |")
            continue
        ci = f"{_num(r.mean_diff, 2, True)} [{_num(r.ci_low, 2, True)}, {_num(r.ci_high, 2, True)}]"
        rng = f"{_num(r.min_diff, 2, True)} to {_num(r.max_diff, 2, True)}"
        lines.append(f"| {r.label} | {ci} | {rng} | {int(r.wins)}/{int(r.n)} | {_p(r.p)} / {_p(r.p_holm)} | "
                     f"{_p(r.p_perm)} / {_p(r.p_perm_holm)} | {_num(r.detectable, 1)} | {_num(r.seeds_needed, 0)} | "
                     f"{r.outcome}" + ("" if r.outcome == r.outcome_perm else " (t-test only)") + " |")
    return "\n".join(lines)


def markdown(results_dir, kind: str = "summary", paper: bool = False, families=PAPER_FAMILIES,
             min_students: int = 1, experiments=None) -> str:
    """The README table of one of a study's CSVs (``kind``: summary, verdicts or claims), with the marker
    comment above it that ``check`` reads. The CSV must have been written (``write``)."""
    folder = Path(results_dir)
    df = pd.read_csv(folder / f"{kind}.csv")
    body = {"summary": lambda: accuracy_markdown(df, paper, experiments=experiments),
            "verdicts": lambda: verdicts_markdown(df),
            "claims": lambda: claims_markdown(df, families, min_students)}[kind]()
    return f"<!-- table: {folder.as_posix().rstrip('/')}/{kind}.csv -->\n{body}"


# ------------------------------------------------------------------------- the README held to the CSVs
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


def readme_tables(text: str) -> list[tuple[str | None, list[str], list[list[str]], int]]:
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
    for marker, head, body, line in readme_tables(text):
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
    """Problems in every markdown file of ``paths`` (default root: the repository, above tools/)."""
    root = Path(root) if root is not None else Path(__file__).resolve().parents[1]
    out = []
    for p in paths:
        p = Path(p)
        out += check_text(p.read_text(), root, str(p.relative_to(root) if p.is_absolute() else p))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tools.study_tables", description=__doc__.split("\n")[0])
    ap.add_argument("results_dirs", nargs="+", help="results folders (each with results.csv and manifest.json)")
    ap.add_argument("--markdown", action="store_true", help="also print the README tables with their markers")
    args = ap.parse_args(argv)
    for d in args.results_dirs:
        out = write(d)
        print(f"{d}: summary.csv ({len(out['summary'])} rows), claims.csv ({len(out['claims'])}), verdicts.csv "
              f"({len(out['verdicts'])})")
        if args.markdown:
            for kind in ("summary", "verdicts", "claims"):
                print("\n" + markdown(d, kind, paper=kind == "summary") + "\n")


if __name__ == "__main__":
    main()
