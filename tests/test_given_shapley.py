"""Set utilities the scores alone do not describe (coverage): the task computes the Shapley values of
its own game, the reward side carries them, and shape_grpo(utility="given") uses them."""

from __future__ import annotations

import pytest
import torch

from credo.credit import CreditBatch, compute_credit
from credo.tasks.brainstorm import Brainstorm, coverage_shapley


def test_coverage_task_hands_its_shapley_values_to_the_trainer() -> None:
    task = Brainstorm(k=3, mode="themes")
    prompt = task.make_prompt(["fruit", "color", "animal"])
    scoring = task.score_completion(prompt, "1. orange\n2. lime\n3. dog")
    given = task.score_completion(prompt, "1. orange\n2. lime\n3. dog").to_candidate_scores()
    assert given.shapley == pytest.approx(coverage_shapley(scoring.coverage, scoring.category_weights))
    assert sum(given.shapley) == pytest.approx(scoring.set_reward)  # efficiency
    # the max game over the scores would credit differently: (2/3, 2/3, 1/3) -> not the coverage split
    assert given.shapley == pytest.approx([1 / 3, 1 / 3, 1 / 3])


def test_shape_grpo_given_uses_the_batch_shapley_values() -> None:
    base = dict(
        rewards=torch.tensor([1.0, 0.5], dtype=torch.float64),
        response_mask=torch.ones(2, 4, dtype=torch.bool),
        group_size=2,
        candidate_scores=torch.tensor([[0.6, 0.6], [0.5, 0.0]], dtype=torch.float64),
        candidate_spans=torch.tensor([[[0, 1], [2, 3]], [[0, 2], [-1, -1]]]),
    )
    shapley = torch.tensor([[0.5, 0.5], [0.5, 0.7]], dtype=torch.float64)
    result = compute_credit(
        "shape_grpo", CreditBatch(**base, candidate_shapley=shapley), utility="given", normalize="none"
    )
    # candidate 1 of row 1 has no span: out of the game whatever the reward side said
    torch.testing.assert_close(
        result.info["phi"], torch.tensor([[0.5, 0.5], [0.5, 0.0]], dtype=torch.float64)
    )
    assert result.advantages[0].tolist() == [0.5, 1.0, 0.5, 1.0]  # candidate, outside (R), candidate, outside
    with pytest.raises(ValueError, match="candidate_shapley"):
        compute_credit("shape_grpo", CreditBatch(**base), utility="given")
    with pytest.raises(ValueError, match="candidate_shapley"):
        compute_credit("shape_grpo", CreditBatch(**base, candidate_shapley=torch.ones(2, 3)), utility="given")
