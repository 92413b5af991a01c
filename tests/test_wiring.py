"""``credo.cli.wiring``: a config naming a set-valued task becomes a trainer with the task's prompts,
reward function and SFT pairs (``credo.llm`` never imports ``credo.tasks``)."""

from __future__ import annotations

import pytest

from credo.cli.wiring import build_trainer
from credo.llm.config import config_from_dict
from credo.tasks import TaskPrompt

TINY = {"model": {"hidden_size": 32, "num_heads": 2, "context_length": 64}, "progress": False}


def test_set_task_supplies_prompts_rewards_and_sft_pairs() -> None:
    config = config_from_dict(
        {
            **TINY,
            "task": {"set_task": "synthetic_recommendation", "num_prompts": 8},
            "sft": {"steps": 2},
            "rollout": {"group_size": 2, "prompts_per_step": 2, "max_new_tokens": 24},
            "steps": 1,
        }
    )
    config.model.context_length = 128
    trainer = build_trainer(config)
    assert len(trainer.prompts) == 8 and [r.kind for r in trainer.reward_fns] == ["candidates"]
    assert all(isinstance(p, dict) and isinstance(p["task_prompt"], TaskPrompt) for p in trainer.prompts)
    assert all(p["prompt"] == p["task_prompt"].text for p in trainer.prompts)
    assert trainer.warm_up_due and len(trainer.sft_pairs) > 0
    trainer.train()
    assert trainer.last_experience is not None
    batch, scored = trainer.last_experience.batch, trainer.last_experience.rewards
    assert [type(p) for p in batch.meta["task_prompt"]] == [TaskPrompt] * 4  # one per completion
    assert scored.candidate_scores is not None and scored.candidate_scores.shape == (4, 3)
    with pytest.raises(ValueError, match=r"task\.set_task"):
        build_trainer(config_from_dict({**TINY, "task": {"set_task": "no_such_task"}}))


def test_given_pieces_are_kept() -> None:
    config = config_from_dict(
        {
            **TINY,
            "task": {"set_task": "synthetic_recommendation", "num_prompts": 8},
            "rollout": {"group_size": 2, "prompts_per_step": 2, "max_new_tokens": 24},
        }
    )
    config.model.context_length = 128
    trainer = build_trainer(config, prompts=["ab", "cd"], reward_functions=lambda p, c, **m: [0.0] * len(c))
    assert trainer.prompts == ["ab", "cd"] and [r.kind for r in trainer.reward_fns] == ["completion"]
