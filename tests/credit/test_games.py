"""Set games: values against a brute-force loop over coalitions, Shapley values against the slow
textbook formula, efficiency for every game and method, null absent players, splice and stacking."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from credo.credit.games import (
    AdditiveGame,
    CoverageGame,
    FacilityLocationGame,
    FunctionGame,
    MaxGame,
    SetGame,
    SumGame,
    cat_games,
)

# ------------------------------------------------------------------------------------------------
# slow references: one coalition at a time, in plain Python


def ref_value(kind: str, params: dict, b: int, members: list[int]) -> float:
    if kind == "max":
        return max((float(params["scores"][b, k]) for k in members), default=0.0)
    if kind == "additive":
        return sum(float(params["weights"][b, k]) for k in members)
    if kind == "coverage":
        C = params["covers"].shape[2]
        return sum(
            float(params["weights"][b, c])
            for c in range(C)
            if any(bool(params["covers"][b, k, c]) for k in members)
        )
    if kind == "facility":
        C = params["similarity"].shape[2]
        if not members:
            return 0.0
        return sum(
            float(params["weights"][b, c]) * max(float(params["similarity"][b, k, c]) for k in members)
            for c in range(C)
        )
    raise AssertionError(kind)


def ref_shapley(value, K: int) -> list[float]:
    """phi_i = sum_S |S|!(K-|S|-1)!/K! (v(S+i) - v(S)), every S not containing i."""
    phi = []
    for i in range(K):
        others = [j for j in range(K) if j != i]
        total = 0.0
        for size in range(K):
            weight = math.factorial(size) * math.factorial(K - size - 1) / math.factorial(K)
            for S in itertools.combinations(others, size):
                total += weight * (value([*S, i]) - value(list(S)))
        phi.append(total)
    return phi


def make(kind: str, B: int, K: int, seed: int, present: torch.Tensor | None = None) -> tuple[SetGame, dict]:
    g = torch.Generator().manual_seed(seed)
    if kind == "max":
        params = {"scores": torch.randn(B, K, generator=g, dtype=torch.float64)}
        return MaxGame(params["scores"], present), params
    if kind == "additive":
        params = {"weights": torch.randn(B, K, generator=g, dtype=torch.float64)}
        return AdditiveGame(params["weights"], present), params
    if kind == "coverage":
        params = {
            "covers": torch.rand(B, K, 4, generator=g) < 0.4,
            "weights": torch.rand(B, 4, generator=g, dtype=torch.float64),
        }
        return CoverageGame(params["covers"], params["weights"], present), params
    params = {
        "similarity": torch.rand(B, K, 3, generator=g, dtype=torch.float64),
        "weights": torch.rand(B, 3, generator=g, dtype=torch.float64),
    }
    return FacilityLocationGame(params["similarity"], params["weights"], present), params


KINDS = ("max", "additive", "coverage", "facility")


def all_masks(K: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([False, True], repeat=K)))


@pytest.mark.parametrize("kind", KINDS)
def test_values_match_brute_force(kind: str) -> None:
    B, K = 3, 4
    game, params = make(kind, B, K, seed=1)
    masks = all_masks(K)
    values = game.value(masks)
    assert values.shape == (B, len(masks))
    for b in range(B):
        for m, mask in enumerate(masks):
            members = [k for k in range(K) if mask[k]]
            assert float(values[b, m]) == pytest.approx(ref_value(kind, params, b, members), abs=1e-12)
    assert torch.allclose(game.grand_value(), values[:, -1])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["auto", "exact", "permutation"])
def test_shapley_matches_the_textbook_formula(kind: str, method: str) -> None:
    B, K = 2, 4
    game, params = make(kind, B, K, seed=2)
    phi = game.shapley(method, n_permutations=4000, generator=torch.Generator().manual_seed(0))
    for b in range(B):
        expected = ref_shapley(lambda S, b=b: ref_value(kind, params, b, S), K)
        tol = 1e-10 if method != "permutation" else 0.05
        assert phi[b].tolist() == pytest.approx(expected, abs=tol)
    # efficiency: every method, exactly (sampled permutations telescope too)
    assert torch.allclose(phi.sum(dim=1), game.grand_value(), atol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_absent_players_are_null_and_the_others_share_v(kind: str) -> None:
    B, K = 3, 5
    present = torch.tensor([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    game, _ = make(kind, B, K, seed=3, present=present)
    phi = game.shapley()
    assert (phi[~present] == 0).all()
    assert torch.allclose(phi.sum(dim=1), game.grand_value())
    assert float(game.grand_value()[1]) == 0.0
    # the present players get what they get in the smaller game without the absent ones
    small, _ = make(kind, B, K, seed=3)
    keep = [0, 1, 3]
    sub = small.splice(torch.zeros(1, 3, dtype=torch.long), torch.tensor([keep]))
    assert torch.allclose(phi[0, keep], sub.shapley()[0], atol=1e-12)


def test_closed_form_is_chosen_and_can_be_forced_off() -> None:
    game, _ = make("max", 4, 6, seed=4)
    assert torch.allclose(game.shapley("closed"), game.shapley("exact"), atol=1e-12)
    f = FunctionGame(torch.rand(2, 3), lambda x, m: (m.double() * x[:, None, :]).sum(-1))
    with pytest.raises(ValueError, match="no closed-form"):
        f.shapley("closed")
    with pytest.raises(ValueError, match="method must be one of"):
        game.shapley("magic")  # type: ignore[arg-type]


def test_function_game_auto_switches_to_sampling_beyond_twelve_players() -> None:
    K = 14
    x = torch.rand(2, K, dtype=torch.float64)

    def best_two(features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:  # sum of the 2 best members
        picked = torch.where(masks, features[:, None, :], torch.zeros(()))
        return picked.topk(2, dim=-1).values.sum(-1)

    game = FunctionGame(x, best_two)
    phi = game.shapley(n_permutations=64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(phi.sum(1), game.grand_value())
    small = FunctionGame(x[:, :5], best_two)
    expected = [
        ref_shapley(
            lambda S, b=b: (
                sorted([float(x[b, k]) for k in S] + [0, 0])[-2:][0]
                + sorted([float(x[b, k]) for k in S] + [0, 0])[-1]
            ),
            5,
        )
        for b in range(2)
    ]
    assert small.shapley().tolist() == [pytest.approx(e, abs=1e-10) for e in expected]


def test_function_game_must_vanish_on_the_empty_set() -> None:
    with pytest.raises(ValueError, match="v\\(empty\\) = 0"):
        FunctionGame(torch.rand(2, 3), lambda x, m: torch.ones(m.shape[:2]))


def test_sum_game_is_additive_and_efficient() -> None:
    mx, _ = make("max", 3, 4, seed=5)
    add, _ = make("additive", 3, 4, seed=6)
    total = mx + add
    assert isinstance(total, SumGame)
    masks = all_masks(4)
    assert torch.allclose(total.value(masks), mx.value(masks) + add.value(masks))
    assert torch.allclose(total.shapley(), mx.shapley() + add.shapley())
    assert torch.allclose(total.shapley("exact"), total.shapley(), atol=1e-12)
    assert torch.allclose(total.shapley().sum(1), total.grand_value())
    assert len((total + mx).parts) == 3


def test_count_bonus_game_matches_the_formula() -> None:
    """max + bonus * (valid candidates) / K, the recommendation task's utility."""
    scores = torch.tensor([[0.9, 0.0, 0.4]], dtype=torch.float64)
    bonus, K = 0.3, 3
    game = MaxGame(scores) + AdditiveGame(bonus / K * (scores > 0).double())
    assert float(game.grand_value()) == pytest.approx(0.9 + 0.3 * 2 / 3)
    phi = game.shapley()
    # max game, sorted 0 <= 0.4 <= 0.9: phi = (0.4/2 + 0.5, 0, 0.4/2); bonus 0.1 per valid one
    assert phi[0].tolist() == pytest.approx([0.7 + 0.1, 0.0, 0.2 + 0.1])


