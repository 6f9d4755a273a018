"""Architectures: exact parameter counts from the paper, shapes, and the dense-feature contract."""

import pytest
import torch

from tadist_utils import models


@pytest.mark.parametrize("name,build", [
    ("teacher", lambda: models.teacher()),
    ("student_level1", lambda: models.student(1)),
    ("student_level2", lambda: models.student(2)),
    ("student_level3", lambda: models.student(3)),
    ("student_level4", lambda: models.student(4)),
    ("ensemble_1", lambda: models.Ensemble([models.student(1)])),
    ("ensemble_2", lambda: models.Ensemble([models.student(2) for _ in range(2)])),
    ("ensemble_4", lambda: models.Ensemble([models.student(3) for _ in range(4)])),
    ("ensemble_8", lambda: models.Ensemble([models.student(4) for _ in range(8)])),
])
def test_parameter_counts_match_the_paper_to_the_unit(name, build):
    assert models.count_params(build()) == models.PAPER_PARAMS[name]


def test_hard_coded_paper_counts_are_spec_values():
    # Guard against someone "fixing" the table to match the code: these are the paper's numbers.
    assert models.PAPER_PARAMS["teacher"] == 14_728_266
    assert models.PAPER_PARAMS["ensemble_8"] == 1_942_026


@pytest.mark.parametrize("level,dim", [(1, 512), (2, 256), (3, 128), (4, 64)])
def test_student_outputs_its_chunk_size(level, dim):
    s = models.student(level).eval()
    assert s.feature_dim == dim
    assert s(torch.zeros(2, 3, 32, 32)).shape == (2, dim)


def test_teacher_exposes_dense_feature_and_classifier():
    t = models.teacher().eval()
    x = torch.randn(3, 3, 32, 32)
    f = t.features(x)
    assert f.shape == (3, 512)
    assert isinstance(t.classifier, torch.nn.Linear) and t.classifier.in_features == 512
    torch.testing.assert_close(t(x), t.classifier(f))


def test_unknown_level_is_a_clear_error():
    with pytest.raises(ValueError, match="student level"):
        models.student(7)


def test_macs_of_a_single_conv_by_hand():
    # conv 3->8 on 32x32 (8*32*32*27 = 221,184) plus Linear(8, 8) (64) on the pooled map
    net = models.ConvNet([8], head=(8, 8))
    assert models.count_macs(net) == 8 * 32 * 32 * 27 + 64


def test_catalogue_rows():
    rows = {r["model"]: r for r in models.catalogue()}
    assert rows["teacher"]["parameters"] == 14_728_266
    assert rows["teacher"]["macs_per_image"] == 313_201_664
    assert set(rows) == set(models.PAPER_PARAMS)
