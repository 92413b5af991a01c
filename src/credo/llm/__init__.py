"""credo.llm: LLM post-training with pluggable credit.

The trainer (:mod:`~credo.llm.trainer`: one training step, top to bottom) and what it is built from:
rollout (:mod:`~credo.llm.rollout`) through a sampler chosen once (:mod:`~credo.llm.sampler`: HF
``generate`` or :mod:`~credo.llm.vllm_backend`), reward functions (:mod:`~credo.llm.rewards`), losses
and their aggregation (:mod:`~credo.llm.losses`), the critic (:mod:`~credo.llm.critic`), set-up
(:mod:`~credo.llm.models`: precision, policy, reference, optimizer), prompts and their order
(:mod:`~credo.llm.prompts`), data parallelism (:mod:`~credo.llm.distributed`), metrics and logs
(:mod:`~credo.llm.run_log`), checkpoints (:mod:`~credo.llm.checkpoint`), the typed config
(:mod:`~credo.llm.config`), SFT warm-up (:mod:`~credo.llm.sft`), tiny local models and a char
tokenizer (:mod:`~credo.llm.tiny`), toy tasks (:mod:`~credo.llm.toy`). Every advantage comes from
:mod:`credo.credit`; set-valued tasks (:mod:`credo.tasks`) are wired in by ``credo.cli.wiring``, never
imported here. Heavy imports (transformers) happen when these modules are imported, not here.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "Trainer": "credo.llm.trainer",
    "TrainConfig": "credo.llm.config",
    "load_config": "credo.llm.config",
    "CandidateScores": "credo.llm.rewards",
    "WeightedReward": "credo.llm.rewards",
    "candidate_reward": "credo.llm.rewards",
    "token_reward": "credo.llm.rewards",
    "RolloutBatch": "credo.llm.rollout",
    "sample_completions": "credo.llm.rollout",
    "sequence_logprobs": "credo.llm.rollout",
    "sft_warmup": "credo.llm.sft",
    "build_char_tokenizer": "credo.llm.tiny",
    "build_tiny_model": "credo.llm.tiny",
    "load_tokenizer": "credo.llm.tiny",
    "tiny_model_config": "credo.llm.tiny",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'credo.llm' has no attribute {name!r}")
