"""The count bonus: v(S) = max_{k in S} r_k + bonus * |valid S| / K. Its Shapley values (closed form:
max game plus bonus / K per valid candidate) match exact enumeration and sum to the set reward."""

from __future__ import annotations

import pytest
import torch

from credo.credit import CreditBatch, compute_credit, shapley_exact, shapley_max
from credo.credit.games import AdditiveGame, MaxGame, SetGame, cat_games
from credo.tasks import make_task


def test_count_bonus_set_utility_and_shapley_match_enumeration() -> None:
    task = make_task("synthetic_recommendation", k=3, count_bonus=0.3)
    prompt = task.prompts("train", 1, seed=0)[0]
    good = task.demo_candidates(prompt, __import__("random").Random(0))
    answer = task.format_answer(prompt, [good[0], good[1], "nonsense"])
    scoring = task.score_completion(prompt, answer)
    n_valid = sum(s > 0 for s in scoring.scores)
    assert scoring.set_reward == pytest.approx(max(scoring.scores) + 0.3 * n_valid / 3)
    phi = scoring.game.shapley()[0]  # closed forms: max game + bonus / K per valid candidate
    exact = shapley_exact(lambda m: scoring.game.value(m).T, 3)[0]
    torch.testing.assert_close(phi, exact.to(torch.float64))
    assert float(phi.sum()) == pytest.approx(scoring.set_reward)
    assert scoring.to_candidate_scores().game is scoring.game
    # without the bonus the game is the plain max game
    plain = make_task("synthetic_recommendation", k=3).score_completion(prompt, answer)
    assert isinstance(plain.game, MaxGame) and plain.set_reward == pytest.approx(max(plain.scores))


def test_one_good_candidate_earns_less_than_three_with_the_bonus() -> None:
    # The collapse seen on MovieLens: with the max alone a lone strong candidate gets all of R.
    lone = torch.tensor([[0.9, 0.0, 0.0]], dtype=torch.float64)
    three = torch.tensor([[0.9, 0.85, 0.8]], dtype=torch.float64)
    bonus = 0.3

    def given(scores: torch.Tensor) -> torch.Tensor:
        return shapley_max(scores) + bonus / 3 * (scores > 0)

    def game(scores: torch.Tensor) -> SetGame:
        return MaxGame(scores) + AdditiveGame(bonus / 3 * (scores > 0).double())

    assert float(given(three).sum()) > float(given(lone).sum())
    batch = CreditBatch(
        rewards=torch.cat([given(lone).sum(1), given(three).sum(1)]),
        response_mask=torch.ones(2, 3, dtype=torch.bool),
        group_size=2,
        candidate_scores=torch.cat([lone, three]),
        candidate_spans=torch.tensor([[[0, 1], [-1, -1], [-1, -1]], [[0, 1], [1, 2], [2, 3]]]),
        candidate_game=cat_games([game(lone), game(three)]),
    )
    result = compute_credit("shape_grpo", batch, normalize="none")
    torch.testing.assert_close(result.info["phi"][1], given(three)[0])
