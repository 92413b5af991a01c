"""Run by test_distributed.py under torchrun: a few GRPO steps, then print this process's view."""

from __future__ import annotations

import json
import sys

import torch

from credo.llm.config import load_config
from credo.llm.trainer import Trainer

torch.set_num_threads(1)
config = load_config(
    None,
    [
        "--model.hidden_size",
        "32",
        "--model.num_heads",
        "2",
        "--model.context_length",
        "64",
        "--rollout.group_size",
        "4",
        "--rollout.prompts_per_step",
        "2",
        "--rollout.max_new_tokens",
        "6",
        "--steps",
        "2",
        "--progress",
        "false",
        "--output_dir",
        sys.argv[1],
        "--checkpoint_every",
        "2",
        "--task.prompts",
        "credo.llm.toy:letters_prompts",
    ],
)
trainer = Trainer(config, reward_functions="credo.llm.toy:letter_fraction_reward")
history = trainer.train()
with torch.no_grad():
    checksum = float(sum(p.double().sum() for p in trainer.unwrapped_model.parameters()))
print(
    "RESULT "
    + json.dumps(
        {
            "rank": trainer.dist.rank,
            "world": trainer.dist.world_size,
            "checksum": checksum,
            "prompts": trainer.prompts_for_step(0),
            "reward": history[-1]["reward/mean"],
        }
    )
)
