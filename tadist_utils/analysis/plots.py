"""Figures and small table views for the notebooks, drawn from the tidy CSVs of ``results.py``.

Every function takes data (a DataBundle, a plan name, results/history DataFrames) and returns a
matplotlib figure or a DataFrame, so the notebooks stay narrative plus calls. Figures are made with
pyplot so Jupyter's inline backend shows them once, at the end of the cell; ``save`` writes a PNG
under ``<results_dir>/figures/`` and leaves the figure open for that.

The figures live in ``run_plots`` (notebooks 00-04: plans, data, one experiment's run) and ``comparison_plots``
(05-06: experiments side by side, over seeds, against cost); this module gathers them under one name
(``from tadist_utils.analysis import plots``) and adds ``save``.
"""
from __future__ import annotations

from pathlib import Path

from .comparison_plots import (accuracy_vs_cost, accuracy_vs_params, accuracy_vs_students,
                               accuracy_with_error_bars, ensembles, loss_per_student, paired_differences)
from .run_plots import (EXPERIMENT_ORDER, PAPER_TEACHER, STUDENT_ORDER, architecture_table, chunking, ensemble_figure,
                        ensemble_table, feature_figure, metrics_table, overview_figure, plan_tree, sample_grid,
                        student_curves, student_history, teacher_accuracy, teacher_curves)

__all__ = ["EXPERIMENT_ORDER", "PAPER_TEACHER", "STUDENT_ORDER", "accuracy_vs_cost",
           "accuracy_vs_params", "accuracy_vs_students", "accuracy_with_error_bars", "architecture_table", "chunking",
           "ensemble_figure", "ensemble_table", "ensembles", "feature_figure", "loss_per_student", "metrics_table",
           "overview_figure", "paired_differences", "plan_tree", "sample_grid", "save", "student_curves",
           "student_history", "teacher_accuracy", "teacher_curves"]


def save(fig, results_dir, name: str) -> None:
    """Write ``fig`` as ``<results_dir>/figures/<name>.png`` (results_dir may be a Config).

    Returns nothing, so a notebook cell ending in ``plots.save(...)`` shows the figure and no ``PosixPath(...)``."""
    folder = Path(getattr(results_dir, "results_dir", results_dir)) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
