"""Every notebook shows its step by hand and asserts that the package does the same; here those cells (tagged
``method``) run against the package under other settings, and must fail when the two disagree.

The notebook shows the code, the package holds the same code, this test checks them (rasbt's chapter tests).
nbval runs the cells with trained models and real images; this test with untrained models and random images
(the arithmetic does not care), giving each notebook's cells the names its earlier cells would have defined.
"""
from pathlib import Path

import nbformat
import pytest
import torch

from tadist_utils import models
from tadist_utils.config import make_config
from tadist_utils.plans import METHODS

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def method_cells(notebook: str) -> list[str]:
    return [c.source for c in nbformat.read(NOTEBOOKS / notebook, as_version=4).cells
            if c.cell_type == "code" and "method" in c.metadata.get("tags", [])]


def namespace(tmp_path, experiment: str | None = None, **overrides) -> dict:
    """What the cells before a notebook's method cells define: cfg, a teacher, a batch x; for 03/04 a plan and its
    (here untrained) students by lineage key."""
    cfg = make_config("smoke", dataset="digits", results_dir=str(tmp_path / "r"), **overrides)
    torch.manual_seed(0)
    ns = dict(cfg=cfg, teacher=models.teacher(10).eval().requires_grad_(False), x=torch.randn(8, 3, 32, 32))
    if experiment:
        plan = METHODS[experiment].plan(cfg.levels)
        ns.update(plan=plan, trained={n.key: models.student(n.level).eval() for n in plan.nodes})
    return ns


def run_cells(notebook: str, ns: dict) -> dict:
    for i, source in enumerate(method_cells(notebook)):
        exec(compile(source, f"<{notebook}, method cell {i + 1}>", "exec"), ns)
    return ns


EXPERIMENT = {"03_single_ta.ipynb": "single_ta", "04_hierarchical.ipynb": "hierarchical"}
ALL = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("notebook", ALL)
def test_every_notebook_shows_a_step_by_hand_in_plain_python(notebook):
    cells = method_cells(notebook)
    assert cells, f"{notebook} has no cell tagged 'method'"
    for source in cells:
        assert "assert " in source, "a step by hand is checked against the package"
        assert not any(line.lstrip().startswith(("%", "!")) for line in source.splitlines()), "exec runs them: no magics"


@pytest.mark.parametrize("notebook", ALL)
def test_the_cells_agree_with_the_package(tmp_path, notebook):
    run_cells(notebook, namespace(tmp_path, EXPERIMENT.get(notebook)))


# ------------------------------------------------------------------ 02: the method under other settings
def test_02_shows_the_cut_the_loss_the_step_and_the_invariant_before_training():
    assert len(method_cells("02_direct.ipynb")) == 4
    code = [c for c in nbformat.read(NOTEBOOKS / "02_direct.ipynb", as_version=4).cells if c.cell_type == "code"]
    tagged = [i for i, c in enumerate(code) if "method" in c.metadata.get("tags", [])]
    train = next(i for i, c in enumerate(code) if "run_experiment(" in c.source)
    assert max(tagged) < train, "the method is shown before the package trains the experiment"


@pytest.mark.parametrize("overrides", [
    dict(),                                                   # the paper's: MSE, no weight decay, 8 students
    dict(feature_loss="l1", student_weight_decay=5e-4),
    dict(feature_loss="cosine", student_lr=3e-3, levels=3),
    dict(levels=1),                                           # S1 regresses the whole feature
], ids=["mse", "l1-wd", "cosine-lr-3levels", "one-student"])
def test_02_agrees_under_other_settings(tmp_path, overrides):
    ns = run_cells("02_direct.ipynb", namespace(tmp_path, **overrides))
    cfg = ns["cfg"]
    assert len(ns["names"]) == 2 ** (cfg.levels - 1)
    assert ns["node"].stop - ns["node"].start == 512 // 2 ** (cfg.levels - 1)
    assert ns["moved"] > 0 and ns["gap"] <= 1e-5  # the step moved the weights, both steps moved them alike
    assert set(ns["agree"]) == {2 ** i for i in range(cfg.levels)}


