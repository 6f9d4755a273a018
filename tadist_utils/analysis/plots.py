"""The notebooks' figures and small tables, from the tidy CSVs of ``storage.results``: the notebooks stay narrative
plus calls. Figures use pyplot, so Jupyter's inline backend shows each once, at the end of its cell."""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from ..plans import METHODS, PAPER_EXPERIMENTS
from ..models import catalogue
from ..plans import TEACHER, level_names
from .claims import FAMILIES, family_comparisons
from .paper import PAPER_ACCURACY, STUDENTS
from .stats import differences, experiment_order, paired, per_seed, summarise

PAPER_TEACHER = PAPER_ACCURACY["direct"]["teacher"]  # the paper's VGG16-BN teacher on CIFAR-10 (82.89 %)


def _axes(ax, figsize):
    """(figure, axes): ``ax``'s, or a new figure of ``figsize``."""
    return (ax.figure, ax) if ax is not None else plt.subplots(figsize=figsize)


def _teacher_line(ax, y=PAPER_TEACHER, label="teacher (paper, CIFAR-10)", ls=":") -> None:
    ax.axhline(y, color="0.3", ls=ls, lw=1, label=label)


def _hollow(ax, x, y, colour, label=None, s=50) -> None:
    """The paper's single runs (and any second mode): hollow circles."""
    ax.scatter(x, y, s=s, facecolors="none", edgecolors=[colour], linewidths=1.2, zorder=3, label=label)


def students_of(model: pd.Series) -> pd.Series:
    return model.str.removeprefix("ensemble_").astype(int)


def _seed(d: pd.DataFrame, seed: int | None) -> pd.DataFrame:
    return d if seed is None else d[d.seed == seed]


def _integer_epochs(axes, epochs) -> None:
    """Epochs are whole numbers: tick each one when there are few, else let matplotlib pick integers."""
    from matplotlib.ticker import FixedLocator, MaxNLocator
    epochs = sorted(set(int(e) for e in epochs))
    for ax in np.ravel(axes):
        ax.xaxis.set_major_locator(FixedLocator(epochs) if len(epochs) <= 12 else MaxNLocator(integer=True))


def metrics_table(results: pd.DataFrame, experiment: str, seed: int | None = None, models=None) -> pd.DataFrame:
    """One row per model of an experiment ("teacher" for the teacher), one column per metric; mean over seeds."""
    d = _seed(results[results.experiment == experiment], seed)
    d = d if models is None else d[d.model.isin(list(models))]
    t = d.pivot_table(index="model", columns="metric", values="value", aggfunc="mean")
    t = t.round({c: 2 if "accuracy" in c else 1 for c in t if "accuracy" in c or "seconds" in c})  # 10.16, not 10.15625
    order = [m for m in ["teacher", *STUDENTS] if m in t.index]
    return t.loc[order + [m for m in t.index if m not in order]]


# ------------------------------------------------------------------------- 00 overview
def plan_tree(experiment: str, levels: int = 4, ax=None):
    """One distillation tree: who learns which slice of whom, one row per level.

    A parent that teaches several rows (the teacher in ``direct``) feeds one rail per row through a trunk at the
    left: straight lines behind the rows between would read as a hierarchy."""
    ax = _axes(ax, (7, 4))[1]
    pos = {TEACHER: (0.5, 0)}
    for lv in range(1, levels + 1):
        names = level_names(lv)
        pos.update({n: ((i + 0.5) / len(names), -lv) for i, n in enumerate(names)})
    colours = sns.color_palette("viridis", levels)
    plan = METHODS[experiment].plan(levels)
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
    ax = _axes(ax, (7, 3))[1]
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
    for ax, exp in zip(axes.flat[1:], PAPER_EXPERIMENTS):
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
    h = _seed(history[history.key == "T"], seed)
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
    """History rows of one experiment's students (their lineage keys, with shared or separate students)."""
    nodes = {str(n.key): n for share in (True, False) for n in METHODS[experiment].plan(levels, share_students=share).nodes}
    h = _seed(history[history.key.isin(list(nodes))], seed)
    return h.assign(level=h.key.map(lambda k: nodes[k].level), experiment=experiment)


