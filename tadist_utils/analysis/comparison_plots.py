"""Figures and tables of the notebooks 05-06: experiments side by side, over seeds (mean and Student-t interval,
paired differences, from ``stats``) and against what each model costs (``cost``).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..storage.results import PAPER_ACCURACY
from .run_plots import EXPERIMENT_ORDER, STUDENT_ORDER, students_of, paper_teacher_line, teacher_accuracy


# ------------------------------------------------------------------------- 05 compare
def ensembles(results: pd.DataFrame, metric: str = "test_accuracy") -> pd.DataFrame:
    """Tidy rows (experiment, students, seed, value) of every ensemble, for the comparison plots."""
    d = results[results.model.str.startswith("ensemble_") & (results.metric == metric)]
    return d.assign(students=students_of(d.model))


def accuracy_vs_students(results: pd.DataFrame, paper: bool = True):
    """Ours (mean +- sd over seeds) per experiment, with the paper's CIFAR-10 numbers dashed."""
    d = ensembles(results)
    order = [e for e in EXPERIMENT_ORDER if e in set(d.experiment)]
    palette = dict(zip(EXPERIMENT_ORDER, sns.color_palette("tab10", 3)))
    n_seeds = d.seed.nunique()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    sns.lineplot(data=d, x="students", y="value", hue="experiment", hue_order=order, palette=palette, marker="o",
                 errorbar="sd" if n_seeds > 1 else None, err_style="bars", ax=ax)
    ax.axhline(teacher_accuracy(results), color="0.3", ls="--", lw=1, label="teacher (ours)")
    if paper:
        paper_teacher_line(ax)
        for exp in order:
            ax.plot([1, 2, 4, 8], [PAPER_ACCURACY[exp][n] for n in (1, 2, 4, 8)], ls=":", marker="x", color=palette[exp],
                    alpha=0.7, label=f"{exp} (paper, CIFAR-10)")
    ax.set_xscale("log", base=2)
    ax.set_xticks([1, 2, 4, 8], ["1", "2", "4", "8"])
    ax.set(xlabel="students in the ensemble", ylabel="test accuracy (%)",
           title=f"accuracy vs number of students ({f'{n_seeds} seeds, bars: sd' if n_seeds > 1 else 'one seed'})")
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    return fig


def loss_per_student(results: pd.DataFrame, metric: str = "final_train_loss"):
    """Final feature loss of every student, grouped by experiment (log scale: levels differ a lot)."""
    d = results[(results.metric == metric) & results.model.isin(STUDENT_ORDER)]
    order = [m for m in STUDENT_ORDER if m in set(d.model)]
    fig, ax = plt.subplots(figsize=(11, 3.8))
    sns.barplot(data=d, x="model", y="value", hue="experiment", order=order,
                hue_order=[e for e in EXPERIMENT_ORDER if e in set(d.experiment)], errorbar="sd", ax=ax)
    ax.set_yscale("log")
    ax.set(xlabel="student", ylabel=metric.replace("_", " "), title="final feature loss per student")
    return fig


def accuracy_vs_params(results: pd.DataFrame):
    """Test accuracy against parameter count: the teacher and every ensemble (marker size: students)."""
    acc = ensembles(results)
    par = ensembles(results, "parameters")[["experiment", "model", "seed", "value"]].rename(columns={"value": "parameters"})
    d = acc.merge(par, on=["experiment", "model", "seed"])
    d = d.groupby(["experiment", "students"], as_index=False)[["value", "parameters"]].mean()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    sns.scatterplot(data=d, x="parameters", y="value", hue="experiment", size="students", sizes=(40, 200),
                    hue_order=[e for e in EXPERIMENT_ORDER if e in set(d.experiment)], ax=ax)
    t = results[results.model == "teacher"]
    params = t[t.metric == "parameters"].value.mean()
    ax.scatter([params], [teacher_accuracy(results)], marker="*", s=250, color="0.2", label="teacher")
    ax.set_xscale("log")
    ax.set(xlabel="parameters", ylabel="test accuracy (%)", title="accuracy vs size")
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    return fig


# ------------------------------------------------------------------------- multi-seed statistics (stats)
def _stats_colours(order) -> dict:
    """The comparison plots' colours (tab10, direct/single_ta/hierarchical first), extended to any experiment."""
    from .seed_summary import experiment_order
    known = EXPERIMENT_ORDER + [e for e in experiment_order(order) if e not in EXPERIMENT_ORDER]
    return dict(zip(known, sns.color_palette("tab10", max(10, len(known)))))


