"""The count bonus: v(S) = max_{k in S} r_k + bonus * |valid S| / K. Its Shapley values (closed form:
max game plus bonus / K per valid candidate) match exact enumeration and sum to the set reward."""

from __future__ import annotations

import pytest
import torch

from credo.credit import CreditBatch, compute_credit, shapley_exact
from credo.tasks import make_task


def test_count_bonus_set_utility_and_shapley_match_enumeration() -> None:
    task = make_task("synthetic_recommendation", k=3, count_bonus=0.3)
    prompt = task.prompts("train", 1, seed=0)[0]
    good = task.demo_candidates(prompt, __import__("random").Random(0))
    answer = task.format_answer(prompt, [good[0], good[1], "nonsense"])
    scoring = task.score_completion(prompt, answer)
    n_valid = sum(s > 0 for s in scoring.scores)
    assert scoring.set_reward == pytest.approx(max(scoring.scores) + 0.3 * n_valid / 3)
    phi = torch.tensor(scoring.shapley, dtype=torch.float64)
    exact = shapley_exact(task.coalition_utility(prompt, scoring.candidates, scoring.scores), 3)
    torch.testing.assert_close(phi, exact.to(torch.float64))
    assert float(phi.sum()) == pytest.approx(scoring.set_reward)
    assert scoring.to_candidate_scores().shapley == pytest.approx(list(scoring.shapley))
    # without the bonus the task leaves the (max game) Shapley values to the estimator
    plain = make_task("synthetic_recommendation", k=3).score_completion(prompt, answer)
    assert plain.shapley is None and plain.set_reward == pytest.approx(max(plain.scores))


def test_one_good_candidate_earns_less_than_three_with_the_bonus() -> None:
    # The collapse seen on MovieLens: with the max alone a lone strong candidate gets all of R.
    lone = torch.tensor([[0.9, 0.0, 0.0]], dtype=torch.float64)
    three = torch.tensor([[0.9, 0.85, 0.8]], dtype=torch.float64)
    bonus = 0.3

    def given(scores: torch.Tensor) -> torch.Tensor:
        from credo.credit import shapley_max

        return shapley_max(scores) + bonus / 3 * (scores > 0)

    assert float(given(three).sum()) > float(given(lone).sum())
    batch = CreditBatch(
        rewards=torch.cat([given(lone).sum(1), given(three).sum(1)]),
        response_mask=torch.ones(2, 3, dtype=torch.bool),
        group_size=2,
        candidate_scores=torch.cat([lone, three]),
        candidate_spans=torch.tensor([[[0, 1], [-1, -1], [-1, -1]], [[0, 1], [1, 2], [2, 3]]]),
        candidate_shapley=torch.cat([given(lone), given(three)]),
    )
    result = compute_credit("shape_grpo", batch, utility="given", normalize="none")
    torch.testing.assert_close(result.info["phi"][1], given(three)[0])
