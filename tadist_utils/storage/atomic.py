"""Files written whole or not at all: a temporary beside the target, then ``os.replace``; a full disk is one line."""
from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path
from typing import Callable

from ..errors import RunError


def disk_full(error: BaseException, path: Path) -> RunError | None:
    """A one-line RunError for a full disk (or quota) while writing ``path``; None for any other error."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return RunError(f"no space left on the device to write {path} ({error.strerror}); nothing was half-written "
                        "and earlier files are intact: free some space and run again (training resumes)")
    return None


def write_atomic(write: Callable[[Path], None], path: Path, unique: bool = True) -> None:
    """``write(tmp)`` to ``.<name>.tmp-<PID>`` beside ``path`` (``-<random>`` appended when ``unique``: files several
    processes write at once), then rename it: a reader sees the old file or the new one. A failure removes the
    temporary and keeps the old file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}" + (f"-{uuid.uuid4().hex[:8]}" if unique else ""))
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        full = disk_full(e, path)
        if full is not None:
            raise full from None
        raise
