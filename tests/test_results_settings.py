"""One results folder, one set of settings a dataset: rows made under other settings are moved aside, not mixed.

Before, a ``results_dir`` reused with changed settings kept the rows of experiments not re-run beside the new
ones, and the tables averaged them together. Rows now carry ``settings`` (a hash of what made them).
"""
import json
import shutil

import pandas as pd

from tadist_utils.config import FIELDS, settings_fields, with_role
from tadist_utils.experiments import Pipeline
from tadist_utils.storage.results import SUPERSEDED, ResultsStore, superseded_notice


def _rows(settings, seed=0, dataset="digits", experiment="direct", value=1.0):
    row = dict(dataset=dataset, experiment=experiment, model="ensemble_1", seed=seed, metric="test_accuracy", value=value)
    return [dict(row, settings=settings)] if settings is not None else [row]


def test_rows_of_other_settings_move_aside_with_their_manifest(tmp_path):
    store = ResultsStore(tmp_path)
    assert store.add_results(_rows("A", seed=0)) is None
    assert store.add_results(_rows("A", seed=1)) is None  # another seed, same settings: both kept
    assert store.add_results(_rows("A", dataset="cifar10")) is None
    store.replace_manifest(dict(settings=dict(hash="A", student_lr=0.001),
                               stages=dict(teacher=dict(settings="A"), direct=dict(settings="A"))))
    moved = store.add_results(_rows("B", seed=0, value=2.0))
    assert moved["rows"] == 2 and moved["datasets"] == ["digits"] and moved["settings"] == ["A"]
    now = store.results()
    assert set(zip(now.dataset, now.settings)) == {("digits", "B"), ("cifar10", "A")}  # other datasets untouched
    aside = pd.read_csv(tmp_path / SUPERSEDED / "results.csv")
    assert sorted(aside.seed) == [0, 1] and set(aside.settings) == {"A"}
    assert json.loads((tmp_path / SUPERSEDED / "manifest-A.json").read_text())["stages"].keys() == {"teacher", "direct"}
    assert store.manifest()["stages"] == {}  # the stages belonged to the rows that moved
    assert "student_lr 0.001 -> 0.002" in superseded_notice(moved, dict(hash="B", student_lr=0.002))
    # a second move appends: nothing that was set aside is lost
    store.add_results(_rows("C", seed=0, value=3.0))
    assert sorted(pd.read_csv(tmp_path / SUPERSEDED / "results.csv").value) == [1.0, 1.0, 2.0]


def test_rows_of_a_version_that_recorded_no_settings_are_superseded(tmp_path):
    store = ResultsStore(tmp_path)
    store.add_results(_rows(None))
    store.add_history([dict(dataset="digits", key="T", model="teacher", seed=0, epoch=1, metric="train_loss", value=1.0)])
    moved = store.add_results(_rows("A"))
    assert moved["settings"] == ["unrecorded"] and "did not record its settings" in superseded_notice(moved, {})
    store.add_history([dict(dataset="digits", key="T", model="teacher", seed=0, epoch=1, metric="train_loss", value=2.0,
                            settings="A")])
    assert store.history().value.tolist() == [2.0]
    assert pd.read_csv(tmp_path / SUPERSEDED / "history.csv").value.tolist() == [1.0]


def test_settings_name_every_field_that_shapes_a_number():
    fields, not_settings = settings_fields(Pipeline.__init__.__globals__["Config"]()), set(with_role("setting", False))
    assert set(fields) | not_settings == set(FIELDS) and not set(fields) & not_settings
    for shaping in ("student_lr", "student_epochs", "levels", "feature_loss", "train_size", "batch_size", "precision",
                    "augment", "finetune_lr", "share_students", "dense_drop"):
        assert shaping in fields


def test_a_rerun_under_other_settings_moves_the_old_rows_aside(tmp_path, capsys, direct_levels2_run):
    cfg, first = direct_levels2_run
    shutil.copytree(cfg.results_dir, tmp_path / "results")
    cfg = cfg.replace(results_dir=str(tmp_path / "results"))
    capsys.readouterr()
    again = Pipeline(cfg).run()  # same settings (checkpoints reused): nothing moves
    assert "NOTICE" not in capsys.readouterr().out and not (tmp_path / "results" / SUPERSEDED).exists()
    assert again.settings.nunique() == 1 and set(again.settings) == set(first.settings)

    other = Pipeline(cfg.replace(finetune_lr=2e-3))  # teacher and students reused, the output layers fine-tuned anew
    other.teacher()
    out = capsys.readouterr().out
    assert "were moved to" in out and "finetune_lr 0.001 -> 0.002" in out
    assert set(other.store.results().experiment) == {"teacher"}  # direct's rows were made with the old finetune_lr
    now = other.run()
    assert set(now.settings) == {other.settings()["hash"]} != set(first.settings)
    aside = pd.read_csv(tmp_path / "results" / SUPERSEDED / "results.csv")
    assert set(aside.experiment) == {"teacher", "direct"} and set(aside.settings) == set(first.settings)
    assert other.store.manifest()["settings"]["finetune_lr"] == 2e-3


