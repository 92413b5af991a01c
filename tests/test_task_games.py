"""A task's game reaches the estimator whole: a coverage task (whose utility the scores alone do not
describe) hands its CoverageGame through CandidateScores, and shape_grpo credits with its Shapley
values, which sum to the set reward. (Formerly ``utility: given``; now there is no switch.)"""

from __future__ import annotations

import pytest
import torch

from credo.credit import CreditBatch, compute_credit
from credo.credit.games import CoverageGame, MaxGame, cat_games
from credo.tasks.brainstorm import Brainstorm


def test_coverage_task_hands_its_game_to_the_estimator() -> None:
    task = Brainstorm(k=3, mode="themes")
    prompt = task.make_prompt(["fruit", "color", "animal"])
    scoring = task.score_completion(prompt, "1. orange\n2. lime\n3. dog")
    given = scoring.to_candidate_scores()
    assert isinstance(given.game, CoverageGame)
    phi = given.game.shapley()[0]
    # the coverage split, not the max game's over the scores (2/3, 2/3, 1/3)
    assert phi.tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3])
    assert float(phi.sum()) == pytest.approx(scoring.set_reward)  # efficiency


def test_shape_grpo_uses_the_batch_game_and_leaves_spanless_candidates_out() -> None:
    covers = torch.tensor([[[1, 0], [0, 1]], [[1, 0], [1, 1]]], dtype=torch.bool)
    weights = torch.tensor([[0.5, 0.5], [0.5, 0.7]], dtype=torch.float64)
    base = dict(
        rewards=torch.tensor([1.0, 0.5], dtype=torch.float64),
        response_mask=torch.ones(2, 4, dtype=torch.bool),
        group_size=2,
        candidate_scores=torch.tensor([[0.5, 0.5], [0.5, 0.0]], dtype=torch.float64),
        candidate_spans=torch.tensor([[[0, 1], [2, 3]], [[0, 2], [-1, -1]]]),
    )
    game = cat_games([CoverageGame(covers[:1], weights[:1]), CoverageGame(covers[1:], weights[1:])])
    result = compute_credit("shape_grpo", CreditBatch(**base, candidate_game=game), normalize="none")
    # candidate 1 of row 1 has no span: out of the game, so candidate 0 covers topic 0 alone
    torch.testing.assert_close(
        result.info["phi"], torch.tensor([[0.5, 0.5], [0.5, 0.0]], dtype=torch.float64)
    )
    assert result.advantages[0].tolist() == [0.5, 1.0, 0.5, 1.0]  # candidate, outside (R), candidate, outside
    # without a game: the max game of the scores (the default)
    default = compute_credit("shape_grpo", CreditBatch(**base), normalize="none")
    with_max = compute_credit(
        "shape_grpo", CreditBatch(**base, candidate_game=MaxGame(base["candidate_scores"])), normalize="none"
    )
    torch.testing.assert_close(default.advantages, with_max.advantages)
    with pytest.raises(ValueError, match="candidate_game has 1 games"):
        compute_credit("shape_grpo", CreditBatch(**base, candidate_game=MaxGame(torch.ones(1, 2))))
