"""Atomic checkpoints: a run killed at any moment resumes from its last complete checkpoint.

Layout under ``output_dir/checkpoints/``: one directory ``step_000123`` per checkpoint, written first
to a temporary sibling and then renamed (``os.replace`` is atomic on POSIX), and a ``latest`` file
naming the newest complete one (also replaced atomically). A crash while writing leaves only a
temporary directory, which is ignored and cleaned up on the next save.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (CPU) and CUDA generator states."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(
    root: str | os.PathLike[str], step: int, objects: dict[str, Any], state: dict[str, Any], keep: int = 2
) -> Path:
    """Write ``objects`` (name -> anything ``torch.save`` takes) and ``state`` (JSON) as checkpoint
    ``step``, atomically; keep the newest ``keep`` checkpoints. Returns the checkpoint directory."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp_step_*"):
        shutil.rmtree(stale, ignore_errors=True)
    final = root / f"step_{step:06d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".tmp_step_{step:06d}_"))
    for name, obj in objects.items():
        torch.save(obj, tmp / f"{name}.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1, default=str))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _write_text_atomic(root / "latest", final.name)
    complete = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in complete[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(root: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint directory under ``root``, or None."""
    root = Path(root)
    marker = root / "latest"
    if marker.exists():
        candidate = root / marker.read_text().strip()
        if (candidate / "state.json").exists():
            return candidate
    complete = sorted(p for p in root.glob("step_*") if (p / "state.json").exists())
    return complete[-1] if complete else None


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(objects, state)`` of a checkpoint directory written by :func:`save_checkpoint`."""
    path = Path(path)
    state = json.loads((path / "state.json").read_text())
    objects = {p.stem: torch.load(p, map_location="cpu", weights_only=False) for p in path.glob("*.pt")}
    return objects, state