def test_a_sweep_merged_into_a_used_folder_sets_the_old_rows_aside(tmp_path, capsys):
    from tadist_utils.runners.sweep import merge
    dest = ResultsStore(tmp_path)
    dest.add_results(_rows("A", seed=0) + _rows("A", seed=0, experiment="hierarchical"))
    dest.replace_manifest(dict(settings=dict(hash="A"), stages=dict(hierarchical=dict(settings="A"))))
    cells = []
    for seed in (0, 1):
        cell = ResultsStore(tmp_path / "cells" / f"seed{seed}")
        cell.add_results(_rows("B", seed=seed))
        cell.replace_manifest(dict(settings=dict(hash="B"), config=dict(experiments=["direct"]),
                                  stages=dict(direct=dict(settings="B"))))
        cells.append(dict(folder="", seed=seed, sets=dict(results_dir=str(cell.dir)), status="ran"))
    merge(tmp_path, cells)
    assert capsys.readouterr().out.count("NOTICE: 2 result row(s) for digits") == 1  # said once, as a run says it
    now = dest.results()
    assert set(now.settings) == {"B"} and set(now.experiment) == {"direct"} and sorted(now.seed) == [0, 1]
    assert set(pd.read_csv(tmp_path / SUPERSEDED / "results.csv").experiment) == {"direct", "hierarchical"}
    assert set(dest.manifest()["stages"]) == {"direct"}  # the earlier sweep's hierarchical stage went with its rows


def test_a_hash_that_reads_as_a_number_stays_one_string(tmp_path):
    """12 hex digits are all digits about once in 280 hashes, and digits-e-digits (a float) about as often:
    read back as numbers ('012345678901' -> 12345678901, '123e45678901' -> inf) they no longer equal the run's own
    hash, and every later write superseded the run's own rows."""
    store = ResultsStore(tmp_path)
    history = dict(dataset="digits", key="T", model="teacher", seed=0, epoch=1, metric="train_loss", value=1.0)
    for i, h in enumerate(("012345678901", "123e45678901", "123456789012")):
        assert (store.add_results(_rows(h, seed=0)) is None) == (i == 0)  # the previous hash's rows move, once
        assert store.add_results(_rows(h, seed=1)) is None  # same settings, another seed: nothing moves
        store.add_history([dict(history, settings=h)])
        store.add_history([dict(history, settings=h, epoch=2)])
        assert store.results().settings.tolist() == [h, h] and store.history().settings.tolist() == [h, h]
    aside = ResultsStore(tmp_path / SUPERSEDED).results()  # what moved keeps its hash too
    assert aside.settings.tolist() == ["012345678901"] * 2 + ["123e45678901"] * 2


def test_a_move_cut_short_by_a_crash_loses_nothing_and_copies_nothing_twice(tmp_path, monkeypatch):
    import tadist_utils.storage.results as results
    store = ResultsStore(tmp_path)
    store.add_results(_rows("A", seed=0) + _rows("A", seed=1))
    store.replace_manifest(dict(settings=dict(hash="A"), stages=dict(direct=dict(settings="A"))))
    write = results.write_csv_atomic

    def crash_on_results_csv(df, path):
        if path == store.results_csv:
            raise KeyboardInterrupt  # killed after superseded/results.csv was written, before results.csv
        write(df, path)
    monkeypatch.setattr(results, "write_csv_atomic", crash_on_results_csv)
    try:
        store.add_results(_rows("B"))
    except KeyboardInterrupt:
        pass
    monkeypatch.undo()
    assert json.loads((tmp_path / SUPERSEDED / "manifest-A.json").read_text())["stages"] == dict(direct=dict(settings="A"))
    assert store.add_results(_rows("B"))["rows"] == 2  # run again: the move is made again
    assert sorted(store.results().settings) == ["B"]
    assert sorted(pd.read_csv(tmp_path / SUPERSEDED / "results.csv").seed) == [0, 1]  # once each


def test_a_manifest_set_aside_twice_under_one_hash_keeps_both(tmp_path):
    store = ResultsStore(tmp_path)
    for i, h in enumerate("ABAC"):  # back to A's settings, then on: both of A's manifests are kept
        store.add_results(_rows(h))
        store.replace_manifest(dict(settings=dict(hash=h), stages={f"run{i}": dict(settings=h)}))
    copies = {p.name: list(json.loads(p.read_text())["stages"]) for p in (tmp_path / SUPERSEDED).glob("manifest-*")}
    assert copies == {"manifest-A.json": ["run0"], "manifest-B.json": ["run1"], "manifest-A.2.json": ["run2"]}