def accuracy_with_error_bars(results: pd.DataFrame, experiments=None, metric: str = "test_accuracy",
                             paper: bool = True, dataset: str | None = None, level: float = 0.95, ax=None):
    """Accuracy vs number of students: per experiment the mean over seeds with its Student-t interval (caps),
    every seed as a faint dot, the teacher's mean dashed with its interval as a band, and the paper's single
    runs as hollow markers. One errorbar container per experiment; returns the figure."""
    from .seed_summary import experiment_order, per_seed, summarise
    s = summarise(results, metric, dataset, level)
    seeds = per_seed(results, metric, dataset)
    ens = s[s.students.notna()]
    present = set(ens.experiment)
    order = experiment_order(present) if experiments is None else [e for e in experiments if e in present]
    colours = _stats_colours(order)
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(7.5, 4.4))
    for i, exp in enumerate(order):
        e = ens[ens.experiment == exp].sort_values("students")
        shift = 2 ** ((i - (len(order) - 1) / 2) * 0.04)  # dodge on the log2 axis
        c = colours[exp]
        pts = seeds[(seeds.experiment == exp) & seeds.model.str.startswith("ensemble_")]
        ax.scatter(students_of(pts.model) * shift, pts.value, s=14, color=c, alpha=0.3, linewidths=0, zorder=2)
        ax.errorbar(e.students * shift, e["mean"], yerr=e.ci, fmt="-o", capsize=4, color=c, ms=5, zorder=3,
                    label=f"{exp} (n={int(e.n.min())}{'' if e.n.min() == e.n.max() else f'-{int(e.n.max())}'})")
        if paper and exp in PAPER_ACCURACY:
            sizes = [n for n in sorted(e.students.astype(int)) if n in PAPER_ACCURACY[exp]]
            ax.scatter(sizes, [PAPER_ACCURACY[exp][n] for n in sizes], marker="o", facecolors="none", edgecolors=c,
                       s=50, linewidths=1.2, zorder=3, label=f"{exp} (paper, one run)")
    teacher = s[s.model == "teacher"]
    if len(teacher):
        t = teacher.sort_values("n").iloc[-1]
        ax.axhline(t["mean"], color="0.3", ls="--", lw=1, label=f"teacher (n={int(t.n)})")
        if np.isfinite(t.ci):
            ax.axhspan(t.ci_low, t.ci_high, color="0.3", alpha=0.12, lw=0)
    if paper and metric == "test_accuracy" and any(e in PAPER_ACCURACY for e in order):
        paper_teacher_line(ax)
    n_max = int(ens.n.max()) if len(ens) else 0
    ax.set_xscale("log", base=2)
    sizes = sorted(ens[ens.experiment.isin(order)].students.astype(int).unique())
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()
    ax.set(xlabel="students in the ensemble", ylabel=metric.replace("_", " ") + (" (%)" if "accuracy" in metric else ""),
           title=f"{metric.replace('_', ' ')}: " + (f"mean and {level:.0%} t-interval over {n_max} seeds (dots: seeds)"
                                                    if n_max > 1 else "one seed (no interval)"))
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    return fig


def declared_tests(results: pd.DataFrame, a: str, b: str, metric: str = "test_accuracy", dataset: str | None = None,
                   level: float = 0.95, share_students: bool = True) -> dict:
    """{students: row} for every size at which a declared family (``claims.FAMILIES``, first in declaration order)
    compares experiments a and b (either way round): that family's row of ``family_comparisons``, with its
    Holm-adjusted t-test and sign-flip p-values. Sizes no declared family compares are absent."""
    from .claims import FAMILIES
    from .paper_claims import family_comparisons
    out: dict = {}
    for key, fam in FAMILIES.items():
        if not any({c.better[0], c.worse[0]} == {a, b} and c.better[1] == c.worse[1] for c in fam.comparisons):
            continue
        t = family_comparisons(results, key, metric, dataset, level, share_students)
        for r in t.itertuples():
            if {r.exp_a, r.exp_b} == {a, b} and r.model_a == r.model_b:
                out.setdefault(int(r.model_a.removeprefix("ensemble_")), r)
    return out