def student_curves(history: pd.DataFrame, experiment: str, levels: int = 4, seed: int | None = None):
    """Feature loss per epoch for every student, one panel per level (solid: train, dashed: validation); within a
    panel each student its own tab10 colour (one palette over all 15 gave near-identical hues)."""
    h = student_history(history, experiment, levels, seed)
    colour = {n: c for lv in range(1, levels + 1) for n, c in zip(level_names(lv), sns.color_palette("tab10"))}
    g = sns.relplot(data=h, x="epoch", y="value", hue="model", style="metric", col="level", kind="line", marker="o",
                    palette={m: colour.get(m, "0.5") for m in h.model.unique()}, style_order=["train_loss", "val_loss"],
                    height=3.2, aspect=1.1, facet_kws=dict(sharey=False))
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
    return round(_seed(results[(results.model == "teacher") & (results.metric == "test_accuracy")], seed).value.mean(), 2)


def ensemble_figure(results: pd.DataFrame, experiment: str, seed: int | None = None):
    """Test accuracy of each ensemble before and after fine-tuning its output layer, teacher for scale."""
    t = ensemble_table(results, experiment, seed)
    long = t[["test_accuracy_before_finetune", "test_accuracy"]].rename(
        columns={"test_accuracy_before_finetune": "before fine-tuning", "test_accuracy": "after fine-tuning"})
    long = long.rename_axis("students").reset_index().melt("students", var_name="stage", value_name="test accuracy (%)")
    fig, ax = plt.subplots(figsize=(8, 3.8))
    # points, not bars from 0: a bar's length would hide differences of a point or two behind tens of points of height
    sns.pointplot(data=long, x="students", y="test accuracy (%)", hue="stage", ax=ax, palette="Set2", dodge=0.3,
                  linestyle="none", markers=["o", "s"])
    _teacher_line(ax, teacher := teacher_accuracy(results, seed), "teacher (ours)", "--")
    title = f"{experiment}: ensembles of n students"
    if experiment in PAPER_ACCURACY:  # a line 30 points above ours would squash every difference: said instead
        if PAPER_TEACHER - max(long["test accuracy (%)"].max(), teacher) < 10:
            _teacher_line(ax)
        else:
            title += f" (the paper's teacher, {PAPER_TEACHER:.2f}%, is off this axis)"
    ax.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")  # outside: never on a point
    ax.set(title=title)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------- 05 compare
def ensembles(results: pd.DataFrame, metric: str = "test_accuracy") -> pd.DataFrame:
    """Tidy rows (experiment, students, seed, value) of every ensemble, for the comparison plots."""
    d = results[results.model.str.startswith("ensemble_") & (results.metric == metric)]
    return d.assign(students=students_of(d.model))


def loss_per_student(results: pd.DataFrame, metric: str = "final_train_loss"):
    """Final feature loss of every student, grouped by experiment (log scale: levels differ a lot)."""
    d = results[(results.metric == metric) & results.model.isin(STUDENTS)]
    order = [m for m in STUDENTS if m in set(d.model)]
    fig, ax = plt.subplots(figsize=(11, 3.8))
    sns.barplot(data=d, x="model", y="value", hue="experiment", order=order,
                hue_order=[e for e in PAPER_EXPERIMENTS if e in set(d.experiment)], errorbar="sd", ax=ax)
    ax.set_yscale("log")
    ax.set(xlabel="student", ylabel=metric.replace("_", " "),
           title="final feature loss per student, each against its own target (compare within an experiment: the "
                 "targets differ across them, and from the paper's in scale)")
    ax.title.set_fontsize(9)
    return fig


# ------------------------------------------------------------------------- over seeds (05-06)
def _colours(experiments) -> dict:
    """One colour per experiment in every comparison plot (tab10, the paper's three first)."""
    known = [*PAPER_EXPERIMENTS] + [e for e in experiment_order(experiments) if e not in PAPER_EXPERIMENTS]
    return dict(zip(known, sns.color_palette("tab10", max(10, len(known)))))


