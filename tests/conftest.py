import subprocess
from pathlib import Path

import pytest

from tadist_utils.config import make_config

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


@pytest.fixture
def smoke_cfg(tmp_path):
    """Smoke profile on the embedded digits set: seconds on a CPU, fp32 so numbers are exact."""
    def make(**overrides):
        base = dict(dataset="digits", results_dir=str(tmp_path / "results"), progress=False, precision="fp32",
                    device="cpu")
        return make_config("smoke", **{**base, **overrides})
    return make


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
