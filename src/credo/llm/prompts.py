"""The prompts of a run: what a prompt is, its text and extra fields, and which prompts each training
step takes.

A prompt is a string, or a dict with a ``"prompt"`` text whose other fields reach the reward
functions as keyword arguments, one list entry per completion (as dataset columns do in TRL).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from credo.llm.rewards import resolve_callable

Prompt = str | dict[str, Any]


def resolve_prompts(spec: Sequence[Prompt] | str | None) -> list[Prompt]:
    """The prompt list, from a list or an import path ``"module:function"`` returning one; checked."""
    if spec is None:
        raise ValueError("no prompts: pass prompts=... or set task.prompts (a list or 'module:function')")
    prompts = resolve_callable(spec)() if isinstance(spec, str) else spec
    prompts = list(prompts)
    if not prompts:
        raise ValueError("prompts must be a non-empty list")
    for i, p in enumerate(prompts):
        if isinstance(p, dict):
            if not isinstance(p.get("prompt"), str):
                raise ValueError(f"prompt {i} is a dict without a 'prompt' string")
        elif not isinstance(p, str):
            raise TypeError(f"prompt {i} must be a str or a dict with a 'prompt' key, got {type(p).__name__}")
    return prompts


def prompt_text(prompt: Prompt) -> str:
    return prompt["prompt"] if isinstance(prompt, dict) else prompt


def prompt_meta(prompts: Sequence[Prompt], group_size: int) -> dict[str, list[Any]]:
    """Extra fields of dict prompts, one entry per completion (None where a prompt lacks the field)."""
    keys = sorted({k for p in prompts if isinstance(p, dict) for k in p if k != "prompt"})
    return {
        k: [p.get(k) if isinstance(p, dict) else None for p in prompts for _ in range(group_size)]
        for k in keys
    }


def check_prompt_lengths(
    prompts: Sequence[Prompt], tokenizer: Any, context: int, max_new_tokens: int
) -> None:
    """A ValueError naming the first prompt that leaves no room for ``max_new_tokens`` in the context."""
    for i, prompt in enumerate(prompts):
        n = len(tokenizer(prompt_text(prompt), add_special_tokens=False)["input_ids"])
        if n + max_new_tokens > context:
            raise ValueError(
                f"prompt {i} has {n} tokens; with rollout.max_new_tokens={max_new_tokens} that is "
                f"{n + max_new_tokens} > the model's context of {context} tokens: shorten the prompt or "
                "max_new_tokens"
            )


class PromptOrder:
    """Which prompts each training step takes: a seeded permutation per pass over the prompt list, so
    the data position is a function of the step (a resumed run takes the same prompts).

    Step ``s`` takes ``per_step x world_size`` consecutive positions of that order; process ``rank``
    takes every ``world_size``-th of them (whole prompts: a prompt's G completions stay together).
    """

    def __init__(
        self, prompts: Sequence[Prompt], seed: int, per_step: int, rank: int = 0, world_size: int = 1
    ) -> None:
        self.prompts = list(prompts)
        self.seed = seed
        self.per_step = per_step
        self.rank = rank
        self.world_size = world_size
        self._permutations: dict[int, list[int]] = {}

    def for_step(self, step: int) -> list[Prompt]:
        """This process's prompts of training step ``step``."""
        n = self.per_step * self.world_size
        chosen = []
        for k in range(self.rank, n, self.world_size):
            epoch, offset = divmod(step * n + k, len(self.prompts))
            chosen.append(self.prompts[self.permutation(epoch)[offset]])
        return chosen

    def permutation(self, epoch: int) -> list[int]:
        """The prompt order of pass ``epoch`` over the prompts (seeded; the last two are cached)."""
        cache = self._permutations
        order = cache.get(epoch)
        if order is None:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            order = cache[epoch] = torch.randperm(len(self.prompts), generator=generator).tolist()
            for old in sorted(k for k in cache if k != epoch)[:-1]:  # keep this one and the newest other
                del cache[old]
        return order
