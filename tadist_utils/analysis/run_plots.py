"""Figures and tables of the notebooks 00-04: the plans and data, and each experiment's run (teacher, students,
ensembles), drawn from a DataBundle, a plan name or the tidy results/history DataFrames of ``results.py``.

Also the helpers the comparison figures share (``EXPERIMENT_ORDER``, ``STUDENT_ORDER``, ``teacher_accuracy``).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from ..models import catalogue
from ..methods import PAPER_EXPERIMENTS, build
from ..plans import TEACHER, level_names
from ..storage.results import PAPER_ACCURACY

EXPERIMENT_ORDER = list(PAPER_EXPERIMENTS)
STUDENT_ORDER = ["S1", "S01", "S2", "S11", "S22", "S33", "S44"] + [f"SS{i}{i}" for i in range(1, 9)]


PAPER_TEACHER = PAPER_ACCURACY["direct"]["teacher"]  # the paper's VGG16-BN teacher on CIFAR-10 (82.89 %)


def paper_teacher_line(ax) -> None:
    ax.axhline(PAPER_TEACHER, color="0.3", ls=":", lw=1, label="teacher (paper, CIFAR-10)")


def students_of(model: pd.Series) -> pd.Series:
    return model.str.removeprefix("ensemble_").astype(int)


def _integer_epochs(axes, epochs) -> None:
    """Epochs are whole numbers: tick each one when there are few, else let matplotlib pick integers."""
    from matplotlib.ticker import FixedLocator, MaxNLocator
    epochs = sorted(set(int(e) for e in epochs))
    for ax in np.ravel(axes):
        ax.xaxis.set_major_locator(FixedLocator(epochs) if len(epochs) <= 12 else MaxNLocator(integer=True))


def metrics_table(results: pd.DataFrame, experiment: str, seed: int | None = None, models=None) -> pd.DataFrame:
    """One row per model of an experiment ("teacher" for the teacher), one column per metric; mean over seeds."""
    d = results[results.experiment == experiment]
    if seed is not None:
        d = d[d.seed == seed]
    if models is not None:
        d = d[d.model.isin(list(models))]
    t = d.pivot_table(index="model", columns="metric", values="value", aggfunc="mean")
    order = [m for m in ["teacher", *STUDENT_ORDER] if m in t.index]
    return t.loc[order + [m for m in t.index if m not in order]]


# ------------------------------------------------------------------------- 00 overview
def plan_tree(experiment: str, levels: int = 4, ax=None):
    """One distillation tree from ``methods.build(...).edges()``: who learns which slice of whom.

    Students sit in one row per level under the teacher. A parent whose students are all in the next row is joined
    to each by a straight line. A parent that teaches several rows (the teacher in ``direct``, S1 in ``single_ta``)
    would send straight lines behind the students of the rows between, which then read as a hierarchy; it feeds
    one rail per row instead, through a trunk at the left, clear of every box."""
    ax = ax or plt.subplots(figsize=(7, 4))[1]
    pos = {TEACHER: (0.5, 0)}
    for lv in range(1, levels + 1):
        names = level_names(lv)
        pos.update({n: ((i + 0.5) / len(names), -lv) for i, n in enumerate(names)})
    colours = sns.color_palette("viridis", levels)
    plan = build(experiment, levels)
    rows: dict[str, set[int]] = {}  # parent -> the levels of its students
    for parent, child, *_ in plan.edges():
        rows.setdefault(parent, set()).add(plan.node(child).level)
    bus = {parent for parent, lvs in rows.items() if len(lvs) > 1}
    line = dict(lw=1, alpha=0.6, zorder=1)
    trunk, rail = -0.04, 0.36  # the trunk's x; a row's rail sits this far above its boxes
    for parent in bus:  # along the parent's row to the trunk (the box hides the start), down to its last rail
        (x0, y0), last = pos[parent], max(rows[parent])
        ax.plot([x0, trunk, trunk], [y0, y0, rail - last], color="0.35", **line)
        for lv in rows[parent]:  # each row's rail, from the trunk to its last student, drawn once
            ax.plot([trunk, max(pos[n][0] for n in level_names(lv))], [rail - lv] * 2, color=colours[lv - 1], **line)
    for parent, child, start, stop in plan.edges():
        (x0, y0), (x1, y1) = pos[parent], pos[child]
        lv = plan.node(child).level
        if parent in bus:  # down from the row's rail to the student
            ax.plot([x1, x1], [y1 + rail, y1], color=colours[lv - 1], **line)
        else:  # from below the parent's slice label (the teacher has none)
            ax.plot([x0, x1], [y0 - (0.1 if parent == TEACHER else 0.38), y1], color=colours[lv - 1], **line)
        ax.text(x1, y1 - 0.22, f"[{start}:{stop}]", ha="center", va="top", fontsize=6, color="0.3")
    for name, (x, y) in pos.items():
        if name == TEACHER or y >= -levels:
            ax.text(x, y, name, ha="center", va="center", fontsize=7 if y < -2 else 9, zorder=2,
                    bbox=dict(boxstyle="round,pad=0.25", fc="white", ec="0.4"))
    who = {TEACHER: "the teacher"}
    teaches = "; ".join(f"{who.get(p, p)} teaches every student below it" for p in sorted(bus))
    ax.set(xlim=(trunk - 0.03 if bus else -0.02, 1.02), ylim=(-levels - 0.6, 0.4),
           title=f"{experiment}: {teaches}" if bus else experiment)
    ax.axis("off")
    return ax


def chunking(levels: int = 4, feature_dim: int = 512, ax=None):
    """The teacher's dense feature cut into 1, 2, 4, 8 contiguous chunks, one row per ensemble."""
    ax = ax or plt.subplots(figsize=(7, 3))[1]
    colours = sns.color_palette("viridis", levels)
    ax.barh(0, feature_dim, color="0.6", edgecolor="white")
    ax.text(feature_dim / 2, 0, f"teacher: {feature_dim}-d input of its classifier", ha="center", va="center", fontsize=8)
    for lv in range(1, levels + 1):
        names = level_names(lv)
        width = feature_dim // len(names)
        for i, name in enumerate(names):
            ax.barh(-lv, width, left=i * width, color=colours[lv - 1], edgecolor="white")
            ax.text((i + 0.5) * width, -lv, name, ha="center", va="center", fontsize=7 if lv > 3 else 8, color="white")
    ax.set_yticks([0] + [-lv for lv in range(1, levels + 1)],
                  ["teacher"] + [f"{2 ** (lv - 1)} student(s)" for lv in range(1, levels + 1)])
    ax.set_xticks(np.linspace(0, feature_dim, 9).astype(int))
    ax.set(xlabel="feature dimension", title="which chunk each student regresses")
    sns.despine(ax=ax, left=True)
    return ax


