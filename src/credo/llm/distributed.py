"""Everything that differs between one process and ``accelerate launch`` (DDP / FSDP), in one place.

:class:`Distributed` wraps an ``accelerate.Accelerator`` when accelerate is installed (single-process
too), or nothing. The trainer's code is the same either way: it asks this object to prepare, unwrap,
skip gradient syncs between micro-batches, back-propagate, clip, gather, and count the tokens of a
mini-batch over all processes (the loss normaliser is global, see :func:`credo.llm.losses.batch_normalizer`).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any

import torch
from torch import Tensor

from credo.llm.config import resolve_device


class Distributed:
    """The process group of a run (``accelerator``: an ``accelerate.Accelerator`` or None)."""

    def __init__(self, accelerator: Any | None = None) -> None:
        self.accelerator = accelerator
        self.world_size: int = accelerator.num_processes if accelerator is not None else 1
        self.rank: int = accelerator.process_index if accelerator is not None else 0
        self.is_main = self.rank == 0

    @classmethod
    def create(cls, device: str) -> Distributed:
        """With an ``Accelerator`` when accelerate is installed (on the CPU for ``device="cpu"``, or
        ``"auto"`` without CUDA), else single-process without one."""
        try:
            from accelerate import Accelerator
        except ImportError:
            return cls(None)
        cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
        dist = cls(Accelerator(cpu=cpu))
        dist.check_fsdp_granted()
        return dist

    def check_fsdp_granted(self) -> None:
        """Warn when FSDP was asked for (``accelerate launch`` with ``distributed_type: FSDP``) but
        accelerate did not give it: on the CPU, accelerate runs plain DDP (gloo) instead, every
        process holding the whole model."""
        requested = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
        if requested and self.accelerator is not None and self.world_size > 1:
            kind = str(self.accelerator.distributed_type)
            if not kind.endswith("FSDP"):
                warnings.warn(
                    f"FSDP was requested but accelerate runs {kind} (it shards only on GPUs): each "
                    "process holds the whole model and its optimizer state",
                    stacklevel=3,
                )

    def device(self, requested: str) -> torch.device:
        """This process's device: the accelerator's, else ``requested`` (``"auto"``: CUDA if available)."""
        if self.accelerator is not None:
            return self.accelerator.device
        return resolve_device(requested)

    def prepare(self, *objects: Any) -> tuple[Any, ...]:
        """The model(s) and optimizer wrapped for data parallelism (as they are without accelerate)."""
        if self.accelerator is None:
            return objects
        prepared = self.accelerator.prepare(*objects)
        return prepared if isinstance(prepared, tuple) else (prepared,)

    def unwrap(self, module: Any) -> Any:
        return self.accelerator.unwrap_model(module) if self.accelerator is not None else module

    def generation_context(self, model: Any) -> contextlib.AbstractContextManager[Any]:
        """FSDP shards parameters: gather them for ``generate``; no-op otherwise."""
        try:
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        except ImportError:  # pragma: no cover
            return contextlib.nullcontext()
        if isinstance(model, FSDP):
            return FSDP.summon_full_params(model, writeback=False, recurse=False)
        return contextlib.nullcontext()

    def no_sync(self, model: Any, last: bool) -> contextlib.AbstractContextManager[Any]:
        """No gradient all-reduce for a micro-batch that is not the mini-batch's ``last``."""
        if self.accelerator is None or last or self.world_size == 1:
            return contextlib.nullcontext()
        return self.accelerator.no_sync(model)

    def backward(self, loss: Tensor) -> None:
        if self.accelerator is not None:
            self.accelerator.backward(loss)
        else:
            loss.backward()

    def clip_grad_norm(self, optimizer: torch.optim.Optimizer, max_norm: float | None) -> float:
        """Clip the gradients of ``optimizer``'s parameters to ``max_norm`` (None: no clipping); the
        norm before clipping."""
        params = [p for group in optimizer.param_groups for p in group["params"]]
        bound = float("inf") if max_norm is None else max_norm
        if self.accelerator is not None:
            return float(self.accelerator.clip_grad_norm_(params, bound))
        return float(torch.nn.utils.clip_grad_norm_(params, bound))

    def global_counts(self, mask: Tensor) -> tuple[float, float]:
        """``(tokens, sequences)`` of the rows ``mask: [b, L]``, summed over processes."""
        counts = torch.tensor([float(mask.sum()), float(mask.shape[0])], device=mask.device)
        if self.accelerator is not None and self.world_size > 1:
            counts = self.accelerator.reduce(counts, reduction="sum")
        tokens, sequences = counts.tolist()
        return tokens, sequences

    def gather(self, tensor: Tensor) -> Tensor:
        """``tensor`` of every process, concatenated (itself in a single process)."""
        if self.accelerator is not None and self.world_size > 1:
            return self.accelerator.gather(tensor)
        return tensor

    def wait_for_everyone(self) -> None:
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()
