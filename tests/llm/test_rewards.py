from __future__ import annotations

from typing import Any

import pytest
import torch

from credo.llm import toy
from credo.llm.rewards import (
    CandidateScores,
    WeightedReward,
    as_weighted_rewards,
    compute_rewards,
    token_reward,
)
from credo.llm.rollout import RolloutBatch, completion_mask_from_ids


def _batch(tokenizer: Any, completions: list[str], L: int = 12) -> RolloutBatch:
    B = len(completions)
    ids = torch.full((B, L), tokenizer.pad_token_id)
    for b, text in enumerate(completions):
        row = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids[b, : len(row)] = torch.tensor(row)
    mask = completion_mask_from_ids(ids, tokenizer.eos_token_id)
    return RolloutBatch(
        prompt_ids=torch.ones(B, 1, dtype=torch.long),
        prompt_mask=torch.ones(B, 1, dtype=torch.bool),
        completion_ids=ids,
        completion_mask=mask,
        logprobs=torch.zeros(B, L),
        ref_logprobs=None,
        values=None,
        prompts=["p"] * B,
        completions=completions,
        group_size=B,
        prompt_index=torch.zeros(B, dtype=torch.long),
    )


def count_b(prompts: list[str], completions: list[str], **meta: Any) -> list[float]:
    return [float(c.count("b")) for c in completions]


def test_weighted_sum_of_completion_rewards(tokenizer: Any) -> None:
    batch = _batch(tokenizer, ["aab", "bbb", ""])
    fns = as_weighted_rewards([toy.letter_fraction_reward, {"fn": count_b, "weight": -0.5}])
    out = compute_rewards(fns, batch, tokenizer)
    expected = torch.tensor([2 / 8 - 0.5, 0 - 1.5, 0.0])
    torch.testing.assert_close(out.rewards, expected)
    assert set(out.per_function) == {"letter_fraction_reward", "count_b"}
    assert out.token_rewards is None and out.candidate_scores is None


def test_candidate_scores_and_token_spans(tokenizer: Any) -> None:
    batch = _batch(tokenizer, ["a bc e", "x"])
    out = compute_rewards(as_weighted_rewards(toy.vowel_candidates_reward), batch, tokenizer)
    torch.testing.assert_close(out.candidate_scores, torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]))
    assert out.candidate_spans.tolist() == [[[0, 1], [2, 4], [5, 6]], [[0, 1], [-1, -1], [-1, -1]]]
    torch.testing.assert_close(out.rewards, torch.tensor([1.0, 0.0]))


@token_reward
def step_ends(prompts: list[str], completions: list[str], **meta: Any) -> list[list[tuple[int, float]]]:
    """+1 at the end of each line."""
    return [[(i, 1.0) for i, ch in enumerate(c) if ch == "\n"] for c in completions]


def test_token_rewards_land_on_the_right_tokens(tokenizer: Any) -> None:
    batch = _batch(tokenizer, ["ab\ncd\n", "x"])
    out = compute_rewards(as_weighted_rewards([{"fn": step_ends, "weight": 0.5}]), batch, tokenizer)
    assert out.token_rewards is not None
    assert out.token_rewards[0].nonzero().flatten().tolist() == [2, 5]
    torch.testing.assert_close(out.token_rewards[0, [2, 5]], torch.tensor([0.5, 0.5]))
    assert out.token_rewards[1].abs().sum() == 0
    torch.testing.assert_close(out.rewards, torch.zeros(2))


def test_bad_reward_functions(tokenizer: Any) -> None:
    batch = _batch(tokenizer, ["a", "b"])
    with pytest.raises(ValueError, match="2 items"):
        compute_rewards(as_weighted_rewards(lambda p, c, **m: [1.0]), batch, tokenizer)
    with pytest.raises(ValueError, match="non-finite"):
        compute_rewards(as_weighted_rewards(lambda p, c, **m: [1.0, float("nan")]), batch, tokenizer)
    with pytest.raises(TypeError, match="non-number"):
        compute_rewards(as_weighted_rewards(lambda p, c, **m: [1.0, "x"]), batch, tokenizer)
    with pytest.raises(ValueError, match="no reward function"):
        as_weighted_rewards(None)
    with pytest.raises(TypeError, match="not callable"):
        WeightedReward(fn=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at most one candidate"):
        as_weighted_rewards([toy.vowel_candidates_reward, toy.vowel_candidates_reward])
    with pytest.raises(ValueError, match="spans"):
        CandidateScores(scores=[1.0], spans=[], set_reward=1.0)
