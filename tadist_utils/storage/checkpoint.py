"""Checkpoints that survive a killed process and are never reused for the wrong run.

One file per trained model, rewritten each epoch by ``torch.save`` into a temporary beside it and ``os.replace``
(a SIGKILL mid-write leaves the old file intact and a ``.<name>.tmp-*`` beside it that nothing reads). The file is
a SHA-256 of the payload, then the payload, which carries the *spec* it was trained under: a corrupted file or a
different spec is said in one line and retrained, never loaded. ``write_atomic`` is every file's whole-or-nothing
write (results.csv, manifest.json too): a temporary beside the target, then ``os.replace``; a full disk is one line.
"""
from __future__ import annotations

import copy
import errno
import hashlib
import io
import math
import os
import pickle
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import RunError

MAGIC = b"TADIST-CHECKPOINT-1\n"  # then the SHA-256 digest (32 bytes) of the torch.save payload, then the payload


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
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):  # or quota
            raise RunError(f"no space left on the device to write {path} ({e.strerror}); nothing was half-written "
                           "and earlier files are intact: free some space and run again (training resumes)") from None
        raise


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read (truncated, corrupted, or not ours)."""


def save_atomic(obj: dict, path: Path) -> None:
    """Write ``obj`` to ``path``: a kill at any moment leaves the old file or the new one, never half of one."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getbuffer()

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(MAGIC + hashlib.sha256(payload).digest())
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
    write_atomic(write, path)


def load(path: Path) -> dict:
    """Verify the content hash, then load with ``weights_only=True``; any failure is one CheckpointError naming the file."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e.strerror})") from None
    head = len(MAGIC) + 32
    if not raw.startswith(MAGIC) or len(raw) < head:
        raise CheckpointError(f"checkpoint {path} is corrupted or not a tadist checkpoint (no content hash)")
    payload = memoryview(raw)[head:]
    if hashlib.sha256(payload).digest() != raw[len(MAGIC):head]:
        raise CheckpointError(f"checkpoint {path} is corrupted (its content does not match its SHA-256)")
    try:
        obj = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, OSError, AttributeError, KeyError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupted or not a tadist checkpoint ({type(e).__name__})") from None
    if not isinstance(obj, dict) or "spec" not in obj or "state" not in obj:
        raise CheckpointError(f"checkpoint {path} is not a tadist checkpoint (no spec/state)")
    return obj


def spec_diff(saved: dict, wanted: dict) -> list[str]:
    """Human-readable differences between two specs, e.g. ``["student_lr: 0.001 -> 0.002"]``."""
    keys = sorted(set(saved) | set(wanted))
    return [f"{k}: {saved.get(k, '<absent>')} -> {wanted.get(k, '<absent>')}" for k in keys if saved.get(k) != wanted.get(k)]


def find_resumable(path: Path, spec: dict, log=print) -> dict | None:
    """The checkpoint at ``path`` if it was made under ``spec``; None (and a message) otherwise."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        ckpt = load(path)
    except CheckpointError as e:
        log(f"[tadist] {e}; retraining it from the start (it will be overwritten)")
        return None
    diff = spec_diff(ckpt["spec"], spec)
    if diff:
        log(f"[tadist] not reusing {path.name}: it was trained under a different setting ({'; '.join(diff)}); retraining")
        return None
    return ckpt


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


_HOW_IT_RUNS = ("fused", "foreach", "capturable")  # an optimiser's implementation, not its state


def load_optimizer(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """``optimizer.load_state_dict(state)`` keeping the implementation it was built with: PyTorch would take
    ``fused``/``foreach`` from the file, so a CPU's checkpoint would unfuse a GPU's optimiser (which a GradScaler
    then calls wrongly) and a GPU's would ask a Mac for a fused kernel. Unfused steps count on the host."""
    if len(state["param_groups"]) != len(optimizer.param_groups):
        optimizer.load_state_dict(state)  # PyTorch's own error (zip below would drop the extra groups silently)
    groups = [dict(saved, **{k: g[k] for k in _HOW_IT_RUNS if k in g})
              for saved, g in zip(state["param_groups"], optimizer.param_groups)]
    optimizer.load_state_dict(dict(state, param_groups=groups))
    for g in optimizer.param_groups:
        if not (g.get("fused") or g.get("capturable")):
            for p in g["params"]:
                st = optimizer.state.get(p, {})
                if isinstance(st.get("step"), torch.Tensor):
                    st["step"] = st["step"].cpu()


@dataclass
class RunState:
    """Everything a resumable training run owns: checkpointed together, restored together."""
    path: Path
    spec: dict
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: object
    epoch: int = 0
    history: list = field(default_factory=list)
    best: dict | None = None  # {"metric": value, "epoch": e, "state": state_dict}
    seconds: float = 0.0

    def restore(self, log) -> bool:
        saved = find_resumable(self.path, self.spec, log)
        if saved is None:
            return False
        st = saved["state"]
        self.model.load_state_dict(st["model"])
        if "optimizer" in st:  # a finished run keeps its chosen weights alone (``save``)
            load_optimizer(self.optimizer, st["optimizer"])
            self.scheduler.load_state_dict(st["scheduler"])
            self.scaler.load_state_dict(st["scaler"])
        self.epoch, self.history, self.best = saved["epoch"], saved["history"], saved["best"]
        if self.best is not None and "state" not in self.best:  # saved as the model's own weights
            self.best = dict(self.best, state=copy.deepcopy(self.model.state_dict()))
        self.seconds = saved.get("seconds", 0.0)
        if "rng" in saved:
            set_rng_state(saved["rng"])
        if not saved.get("done"):
            log(f"[tadist] resuming {self.path.name} after epoch {self.epoch}")
        return True

    def save(self, epochs: int) -> None:
        """Checkpoint the run, each tensor once: the best epoch's copy only when it is not the current weights, and a
        finished run keeps only its chosen weights (no optimiser state: the teacher's file is 59 MB, not 236)."""
        done = self.epoch >= epochs
        best = self.best
        if best is not None and (done or best["epoch"] == self.epoch):  # the chosen weights go in as the model's
            best = {k: v for k, v in best.items() if k != "state"}
        if done:
            state = dict(model=self.best["state"] if self.best is not None else self.model.state_dict())
        else:
            state = dict(model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
                         scheduler=self.scheduler.state_dict(), scaler=self.scaler.state_dict())
        save_atomic(dict(spec=self.spec, epoch=self.epoch, done=done, history=self.history, best=best,
                         seconds=self.seconds, rng=rng_state(), state=state), self.path)

    def record(self, metrics: dict, select: str | None) -> None:
        bad = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:  # stop before a diverged model is checkpointed or written to results.csv as empty cells
            raise RunError(f"{self.path.stem.rsplit('-', 1)[0]}: {', '.join(f'{k} is {metrics[k]}' for k in bad)} "
                           f"at epoch {self.epoch}; training diverged: lower the learning rate")
        self.history.append(dict(epoch=self.epoch, **metrics))
        if select and (self.best is None or metrics[select] > self.best["metric"]):
            self.best = dict(metric=metrics[select], epoch=self.epoch, state=copy.deepcopy(self.model.state_dict()))

    def finish(self) -> None:
        """Load the weights chosen on the validation split (when selecting), in eval mode."""
        if self.best is not None:
            self.model.load_state_dict(self.best["state"])
        self.model.eval()
