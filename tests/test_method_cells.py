"""02_direct shows the method by hand (the cut, the chunk loss, one Adam step) and asserts that the package does
the same; here those cells run against the package under other settings, and must fail when the two disagree.

The notebook shows the code, the package holds the same code, this test checks them (rasbt's chapter tests).
The cells tagged ``method`` in notebooks/02_direct.ipynb read ``cfg``, ``teacher`` and a batch ``x``; nbval
runs them with the trained teacher and real images, this test with an untrained teacher and random images.
"""
from pathlib import Path

import nbformat
import pytest
import torch

from tadist_utils import models
from tadist_utils.config import make_config

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "02_direct.ipynb"


def method_cells() -> list[str]:
    cells = [c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells
             if c.cell_type == "code" and "method" in c.metadata.get("tags", [])]
    assert len(cells) == 3, "02_direct shows three method cells: chunks, chunk loss, one student step"
    return cells


def run_cells(tmp_path, **overrides) -> dict:
    """Execute the method cells as the notebook does, after its set-up and teacher cells; returns their namespace."""
    cfg = make_config("smoke", dataset="digits", results_dir=str(tmp_path / "r"), **overrides)
    torch.manual_seed(0)
    teacher = models.teacher(10).eval().requires_grad_(False)  # untrained: the maths does not care
    namespace = dict(cfg=cfg, teacher=teacher, x=torch.randn(8, 3, 32, 32))
    for i, source in enumerate(method_cells()):
        exec(compile(source, f"<02_direct.ipynb, method cell {i + 1}>", "exec"), namespace)
    return namespace


def test_the_cells_are_plain_python_and_come_before_training():
    for source in method_cells():
        assert not any(line.lstrip().startswith(("%", "!")) for line in source.splitlines()), "exec runs them: no magics"
    code = [c for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code"]
    tagged = [i for i, c in enumerate(code) if "method" in c.metadata.get("tags", [])]
    train = next(i for i, c in enumerate(code) if "run_experiment(" in c.source)
    assert tagged and max(tagged) < train, "the method is shown before the package trains the experiment"


@pytest.mark.parametrize("overrides", [
    dict(),                                                   # the paper's: MSE, no weight decay, 8 students
    dict(feature_loss="l1", student_weight_decay=5e-4),
    dict(feature_loss="cosine", student_lr=3e-3, levels=3),
    dict(levels=1),                                           # S1 regresses the whole feature
], ids=["mse", "l1-wd", "cosine-lr-3levels", "one-student"])
def test_the_notebook_and_the_package_agree(tmp_path, overrides):
    ns = run_cells(tmp_path, **overrides)
    cfg = ns["cfg"]
    assert len(ns["names"]) == 2 ** (cfg.levels - 1)
    assert ns["node"].stop - ns["node"].start == 512 // 2 ** (cfg.levels - 1)
    assert ns["moved"] > 0 and ns["gap"] <= 1e-5  # the step moved the weights, both steps moved them alike


def test_a_different_loss_in_the_package_fails_the_loss_cell(tmp_path, monkeypatch):
    from tadist_utils import losses
    real = losses.feature_loss
    monkeypatch.setattr(losses, "feature_loss", lambda p, t, kind="mse": 2 * real(p, t, kind))
    with pytest.raises(AssertionError):
        run_cells(tmp_path)


def test_a_different_step_in_the_package_fails_the_step_cell(tmp_path, monkeypatch):
    """The package's step with another learning rate than the config's: the weights no longer agree."""
    from tadist_utils import train
    real = train.loop_step

    def step(runs, *args):
        for r in runs:
            for group in r.optimizer.param_groups:
                group["lr"] *= 1.5
        return real(runs, *args)
    monkeypatch.setattr(train, "loop_step", step)
    with pytest.raises(AssertionError):
        run_cells(tmp_path)


def test_a_wrong_cut_in_the_plan_fails_the_chunk_cell(tmp_path, monkeypatch):
    from tadist_utils import plans  # the plan's own cut (plans imports chunk_slices by name); the cell's check is untouched
    monkeypatch.setattr(plans, "chunk_slices", lambda dim, n: [(0, dim // n)] * n)
    with pytest.raises(AssertionError):
        run_cells(tmp_path)