def overview_figure(levels: int = 4):
    """The chunking and the paper's three trees on one page."""
    fig, axes = plt.subplots(2, 2, figsize=(14, 8.5))
    chunking(levels, ax=axes[0, 0])
    for ax, exp in zip(axes.flat[1:], EXPERIMENT_ORDER):
        plan_tree(exp, levels, ax=ax)
    fig.tight_layout()
    return fig


def sample_grid(data, per_class: int = 8, split: str = "train"):
    """The first ``per_class`` images of every class, one row per class."""
    s = getattr(data, split)
    classes = range(min(data.num_classes, 20))
    fig, axes = plt.subplots(len(classes), per_class, figsize=(per_class * 0.9, len(classes) * 0.95), squeeze=False)
    for r, c in enumerate(classes):
        idx = (s.labels == c).nonzero().flatten()[:per_class]
        for k, ax in enumerate(axes[r]):
            ax.axis("off")
            if k < len(idx):
                ax.imshow(s.images[idx[k]].permute(1, 2, 0).cpu().numpy())
        axes[r, 0].set_title(data.classes[c], fontsize=8, loc="left")
    fig.suptitle(f"{data.name}: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test images", y=1.0)
    fig.tight_layout()
    return fig


def architecture_table(num_classes: int = 10) -> pd.DataFrame:
    """``models.catalogue()`` without the modules, with the paper's parameter counts beside ours."""
    df = pd.DataFrame(catalogue(num_classes)).drop(columns="net").set_index("model")
    df["matches_paper"] = df.parameters == pd.to_numeric(df.paper_parameters, errors="coerce")
    return df[["role", "parameters", "paper_parameters", "matches_paper", "macs_per_image"]]