def test_splice_takes_candidates_from_other_rows_and_context_from_one() -> None:
    covers = torch.tensor(
        [[[1, 0, 0], [0, 1, 0]], [[0, 0, 1], [1, 0, 0]]], dtype=torch.bool
    )  # 2 responses, K=2, C=3
    weights = torch.tensor([[1.0, 2.0, 4.0], [1.0, 2.0, 4.0]])
    game = CoverageGame(covers, weights)
    # row 0's first candidate followed by row 1's second; and row 1's first with nothing
    spliced = game.splice(torch.tensor([[0, 1], [1, 0]]), torch.tensor([[0, 1], [0, -1]]))
    assert spliced.present.tolist() == [[True, True], [True, False]]
    assert spliced.grand_value().tolist() == [1.0, 4.0]
    mx = MaxGame(torch.tensor([[3.0, 1.0], [2.0, 5.0]]))
    both = (mx + AdditiveGame(torch.ones(2, 2))).splice(torch.tensor([[0, 1, 1]]), torch.tensor([[1, 0, 1]]))
    assert both.num_players == 3
    assert both.grand_value().tolist() == [5.0 + 3.0]
    with pytest.raises(ValueError, match="rows must be in"):
        mx.splice(torch.tensor([[2]]), torch.tensor([[0]]))


