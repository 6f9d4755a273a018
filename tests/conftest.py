import os
import subprocess
from pathlib import Path

import pytest
import torch

from tadist_utils.config import make_config

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
# `slow` (pytest.ini): every test of these modules, which train, resume, sweep, time steps or run notebooks; any test
# that uses a fixture that trains or reads the real images; and the tests named below, which start a Python process or
# train (each over ~4 s on a busy 2-core CPU). `python -m pytest -m "not slow"` leaves them out.
SLOW_MODULES = {"test_beyond", "test_compile", "test_fused", "test_gpu_check", "test_host_traffic", "test_invariant",
                "test_jupyter_server", "test_pipeline", "test_real_images", "test_reproduce", "test_resume", "test_sweep",
                "test_train"}
SLOW_FIXTURES = {"direct_levels2_run", "cifar10_jpeg_dir", "papermill_run", "swept"}
SLOW_TESTS = {"test_runner_shows_progress_and_the_fallback_first_and_last", "test_headless_cli_says_the_fallback_first_and_last",
              "test_quick_bench_writes_json", "test_ops_of_the_direct_plans_15_students_fall_to_those_of_4_networks_when_fused",
              "test_paper_estimate_covers_every_group_of_the_paper_profile", "test_a_full_disk_is_one_line_and_leaves_nothing_half_written",
              "test_diverging_training_stops_with_one_line_naming_the_model_and_epoch",
              "test_a_malicious_cifar_pickle_runs_nothing_and_is_refused", "test_a_bad_flag_is_answered_before_torch_is_imported",
              "test_sigkill_mid_write_keeps_the_old_file_and_leaves_an_unread_temporary",
              "test_a_units_loss_is_the_one_training_calls", "test_the_stock_loss_through_a_unit_trains_exactly_as_before",
              "test_table_parameters_match_count_params_and_the_paper", "test_ctrl_c_while_a_real_kernel_starts_leaves_no_kernel"}

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs a worker per core: one thread each, not every core each
    torch.set_num_threads(1)


def pytest_collection_modifyitems(items):
    for item in items:
        subprocess_case = item.originalname == "test_runner_bad_input_is_one_line_before_anything_runs" and any(
            f"[{name}]" in item.name for name in ("profile", "unknown-flag", "cifar10-absent", "cifar100-absent"))
        if (item.module.__name__.rpartition(".")[2] in SLOW_MODULES or SLOW_FIXTURES & set(item.fixturenames)
                or item.originalname in SLOW_TESTS or subprocess_case):
            item.add_marker(pytest.mark.slow)


def _smoke(results_dir, **overrides):
    base = dict(dataset="digits", results_dir=str(results_dir), progress=False, precision="fp32", device="cpu")
    return make_config("smoke", **{**base, **overrides})  # a results_dir in overrides wins


@pytest.fixture
def smoke_cfg(tmp_path):
    """Smoke profile on the embedded digits set: seconds on a CPU, fp32 so numbers are exact."""
    def make(**overrides):
        return _smoke(**{"results_dir": tmp_path / "results", **overrides})
    return make


@pytest.fixture(scope="session")
def direct_levels2_run(tmp_path_factory):
    """``smoke_cfg(experiments=("direct",), levels=2)`` trained once from scratch: (config, the run's results).

    test_pipeline's reproducibility test and test_train's checkpoint-reuse test each started by training exactly
    this; they now share it. Its folder is read-only to them: a test that trains on top copies it first."""
    from tadist_utils.experiments import Pipeline
    cfg = _smoke(results_dir=tmp_path_factory.mktemp("direct_levels2") / "results", experiments=("direct",), levels=2)
    return cfg, Pipeline(cfg).run()


@pytest.fixture(scope="session")
def cifar10_jpeg_dir(tmp_path_factory):
    """The real CIFAR-10 JPEG images (data/cifar10-jpeg if unpacked, else unpacked from ../shared)."""
    local = ROOT / "data" / "cifar10-jpeg"
    if (local / "train").is_dir() and (local / "test").is_dir():
        return local.parent
    if not ARCHIVE.exists():
        pytest.skip(f"real-image test needs {ARCHIVE} (absent on this machine)")
    dest = tmp_path_factory.mktemp("data")
    (dest / "cifar10-jpeg").mkdir()
    subprocess.run(["tar", "-xzf", str(ARCHIVE), "-C", str(dest / "cifar10-jpeg")], check=True)
    return dest