def paired_differences(results: pd.DataFrame, a: str = "direct", b=None, metric: str = "test_accuracy",
                       dataset: str | None = None, level: float = 0.95, ax=None, share_students: bool = True):
    """a - b per ensemble size, paired on seed: each seed's difference as a dot, the mean with its Student-t
    interval (caps, uncorrected), and a zero line; b is one experiment, a list, or (default) the paper's other
    experiments that were run. One errorbar container per b; above the bars the Holm-adjusted p of the paired
    t-test and of the exact sign-flip test, each within the declared family that makes that comparison
    (``declared_tests``: C1-C3, B1), named beside it; "identical" where both sides are the same model by
    construction (``share_students``: see ``stats.share_students``); nothing where no declared family compares
    them. Returns the figure."""
    from ..methods import PAPER_EXPERIMENTS
    from .paired_tests import differences, paired
    present = set(ensembles(results, metric).experiment)
    bs = [e for e in PAPER_EXPERIMENTS if e != a and e in present] if b is None else ([b] if isinstance(b, str) else list(b))
    tables = {x: paired(results, a, x, metric, dataset, level, share_students) for x in bs}
    declared = {x: declared_tests(results, a, x, metric, dataset, level, share_students) for x in bs}
    sizes = sorted({int(n) for t in tables.values() for n in t.students})
    pos = {n: i for i, n in enumerate(sizes)}
    colours = _stats_colours([a, *bs])
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(7, 4))
    for j, x in enumerate(bs):
        t = tables[x]
        off = (j - (len(bs) - 1) / 2) * 0.25
        c = colours[x]
        dif = differences(results, a, x, metric, dataset)
        jitter = dif.groupby("students").cumcount() * 0.02 - 0.02
        ax.scatter(dif.students.map(pos) + off + jitter, dif["diff"], s=16, color=c, alpha=0.45, linewidths=0, zorder=2)
        xs = t.students.map(pos) + off
        ax.errorbar(xs, t.mean_diff, yerr=t.ci, fmt="o", capsize=5, color=c, ms=6, zorder=3,
                    label=f"{a} - {x}")
        for xi, r in zip(xs, t.itertuples()):
            d = declared[x].get(int(r.students))
            if r.identical:
                note = "identical"
            elif d is not None and np.isfinite(d.p_holm):
                note = f"{d.family_key}: t {d.p_holm:.2g}\nflip {d.p_perm_holm:.2g}"
            else:
                note = ""
            top = r.ci_high if np.isfinite(r.ci_high) else r.mean_diff
            ax.annotate(note, (xi, top), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=6,
                        color=c)
    ax.axhline(0, color="0.3", lw=1)
    ax.set_xticks(range(len(sizes)), [str(n) for n in sizes])
    ax.set(xlabel="students in the ensemble", ylabel=f"difference in {metric.replace('_', ' ')}",
           title=f"paired differences over seeds (bars: mean, {level:.0%} t-interval)\n"
                 "p: Holm-adjusted in its declared family (claims.py); t-test and exact sign-flip test")
    ax.legend(fontsize=8, loc="best")
    return fig


def accuracy_vs_cost(results: pd.DataFrame, cost: pd.DataFrame, x: str = "latency_ms_b1", device: str | None = None,
                     modes=("sequential", "together")):
    """Test accuracy against one cost column of ``cost.cost_table()`` (``latency_ms_b1``, ``latency_ms_b256``,
    ``parameters``, ``macs``, ``disk_bytes``...), log x: every ensemble (mean over seeds; colour:
    experiment, marker size: students) and the teacher (star).

    Ensembles were timed two ways: filled markers run their students ``together`` (``FusedEnsemble``),
    hollow ones ``sequential`` (``Ensemble.forward``), a thin line joining the two; where both cost the
    same (parameters, MACs) only the filled marker shows. ``device`` picks the cost rows of one device
    (default: the first in ``cost``).
    """
    if x not in cost:
        raise ValueError(f"cost has no column {x!r}")
    c = cost[cost.device == (device or cost.device.iloc[0])]
    acc = ensembles(results).groupby(["experiment", "students"], as_index=False).value.mean()
    ens = c[c.model.str.startswith("ensemble_") & c["mode"].isin(list(modes))]
    d = acc.merge(ens.assign(students=students_of(ens.model))[["students", "mode", x]], on="students")
    palette = _stats_colours(set(d.experiment))  # the same colour per experiment as the error-bar plots
    order = [e for e in palette if e in set(d.experiment)]
    main_mode = "together" if "together" in modes else modes[0]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    sns.scatterplot(data=d[d["mode"] == main_mode], x=x, y="value", hue="experiment", size="students",
                    sizes=(40, 200), hue_order=order, palette=palette, ax=ax, zorder=3)
    hollow_modes = set()
    for (exp, _), g in d.groupby(["experiment", "students"]):
        main, other = g[g["mode"] == main_mode], g[g["mode"] != main_mode]
        for _, r in other[~other[x].isin(main[x])].iterrows():  # a mode that costs differently: hollow
            ax.scatter([r[x]], [r.value], s=60, facecolors="none", edgecolors=[palette[exp]], zorder=2)
            hollow_modes.add(r["mode"])
            if len(main):
                ax.plot([r[x], main[x].iloc[0]], [r.value, main.value.iloc[0]], color=palette[exp], lw=0.8,
                        alpha=0.6, zorder=1)
    for mode in sorted(hollow_modes):  # a grey legend entry for the hollow markers
        ax.scatter([], [], s=60, facecolors="none", edgecolors="0.4", label=f"{mode} (hollow)")
    t = c[c.model == "teacher"]
    if len(t):
        ax.scatter([t[x].mean()], [teacher_accuracy(results)], marker="*", s=250, color="0.2", label="teacher")
    ax.set_xscale("log")
    import re
    label = re.sub(r"^latency_ms_b(\d+)$", r"latency at batch \1 (ms)", x)
    label = re.sub(r"^images_per_s_b(\d+)$", r"images/s at batch \1", label).replace("_", " ")
    where = f" on {c.device_name.iloc[0]}" if x.startswith(("latency", "images", "min_ms")) and len(c) else ""
    ax.set(xlabel=label, ylabel="test accuracy (%)", title=f"accuracy vs {label}{where}")
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    return fig
