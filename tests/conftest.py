import subprocess
from pathlib import Path

import pytest

from tadist_utils.config import make_config

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


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