# ------------------------------------------------------------------------- 01 teacher
def teacher_curves(history: pd.DataFrame, seed: int | None = None):
    """The teacher's training loss and validation accuracy per epoch (history key "T")."""
    h = history[(history.key == "T") & ((history.seed == seed) if seed is not None else True)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, metric in zip(axes, ["train_loss", "val_accuracy"]):
        sns.lineplot(data=h[h.metric == metric], x="epoch", y="value", hue="seed", marker="o", ax=ax,
                     palette="tab10", legend=seed is None)
        ax.set(title=f"teacher {metric.replace('_', ' ')}", ylabel=metric)
    _integer_epochs(axes, h.epoch)
    fig.tight_layout()
    return fig


def feature_figure(features: torch.Tensor, labels: torch.Tensor, classes, chunks: int = 8):
    """Per-dimension mean +- std of dense features (chunk borders marked), and a 2-D PCA coloured by class."""
    f = features.float().cpu()
    mean, std = f.mean(0).numpy(), f.std(0).numpy()
    centred = f - f.mean(0)
    _, s, v = torch.linalg.svd(centred, full_matrices=False)
    xy = (centred @ v[:2].T).numpy()
    explained = (s[:2] ** 2 / (s ** 2).sum()).numpy() * 100
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw=dict(width_ratios=[1.6, 1]))
    d = np.arange(f.shape[1])
    axes[0].plot(d, mean, lw=0.8, label="mean")
    axes[0].fill_between(d, mean - std, mean + std, alpha=0.3, label="+- std")
    for b in range(0, f.shape[1] + 1, f.shape[1] // chunks):
        axes[0].axvline(b, color="0.5", lw=0.5, ls=":")
    axes[0].set(xlabel="feature dimension (dotted: the 8 students' chunk borders)", ylabel="value",
                title=f"dense feature per dimension over {len(f)} test images")
    axes[0].legend(loc="upper right")
    names = [classes[int(i)] for i in labels.cpu()]
    sns.scatterplot(x=xy[:, 0], y=xy[:, 1], hue=names, hue_order=list(classes), s=12, ax=axes[1], palette="tab10",
                    linewidth=0)
    axes[1].set(xlabel=f"PC1 ({explained[0]:.0f}%)", ylabel=f"PC2 ({explained[1]:.0f}%)", title="PCA of test features")
    axes[1].legend(fontsize=7, markerscale=1.5, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------- 02-04 experiments
def student_history(history: pd.DataFrame, experiment: str, levels: int = 4, seed: int | None = None) -> pd.DataFrame:
    """The curves of one experiment's students: history rows whose lineage key is in its plan (with shared or
    separate students, ``Config.share_students``: the keys differ, and a results folder holds one kind)."""
    nodes = {n.key: n for share in (True, False) for n in build(experiment, levels, share_students=share).nodes}
    h = history[history.key.isin(list(nodes))]
    if seed is not None:
        h = h[h.seed == seed]
    return h.assign(level=h.key.map(lambda k: nodes[k].level), experiment=experiment)


def student_curves(history: pd.DataFrame, experiment: str, levels: int = 4, seed: int | None = None):
    """Feature loss per epoch for every student, one panel per level (solid: train, dashed: validation)."""
    h = student_history(history, experiment, levels, seed)
    g = sns.relplot(data=h, x="epoch", y="value", hue="model", style="metric", col="level", kind="line", marker="o",
                    style_order=["train_loss", "val_loss"], height=3.2, aspect=1.1, facet_kws=dict(sharey=False))
    for ax in g.axes.flat:
        ax.set_yscale("log")
    _integer_epochs(g.axes, h.epoch)
    g.set_axis_labels("epoch", f"feature loss ({experiment})")
    return g.figure


def ensemble_table(results: pd.DataFrame, experiment: str, seed: int | None = None) -> pd.DataFrame:
    """One row per ensemble size: accuracy before and after fine-tuning, parameters, MACs."""
    t = metrics_table(results, experiment, seed, [f"ensemble_{2 ** i}" for i in range(8)])
    t.index = students_of(t.index.to_series()).rename("students").values
    cols = ["test_accuracy_before_finetune", "test_accuracy", "val_accuracy_before_finetune", "val_accuracy",
            "parameters", "macs_per_image"]
    return t.sort_index()[[c for c in cols if c in t]]


def teacher_accuracy(results: pd.DataFrame, seed: int | None = None) -> float:
    d = results[(results.model == "teacher") & (results.metric == "test_accuracy")]
    return (d[d.seed == seed] if seed is not None else d).value.mean()


def ensemble_figure(results: pd.DataFrame, experiment: str, seed: int | None = None):
    """Test accuracy of each ensemble before and after fine-tuning its output layer, teacher for scale."""
    t = ensemble_table(results, experiment, seed)
    long = t[["test_accuracy_before_finetune", "test_accuracy"]].rename(
        columns={"test_accuracy_before_finetune": "before fine-tuning", "test_accuracy": "after fine-tuning"})
    long = long.rename_axis("students").reset_index().melt("students", var_name="stage", value_name="test accuracy (%)")
    fig, ax = plt.subplots(figsize=(8, 3.8))
    sns.barplot(data=long, x="students", y="test accuracy (%)", hue="stage", ax=ax, palette="Set2")
    ax.axhline(teacher_accuracy(results, seed), color="0.3", ls="--", lw=1, label="teacher (ours)")
    if experiment in PAPER_ACCURACY:
        paper_teacher_line(ax)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)  # outside: never on a bar
    ax.set(title=f"{experiment}: ensembles of n students")
    fig.tight_layout()
    return fig