def accuracy_with_error_bars(results: pd.DataFrame, experiments=None, metric: str = "test_accuracy",
                             paper: bool = True, dataset: str | None = None, level: float = 0.95, ax=None):
    """Accuracy vs number of students: per experiment the mean with its Student-t interval, each seed a faint
    dot, the teacher dashed with its interval as a band, the paper's single runs hollow."""
    s, seeds = summarise(results, metric, dataset, level), per_seed(results, metric, dataset)
    ens = s[s.students.notna()]
    order = experiment_order(ens.experiment) if experiments is None else \
        [e for e in experiments if e in set(ens.experiment)]
    palette = _colours(order)
    fig, ax = _axes(ax, (7.5, 4.4))
    for i, exp in enumerate(order):
        e, c = ens[ens.experiment == exp].sort_values("students"), palette[exp]
        shift = 2 ** ((i - (len(order) - 1) / 2) * 0.04)  # dodge on the log2 axis
        pts = seeds[(seeds.experiment == exp) & (seeds.model != "teacher")]
        ax.scatter(students_of(pts.model) * shift, pts.value, s=14, color=c, alpha=0.3, linewidths=0, zorder=2)
        n = f"{int(e.n.min())}" + ("" if e.n.min() == e.n.max() else f"-{int(e.n.max())}")
        ax.errorbar(e.students * shift, e["mean"], yerr=e.ci, fmt="-o", capsize=4, color=c, ms=5, zorder=3,
                    label=f"{exp} (n={n})")
        if paper and exp in PAPER_ACCURACY:
            sizes = [k for k in sorted(e.students.astype(int)) if k in PAPER_ACCURACY[exp]]
            _hollow(ax, sizes, [PAPER_ACCURACY[exp][k] for k in sizes], c, f"{exp} (paper, one run)")
    teacher = s[s.model == "teacher"]
    if len(teacher):
        t = teacher.sort_values("n").iloc[-1]
        _teacher_line(ax, t["mean"], f"teacher (n={int(t.n)})", "--")
        if np.isfinite(t.ci):
            ax.axhspan(t.ci_low, t.ci_high, color="0.3", alpha=0.12, lw=0)
    if paper and metric == "test_accuracy" and any(e in PAPER_ACCURACY for e in order):
        _teacher_line(ax)
    n_max = int(ens.n.max()) if len(ens) else 0
    sizes = sorted(ens[ens.experiment.isin(order)].students.astype(int).unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(k) for k in sizes])
    ax.minorticks_off()
    ax.set(xlabel="students in the ensemble", ylabel=metric.replace("_", " ") + (" (%)" if "accuracy" in metric else ""),
           title=f"{metric.replace('_', ' ')}: " + (f"mean and {level:.0%} t-interval over {n_max} seeds (dots: seeds)"
                                                    if n_max > 1 else "one seed (no interval)"))
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    return fig


def declared_tests(results: pd.DataFrame, a: str, b: str, metric: str = "test_accuracy", dataset: str | None = None,
                   level: float = 0.95, share_students: bool = True) -> dict:
    """{students: row of ``family_comparisons``} where a declared family (the first) compares a and b, either way
    round: p-values are only quoted with the family they were corrected in."""
    out: dict = {}
    for key, fam in FAMILIES.items():
        if any({c.better[0], c.worse[0]} == {a, b} and c.better[1] == c.worse[1] for c in fam.comparisons):
            for r in family_comparisons(results, key, metric, dataset, level, share_students).itertuples():
                if {r.exp_a, r.exp_b} == {a, b} and r.model_a == r.model_b:
                    out.setdefault(int(r.model_a.removeprefix("ensemble_")), r)
    return out


def paired_differences(results: pd.DataFrame, a: str = "direct", b=None, metric: str = "test_accuracy",
                       dataset: str | None = None, level: float = 0.95, ax=None, share_students: bool = True):
    """a - b per ensemble size, paired on seed: each seed a dot, the mean with its (uncorrected) Student-t
    interval; b: one experiment, a list, or the paper's others that were run. Above the bars: the Holm-adjusted
    p of both tests in the declared family that makes the comparison (``declared_tests``), or "identical"."""
    present = set(ensembles(results, metric).experiment)
    bs = [e for e in PAPER_EXPERIMENTS if e != a and e in present] if b is None else [b] if isinstance(b, str) else list(b)
    tables = {x: paired(results, a, x, metric, dataset, level, share_students) for x in bs}
    sizes = sorted({int(n) for t in tables.values() for n in t.students})
    pos, palette = {n: i for i, n in enumerate(sizes)}, _colours([a, *bs])
    fig, ax = _axes(ax, (7, 4))
    for j, (x, t) in enumerate(tables.items()):
        off, c = (j - (len(bs) - 1) / 2) * 0.25, palette[x]
        declared = declared_tests(results, a, x, metric, dataset, level, share_students)
        dif = differences(results, a, x, metric, dataset)
        jitter = dif.groupby("students").cumcount() * 0.02 - 0.02
        ax.scatter(dif.students.map(pos) + off + jitter, dif["diff"], s=16, color=c, alpha=0.45, linewidths=0, zorder=2)
        xs = t.students.map(pos) + off
        ax.errorbar(xs, t.mean_diff, yerr=t.ci, fmt="o", capsize=5, color=c, ms=6, zorder=3, label=f"{a} - {x}")
        for xi, r in zip(xs, t.itertuples()):
            d = declared.get(int(r.students))
            note = "identical" if r.identical else f"{d.family_key}: t {d.p_holm:.2g}\nflip {d.p_perm_holm:.2g}" \
                if d is not None and np.isfinite(d.p_holm) else ""
            ax.annotate(note, (xi, r.ci_high if np.isfinite(r.ci_high) else r.mean_diff), textcoords="offset points",
                        xytext=(0, 4), ha="center", fontsize=6, color=c)
    ax.axhline(0, color="0.3", lw=1)
    ax.set_xticks(range(len(sizes)), [str(n) for n in sizes])
    ax.set(xlabel="students in the ensemble", ylabel=f"difference in {metric.replace('_', ' ')}",
           title=f"paired differences over seeds (bars: mean, {level:.0%} t-interval)\n"
                 "p: Holm-adjusted in its declared family (claims.py); t-test and exact sign-flip test")
    ax.legend(fontsize=8, loc="best")
    return fig