def test_reproduce_says_when_its_notebooks_moved_rows_aside(tmp_path, monkeypatch, capsys):
    """The notebooks' NOTICE is printed inside their kernels: the runner's terminal showed none of it."""
    from tadist_utils.runners import reproduce
    store = ResultsStore(tmp_path)
    store.add_results(_rows("A"))
    notebook = iter([_rows("A", seed=1), _rows("B")])  # a notebook that keeps the settings, then one that does not
    monkeypatch.setattr(reproduce, "run_one", lambda *a: store.add_results(next(notebook)) and None)
    argv = ["--profile", "smoke", "--dataset", "digits", "--results-dir", str(tmp_path), "--quiet", "--only"]
    assert reproduce.main(argv + ["01"]) == 0 and "NOTICE" not in capsys.readouterr().out
    assert reproduce.main(argv + ["02"]) == 0 and f"moved to {tmp_path / SUPERSEDED}/" in capsys.readouterr().out


def test_a_folder_holding_rows_of_two_settings_shows_the_manifests(tmp_path, capsys):
    """Rows pasted together by hand (or folders copied into one): 05 averaged both settings as one (seen: 'n=1')."""
    from types import SimpleNamespace

    from tadist_utils.runners.nbsetup import load
    pd.DataFrame(_rows(None, value=5.0) + _rows("A", value=1.0) + _rows("B", value=2.0)
                 + _rows("A", dataset="cifar10", value=3.0)).to_csv(tmp_path / "results.csv", index=False)
    history = dict(dataset="digits", key="T", model="teacher", seed=0, epoch=1, metric="train_loss")
    pd.DataFrame([dict(history, value=1.0, settings="A"), dict(history, value=2.0, settings="B")]).to_csv(
        tmp_path / "history.csv", index=False)
    store, cfg = ResultsStore(tmp_path), SimpleNamespace(results_dir=str(tmp_path))
    store.replace_manifest(dict(dataset=dict(name="digits"), settings=dict(hash="B")))
    results, hist = load(cfg)
    assert results.value.tolist() == [2.0] and hist.value.tolist() == [2.0] and "3 settings" in capsys.readouterr().out
    store.replace_manifest(dict(dataset=dict(name="digits"), settings=dict(hash="C")))  # none of the rows': all shown
    assert load(cfg)[0].value.tolist() == [5.0, 1.0, 2.0] and "mixed" in capsys.readouterr().out
    store.replace_manifest(dict(dataset=dict(name="cifar10"), settings=dict(hash="A")))  # one settings: as before
    assert load(cfg)[0].value.tolist() == [3.0] and "NOTICE" not in capsys.readouterr().out


def test_rows_with_and_without_settings_move_aside_with_a_true_notice(tmp_path):
    """A folder holding rows of an older version beside newer ones (a sweep merged old cells in, or a hand edit):
    the move listed their settings with NaN among strings and raised TypeError; and a manifest that does not
    belong to the moved rows (a process of other settings wrote it meanwhile) was read as theirs."""
    store = ResultsStore(tmp_path)
    pd.DataFrame(_rows(None, seed=0) + _rows("A", seed=1)).to_csv(store.results_csv, index=False)
    moved = store.add_results(_rows("B", seed=2))
    assert moved["rows"] == 2 and moved["settings"] == ["A", "unrecorded"]
    assert "made under other settings" in superseded_notice(moved, dict(hash="B"))
    store.replace_manifest(dict(settings=dict(hash="C", student_lr=0.003)))  # not B's, whose rows move now
    moved = store.add_results(_rows("D"))
    assert moved["settings"] == ["B"] and superseded_notice(moved, dict(hash="D", student_lr=0.001)).endswith(
        "(they were made under other settings); tables show only this run's settings")


def test_tables_of_a_folder_that_holds_only_the_teacher_are_empty(tmp_path):
    """After a settings change, a re-run of 01 alone leaves the teacher's rows only: 05 failed on its first table
    (KeyError: 'experiment') instead of showing empty ones."""
    from tadist_utils.analysis.paper import loss_table
    from tadist_utils.analysis.stats import accuracy_table, summarise
    teacher = pd.DataFrame([dict(dataset="digits", experiment="teacher", model="teacher", seed=0, metric=m, value=1.0,
                                 settings="A") for m in ("test_accuracy", "final_train_loss")])
    acc, loss = accuracy_table(summarise(teacher), paper=True), loss_table(teacher)
    assert acc.empty and list(acc.columns) == ["teacher", "1 student", "2 students", "4 students", "8 students"]
    assert loss.empty and list(loss.columns[:3]) == ["loss", "S1", "S01"]


def test_the_manifest_names_the_checkouts_folders_relatively_and_others_absolutely(tmp_path):
    """A committed manifest must not carry one machine's paths (issue 28: data_dir and source were absolute)."""
    from pathlib import Path
    from tadist_utils.storage.results import portable
    root = tmp_path / "clone"
    (root / "tadist_utils").mkdir(parents=True)
    (root / "notebooks").mkdir()
    record = dict(data_dir=str(root / "data"), source=f"CIFAR-10 JPEG copy at {root}/data/cifar10-jpeg",
                  results_dir=str(root), elsewhere="/srv/data", n=3)
    out = portable(record, root / "results" / "run" / "x")
    assert out == dict(data_dir="data", source="CIFAR-10 JPEG copy at data/cifar10-jpeg", results_dir=".",
                       elsewhere="/srv/data", n=3)
    assert portable(record, Path("/")) == record  # no checkout above: nothing to cut
