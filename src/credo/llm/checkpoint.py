"""Atomic checkpoints: a run killed at any moment resumes from its last complete checkpoint.

Layout under ``output_dir/checkpoints/``: one directory ``step_000123`` per checkpoint, written first
to a temporary sibling and then renamed (``os.replace`` is atomic on POSIX), and a ``latest`` file
naming the newest complete one (also replaced atomically). Files and directories are fsynced before
the rename, so a power cut cannot leave a renamed but empty checkpoint. A crash while writing leaves
only a temporary directory, which is ignored and cleaned up on the next save.

Checkpoints hold only tensors, numbers, strings, lists and dicts, and are read with
``torch.load(..., weights_only=True)``: loading a checkpoint cannot run code. A newest checkpoint
that cannot be read (truncated, corrupt) is skipped with a warning naming the bad file, and the
previous complete one is used (:func:`load_latest_checkpoint`).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (CPU) and CUDA generator states, as lists, numbers and tensors only (so
    that ``torch.load(..., weights_only=True)`` reads them)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [
            str(kind),
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved (also the tuple form of older checkpoints)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    np.random.set_state((kind, keys.astype(np.uint32), pos, has_gauss, cached))
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
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    """Make a directory's entries (new files, renames) durable; a no-op where directories cannot be
    opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


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
        _fsync_file(tmp / f"{name}.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1, default=str))
    _fsync_file(tmp / "state.json")
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    _write_text_atomic(root / "latest", final.name)
    complete = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in complete[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoint_candidates(root: str | os.PathLike[str]) -> list[Path]:
    """The complete checkpoint directories under ``root``, newest first (the one ``latest`` names
    leads)."""
    root = Path(root)
    complete = sorted((p for p in root.glob("step_*") if (p / "state.json").exists()), reverse=True)
    marker = root / "latest"
    if marker.exists():
        candidate = root / marker.read_text().strip()
        if candidate in complete:
            complete.remove(candidate)
            complete.insert(0, candidate)
    return complete


def latest_checkpoint(root: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint directory under ``root``, or None."""
    candidates = checkpoint_candidates(root)
    return candidates[0] if candidates else None


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read; ``path`` names it."""

    def __init__(self, path: Path, error: BaseException) -> None:
        super().__init__(f"checkpoint file {str(path)!r} cannot be read ({type(error).__name__}: {error})")
        self.path = path


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(objects, state)`` of a checkpoint directory written by :func:`save_checkpoint`, tensors read
    with ``weights_only=True``. A file that cannot be read raises :class:`CheckpointError` naming it."""
    path = Path(path)
    try:
        state = json.loads((path / "state.json").read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(path / "state.json", error) from error
    objects = {}
    for p in sorted(path.glob("*.pt")):
        try:
            objects[p.stem] = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as error:  # truncated zip, corrupt pickle, ...: name the file
            raise CheckpointError(p, error) from error
    return objects, state


def load_latest_checkpoint(
    root: str | os.PathLike[str],
) -> tuple[Path, dict[str, Any], dict[str, Any]] | None:
    """``(path, objects, state)`` of the newest readable checkpoint under ``root``, or None when there
    is none. An unreadable one is skipped with a warning naming the bad file; a ValueError naming
    ``root`` when checkpoints exist but none can be read."""
    candidates = checkpoint_candidates(root)
    for path in candidates:
        try:
            objects, state = load_checkpoint(path)
        except CheckpointError as error:
            warnings.warn(f"{error}; falling back to the previous checkpoint", stacklevel=2)
            continue
        return path, objects, state
    if candidates:
        raise ValueError(
            f"no readable checkpoint in {str(Path(root))!r}: all of {[p.name for p in candidates]} are "
            "corrupt or truncated; remove them (or pass resume: false) to start afresh"
        )
    return None
