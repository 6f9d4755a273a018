"""tools/sync_repo_url.py: the notebooks' Colab badges and pip line come from one constant."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
spec = importlib.util.spec_from_file_location("sync_repo_url", ROOT / "tools" / "sync_repo_url.py")
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)


def test_colab_links_come_from_one_constant():
    assert tool.sync_repo_url(write=False) == [], "run: python tools/sync_repo_url.py"
    for path in NOTEBOOKS:
        text = path.read_text()
        assert tool.colab_badge_url(path.name) in text and tool.pip_line() in text, path.name
    other = "https://github.com/someone/fork"
    assert tool.sync_repo_url(url=other, write=False) == NOTEBOOKS  # a change of the constant reaches all of them
