"""A study's tables, written beside its ``results.csv``, and the README tables built from them.

``write(results_dir)`` writes three CSVs into a results folder:

``summary.csv``   n, mean, sd, 95% t-interval, min and max of the test accuracy per (experiment, model)
                  (``summary.summary_table``; ``ResultsStore`` also rewrites it with every result);
``claims.csv``    every comparison of every declared family (``claims.FAMILIES``) the study can make:
                  mean difference, interval, per-seed range, wins, t-test and exact sign-flip p (raw and
                  Holm-adjusted within the family), 80%-power detectable difference, seeds for 1 point, outcome;
``verdicts.csv``  one row per claim of the paper (C1-C3): verdict from each test, whether they agree, what it
                  rests on, family size, smallest Holm p of each test, detectable range, seeds for 1 point, and
                  the regime (profile, images, epochs, teacher accuracy, seeds).

``markdown(results_dir, kind)`` renders one of them as a README table, under the marker comment that
``readme_check`` reads (``<!-- table: results/<study>/summary.csv -->``): every number in it is a value of the
CSV row its first cell names, so the check can hold the README to the CSVs. Each CSV has a ``label`` column
for that. From the command line::

    python -m tadist_utils.analysis.study_tables results/quick_cifar10_seeds            # write the CSVs
    python -m tadist_utils.analysis.study_tables results/quick_cifar10_seeds --markdown # and print the tables
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from ..storage.results import PAPER_ACCURACY, ResultsStore, students_label
from .claims import FAMILIES, PAPER_FAMILIES, comparisons, conclusions, regime
from .stats import EQUAL, share_students

CLAIM_COLUMNS = ["dataset", "family", "label", "comparison", "n", "mean_diff", "ci_low", "ci_high", "min_diff",
                 "max_diff", "wins", "p", "p_holm", "p_perm", "p_perm_holm", "family_size", "detectable",
                 "seeds_needed", "outcome", "outcome_perm", "decided", "identical", "duplicate_of"]
VERDICT_COLUMNS = ["dataset", "family", "label", "claim", "verdict", "verdict_perm", "decided", "rests_on",
                   "family_size", "n_seeds", "p_min", "p_perm_min", "detectable_min", "detectable_max",
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
    """Rows: experiment (summary.csv's ``label``; ``experiments``: these only, default all); columns: teacher, 1,
    2, 4, 8 students; cells "mean ± 95% half-width" (the mean alone with one seed); ``paper``: the paper's number
    under each of its experiments."""
    s = summary if dataset is None else summary[summary.dataset.astype(str) == dataset]
    teacher = s[s.model == "teacher"]
    ens = s[s.model != "teacher"]
    if experiments is not None:
        ens = ens[ens.experiment.isin(list(experiments))]
    sizes = sorted(int(n) for n in ens.students.dropna().unique())
    head = ["experiment", "teacher", *(students_label(n) for n in sizes)]

    def cell(r) -> str:
        if r is None:
            return ""
        return _num(r["mean"]) + (f" ± {_num(r['ci'])}" if r["n"] >= 2 else "")

    t = teacher.iloc[0] if len(teacher) else None
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for exp in dict.fromkeys(ens.experiment):
        e = ens[ens.experiment == exp].set_index("students")
        label = e.label.iloc[0]
        lines.append(f"| {label} | {cell(t)} | " + " | ".join(cell(e.loc[n] if n in e.index else None)
                                                               for n in sizes) + " |")
        if paper and exp in PAPER_ACCURACY:
            p = PAPER_ACCURACY[exp]
            lines.append(f"| {label} (paper) | {_num(p['teacher'])} | "
                         + " | ".join(_num(p[n]) if n in p else "" for n in sizes) + " |")
    return "\n".join(lines)


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
        t = f"**{r.verdict}**" + ("" if r.decided else " (rests on the t-test alone)")
        lo, hi = _num(r.detectable_min, 1), _num(r.detectable_max, 1)
        det = lo if hi == lo else f"{lo}–{hi}"
        lines.append(f"| {r.label} | {where} | {t} | {r.verdict_perm} | {int(r.family_size)} | {_p(r.p_min)} / "
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
                     f"{r.outcome}" + ("" if r.decided else " (t-test only)") + " |")
    return "\n".join(lines)


def markdown(results_dir, kind: str = "summary", paper: bool = False, families=PAPER_FAMILIES,
             min_students: int = 1, experiments=None) -> str:
    """The README table of one of a study's CSVs (``kind``: summary, verdicts or claims), with the marker
    comment above it that ``readme_check`` reads. The CSV must have been written (``write``)."""
    folder = Path(results_dir)
    df = pd.read_csv(folder / f"{kind}.csv")
    body = {"summary": lambda: accuracy_markdown(df, paper, experiments=experiments),
            "verdicts": lambda: verdicts_markdown(df),
            "claims": lambda: claims_markdown(df, families, min_students)}[kind]()
    return f"<!-- table: {folder.as_posix().rstrip('/')}/{kind}.csv -->\n{body}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tadist_utils.analysis.study_tables", description=__doc__.split("\n")[0])
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
