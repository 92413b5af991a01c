"""Wiring a run from its config: the pieces the trainer is handed rather than builds.

``credo.llm`` never imports ``credo.tasks``; a config naming a set-valued task (``task.set_task``) is
turned into a trainer here, by :func:`build_trainer`, which ``credo train`` and ``credo compare`` use.
"""

from __future__ import annotations

from typing import Any

from credo.llm.config import TrainConfig
from credo.llm.trainer import Trainer
from credo.tasks import make_task


def make_set_task(config: TrainConfig) -> Any | None:
    """The ``credo.tasks`` task named by ``task.set_task`` (with ``task.set_task_options``), or None."""
    if config.task.set_task is None:
        return None
    try:
        return make_task(config.task.set_task, **config.task.set_task_options)
    except (ValueError, TypeError) as error:
        raise ValueError(f"config key 'task.set_task': {error}") from None


def build_trainer(config: TrainConfig, task: Any = None, **kwargs: Any) -> Trainer:
    """The :class:`~credo.llm.trainer.Trainer` of ``config`` (``kwargs`` as the trainer takes them).

    With ``task.set_task`` (or a ``task`` already built from it), the task supplies what neither
    ``kwargs`` nor the config gives: the reward functions (``task.rewards``, then the task's
    per-candidate reward function), ``task.num_prompts`` training prompts, and its SFT pairs. Each
    prompt is a dict ``{"prompt": text, "task_prompt": TaskPrompt}``: the trainer hands the
    ``task_prompt`` field to the reward functions, one entry per completion.
    """
    task = task if task is not None else make_set_task(config)
    if task is not None:
        tc = config.task
        if kwargs.get("reward_functions") is None:
            kwargs["reward_functions"] = [*tc.rewards, task.reward_function()]
        if kwargs.get("prompts") is None and tc.prompts is None:
            train_prompts = task.prompts("train", tc.num_prompts, seed=config.seed)
            kwargs["prompts"] = [{"prompt": p.text, "task_prompt": p} for p in train_prompts]
        if kwargs.get("sft_pairs") is None and tc.sft_pairs is None:
            kwargs["sft_pairs"] = task.sft_pairs(seed=config.seed)
    return Trainer(config, **kwargs)
