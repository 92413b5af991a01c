"""The logit-choice game v(S) = tau log(1 + sum_{k in S} exp(u_k / tau)): values against a brute-force
loop, v(empty) = 0, monotone, submodular, the tau -> 0 limit max(0, max u), efficient Shapley values
that agree between enumeration and sampling, absent players, splice and stacking."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from credo.credit.games import AdditiveGame, LogSumExpGame, SumGame, cat_games


def ref_value(u: list[float], tau: float, members: list[int]) -> float:
    return tau * math.log(1.0 + sum(math.exp(u[k] / tau) for k in members))


def all_masks(K: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([False, True], repeat=K)))


def random_game(B: int, K: int, seed: int, tau: float = 0.5, present=None) -> LogSumExpGame:
    g = torch.Generator().manual_seed(seed)
    return LogSumExpGame(torch.randn(B, K, generator=g, dtype=torch.float64), tau, present=present)


@pytest.mark.parametrize("tau", [0.05, 0.5, 3.0])
def test_values_match_brute_force_on_every_coalition(tau: float) -> None:
    B, K = 3, 5
    game = random_game(B, K, seed=1, tau=tau)
    masks = all_masks(K)
    values = game.value(masks)
    assert values.shape == (B, 2**K)
    for b in range(B):
        u = game.utilities[b].tolist()
        for m, mask in enumerate(masks):
            members = [k for k in range(K) if mask[k]]
            assert float(values[b, m]) == pytest.approx(ref_value(u, tau, members), rel=1e-12, abs=1e-12)
    assert torch.equal(game.grand_value(), values[:, -1])


def test_empty_set_is_exactly_zero_and_extreme_utilities_are_stable() -> None:
    game = LogSumExpGame(torch.tensor([[1e4, -1e4, 0.0]], dtype=torch.float64), 0.01)
    values = game.value(all_masks(3))[0]
    assert float(values[0]) == 0.0  # v(empty) = 0 exactly
    assert torch.isfinite(values).all()
    assert float(game.value(torch.tensor([[True, False, False]]))[0, 0]) == pytest.approx(1e4)
    # a hopeless candidate adds (almost) nothing; one of utility 0 adds tau log 2 to the empty set
    assert float(game.value(torch.tensor([[False, True, False]]))[0, 0]) == pytest.approx(0.0, abs=1e-300)
    assert float(game.value(torch.tensor([[False, False, True]]))[0, 0]) == pytest.approx(0.01 * math.log(2))


def test_monotone_and_submodular() -> None:
    B, K = 4, 5
    game = random_game(B, K, seed=2, tau=0.3)
    masks = all_masks(K)
    values = game.value(masks)  # [B, 32]
    index = {tuple(m.tolist()): i for i, m in enumerate(masks)}
    for s, t in itertools.product(range(len(masks)), repeat=2):
        S, T = masks[s], masks[t]
        if not bool((S <= T).all()):
            continue
        assert (values[:, s] <= values[:, t] + 1e-12).all()  # monotone
        for i in range(K):
            if T[i]:
                continue
            Si, Ti = S.clone(), T.clone()
            Si[i] = Ti[i] = True
            gain_s = values[:, index[tuple(Si.tolist())]] - values[:, s]
            gain_t = values[:, index[tuple(Ti.tolist())]] - values[:, t]
            assert (gain_s >= gain_t - 1e-12).all()  # diminishing returns


def test_small_temperature_approaches_max_with_the_outside_option() -> None:
    u = torch.tensor([[0.7, 0.2, -0.4], [-0.3, -0.1, -0.9]], dtype=torch.float64)
    masks = all_masks(3)
    expected = torch.where(
        masks[None].any(-1), torch.where(masks[None], u[:, None, :], -math.inf).amax(-1), 0.0
    ).clamp(min=0.0)  # max(0, max_{k in S} u_k)
    for tau in (1e-1, 1e-2, 1e-3):
        values = LogSumExpGame(u, tau).value(masks)
        gap = values - expected
        assert (gap >= -1e-12).all()  # from above ...
        assert (gap <= tau * math.log(4) + 1e-12).all()  # ... within tau log(|S| + 1)
    assert torch.allclose(LogSumExpGame(u, 1e-4).value(masks), expected, atol=1e-3)


def test_hedging_pays_k_equal_candidates_are_worth_u_plus_tau_log_k() -> None:
    tau = 0.1
    u = torch.full((1, 3), 1.0, dtype=torch.float64)
    game = LogSumExpGame(u, tau)
    one = float(game.value(torch.tensor([[True, False, False]]))[0, 0])
    three = float(game.grand_value()[0])
    assert one == pytest.approx(1.0, abs=1e-4)
    assert three == pytest.approx(1.0 + tau * math.log(3), abs=1e-4)


@pytest.mark.parametrize("tau", [0.1, 1.0])
def test_shapley_is_efficient_and_enumeration_agrees_with_sampling(tau: float) -> None:
    game = random_game(3, 5, seed=4, tau=tau)
    assert game.closed_form_shapley() is None
    with pytest.raises(ValueError, match="no closed-form"):
        game.shapley("closed")
    exact = game.shapley("exact")
    assert torch.allclose(game.shapley(), exact)  # "auto" enumerates for K <= 12
    assert torch.allclose(exact.sum(1), game.grand_value(), atol=1e-12)
    sampled = game.shapley("permutation", n_permutations=2000, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(sampled.sum(1), game.grand_value(), atol=1e-9)  # telescopes exactly
    assert torch.allclose(sampled, exact, atol=0.05 * max(1.0, float(game.grand_value().abs().max())))
    assert (exact >= -1e-12).all()  # monotone game: no negative marginal, no negative value


def test_absent_players_are_null() -> None:
    present = torch.tensor([[1, 0, 1, 1], [0, 0, 0, 0]], dtype=torch.bool)
    game = random_game(2, 4, seed=5, present=present)
    phi = game.shapley()
    assert (phi[~present] == 0).all()
    assert float(game.grand_value()[1]) == 0.0
    assert torch.allclose(phi.sum(1), game.grand_value(), atol=1e-12)
    # the present players share what they share in the game without the absent one
    small = LogSumExpGame(game.utilities[:1, [0, 2, 3]], game.temperature)
    assert torch.allclose(phi[0, [0, 2, 3]], small.shapley()[0], atol=1e-12)


def test_splice_gathers_utilities_and_keeps_the_temperature() -> None:
    u = torch.tensor([[3.0, 1.0], [2.0, 5.0]], dtype=torch.float64)
    game = LogSumExpGame(u, 0.5)
    spliced = game.splice(torch.tensor([[0, 1, 1], [1, 0, 0]]), torch.tensor([[0, 1, 0], [1, -1, 1]]))
    assert isinstance(spliced, LogSumExpGame) and spliced.temperature == 0.5
    assert spliced.utilities.tolist() == [[3.0, 5.0, 2.0], [5.0, 3.0, 1.0]]
    assert spliced.present.tolist() == [[True, True, True], [True, False, True]]
    expected = [ref_value([3.0, 5.0, 2.0], 0.5, [0, 1, 2]), ref_value([5.0, 3.0, 1.0], 0.5, [0, 2])]
    assert spliced.grand_value().tolist() == pytest.approx(expected)
    # with a count bonus (a sum game): both parts gathered alike
    both = game + AdditiveGame(torch.full((2, 2), 0.1, dtype=torch.float64))
    assert isinstance(both, SumGame)
    sb = both.splice(torch.tensor([[0, 1]]), torch.tensor([[1, 1]]))
    assert float(sb.grand_value()[0]) == pytest.approx(ref_value([1.0, 5.0], 0.5, [0, 1]) + 0.2)
    assert torch.allclose(both.shapley().sum(1), both.grand_value())


def test_cat_games_and_to() -> None:
    a, b = random_game(2, 3, seed=6), random_game(1, 3, seed=7)
    both = cat_games([a, b])
    assert isinstance(both, LogSumExpGame) and both.batch_size == 3
    assert torch.allclose(both.grand_value(), torch.cat([a.grand_value(), b.grand_value()]))
    assert torch.equal(a.to("cpu").utilities, a.utilities) and a.to("cpu").temperature == a.temperature


def test_bad_inputs_are_named() -> None:
    u = torch.zeros(2, 3)
    for tau in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature must be a finite float > 0"):
            LogSumExpGame(u, tau)
    with pytest.raises(TypeError, match="temperature"):
        LogSumExpGame(u, torch.tensor(1.0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="utilities must be \\[B, K\\]"):
        LogSumExpGame(torch.zeros(2, 3, 1))
    with pytest.raises(ValueError, match="utilities"):
        LogSumExpGame(torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="present must be \\[B, K\\]"):
        LogSumExpGame(u, 1.0, torch.ones(2, 2, dtype=torch.bool))


def test_stacking_refuses_different_temperatures() -> None:
    a = LogSumExpGame(torch.zeros(1, 2), temperature=0.1)
    b = LogSumExpGame(torch.zeros(1, 2), temperature=0.3)
    assert cat_games([a, LogSumExpGame(torch.ones(1, 2), temperature=0.1)]).temperature == 0.1
    with pytest.raises(ValueError, match="different temperature"):
        cat_games([a, b])
