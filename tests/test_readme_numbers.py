"""Every number in the README's results tables is a value of the committed CSV its marker names
(``tools/study_tables.py``, whose docstring is the convention), and those CSVs are what the package
makes of each study's results.csv today."""
from pathlib import Path

import pandas as pd
import pytest

from tools import study_tables

ROOT = Path(__file__).resolve().parents[1]
READMES = [ROOT / "README.md", ROOT / "results" / "README.md"]
STUDIES = sorted(p.parent for p in (ROOT / "results").glob("*/results.csv")  # committed ones: not the ignored
                 if not p.parent.name.startswith("_") and p.parent.name not in ("run", "runs", "sweep"))  # scratch folders


def test_every_number_in_the_readme_results_tables_is_in_a_committed_csv():
    assert study_tables.check(READMES, ROOT) == []


def test_the_readme_shows_the_tables_of_every_committed_study():
    text = "\n".join(p.read_text() for p in READMES)
    for study in STUDIES:
        assert f"<!-- table: {study.relative_to(ROOT).as_posix()}/summary.csv -->" in text, study.name
    for study in ("quick_cifar10_seeds",):  # the seeded one: its verdicts and the comparisons behind them
        for kind in ("verdicts", "claims"):
            assert f"<!-- table: results/{study}/{kind}.csv -->" in text


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.name)
def test_committed_claims_and_verdicts_are_what_the_package_makes_of_the_results(study):
    """claims.csv and verdicts.csv beside each study are today's ``study_tables.tables`` of its results.csv: a
    changed rule or a corrected results.csv with stale tables fails here (regenerate with ``python -m
    tools.study_tables <folder>``)."""
    now = study_tables.tables(study)
    for kind in ("claims", "verdicts"):
        committed = pd.read_csv(study / f"{kind}.csv", keep_default_na=False, na_values=[""])
        fresh = pd.read_csv(pd.io.common.StringIO(now[kind].to_csv(index=False)), keep_default_na=False,
                            na_values=[""])
        pd.testing.assert_frame_equal(committed, fresh, check_exact=False, rtol=1e-9, obj=f"{study.name}/{kind}.csv")


# ------------------------------------------------------------------------- the check can fail
SUMMARY = """
<!-- table: results/paper_short_cifar10/summary.csv -->
| experiment | teacher | 1 student | 2 students |
|---|---|---|---|
| single TA | 84.42 | 80.33 | {two} |
| single TA (paper) | 82.89 | 85.60 | {paper} |
"""


def test_the_check_finds_a_number_that_is_not_in_its_csv():
    assert study_tables.check_text(SUMMARY.format(two="79.79", paper="85.32"), ROOT) == []
    stale = study_tables.check_text(SUMMARY.format(two="80.05", paper="85.32"), ROOT)  # before the correction
    assert len(stale) == 1 and "'single TA', column '2 students': 80.05" in stale[0]
    misquoted = study_tables.check_text(SUMMARY.format(two="79.79", paper="85.56"), ROOT)  # the hierarchy's
    assert len(misquoted) == 1 and "the paper's numbers" in misquoted[0]


def test_the_check_needs_markers_labels_and_files():
    no_marker = "| experiment | 2 students |\n|---|---|\n| direct | 47.9 |\n"
    assert "without a '<!-- table: <csv> -->' marker" in study_tables.check_text(no_marker, ROOT)[0]
    other = "| model | ms |\n|---|---|\n| teacher | 12.3 |\n"  # not a results table: no marker needed
    assert study_tables.check_text(other, ROOT) == []
    missing = "<!-- table: results/nowhere/summary.csv -->\n" + no_marker
    assert "does not exist" in study_tables.check_text(missing, ROOT)[0]
    unknown = "<!-- table: results/quick_cifar10/summary.csv -->\n\n| experiment | 2 students |\n|---|---|\n| dirrect | 39.80 |\n"
    assert "no row labelled 'dirrect'" in study_tables.check_text(unknown, ROOT)[0]
    far = "<!-- table: results/quick_cifar10/summary.csv -->\nsome text\n\n" + no_marker  # a marker binds the next table
    assert "without a" in study_tables.check_text(far, ROOT)[0]


def test_numbers_are_read_at_the_precision_shown():
    assert study_tables.numbers("+5.62 [-4.65, +15.88] −3.2 5,000 train; 20.4–30.3; CIFAR-10; n=3 0.0492 1.2e-05") \
        == [study_tables.Decimal(x) for x in ("5.62", "-4.65", "15.88", "-3.2", "5000", "20.4", "30.3", "3", "0.0492",
                                              "1.2e-05")]
    assert study_tables.matches(study_tables.Decimal("0.0492"), [0.049201]) and \
        not study_tables.matches(study_tables.Decimal("0.049"), [0.0496])
