"""Figures read as what they show: no distillation edge passes behind a student it does not join, and no legend
covers a bar (issue 22: the direct tree looked hierarchical; the 8-student bars sat under the legend)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from tadist_utils.analysis import plots  # noqa: E402


def _boxes(ax):
    """name -> the data-space (x0, y0, x1, y1) of its drawn box."""
    ax.figure.canvas.draw()
    inverse = ax.transData.inverted()
    out = {}
    for t in ax.texts:
        if t.get_bbox_patch() is not None:
            (x0, y0), (x1, y1) = inverse.transform(t.get_bbox_patch().get_window_extent().get_points())
            out[t.get_text()] = (x0, y0, x1, y1)
    return out


@pytest.mark.parametrize("experiment", ["direct", "single_ta", "hierarchical", "dense"])
def test_no_edge_passes_behind_a_box_it_does_not_join(experiment):
    fig, ax = plt.subplots(figsize=(7, 4))
    plots.plan_tree(experiment, 4, ax=ax)
    boxes = _boxes(ax)
    assert len(boxes) == 16  # the teacher and 15 students
    for line in ax.lines:
        xy = line.get_xydata()
        ends = {name for name, (x0, y0, x1, y1) in boxes.items()
                for px, py in (xy[0], xy[-1]) if x0 <= px <= x1 and y0 <= py <= y1}
        for (ax_, ay), (bx, by) in zip(xy[:-1], xy[1:]):
            for s in np.linspace(0, 1, 200):
                px, py = ax_ + s * (bx - ax_), ay + s * (by - ay)
                hit = [n for n, (x0, y0, x1, y1) in boxes.items() if x0 <= px <= x1 and y0 <= py <= y1 and n not in ends]
                assert not hit, f"{experiment}: an edge passes behind {hit} at ({px:.2f}, {py:.2f})"
    plt.close(fig)


def test_the_plan_trees_still_join_every_student_to_its_parent():
    """Every student box has a line ending in it (its edge: straight, or the drop from its row's rail)."""
    for experiment in ("direct", "single_ta", "hierarchical"):
        fig, ax = plt.subplots(figsize=(7, 4))
        plots.plan_tree(experiment, 4, ax=ax)
        boxes = _boxes(ax)
        for name, (x0, y0, x1, y1) in boxes.items():
            if name != "teacher":
                assert any(x0 <= l.get_xydata()[-1][0] <= x1 and y0 <= l.get_xydata()[-1][1] <= y1 for l in ax.lines), name
        plt.close(fig)


def test_the_ensemble_figure_draws_points_not_bars_from_zero_and_its_legend_covers_none():
    rows = [("cifar10", "teacher", "teacher", 0, "test_accuracy", 49.0)]
    for n, before, after in ((1, 32, 35), (2, 35, 39), (4, 35, 40), (8, 42, 44)):  # tall bars at 8, as in quick
        rows += [("cifar10", "direct", f"ensemble_{n}", 0, "test_accuracy_before_finetune", before),
                 ("cifar10", "direct", f"ensemble_{n}", 0, "test_accuracy", after)]
    results = pd.DataFrame(rows, columns=["dataset", "experiment", "model", "seed", "metric", "value"])
    fig = plots.ensemble_figure(results, "direct", 0)
    ax = fig.axes[0]
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert not [p for p in ax.patches if p.get_height() > 0], "bars from 0 hide differences of a point (issue 28)"
    points = [xy for line in ax.lines if line.get_marker() not in (None, "None", "")
              for xy in ax.transData.transform(line.get_xydata())]
    assert len(points) == 8
    assert ax.get_ylim()[0] > 20  # the axis follows the values (32-49), it does not start at 0
    assert not [p for p in points if legend.contains(*p)], "the legend covers a point"
    plt.close(fig)


def test_tables_show_accuracies_rounded_for_people():
    """A smoke run's 128 test images gave 10.15625 in the notebooks' tables; they show 2 decimals (seconds 1)."""
    rows = [dict(experiment="direct", seed=0, model=m, metric=k, value=v)
            for m in ("teacher", "ensemble_1") for k, v in (("test_accuracy", 10.15625), ("val_accuracy", 9.375),
                                                             ("train_seconds", 5.191563), ("parameters", 14728266))]
    rows = [dict(r, experiment="teacher") if r["model"] == "teacher" else r for r in rows]
    results = pd.DataFrame(rows)
    t = plots.metrics_table(results, "teacher", 0)
    assert t.loc["teacher"].to_dict() == dict(parameters=14728266, test_accuracy=10.16, train_seconds=5.2, val_accuracy=9.38)
    assert plots.ensemble_table(results, "direct", 0).loc[1, "test_accuracy"] == 10.16
    assert plots.teacher_accuracy(results, 0) == 10.16
