"""The paper's pipeline: teacher, then students grouped by parent, then ensembles, with results on disk.

``Pipeline(make_config("smoke", dataset="digits")).run()``, or ``.run_experiment("direct")`` one at a time. All
trained models are checkpointed under ``<results_dir>/checkpoints/seed<N>/`` and reused while their spec (the
config fields that shape them, the data fingerprint, the parent's spec) is unchanged; one lineage trains once.
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
from functools import partial
from pathlib import Path

import pandas as pd
import torch

from . import models
from .config import Config, settings_fields, validate
from .data import DataBundle, load_data
from .engine import describe
from .losses import guided_loss
from .plans import METHODS, TEACHER, TEACHER_LINEAGE, Lineage, Node, Plan
from .storage.results import ResultsStore, check_files, superseded_notice
from .train import (Context, StudentJob, batches, evaluate, extract, finetune_head, init_seed, run_epochs,
                    student_training, train_classifier)


def spec_hash(obj) -> str:
    """12 hex digits of a spec (any JSON-able dict): names checkpoints, ties a model to its parent's spec."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def lineages(plans: list[Plan]) -> tuple[dict[Lineage, Node], dict[Lineage, list[tuple[Lineage, int, int]]]]:
    """Every student the plans need, once per lineage, and (ancestor's lineage, start, stop) per target."""
    nodes: dict[Lineage, Node] = {}
    guide_keys: dict[Lineage, list[tuple[Lineage, int, int]]] = {}
    for plan in plans:
        for n in plan.nodes:
            nodes.setdefault(n.key, n)
            guide_keys[n.key] = [(TEACHER_LINEAGE if a == TEACHER else plan.node(a).key, lo, hi)
                                 for a, lo, hi in n.targets]
    return nodes, guide_keys


def student_groups(nodes: dict[Lineage, Node], guide_keys: dict, fuse: bool, done=()) -> list[tuple[list, list, list]]:
    """Students that share every training step, parents' groups first: (students, guide lineages, parent lineages).
    Siblings when stepped one by one; fused, a whole generation, so that more fuse into one network."""
    groups: dict[object, list[Node]] = {}
    for n in sorted(nodes.values(), key=lambda n: n.level):
        if n.key not in done:
            groups.setdefault(n.key.depth if fuse else n.key.parent, []).append(n)
    out = []
    for group in groups.values():  # insertion order follows level, so parents come first
        parent_keys = list(dict.fromkeys(n.key.parent for n in group))
        guides = list(dict.fromkeys(k for n in group for k, _, _ in guide_keys[n.key] if k not in parent_keys))
        out.append((group, guides + parent_keys, parent_keys))
    return out