# ------------------------------------------------------------------ each cell fails when the package is wrong
def _break_loss(monkeypatch):
    from tadist_utils import losses
    for kind, (real, batched) in list(losses.FEATURE_LOSSES.items()):  # one student's loss doubled, in the table
        monkeypatch.setitem(losses.FEATURE_LOSSES, kind, (lambda p, t, real=real: 2 * real(p, t), batched))


def _break_step(monkeypatch):
    """The package's step with another learning rate than the config's: the weights no longer agree."""
    from tadist_utils import train
    real = train.SeparateSteps.step

    def step(self, *args):
        for r in self.runs:
            for group in r.optimizer.param_groups:
                group["lr"] *= 1.5
        return real(self, *args)
    monkeypatch.setattr(train.SeparateSteps, "step", step)


def _break_cut(monkeypatch):
    from tadist_utils import plans  # the plan's own cut (plans imports chunk_slices by name)
    monkeypatch.setattr(plans, "chunk_slices", lambda dim, n: [(0, dim // n)] * n)


def _break_children(monkeypatch):
    """A plan that lists a parent's children out of chunk order: they no longer tile its output."""
    from tadist_utils import plans
    monkeypatch.setattr(plans.Plan, "children", lambda self, parent: [n for n in self.nodes if n.parent == parent][::-1])


def _break_ensemble(monkeypatch):
    """An ensemble that concatenates its students in reverse order: perfect students no longer rebuild the logits."""
    monkeypatch.setattr(models.Ensemble, "features",
                        lambda self, x: torch.cat([s.features(x) for s in reversed(self.students)], dim=1))


def _break_count(monkeypatch):
    monkeypatch.setattr(models, "count_params", lambda m: sum(p.numel() for p in m.parameters()) + 1)


def _break_features(monkeypatch):
    real = models.ConvNet.features
    monkeypatch.setattr(models.ConvNet, "features", lambda self, x: real(self, x) * 1.001)


def _break_targets(monkeypatch):
    from tadist_utils import train
    real = train.guide_features
    monkeypatch.setattr(train, "guide_features", lambda *a, **k: (lambda x: [t + 1e-3 for t in real(*a, **k)(x)]))


def _break_guided(monkeypatch):
    from tadist_utils import losses
    real = losses.guided_loss
    monkeypatch.setattr(losses, "guided_loss", lambda pred, feats, targets, keep=None, kind="mse":
                        real(pred, feats, targets, None, kind))  # ignores the mask: every target counts


def _break_kd(monkeypatch):
    from tadist_utils import losses
    real = losses.kd_loss
    monkeypatch.setattr(losses, "kd_loss", lambda s, t, y=None, temperature=4.0, alpha=0.9:
                        real(s, t, y, temperature, alpha) / temperature ** 2 * temperature)  # a wrong T power


def _break_holm(monkeypatch):
    from tadist_utils.analysis import stats
    monkeypatch.setattr(stats, "CORRECTION", "bonferroni")


BROKEN = [
    ("00_overview.ipynb", _break_count, None),
    ("01_teacher.ipynb", _break_features, None),
    ("01_teacher.ipynb", _break_count, None),
    ("02_direct.ipynb", _break_loss, None),
    ("02_direct.ipynb", _break_step, None),
    ("02_direct.ipynb", _break_cut, None),
    ("02_direct.ipynb", _break_ensemble, None),
    ("03_single_ta.ipynb", _break_targets, "single_ta"),
    ("04_hierarchical.ipynb", _break_children, "hierarchical"),
    ("05_compare.ipynb", _break_holm, None),
    ("06_beyond.ipynb", _break_guided, None),
    ("06_beyond.ipynb", _break_kd, None),
]


@pytest.mark.parametrize("notebook, breaker, experiment", BROKEN,
                         ids=[f"{n[:2]}-{b.__name__.removeprefix('_break_')}" for n, b, _ in BROKEN])
def test_a_wrong_package_fails_the_cell(tmp_path, monkeypatch, notebook, breaker, experiment):
    breaker(monkeypatch)
    ns = namespace(tmp_path, experiment)  # a broken cut breaks the plan the cells are given too
    with pytest.raises(AssertionError):
        run_cells(notebook, ns)
