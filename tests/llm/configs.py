"""Pieces shared by the trainer tests' configs."""

from __future__ import annotations

from typing import Any

from credo.llm.config import TrainConfig, config_from_dict

# a two-layer tiny Qwen2 over the character tokenizer: fast enough for whole training runs
SMALL_MODEL: dict[str, Any] = {"hidden_size": 32, "num_heads": 2, "num_layers": 2, "context_length": 64}


def config_with(data: dict[str, Any], **sections: Any) -> TrainConfig:
    """The config of ``data`` with ``sections`` merged in: a mapping updates its section, any other
    value replaces the key. ``data`` itself is left as it was."""
    merged = dict(data)
    for key, value in sections.items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    return config_from_dict(merged)