def test_cat_games_stacks_rows_and_refuses_mixtures() -> None:
    a, _ = make("max", 2, 3, seed=7)
    b, _ = make("max", 1, 3, seed=8)
    both = cat_games([a, b])
    assert both.batch_size == 3
    assert torch.allclose(both.shapley(), torch.cat([a.shapley(), b.shapley()]))
    s = cat_games([a + AdditiveGame(torch.ones(2, 3)), b + AdditiveGame(torch.ones(1, 3))])
    assert torch.allclose(s.grand_value()[:2], (a + AdditiveGame(torch.ones(2, 3))).grand_value())
    c, _ = make("additive", 1, 3, seed=9)
    with pytest.raises(TypeError, match="one game type per batch"):
        cat_games([a, c])
    d, _ = make("max", 1, 4, seed=9)
    with pytest.raises(ValueError, match="players"):
        cat_games([a, d])


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="scores must have at least 2 dimensions"):
        MaxGame(torch.zeros(3))
    with pytest.raises(ValueError, match="scores"):
        MaxGame(torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="present must be \\[B, K\\]"):
        MaxGame(torch.zeros(2, 3), torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="weights must be \\[B, C\\]"):
        CoverageGame(torch.zeros(2, 3, 4, dtype=torch.bool), torch.ones(2, 3))
    with pytest.raises(ValueError, match="masks must be"):
        MaxGame(torch.zeros(2, 3)).value(torch.zeros(5, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="same present"):
        SumGame(parts=(MaxGame(torch.zeros(1, 2)), MaxGame(torch.zeros(1, 2), torch.tensor([[True, False]]))))


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    B=st.integers(1, 3),
    K=st.integers(1, 6),
    seed=st.integers(0, 10_000),
    present_seed=st.integers(0, 10_000),
)
def test_efficiency_and_agreement_hold_for_every_game(
    kind: str, B: int, K: int, seed: int, present_seed: int
) -> None:
    present = torch.rand(B, K, generator=torch.Generator().manual_seed(present_seed)) < 0.7
    game, _ = make(kind, B, K, seed, present)
    phi = game.shapley()
    assert torch.allclose(phi.sum(dim=1), game.grand_value(), atol=1e-9)
    assert torch.allclose(phi, game.shapley("exact"), atol=1e-9)
    assert (phi[~present] == 0).all()
