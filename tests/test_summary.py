"""summary.csv: one row per (dataset, experiment, model) over seeds, written beside results.csv by the package."""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tadist_utils.storage.results import ResultsStore, read_table
from tadist_utils.analysis.stats import summarise

ROOT = Path(__file__).resolve().parents[1]
T_975_DF2 = 4.302652729911275


def row(experiment, model, seed, value, metric="test_accuracy"):
    return dict(dataset="cifar10", experiment=experiment, model=model, seed=seed, metric=metric, value=value,
                settings="abc")


def test_add_results_writes_the_summary_beside_results(tmp_path):
    store = ResultsStore(tmp_path)
    store.add_results([row("teacher", "teacher", s, v) for s, v in enumerate((50.0, 51.0, 52.0))]
                      + [row("direct", "ensemble_2", s, v) for s, v in enumerate((80.0, 82.0, 87.0))]
                      + [row("direct", "ensemble_2", s, 1.0, "val_accuracy") for s in range(3)]
                      + [row("direct", "S01", s, 0.1, "final_train_loss") for s in range(3)])
    s = pd.read_csv(store.summary_csv)
    assert list(s.columns) == ["dataset", "experiment", "label", "model", "students", "metric", "n", "mean", "sd",
                               "sem", "ci", "ci_low", "ci_high", "min", "max"]
    assert list(s.model) == ["teacher", "ensemble_2"]  # test accuracy of the teacher and ensembles only
    r = s.set_index("model").loc["ensemble_2"]
    sd = math.sqrt(((80 - 83) ** 2 + (82 - 83) ** 2 + (87 - 83) ** 2) / 2)  # sqrt(13)
    assert (r.n, r["mean"], r["min"], r["max"], r.students, r.label) == (3, 83.0, 80.0, 87.0, 2, "direct")
    assert r.sd == pytest.approx(sd)
    assert (r.ci_low, r.ci_high) == pytest.approx((83 - T_975_DF2 * sd / math.sqrt(3), 83 + T_975_DF2 * sd / math.sqrt(3)))
    store.add_results([row("direct", "ensemble_2", 3, 83.0)])  # a fourth seed: the summary follows
    assert pd.read_csv(store.summary_csv).set_index("model").loc["ensemble_2", "n"] == 4


def test_one_seed_claims_no_spread():
    s = summarise(pd.DataFrame([row("kd", "ensemble_4", 0, 60.0)]), dataset="*").iloc[0]
    assert s.n == 1 and s["mean"] == s["min"] == s["max"] == 60.0 and s.label == "Hinton KD"
    assert all(np.isnan(s[c]) for c in ("sd", "ci", "ci_low", "ci_high"))


STUDIES = sorted(p.parent for p in (ROOT / "results").glob("*/results.csv")  # committed ones: not the ignored
                 if not p.parent.name.startswith("_") and p.parent.name not in ("run", "runs", "sweep"))  # scratch folders


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.name)
def test_every_committed_study_has_its_summary(study):
    """Every seeded study under results/ carries summary.csv, and it is what the package makes of its results.csv
    today (a corrected results.csv with a stale summary fails here)."""
    assert (study / "summary.csv").exists(), f"{study}/summary.csv is missing: python -m tools.study_tables " \
                                             f"{study.relative_to(ROOT)}"
    committed = pd.read_csv(study / "summary.csv")
    pd.testing.assert_frame_equal(committed, pd.read_csv(pd.io.common.StringIO(
        summarise(read_table(study / "results.csv"), dataset="*").to_csv(index=False))), check_exact=False, rtol=1e-12)
