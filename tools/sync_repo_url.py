"""Rewrite every numbered notebook's "Open in Colab" badge and Colab ``%pip install`` line from ``REPO_URL``.

    python tools/sync_repo_url.py

Markdown cannot import a constant: after changing ``REPO_URL`` run this (tests/test_sync_repo_url.py fails while a
notebook is out of step).
"""
from __future__ import annotations

import re
from pathlib import Path

REPO_URL = "https://github.com/tadist/tadist"
REPO_BRANCH = "main"
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
_BADGE = re.compile(r"https://colab\.research\.google\.com/github/[^)\s]+/notebooks/([0-9][0-9]_[\w]+\.ipynb)")
_PIP = re.compile(r"%pip install -q git\+\S+")


def colab_badge_url(notebook: str, url: str = REPO_URL, branch: str = REPO_BRANCH) -> str:
    """The "Open in Colab" link of ``notebooks/<notebook>`` in the repository at ``url``."""
    return f"https://colab.research.google.com/github/{url.split('github.com/', 1)[-1]}/blob/{branch}/notebooks/{notebook}"


def pip_line(url: str = REPO_URL) -> str:
    return f"%pip install -q git+{url}"


def sync_repo_url(folder: Path = NOTEBOOKS, url: str = REPO_URL, branch: str = REPO_BRANCH, write: bool = True) -> list[Path]:
    """Rewrite the badges and pip lines of ``folder``'s numbered notebooks from ``url``; the notebooks that changed."""
    import nbformat
    changed = []
    for path in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        dirty = False
        for cell in nb.cells:
            new = _PIP.sub(pip_line(url).replace("\\", "\\\\"),
                           _BADGE.sub(lambda m: colab_badge_url(m.group(1), url, branch), cell.source))
            if new != cell.source:
                cell.source, dirty = new, True
        if dirty:
            changed.append(path)
            if write:
                nbformat.write(nb, path)
    return changed


if __name__ == "__main__":
    for p in sync_repo_url():
        print(f"updated {p}")
