"""Reward functions: plain Python callables, weighted and summed.

Three kinds, all called as ``fn(prompts, completions, **meta)`` with lists of length B:

* ``"completion"`` (any plain callable): returns ``list[float]``, one reward per completion.
* ``"candidates"`` (decorate with :func:`candidate_reward`): for set-valued answers made of K
  candidates; returns, per completion, a :class:`CandidateScores` (K scores, K character spans in the
  completion text or None, the set reward and optionally the set utility as a one-row game). The
  trainer maps character spans to token spans with the tokenizer's offsets and fills
  ``CreditBatch.candidate_scores`` / ``candidate_spans`` / ``candidate_game``.
* ``"tokens"`` (decorate with :func:`token_reward`): per-step rewards; returns, per completion, a list
  of ``(char_position, reward)`` pairs; each reward lands on the token covering that character
  (``CreditBatch.token_rewards``), e.g. a process reward at the end of each reasoning step.

Several functions are combined with weights: outcome reward ``R_b = sum_f w_f r_f(b)`` (a candidate
function contributes its set reward), token rewards summed the same way.

The protocol types (:class:`CandidateScores`, :func:`candidate_reward`, :func:`token_reward`) live in
:mod:`credo.credit.reward_types`, where reward producers (``credo.tasks``) reach them without
importing ``credo.llm``; they are re-exported here.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from credo.credit.games import SetGame, cat_games
from credo.credit.registry import CreditBatch
from credo.credit.reward_types import REWARD_KINDS, CandidateScores, candidate_reward, token_reward

__all__ = [
    "REWARD_KINDS",
    "CandidateScores",
    "RewardOutput",
    "WeightedReward",
    "as_weighted_rewards",
    "candidate_reward",
    "compute_rewards",
    "credit_batch",
    "resolve_callable",
    "token_reward",
]

from credo.llm.rollout import (
    RolloutBatch,
    char_position_to_token,
    char_spans_to_token_spans,
)


@dataclass(frozen=True)
class WeightedReward:
    """A reward function with its weight, kind and the name it is logged under."""

    fn: Callable[..., Any]
    weight: float = 1.0
    kind: str = "completion"
    name: str = ""

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise TypeError(f"reward function {self.fn!r} is not callable")
        if self.kind not in REWARD_KINDS:
            raise ValueError(f"reward kind must be one of {REWARD_KINDS}, got {self.kind!r}")
        if not math.isfinite(self.weight):
            raise ValueError(f"reward weight must be finite, got {self.weight}")
        if not self.name:
            object.__setattr__(self, "name", getattr(self.fn, "__name__", type(self.fn).__name__))


def resolve_callable(path: str) -> Callable[..., Any]:
    """Import ``"package.module:attribute"`` (or ``"package.module.attribute"``)."""
    if not isinstance(path, str) or not path:
        raise ValueError(f"expected an import path 'module:function', got {path!r}")
    module_name, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"expected an import path 'module:function', got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cannot import module {module_name!r} of {path!r}: {error}") from error
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r} (from {path!r})") from None


def as_weighted_rewards(spec: Any) -> list[WeightedReward]:
    """Normalise a reward specification: a callable, a :class:`WeightedReward`, an import path, a dict
    ``{"fn": ..., "weight": ...}``, or a list of these. Raises if the result is empty."""
    if spec is None:
        raise ValueError(
            "no reward function: pass reward_functions=... or set task.rewards in the config "
            "(e.g. [{fn: 'credo.llm.toy:letter_fraction_reward', weight: 1.0}])"
        )
    items = spec if isinstance(spec, list | tuple) else [spec]
    result: list[WeightedReward] = []
    for item in items:
        if isinstance(item, WeightedReward):
            result.append(item)
            continue
        weight, name = 1.0, ""
        if isinstance(item, dict):
            unknown = set(item) - {"fn", "weight", "name", "kind"}
            if unknown or "fn" not in item:
                raise ValueError(
                    f"a reward entry needs keys fn (and optional weight, name); got {sorted(item)}"
                )
            weight, name = float(item.get("weight", 1.0)), str(item.get("name", ""))
            fn = item["fn"]
            kind_override = item.get("kind")
        else:
            fn, kind_override = item, None
        if isinstance(fn, str):
            fn = resolve_callable(fn)
        kind = kind_override or getattr(fn, "reward_kind", "completion")
        result.append(WeightedReward(fn=fn, weight=weight, kind=kind, name=name))
    if not result:
        raise ValueError("no reward function: the reward list is empty")
    if sum(r.kind == "candidates" for r in result) > 1:
        raise ValueError("at most one candidate reward function (kind 'candidates') is supported")
    return result


@dataclass
class RewardOutput:
    """Scored rollouts.

    Attributes:
        rewards: ``[B]`` weighted outcome reward.
        token_rewards: ``[B, L]`` weighted per-step rewards, or None.
        candidate_scores: ``[B, K]`` or None; candidate_spans: ``[B, K, 2]`` long token spans on the
            completion axis (``-1`` where a candidate has none), or None.
        candidate_game: the batch's set games (one row per completion), when the candidate function
            gave them, else None (candidate estimators then use the max game of the scores).
        per_function: ``name -> [B]`` unweighted reward of each function (for logging).
    """

    rewards: Tensor
    token_rewards: Tensor | None
    candidate_scores: Tensor | None
    candidate_spans: Tensor | None
    per_function: dict[str, Tensor]
    candidate_game: SetGame | None = None


def _check_length(name: str, values: Sequence[Any], B: int) -> None:
    if not isinstance(values, Sequence) or len(values) != B:
        got = len(values) if isinstance(values, Sequence) else type(values).__name__
        raise ValueError(
            f"reward function {name!r} must return a list of {B} items (one per completion), got {got}"
        )


def _finite(name: str, value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"reward function {name!r} returned a non-number {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"reward function {name!r} returned a non-finite reward {x}")
    return x


def _stack_games(name: str, out: Sequence[CandidateScores], K: int) -> SetGame | None:
    """The completions' one-row games stacked into the batch's game, or None when none gave one."""
    given = [c.game is not None for c in out]
    if not any(given):
        return None
    if not all(given):
        raise ValueError(f"candidate reward function {name!r} gave a game for some completions only")
    if any(c.game.num_players != K for c in out):  # type: ignore[union-attr]
        raise ValueError(f"candidate reward function {name!r}: every game must have K={K} players")
    return cat_games([c.game for c in out])  # type: ignore[misc]


def compute_rewards(
    reward_fns: Sequence[WeightedReward], batch: RolloutBatch, tokenizer: Any
) -> RewardOutput:
    """Call every reward function on ``batch`` and combine them (see the module docstring)."""
    B, L = batch.completion_ids.shape
    device = batch.completion_ids.device
    rewards = torch.zeros(B, dtype=torch.float32)
    token_rewards: Tensor | None = None
    scores_t: Tensor | None = None
    spans_t: Tensor | None = None
    game: SetGame | None = None
    per_function: dict[str, Tensor] = {}

    def get_offsets() -> list[list[tuple[int, int]]]:
        return batch.offsets(tokenizer)

    for rf in reward_fns:
        out = rf.fn(batch.prompts, batch.completions, **batch.meta)
        _check_length(rf.name, out, B)
        if rf.kind == "completion":
            values = torch.tensor([_finite(rf.name, v) for v in out], dtype=torch.float32)
            rewards += rf.weight * values
            per_function[rf.name] = values
        elif rf.kind == "candidates":
            if not all(isinstance(c, CandidateScores) for c in out):
                raise TypeError(
                    f"candidate reward function {rf.name!r} must return CandidateScores per completion"
                )
            K = max(len(c.scores) for c in out)
            if K == 0:
                raise ValueError(f"candidate reward function {rf.name!r} returned no candidates at all")
            scores_t = torch.zeros(B, K, dtype=torch.float32)
            spans_t = torch.full((B, K, 2), -1, dtype=torch.long)
            set_rewards = torch.tensor([_finite(rf.name, c.set_reward) for c in out], dtype=torch.float32)
            game = _stack_games(rf.name, out, K)
            for b, cand in enumerate(out):
                k = len(cand.scores)
                scores_t[b, :k] = torch.tensor([_finite(rf.name, s) for s in cand.scores])
                token_spans = [  # a candidate without a span (or no token under it): (-1, -1)
                    (-1, -1) if span is None else span
                    for span in char_spans_to_token_spans(list(cand.spans), get_offsets()[b])
                ]
                if k:
                    spans_t[b, :k] = torch.tensor(token_spans, dtype=torch.long)
            rewards += rf.weight * set_rewards
            per_function[rf.name] = set_rewards
        else:  # tokens
            if token_rewards is None:
                token_rewards = torch.zeros(B, L, dtype=torch.float32)
            totals = torch.zeros(B)
            for b, steps in enumerate(out):
                for position, value in steps:
                    t = char_position_to_token(int(position), get_offsets()[b])
                    token_rewards[b, t] += rf.weight * _finite(rf.name, value)
                    totals[b] += _finite(rf.name, value)
            per_function[rf.name] = totals
    return RewardOutput(
        rewards=rewards.to(device),
        token_rewards=None if token_rewards is None else token_rewards.to(device),
        candidate_scores=None if scores_t is None else scores_t.to(device),
        candidate_spans=None if spans_t is None else spans_t.to(device),
        candidate_game=None if game is None else game.to(device),
        per_function={k: v.to(device) for k, v in per_function.items()},
    )


def credit_batch(
    scored: RewardOutput, batch: RolloutBatch, token_rewards: Tensor | None, values: Tensor | None = None
) -> CreditBatch:
    """The estimators' input for a scored rollout: outcome rewards, the completion mask, the prompt
    groups, ``token_rewards`` (the reward functions' own, plus the KL penalty when it is in the
    reward), critic ``values`` and the candidate fields. One place, so the trainer and
    ``credo diagnose`` credit the same batch the same way."""
    return CreditBatch(
        rewards=scored.rewards,
        response_mask=batch.completion_mask,
        group_size=batch.group_size,
        token_rewards=token_rewards,
        values=values,
        candidate_scores=scored.candidate_scores,
        candidate_spans=scored.candidate_spans,
        candidate_game=scored.candidate_game,
    )
