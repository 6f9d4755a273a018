"""The paper's pipeline: teacher, then students grouped by parent, then ensembles, with results on disk.

    from tadist_utils.config import make_config
    from tadist_utils.experiments import Pipeline
    pipe = Pipeline(make_config("smoke", dataset="digits"))
    pipe.run()                      # teacher + all three experiments; returns the tidy results
    pipe.run_experiment("direct")   # or one at a time (reuses what is already trained)

Everything trained is checkpointed under ``<results_dir>/checkpoints/seed<N>/`` and reused when its
spec (config fields that shape it + data fingerprint + its parent's spec) is unchanged. Students
with the same lineage in different experiments (S1 everywhere; S01/S2 in single-TA and hierarchical)
are one model, trained once.
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path

import pandas as pd
import torch

from . import models
from .config import Config, validate
from .data import DataBundle, load_data
from .engine import describe
from .plans import TEACHER, Node, Plan, build
from .results import ResultsStore
from .train import (Context, StudentJob, batches, evaluate, extract, finetune_head, init_seed, train_classifier,
                    train_students)


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


class Pipeline:
    """Trains and evaluates, reusing checkpoints; every public method is safe to call again."""

    def __init__(self, cfg: Config, data: DataBundle | None = None, ctx: Context | None = None):
        validate(cfg)
        self.cfg = cfg
        self.ctx = ctx or Context.from_config(cfg)
        self.store = ResultsStore(cfg.results_dir)
        self._data = data
        self._teacher = None
        self._students: dict[str, torch.nn.Module] = {}
        self._specs: dict[str, dict] = {}
        self._loss: dict[str, dict] = {}  # key -> final losses of each student trained or loaded

    # ---------------------------------------------------------------- data and paths
    @property
    def data(self) -> DataBundle:
        if self._data is None:
            self._data = load_data(self.cfg)
            if self._data.notice:
                self.ctx.log(f"[tadist] NOTICE: {self._data.notice}")
        return self._data

    def _path(self, name: str, key: str) -> Path:
        return self.cfg.checkpoint_dir / f"seed{self.cfg.seed}" / f"{name}-{_hash(key)[:8]}.pt"

    def _common(self) -> dict:
        c = self.cfg
        return dict(data=self.data.fingerprint(), seed=c.seed, batch_size=c.batch_size, augment=c.augment)

    def _manifest(self, stage: str, seconds: float, **extra) -> None:
        self.store.update_manifest(stage, self.cfg, self.data.describe(), f"{self.ctx.device} ({describe(self.ctx.device)})",
                                   seconds, extra)

    def _history_rows(self, key: str, name: str, history: list[dict]) -> list[dict]:
        return [dict(dataset=self.data.name, key=key, model=name, seed=self.cfg.seed, epoch=h["epoch"], metric=m,
                     value=v) for h in history for m, v in h.items() if m != "epoch"]

    def _rows(self, experiment: str, model: str, **metrics) -> list[dict]:
        return [dict(dataset=self.data.name, experiment=experiment, model=model, seed=self.cfg.seed, metric=m, value=v)
                for m, v in metrics.items()]

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
        run = train_classifier(net, self.data, self.ctx, name="teacher", path=self._path("teacher", "T"),
                               spec=self.teacher_spec(), epochs=c.teacher_epochs, lr=c.teacher_lr,
                               weight_decay=c.teacher_weight_decay, batch_size=c.batch_size, augment=c.augment,
                               seed=c.seed, optimizer=c.teacher_optimizer)
        test = evaluate(net, batches(self.data, "test", c.eval_batch_size, self.ctx), self.ctx)
        self.store.add_results(self._rows("teacher", "teacher", test_accuracy=test, val_accuracy=run.best["metric"],
                                          selected_epoch=run.best["epoch"], parameters=models.count_params(net),
                                          train_seconds=run.seconds))
        self.store.add_history(self._history_rows("T", "teacher", run.history))
        self._manifest("teacher", time.perf_counter() - t0, test_accuracy=test)
        net.requires_grad_(False)
        self._teacher = net
        self._specs["T"] = self.teacher_spec()
        return net

    # ---------------------------------------------------------------- students
    def student_spec(self, node: Node) -> dict:
        c = self.cfg
        parent_key = node.key.rsplit(">", 1)[0]
        return dict(model=node.key, level=node.level, parent=_hash(self._specs[parent_key]), epochs=c.student_epochs,
                    lr=c.student_lr, weight_decay=c.student_weight_decay, loss=c.feature_loss,
                    **{**self._common(), "augment": c.student_augment})

    def _parent(self, key: str):
        return self.teacher() if key == "T" else self._students[key]

    def students(self, plans: list[Plan]) -> dict[str, torch.nn.Module]:
        """Train every student the plans need, once per lineage, siblings together; return key -> model."""
        self.teacher()
        c = self.cfg
        nodes: dict[str, Node] = {}
        for plan in plans:
            for n in plan.nodes:
                nodes.setdefault(n.key, n)
        by_parent: dict[str, list[Node]] = {}
        for n in sorted(nodes.values(), key=lambda n: n.level):
            if n.key not in self._students:
                by_parent.setdefault(n.key.rsplit(">", 1)[0], []).append(n)
        for parent_key, group in by_parent.items():  # insertion order follows level, so parents come first
            parent = self._parent(parent_key)
            parent.eval()
            t0 = time.perf_counter()
            jobs = []
            for n in group:
                torch.manual_seed(init_seed(c.seed, n.key))
                net = self.ctx.model(models.student(n.level))
                self._specs[n.key] = self.student_spec(n)
                jobs.append(StudentJob(n.name, net, n.start, n.stop, self._path(n.name, n.key), self._specs[n.key]))
            label = "teacher" if parent_key == "T" else nodes[parent_key].name
            runs = train_students(parent.features, jobs, self.data, self.ctx, epochs=c.student_epochs, lr=c.student_lr,
                                  weight_decay=c.student_weight_decay, batch_size=c.batch_size,
                                  augment=c.student_augment, seed=c.seed, loss=c.feature_loss, group=f"students of {label}")
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
        """Build the n-student ensemble of a plan, measure it before and after fine-tuning."""
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
        spec = dict(model="ensemble", students=[_hash(self._specs[k]) for k in keys], mode=c.finetune_mode,
                    epochs=c.finetune_epochs, lr=c.finetune_lr, **self._common())
        key = "E:" + "|".join(keys)
        path = self._path(f"ensemble{n_students}", key + c.finetune_mode)
        history: list = []
        if c.finetune_epochs > 0 and c.finetune_mode == "head":
            feats = {s: extract(ens.features, ev[s], self.ctx) for s in ev}
            run = finetune_head(ens.classifier, feats, self.data, self.ctx, name=f"ensemble_{n_students}", path=path,
                                spec=spec, epochs=c.finetune_epochs, lr=c.finetune_lr, batch_size=c.batch_size,
                                seed=c.seed)
            history = run.history
        elif c.finetune_epochs > 0:
            run = train_classifier(ens, self.data, self.ctx, name=f"ensemble_{n_students}", path=path, spec=spec,
                                   epochs=c.finetune_epochs, lr=c.finetune_lr, weight_decay=0.0,
                                   batch_size=c.batch_size, augment=c.augment, seed=c.seed, optimizer="adam")
            history = run.history
        metrics.update(val_accuracy=evaluate(ens, ev["val"], self.ctx),
                       test_accuracy=evaluate(ens, ev["test"], self.ctx),
                       parameters=models.count_params(ens), macs_per_image=models.count_macs(copy.deepcopy(ens).cpu()))
        self.store.add_history(self._history_rows(key, f"ensemble_{n_students}", history))
        return ens, metrics

    # ---------------------------------------------------------------- experiments
    def run_experiment(self, experiment: str) -> pd.DataFrame:
        """Train (or reuse) one experiment's students and ensembles; return its rows of results.csv."""
        t0 = time.perf_counter()
        plan = build(experiment, self.cfg.levels)
        self.students([plan])
        rows = []
        for n in plan.nodes:
            rows += self._rows(experiment, n.name, parameters=models.count_params(self._students[n.key]),
                               **self._loss.get(n.key, {}))
        for size in plan.ensembles:
            _, metrics = self.ensemble(plan, size)
            rows += self._rows(experiment, f"ensemble_{size}", **metrics)
        self.store.add_results(rows)
        self._manifest(experiment, time.perf_counter() - t0)
        return pd.DataFrame(rows)

    def run(self, experiments: tuple[str, ...] | None = None) -> pd.DataFrame:
        """Teacher and every requested experiment (default: the config's); the full results table."""
        self.teacher()
        self.students([build(e, self.cfg.levels) for e in (experiments or self.cfg.experiments)])
        for e in experiments or self.cfg.experiments:
            self.run_experiment(e)
        return self.store.results()
