"""tools/models_catalogue.py writes results/models.csv: the paper's architectures, their parameters and MACs."""
import csv

from tadist_utils import models
from tools import models_catalogue


def test_models_catalogue_writes_csv(tmp_path):
    out = tmp_path / "models.csv"
    models_catalogue.main(["--no-layers", "--out", str(out)])
    rows = {r["model"]: r for r in csv.DictReader(out.open())}
    assert int(rows["teacher"]["parameters"]) == 14_728_266
    assert int(rows["teacher"]["macs_per_image"]) == 313_201_664
    assert set(rows) == set(models.PAPER_PARAMS)