def accuracy_vs_cost(results: pd.DataFrame, cost: pd.DataFrame, x: str = "latency_ms_b1", device: str | None = None,
                     modes=("sequential", "together")):
    """Test accuracy against one column ``x`` of ``cost.cost_table()`` (log x, ``device``: default the first):
    every ensemble (colour: experiment, size: students) and the teacher (star). Filled: students run ``together``;
    hollow: ``sequential``, joined by a line where the two cost differently."""
    if x not in cost:
        raise ValueError(f"cost has no column {x!r}")
    c = cost[cost.device == (device or cost.device.iloc[0])]
    acc = ensembles(results).groupby(["experiment", "students"], as_index=False).value.mean()
    ens = c[c.model.str.startswith("ensemble_") & c["mode"].isin(list(modes))]
    d = acc.merge(ens.assign(students=students_of(ens.model))[["students", "mode", x]], on="students")
    palette = _colours(set(d.experiment))
    main_mode = "together" if "together" in modes else modes[0]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    sns.scatterplot(data=d[d["mode"] == main_mode], x=x, y="value", hue="experiment", size="students",
                    sizes=(40, 200), hue_order=[e for e in palette if e in set(d.experiment)], palette=palette, ax=ax,
                    zorder=3)
    other = d[d["mode"] != main_mode].merge(d[d["mode"] == main_mode][["experiment", "students", x, "value"]],
                                            on=["experiment", "students"], how="left", suffixes=("", "_main"))
    for _, r in other[other[x] != other[f"{x}_main"]].iterrows():  # only a mode that costs differently
        _hollow(ax, [r[x]], [r.value], palette[r.experiment], s=60)
        ax.plot([r[x], r[f"{x}_main"]], [r.value, r.value_main], color=palette[r.experiment], lw=0.8, alpha=0.6,
                zorder=1)
    for mode in sorted(set(other[other[x] != other[f"{x}_main"]]["mode"])):  # a grey legend entry for the hollow
        _hollow(ax, [], [], "0.4", f"{mode} (hollow)", s=60)
    t = c[c.model == "teacher"]
    if len(t):
        ax.scatter([t[x].mean()], [teacher_accuracy(results)], marker="*", s=250, color="0.2", label="teacher")
    ax.set_xscale("log")
    label = re.sub(r"^latency_ms_b(\d+)$", r"latency at batch \1 (ms)", x)
    label = re.sub(r"^images_per_s_b(\d+)$", r"images/s at batch \1", label).replace("_", " ")
    where = f" on {c.device_name.iloc[0]}" if x.startswith(("latency", "images", "min_ms")) and len(c) else ""
    ax.set(xlabel=label, ylabel="test accuracy (%)", title=f"accuracy vs {label}{where}")
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    return fig


def save(fig, results_dir, name: str) -> None:
    """Write ``<results_dir>/figures/<name>.png`` (results_dir may be a Config); None, so a cell ending in it
    shows no ``PosixPath``."""
    folder = Path(getattr(results_dir, "results_dir", results_dir)) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / f"{name}.png", dpi=120, bbox_inches="tight")
