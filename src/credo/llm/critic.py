"""The critic: a value model ``V(s_t)`` for estimators that need values (e.g. ``gae``).

``separate``: a value head on its own backbone, a copy of the policy's (post-SFT) transformer;
``shared``: a value head on the policy's last hidden states (no second backbone).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from credo.llm.rollout import RolloutBatch, full_inputs, pad_completion, trim_inputs


class ValueModel(nn.Module):
    """A value head ``V(s_t) = w . h_t + b`` on a transformer backbone (``separate`` critic), or on
    hidden states handed in by the policy (``shared``: ``backbone`` is None)."""

    def __init__(self, hidden_size: int, backbone: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, hidden: Tensor | None = None, **inputs: Tensor) -> Tensor:
        """Values ``[B, T]`` of ``hidden: [B, T, H]``, or of the backbone run on ``inputs``."""
        if hidden is None:
            if self.backbone is None:
                raise ValueError("a shared value head needs the policy's hidden states")
            hidden = self.backbone(**inputs, use_cache=False).last_hidden_state
        return self.head(hidden.to(self.head.weight.dtype)).squeeze(-1).float()


def hidden_size_of(model: Any) -> int:
    cfg = model.config
    return int(getattr(cfg, "hidden_size", None) or cfg.n_embd)


def make_critic(policy: Any, mode: str, device: torch.device) -> ValueModel:
    """A zero-initialised value head, on a copy of ``policy``'s backbone (``mode="separate"``) or on
    the policy's hidden states (``"shared"``)."""
    backbone = copy.deepcopy(policy.base_model) if mode == "separate" else None
    return ValueModel(hidden_size_of(policy), backbone).to(device)


@torch.no_grad()
def critic_values(
    critic: ValueModel,
    policy: Any,
    batch: RolloutBatch,
    micro_batch_size: int,
    precision: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> Tensor:
    """Values ``[B, L]`` (float32, 0 on padding) of the states before each completion token, in
    micro-batches of ``micro_batch_size`` rows, each without the columns that are padding in all its
    rows (:func:`~credo.llm.rollout.trim_inputs`) and under ``precision()``. A shared
    head reads the last hidden states of ``policy``."""
    L = batch.completion_ids.shape[1]
    parts = []
    for idx in torch.arange(batch.batch_size, device=batch.completion_ids.device).split(micro_batch_size):
        tensors, w = trim_inputs(
            batch.prompt_ids[idx],
            batch.prompt_mask[idx],
            batch.completion_ids[idx],
            batch.completion_mask[idx],
        )
        input_ids, attention_mask, position_ids = full_inputs(*tensors)
        P = tensors[0].shape[1]
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}
        with precision():
            if critic.backbone is None:
                out = policy(**inputs, logits_to_keep=1, use_cache=False, output_hidden_states=True)
                values = critic(hidden=out.hidden_states[-1][:, P - 1 : P + w - 1])
            else:
                values = critic(**inputs)[:, P - 1 : P + w - 1]
        parts.append(pad_completion(values.float(), L))
    return torch.cat(parts).masked_fill(~batch.completion_mask, 0.0)
