"""The Ray sweep (tadist_utils.runners.sweep): one small sweep on a local CPU Ray instance, checked against the headless CLI.

2 seeds x experiments=direct,hierarchical (levels 2, tiny digits subsets): the merged results equal the same runs
made one after another by ``python -m tadist_utils --headless``; one cell dies after its students are saved and
its retry resumes from them; each seed's teacher (and S1) is trained once, in a first stage, and linked into its
cells. Ray is an optional extra: without it these skip (and the one-line error is checked with ray hidden).
"""
import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest

from tadist_utils import experiments
from tadist_utils.runners import reproduce, sweep
from tadist_utils.config import ConfigError

SETS = ["dataset=digits", "levels=2", "train_size=64", "val_size=32", "test_size=64", "precision=fp32", "device=cpu"]
SEEDS = ["0", "1"]
GRID = "experiments=direct,hierarchical"
KILLED = "seed1-experiments=direct"


def test_without_ray_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as where it is not installed
    assert sweep.main(["--profile", "smoke", "--set", "dataset=digits"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'tadist[ray]'" in err


@pytest.mark.parametrize("argv, says", [(["--bogus"], "unrecognized arguments"),
                                        (["--grid", "student_lr"], "--grid expects key=value1,value2"),
                                        (["--grid", "seed=1,2"], "use --seeds"),
                                        (["--set", "student_lr=1", "--grid", "student_lr=1,2"], "both in --set and --grid"),
                                        (["--grid", "student_lr=fast,slow"], "student_lr: bad value")])
def test_bad_input_is_one_line_before_ray_starts(argv, says, capsys, tmp_path):
    try:
        rc = sweep.main(["--profile", "smoke", "--set", f"results_dir={tmp_path}", *argv])
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and says in err, err


def test_an_address_where_nothing_answers_is_one_line_not_a_hang(capsys, tmp_path):
    pytest.importorskip("ray.tune", reason="Ray Tune is an optional extra (pip install 'tadist[ray]'); .ci/run installs it")
    import socket
    with socket.socket() as s:  # a port nothing listens on: bound, never listened
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        rc = sweep.main(["--profile", "smoke", "--set", "dataset=digits", f"results_dir={tmp_path}",
                         "--address", f"127.0.0.1:{port}", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "nothing answers" in err, err


def test_plan_folders_and_shared_stages(tmp_path):
    grid = sweep.parse_grid(["student_lr=1e-3,3e-3", "experiments=direct,kd"])
    cells, stages = sweep.plan("smoke", [0, 1], {"dataset": "digits"}, grid, tmp_path)
    assert len(cells) == 8 and {c["folder"] for c in cells} == {"student_lr=1e-3", "student_lr=3e-3"}
    assert cells[0]["id"] == "seed0-student_lr=1e-3-experiments=direct"
    # student_lr does not shape the teacher: one stage per seed for its 4 cells; the two S1s differ, so not shared
    assert [(s["seed"], len(s["cells"]), s["s1"]) for s in stages] == [(0, 4, False), (1, 4, False)]
    cells, stages = sweep.plan("smoke", [0], {"dataset": "digits"}, sweep.parse_grid(["teacher_lr=1e-3,2e-3"]), tmp_path)
    assert stages == [] and all(c["stage"] is None for c in cells)  # another teacher per cell: nothing to share
    with pytest.raises(ConfigError, match="unknown setting"):
        sweep.plan("smoke", [0], {}, {"student_rate": ["1"]}, tmp_path)
    with pytest.raises(ConfigError, match="same cell folder"):  # '/' and ' ' both become '_': one folder for two
        sweep.plan("smoke", [0], {"dataset": "digits"}, sweep.parse_grid(["data_dir=/tmp/a b,/tmp/a_b"]), tmp_path)


def test_merge_per_setting_leaves_failed_cells_out(tmp_path):
    from tadist_utils.storage.results import ResultsStore
    cells = []
    for seed, lr, status in [(0, "1e-3", "ran"), (1, "1e-3", "reused"), (0, "3e-3", "failed")]:
        d = tmp_path / "cells" / f"seed{seed}-student_lr={lr}"
        store = ResultsStore(d)
        store.add_results([dict(dataset="digits", experiment="direct", model="S1", seed=seed, metric="x", value=seed)])
        store.manifest_json.write_text(json.dumps(dict(config=dict(seed=seed, results_dir=str(d)),
                                                       stages={f"stage{seed}": {}})))
        (d / "checkpoints" / f"seed{seed}").mkdir(parents=True)
        (d / "checkpoints" / f"seed{seed}" / "teacher-0.pt").write_bytes(b"weights")
        cells.append(dict(folder=f"student_lr={lr}", seed=seed, status=status, sets=dict(results_dir=str(d))))
    assert sweep.merge(tmp_path, cells) == [tmp_path / "student_lr=1e-3"]  # 3e-3's only cell failed: no folder
    merged = tmp_path / "student_lr=1e-3"
    assert pd.read_csv(merged / "results.csv").seed.tolist() == [0, 1]
    manifest = json.loads((merged / "manifest.json").read_text())
    assert manifest["config"] == dict(seed=1, results_dir=str(merged), experiments=[]) and set(manifest["stages"]) == {"stage0", "stage1"}
    ck = merged / "checkpoints" / "seed1" / "teacher-0.pt"
    assert ck.stat().st_ino == (tmp_path / "cells" / "seed1-student_lr=1e-3" / "checkpoints" / "seed1" / "teacher-0.pt").stat().st_ino


def test_merge_drops_what_an_earlier_sweep_left_for_a_cell_that_failed_now(tmp_path):
    """Sweep 1 merged seeds 0 and 1; sweep 2 (another setting, same results_dir) fails seed 1's cell: the merged
    folder must not keep sweep 1's seed-1 rows beside sweep 2's seed 0 under sweep 2's manifest."""
    from tadist_utils.storage.results import ResultsStore

    def cells(value, failed=()):
        out = []
        for seed in (0, 1):
            d = tmp_path / "cells" / f"seed{seed}"
            store = ResultsStore(d)
            store.add_results([dict(dataset="digits", experiment=e, model="m", seed=seed, metric="x", value=value)
                               for e in ("teacher", "direct")])
            store.add_history([dict(dataset="digits", key="T", model="teacher", seed=seed, epoch=1, metric="x",
                                    value=value)])
            store.manifest_json.write_text(json.dumps(dict(config=dict(seed=seed, teacher_lr=value))))
            out.append(dict(folder="", seed=seed, status="failed" if seed in failed else "ran",
                            sets=dict(results_dir=str(d), experiments="direct")))
        return out

    sweep.merge(tmp_path, cells(1.0))
    assert sorted(pd.read_csv(tmp_path / "results.csv").seed.unique()) == [0, 1]
    sweep.merge(tmp_path, cells(2.0, failed=(1,)))
    merged = pd.read_csv(tmp_path / "results.csv")
    assert json.loads((tmp_path / "manifest.json").read_text())["config"]["teacher_lr"] == 2.0
    assert merged.seed.tolist() == [0, 0] and set(merged.value) == {2.0}  # nothing of sweep 1's seed 1 is left
    assert pd.read_csv(tmp_path / "history.csv").seed.tolist() == [0]


# ----------------------------------------------------------------------------- on a local Ray instance
@pytest.fixture(scope="module")
def ray_cpu():
    pytest.importorskip("ray.tune", reason="Ray Tune is an optional extra (pip install 'tadist[ray]'); .ci/run installs it")
    import ray
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


def dying(config: dict, **params) -> dict:
    """``sweep.trial``, except that KILLED's first attempt exits once its first students are saved, as a killed worker."""
    folder = Path(params["jobs"][config["job"]]["sets"]["results_dir"])
    if folder.name != KILLED or (folder / ".killed").exists():
        return sweep.trial(config, **params)
    students = experiments.Pipeline.students

    def die(self, *args, **kwargs):
        students(self, *args, **kwargs)
        ck = folder / "checkpoints" / "seed1"
        (folder / ".killed").write_text(json.dumps({p.name: p.stat().st_mtime_ns for p in ck.glob("*.pt")}))
        sys.stdout.flush()
        os._exit(1)
    experiments.Pipeline.students = die  # this worker dies with it
    return sweep.trial(config, **params)


@pytest.fixture(scope="module")
def swept(ray_cpu, tmp_path_factory):
    from ray import cloudpickle
    root = tmp_path_factory.mktemp("sweep")
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sweep, "trial", dying)
        rc = sweep.main(["--profile", "smoke", "--seeds", *SEEDS, "--set", *SETS, f"results_dir={root}",
                         "--grid", GRID, "--quiet"])
    assert rc == 0
    return root, json.loads((root / "sweep.json").read_text())


def _metrics(folder: Path, name: str = "results.csv") -> pd.DataFrame:
    df = pd.read_csv(folder / name)
    df = df[~df.metric.str.contains("seconds")]  # wall times differ from run to run
    return df.sort_values([c for c in df.columns if c != "value"]).reset_index(drop=True)


def test_merged_results_equal_the_headless_cli_run_sequentially(swept, tmp_path):
    root, summary = swept
    assert summary["merged"] == [str(root)]  # seeds and experiments are columns: one folder, as one run writes
    seq = tmp_path / "sequential"
    assert reproduce.main(["--headless", "--profile", "smoke", "--seeds", *SEEDS, "--set", *SETS, f"results_dir={seq}",
                           "experiments=direct,hierarchical", "progress=false"]) == 0
    for name in ("results.csv", "history.csv"):
        pd.testing.assert_frame_equal(_metrics(root, name), _metrics(seq, name))
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["config"]["results_dir"] == str(root) and manifest["dataset"]["name"] == "digits"
    assert manifest["config"]["experiments"] == ["direct", "hierarchical"]  # both cells' experiments, as in one run
    every_seed = {f"seed{seed}/{stage}" for seed in SEEDS for stage in ("teacher", "direct", "hierarchical")}
    assert every_seed <= set(manifest["stages"])  # each seed keeps its own stages (the last seed's alone, before)
    assert every_seed <= set(json.loads((seq / "manifest.json").read_text())["stages"])
    assert sorted(p.name for p in (root / "checkpoints" / "seed1").glob("*.pt")) == \
        sorted(p.name for p in (seq / "checkpoints" / "seed1").glob("*.pt"))  # notebook 06 finds them as after a run


def test_killed_cell_is_retried_and_resumes_from_its_checkpoints(swept):
    root, summary = swept
    cells = {c["id"]: c for c in summary["cells"]}
    assert cells[KILLED]["status"] == "ran" and cells[KILLED]["attempts"] == 2
    assert all(c["attempts"] == 1 for k, c in cells.items() if k != KILLED)
    folder = root / "cells" / KILLED
    at_kill = json.loads((folder / ".killed").read_text())  # checkpoint -> mtime when the first attempt died
    assert {n.split("-")[0] for n in at_kill} == {"teacher", "S1", "S01", "S2"}
    ck = folder / "checkpoints" / "seed1"
    assert {n: (ck / n).stat().st_mtime_ns for n in at_kill} == at_kill  # the retry trained none of them again


def test_teacher_and_s1_trained_once_per_seed(swept):
    root, summary = swept
    assert [(s["status"], s["s1"], len(s["cells"])) for s in summary["stages"]] == [("trained", True, 2)] * 2
    for seed in SEEDS:
        stage = next(s for s in summary["stages"] if s["id"].startswith(f"seed{seed}-"))
        for model in ("teacher", "S1"):
            (shared,) = (root / "stages" / stage["id"] / "checkpoints" / f"seed{seed}").glob(f"{model}-*.pt")
            used = [root / "cells" / c / "checkpoints" / f"seed{seed}" / shared.name for c in stage["cells"]]
            used.append(root / "checkpoints" / f"seed{seed}" / shared.name)  # the merged folder's
            assert {p.stat().st_ino for p in used} == {shared.stat().st_ino}, model  # one file: never retrained