class Pipeline:
    """Trains and evaluates, reusing checkpoints; every public method is safe to call again."""

    def __init__(self, cfg: Config, data: DataBundle | None = None, ctx: Context | None = None):
        validate(cfg)
        self.cfg = cfg
        self.ctx = ctx or Context.from_config(cfg)  # a runner passes its own (its bar and log)
        check_files(cfg.results_dir)  # a damaged results.csv is named now, not after the teacher has trained
        self.store = ResultsStore(cfg.results_dir)
        self._config, self._checkpoints = cfg.as_dict(), cfg.checkpoint_dir / f"seed{cfg.seed}"  # once, not per stage
        self._data = data
        self._teacher = None
        self._students: dict[str, torch.nn.Module] = {}
        self._specs: dict[str, dict] = {}
        self._loss: dict[str, dict] = {}  # key -> final losses of each student trained or loaded
        self._baselines: dict[str, tuple] = {}  # lineage key -> (model, metrics)
        self._baseline_specs: dict[str, dict] = {}
        self._settings: dict | None = None

    # ---------------------------------------------------------------- data and paths
    @property
    def data(self) -> DataBundle:
        if self._data is None:
            self._data = load_data(self.cfg)
            if self._data.notice:
                self.ctx.log(f"[tadist] NOTICE: {self._data.notice}")
        return self._data

    def _path(self, name: str, key) -> Path:
        return self._checkpoints / f"{name}-{spec_hash(str(key))[:8]}.pt"

    def _common(self) -> dict:
        c, x = self.cfg, self.ctx  # the engine settings that change the weights (as resolved), not just the speed
        return dict(data=self.data.fingerprint(), seed=c.seed, batch_size=c.batch_size, augment=c.augment,
                    precision=str(x.amp_dtype).replace("torch.", "") if x.amp_dtype else "fp32",
                    compile=bool(x.compile), channels_last=bool(x.channels_last))

    def settings(self) -> dict:
        """What made this run's numbers, and its hash (every results row's ``settings``): the config's settings
        (``config.settings_fields``), the data's fingerprint and the precision as resolved on this device."""
        if self._settings is None:
            common = self._common()
            s = dict(settings_fields(self.cfg), data=common["data"], precision=common["precision"])
            self._settings = dict(hash=spec_hash(s), **s)
        return self._settings

    def _manifest(self, stage: str, seconds: float, **extra) -> None:
        """One stage's time and outcome, keyed by seed: the seeds of a folder each keep their own (``seed0/teacher``)."""
        self.store.update_manifest(f"seed{self.cfg.seed}/{stage}", self._config, self.data.describe(),
                                   f"{self.ctx.device} ({describe(self.ctx.device)})", seconds, extra,
                                   settings=self.settings())

    def _add_results(self, rows: list[dict]) -> None:
        """Rows into results.csv; rows of other settings moved aside (``results.py``) are said in one line."""
        moved = self.store.add_results(rows)
        if moved:
            self.ctx.log(f"[tadist] NOTICE: {superseded_notice(moved, self.settings())}")

    def _history_rows(self, key: str, name: str, history: list[dict]) -> list[dict]:
        return [dict(dataset=self.data.name, key=str(key), model=name, seed=self.cfg.seed, epoch=h["epoch"], metric=m,
                     value=v, settings=self.settings()["hash"]) for h in history for m, v in h.items() if m != "epoch"]

    def _rows(self, experiment: str, model: str, **metrics) -> list[dict]:
        return [dict(dataset=self.data.name, experiment=experiment, model=model, seed=self.cfg.seed, metric=m, value=v,
                     settings=self.settings()["hash"]) for m, v in metrics.items()]

    # ---------------------------------------------------------------- teacher
    def teacher_spec(self) -> dict:
        c = self.cfg
        return dict(model="teacher", num_classes=self.data.num_classes, epochs=c.teacher_epochs, lr=c.teacher_lr,
                    optimizer=c.teacher_optimizer, weight_decay=c.teacher_weight_decay, **self._common())

    def teacher(self) -> models.ConvNet:
        """Train the VGG16-BN teacher (or load it), record its accuracy, return it frozen in eval mode."""
        if self._teacher is not None:
            return self._teacher
        c, t0 = self.cfg, time.perf_counter()
        torch.manual_seed(init_seed(c.seed, "teacher"))
        net = self.ctx.model(models.teacher(self.data.num_classes))
        run = train_classifier(net, self.data, self.ctx, name="teacher", path=self._path("teacher", TEACHER_LINEAGE),
                               spec=self.teacher_spec(), epochs=c.teacher_epochs, lr=c.teacher_lr,
                               weight_decay=c.teacher_weight_decay, batch_size=c.batch_size, augment=c.augment,
                               seed=c.seed, optimizer=c.teacher_optimizer)
        test = evaluate(net, batches(self.data, "test", c.eval_batch_size, self.ctx), self.ctx)
        self._add_results(self._rows("teacher", "teacher", test_accuracy=test, val_accuracy=run.best["metric"],
                                          selected_epoch=run.best["epoch"], parameters=models.count_params(net),
                                          train_seconds=run.seconds))
        self.store.add_history(self._history_rows(TEACHER_LINEAGE, "teacher", run.history))
        self._manifest("teacher", time.perf_counter() - t0, test_accuracy=test)
        net.requires_grad_(False)
        self._teacher = net
        self._specs[TEACHER_LINEAGE] = self.teacher_spec()
        return net

    # ---------------------------------------------------------------- students
    def student_spec(self, node: Node, loss=guided_loss) -> dict:
        c = self.cfg
        spec = dict(model=str(node.key), level=node.level, parent=spec_hash(self._specs[node.key.parent]),
                    epochs=c.student_epochs, lr=c.student_lr, weight_decay=c.student_weight_decay, loss=c.feature_loss,
                    **{**self._common(), "augment": c.student_augment})
        if len(node.targets) > 1:
            spec.update(guides=[list(g) for g in node.targets], dense_drop=c.dense_drop)
        if loss is not guided_loss:  # a method of its own loss: never another's checkpoint
            spec.update(unit_loss=getattr(loss, "__qualname__", repr(loss)))
        return spec

    def _parent(self, key: Lineage):
        return self.teacher() if key.parent is None else self._students[key]

    def students(self, plans: list[Plan]) -> dict[str, torch.nn.Module]:
        """Train every student the plans need, once per lineage, siblings together; return key -> model."""
        self.teacher()
        c = self.cfg
        nodes, guide_keys = lineages(plans)
        unit_loss = {n.key: METHODS[p.experiment].loss for p in reversed(plans) for n in p.nodes}  # the first plan's
        for group, guides, parent_keys in student_groups(nodes, guide_keys, self.ctx.fuse, done=self._students):
            t0 = time.perf_counter()
            jobs = []
            for n in group:
                torch.manual_seed(init_seed(c.seed, n.key))
                net = self.ctx.model(models.student(n.level))
                self._specs[n.key] = self.student_spec(n, unit_loss[n.key])
                targets = tuple((guides.index(k), lo, hi) for k, lo, hi in guide_keys[n.key])
                jobs.append(StudentJob(n.name, net, n.start, n.stop, self._path(n.name, n.key), self._specs[n.key],
                                       targets, unit_loss[n.key]))
            label = ", ".join(dict.fromkeys("teacher" if k.parent is None else nodes[k].name for k in parent_keys))
            for k in guides:
                self._parent(k).eval()
            runs = run_epochs(student_training(
                [self._parent(k) for k in guides], jobs, self.data, self.ctx, epochs=c.student_epochs, lr=c.student_lr,
                weight_decay=c.student_weight_decay, batch_size=c.batch_size, augment=c.student_augment, seed=c.seed,
                kind=c.feature_loss, group=f"students of {label}", drop=c.dense_drop), self.ctx)
            for n, job, run in zip(group, jobs, runs):
                job.model.requires_grad_(False)
                self._students[n.key] = job.model
                self.store.add_history(self._history_rows(n.key, n.name, run.history))
                self._loss[n.key] = dict(final_train_loss=run.history[-1]["train_loss"],
                                         final_val_loss=run.history[-1]["val_loss"], train_seconds=run.seconds)
            self._manifest(f"students of {label}", time.perf_counter() - t0, students=[n.name for n in group])
        return {k: self._students[k] for k in nodes}

    # ---------------------------------------------------------------- ensembles
    def ensemble(self, plan: Plan, n_students: int) -> tuple[models.Ensemble, dict]:
        """Build the n-student ensemble of a plan, measure it before and after fine-tuning (whose epoch 0, the
        ensemble as built, takes part in the selection: a fine-tune that lowers validation accuracy is never kept)."""
        c = self.cfg
        teacher = self.teacher()
        names = plan.ensembles[n_students]
        keys = [plan.node(name).key for name in names]
        students = [self._students[k] for k in keys]
        if c.finetune_mode == "all":
            students = [copy.deepcopy(s).requires_grad_(True) for s in students]
        ens = self.ctx.model(models.Ensemble(students, self.data.num_classes, init_from=teacher.classifier)).eval()
        ev = {s: batches(self.data, s, c.eval_batch_size, self.ctx) for s in ("train", "val", "test")}
        metrics = dict(val_accuracy_before_finetune=evaluate(ens, ev["val"], self.ctx),
                       test_accuracy_before_finetune=evaluate(ens, ev["test"], self.ctx))
        spec = dict(model="ensemble", students=[spec_hash(self._specs[k]) for k in keys], mode=c.finetune_mode,
                    epochs=c.finetune_epochs, lr=c.finetune_lr, select_from=0, select_by="evaluate",
                    **self._common())
        key = "E:" + "|".join(map(str, keys))
        path = self._path(f"ensemble{n_students}", key + c.finetune_mode)
        history: list = []
        if c.finetune_epochs > 0 and c.finetune_mode == "head":
            feats = {s: extract(ens.features, ev[s], self.ctx) for s in ev}
            run = finetune_head(ens.classifier, feats, self.data, self.ctx, name=f"ensemble_{n_students}", path=path,
                                spec=spec, epochs=c.finetune_epochs, lr=c.finetune_lr, batch_size=c.batch_size,
                                seed=c.seed, validate=lambda: evaluate(ens, ev["val"], self.ctx))
            history = run.history
        elif c.finetune_epochs > 0:
            run = train_classifier(ens, self.data, self.ctx, name=f"ensemble_{n_students}", path=path, spec=spec,
                                   epochs=c.finetune_epochs, lr=c.finetune_lr, weight_decay=0.0,
                                   batch_size=c.batch_size, augment=c.augment, seed=c.seed, optimizer="adam",
                                   include_start=True)
            history = run.history
        if history:  # 0: no fine-tuning epoch beat the ensemble as built on the validation split
            metrics.update(selected_epoch=run.best["epoch"])
        metrics.update(val_accuracy=evaluate(ens, ev["val"], self.ctx),
                       test_accuracy=evaluate(ens, ev["test"], self.ctx),
                       parameters=models.count_params(ens), macs_per_image=models.count_macs(copy.deepcopy(ens).cpu()))
        self.store.add_history(self._history_rows(key, f"ensemble_{n_students}", history))
        return ens, metrics

    # ---------------------------------------------------------------- experiments
    def baseline_model(self, baseline: str, n_students: int) -> tuple[models.Ensemble, dict]:
        """Train (or load) a baseline's n-student ensemble architecture end to end (``plans.EndToEnd``)."""
        c, method = self.cfg, METHODS[baseline]
        key = method.lineage(n_students)
        if key in self._baselines:
            return self._baselines[key]
        src = method.source(n_students)  # None: the labels alone; "T": the teacher; else a smaller model of its own
        if src not in (None, "T"):  # a chain's smaller link, trained (or loaded) first
            self.baseline_model(baseline, method.previous(n_students))
        teacher = None if src is None else self.teacher() if src == "T" else self._baselines[src][0]
        source_spec = self._specs[TEACHER_LINEAGE] if src == "T" else self._baseline_specs.get(src)
        level = n_students.bit_length()
        torch.manual_seed(init_seed(c.seed, key))
        net = self.ctx.model(models.Ensemble([models.student(level) for _ in range(n_students)], self.data.num_classes))
        spec = dict(model=key, source=spec_hash(source_spec), epochs=c.student_epochs, lr=c.student_lr,
                    weight_decay=c.student_weight_decay, kd=[c.kd_temperature, c.kd_alpha] if method.distils else None,
                    **{**self._common(), "augment": c.student_augment})
        run = train_classifier(net, self.data, self.ctx, name=f"{baseline} {n_students} student(s)",
                               path=self._path(f"{baseline}{n_students}", key), spec=spec, epochs=c.student_epochs,
                               lr=c.student_lr, weight_decay=c.student_weight_decay, batch_size=c.batch_size,
                               augment=c.student_augment, seed=c.seed, optimizer="adam",
                               distill_from=teacher, loss=partial(method.loss, temperature=c.kd_temperature,
                                                                  alpha=c.kd_alpha))
        net.requires_grad_(False)
        test = evaluate(net, batches(self.data, "test", c.eval_batch_size, self.ctx), self.ctx)
        metrics = dict(val_accuracy=run.best["metric"], test_accuracy=test, selected_epoch=run.best["epoch"],
                       parameters=models.count_params(net), train_seconds=run.seconds)
        self.store.add_history(self._history_rows(key, f"ensemble_{n_students}", run.history))
        self._baseline_specs[key] = spec
        self._baselines[key] = (net, metrics)
        return net, metrics

    def run_baseline(self, baseline: str) -> pd.DataFrame:
        """Every ensemble size of one baseline; its rows of results.csv."""
        t0 = time.perf_counter()
        rows = []
        for size in METHODS[baseline].sizes(self.cfg.levels):
            _, metrics = self.baseline_model(baseline, size)
            rows += self._rows(baseline, f"ensemble_{size}", **metrics)
        self._add_results(rows)
        self._manifest(baseline, time.perf_counter() - t0)
        return pd.DataFrame(rows)

    def run_experiment(self, experiment: str) -> pd.DataFrame:
        """Train (or reuse) one method's students and ensembles (or a baseline); return its rows of results.csv."""
        if not METHODS[experiment].chunked:
            return self.run_baseline(experiment)
        t0 = time.perf_counter()
        plan = METHODS[experiment].plan(self.cfg.levels, share_students=self.cfg.share_students)
        self.students([plan])
        rows = []
        for n in plan.nodes:
            rows += self._rows(experiment, n.name, parameters=models.count_params(self._students[n.key]),
                               **self._loss.get(n.key, {}))
        for size in plan.ensembles:
            _, metrics = self.ensemble(plan, size)
            rows += self._rows(experiment, f"ensemble_{size}", **metrics)
        self._add_results(rows)
        self._manifest(experiment, time.perf_counter() - t0)
        return pd.DataFrame(rows)

    def run(self, experiments: tuple[str, ...] | None = None) -> pd.DataFrame:
        """Teacher and every requested experiment (default: the config's); the full results table."""
        experiments = experiments or self.cfg.experiments
        self.teacher()
        self.students([METHODS[e].plan(self.cfg.levels, share_students=self.cfg.share_students)
                       for e in experiments if METHODS[e].chunked])  # every plan's students first: fused together
        for e in experiments:
            self.run_experiment(e)
        return self.store.results()

