"""Shapley engine: closed forms against exact enumeration, exact enumeration against the definition
(an average over all K! orders, in plain Python), permutation sampling against exact, set utilities."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from credo.credit.set_utilities import (
    additive_utility,
    coverage_utility,
    facility_location_utility,
    max_utility,
    min_utility,
    relevance_diversity_utility,
    shapley_coverage,
    shapley_facility_location,
)
from credo.credit.shapley import (
    shapley_additive,
    shapley_exact,
    shapley_max,
    shapley_min,
    shapley_permutation,
    shapley_weights,
)

# ---------------------------------------------------------------------------------------------------
# slow obvious references (shared with test_shapley_properties.py)


def table_utility(table: torch.Tensor, K: int):
    """A set function given as a table over the 2^K coalitions (bit k of the index = player k)."""

    def utility(masks: torch.Tensor) -> torch.Tensor:
        codes = (masks.long() << torch.arange(K)).sum(dim=1)
        return table[codes]

    return utility


def shapley_by_orders(value_of, K: int) -> list[float]:
    """The definition: average over all K! orders of each player's marginal contribution."""
    phi = [0.0] * K
    orders = list(itertools.permutations(range(K)))
    for order in orders:
        members: set[int] = set()
        before = value_of(frozenset(members))
        for player in order:
            members.add(player)
            after = value_of(frozenset(members))
            phi[player] += after - before
            before = after
    return [p / len(orders) for p in phi]


def max_of(scores: list[float]):
    return lambda s: max((scores[k] for k in s), default=0.0)


def shapley_max_quadratic(scores: list[float]) -> list[float]:
    """The paper's O(K^2) form: sort, then each player sums the increments up to its rank."""
    K = len(scores)
    order = sorted(range(K), key=lambda k: scores[k])
    ranked = [0.0] + [scores[k] for k in order]
    phi = [0.0] * K
    for m, player in enumerate(order, start=1):
        phi[player] = sum((ranked[j] - ranked[j - 1]) / (K - j + 1) for j in range(1, m + 1))
    return phi


# ---------------------------------------------------------------------------------------------------
# worked examples


def test_worked_example_binary_ties() -> None:
    phi = shapley_max(torch.tensor([1.0, 0.0, 1.0, 0.0]))
    assert torch.equal(phi, torch.tensor([0.5, 0.0, 0.5, 0.0]))


def test_worked_example_graded() -> None:
    phi = shapley_max(torch.tensor([0.9, 0.5, 0.1], dtype=torch.float64))
    expected = torch.tensor([0.1 / 3 + 0.4 / 2 + 0.4, 0.1 / 3 + 0.4 / 2, 0.1 / 3], dtype=torch.float64)
    torch.testing.assert_close(phi, expected, rtol=0, atol=1e-15)
    torch.testing.assert_close(phi, torch.tensor([19 / 30, 7 / 30, 1 / 30], dtype=torch.float64))
    assert float(phi.sum()) == pytest.approx(0.9, abs=1e-15)


def test_binary_scores_give_one_over_m_to_each_winner() -> None:
    for K in range(1, 9):
        for m in range(K + 1):
            scores = torch.zeros(K, dtype=torch.float64)
            scores[torch.randperm(K)[:m]] = 1.0
            phi = shapley_max(scores)
            expected = scores / m if m else scores
            torch.testing.assert_close(phi, expected, rtol=0, atol=1e-15)


# ---------------------------------------------------------------------------------------------------
# closed forms against exact enumeration


def _awkward_scores(K: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """Games with ties, zeros and negatives: integer-valued halves in [-2, 2] plus continuous ones."""
    ties = torch.randint(-4, 5, (n, K), generator=generator).double() / 2
    continuous = torch.randn((n, K), generator=generator, dtype=torch.float64)
    zeros = torch.zeros((1, K), dtype=torch.float64)
    negatives = -continuous.abs()[:2]
    return torch.cat([ties, continuous, zeros, negatives])


@pytest.mark.parametrize("K", range(1, 11))
def test_shapley_max_equals_exact(K: int) -> None:
    generator = torch.Generator().manual_seed(K)
    scores = _awkward_scores(K, 12, generator)
    exact = shapley_exact(max_utility(scores), K)  # all games in one enumeration
    assert exact.shape == scores.shape
    torch.testing.assert_close(shapley_max(scores), exact, rtol=0, atol=1e-12)


@pytest.mark.parametrize("K", [1, 2, 3, 5])
def test_exact_equals_definition_over_all_orders(K: int) -> None:
    generator = torch.Generator().manual_seed(100 + K)
    table = torch.randn(1 << K, generator=generator, dtype=torch.float64)
    table[0] = 0.3  # v(empty) != 0 on purpose

    def value_of(members: frozenset[int]) -> float:
        return float(table[sum(1 << k for k in members)])

    expected = torch.tensor(shapley_by_orders(value_of, K), dtype=torch.float64)
    torch.testing.assert_close(shapley_exact(table_utility(table, K), K), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("K", [1, 2, 4, 6])
def test_shapley_max_equals_definition_and_quadratic_form(K: int) -> None:
    generator = torch.Generator().manual_seed(K)
    for scores in _awkward_scores(K, 3, generator).tolist():
        expected = shapley_by_orders(max_of(scores), K)
        got = shapley_max(torch.tensor(scores, dtype=torch.float64)).tolist()
        assert got == pytest.approx(expected, abs=1e-12)
        assert shapley_max_quadratic(scores) == pytest.approx(expected, abs=1e-12)


def test_negative_scores_closed_form_is_the_shapley_value() -> None:
    scores = torch.tensor([-1.0, -3.0, -2.0], dtype=torch.float64)
    phi = shapley_max(scores)
    # by hand: sorted -3, -2, -1; increments -3, 1, 1; phi_(1) = -1, phi_(2) = -1 + 1/2, phi_(3) = -1/2 + 1
    torch.testing.assert_close(phi, torch.tensor([0.5, -1.0, -0.5], dtype=torch.float64))
    assert float(phi.sum()) == pytest.approx(-1.0)
    torch.testing.assert_close(phi, shapley_exact(max_utility(scores), 3))


def test_ties_get_bit_identical_values() -> None:
    generator = torch.Generator().manual_seed(0)
    base = torch.rand((500, 3), generator=generator)
    scores = torch.cat([base, base[:, :2], base[:, :1]], dim=1)  # columns 0, 3, 5 tie; 1, 4 tie
    perm = torch.randperm(6, generator=generator)
    phi = shapley_max(scores[:, perm])[:, perm.argsort()]
    assert torch.equal(phi[:, 0], phi[:, 3]) and torch.equal(phi[:, 0], phi[:, 5])
    assert torch.equal(phi[:, 1], phi[:, 4])


def test_leading_dims_and_efficiency() -> None:
    generator = torch.Generator().manual_seed(1)
    scores = torch.randn((2, 3, 7), generator=generator, dtype=torch.float64)
    phi = shapley_max(scores)
    assert phi.shape == scores.shape
    torch.testing.assert_close(phi.sum(-1), scores.amax(-1))
    flat = shapley_max(scores.reshape(-1, 7)).reshape(2, 3, 7)
    torch.testing.assert_close(phi, flat, rtol=0, atol=0)


def test_dtypes() -> None:
    assert shapley_max(torch.tensor([1, 0, 2])).dtype == torch.float32
    assert shapley_max(torch.tensor([1.0, 2.0], dtype=torch.float64)).dtype == torch.float64
    assert shapley_max(torch.tensor([1.0, 2.0], dtype=torch.bfloat16)).dtype == torch.float32
    assert shapley_max(torch.zeros(3, 0)).shape == (3, 0)


def test_present_mask_plays_the_subgame() -> None:
    generator = torch.Generator().manual_seed(2)
    scores = torch.randn((40, 6), generator=generator, dtype=torch.float64)
    present = torch.rand((40, 6), generator=generator) < 0.6
    present[0] = False
    present[1] = True
    phi = shapley_max(scores, present)
    for b in range(40):
        keep = present[b].nonzero().flatten()
        expected = torch.zeros(6, dtype=torch.float64)
        if keep.numel():
            expected[keep] = shapley_exact(max_utility(scores[b, keep]), keep.numel())
        torch.testing.assert_close(phi[b], expected, rtol=0, atol=1e-12)
    assert torch.equal(phi[~present], torch.zeros_like(phi[~present]))
    torch.testing.assert_close(phi[1], shapley_max(scores[1]), rtol=0, atol=0)


@pytest.mark.parametrize("K", [1, 3, 6])
def test_min_and_additive_equal_exact(K: int) -> None:
    generator = torch.Generator().manual_seed(3)
    scores = _awkward_scores(K, 5, generator)
    torch.testing.assert_close(shapley_min(scores), shapley_exact(min_utility(scores), K), rtol=0, atol=1e-12)
    torch.testing.assert_close(
        shapley_additive(scores), shapley_exact(additive_utility(scores), K), rtol=0, atol=1e-12
    )
    present = torch.rand(scores.shape, generator=generator) < 0.5
    assert torch.equal(shapley_additive(scores, present), torch.where(present, scores, 0.0))


def test_shapley_max_on_device(device: torch.device) -> None:
    scores = torch.tensor([[0.9, 0.5, 0.1], [1.0, 0.0, 1.0]], device=device)
    phi = shapley_max(scores)
    assert phi.device.type == device.type
    torch.testing.assert_close(phi.cpu(), shapley_max(scores.cpu()))


# ---------------------------------------------------------------------------------------------------
# exact enumeration


def test_weights_are_exact_and_do_not_overflow() -> None:
    for K in (1, 2, 7, 20, 60):
        w_in, w_out = shapley_weights(K)
        # over coalitions containing i: sum_s C(K-1, s-1) w_in[s] = 1; not containing i: likewise
        total_in = sum(math.comb(K - 1, s - 1) * float(w_in[s]) for s in range(1, K + 1))
        total_out = sum(math.comb(K - 1, s) * float(w_out[s]) for s in range(K))
        assert total_in == pytest.approx(1.0, rel=1e-12) and total_out == pytest.approx(1.0, rel=1e-12)
        assert bool(torch.isfinite(w_in).all()) and bool((w_in[1:] > 0).all())
    w_in, _ = shapley_weights(4)
    assert float(w_in[2]) == pytest.approx(math.factorial(1) * math.factorial(2) / math.factorial(4))


def test_exact_chunking_and_batched_games() -> None:
    generator = torch.Generator().manual_seed(4)
    K = 7
    tables = torch.randn((1 << K, 3, 2), generator=generator, dtype=torch.float64)

    def utility(masks: torch.Tensor) -> torch.Tensor:
        return tables[(masks.long() << torch.arange(K)).sum(dim=1)]  # [M, 3, 2]

    whole = shapley_exact(utility, K)
    assert whole.shape == (3, 2, K)
    torch.testing.assert_close(shapley_exact(utility, K, batch_size=5), whole, rtol=0, atol=1e-13)
    for g in range(3):
        for h in range(2):
            single = shapley_exact(table_utility(tables[:, g, h], K), K)
            torch.testing.assert_close(whole[g, h], single, rtol=0, atol=1e-13)


@pytest.mark.parametrize("K", [12, 16])
def test_exact_many_players_max_game(K: int) -> None:
    scores = torch.rand((2, K), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    torch.testing.assert_close(shapley_exact(max_utility(scores), K), shapley_max(scores), rtol=0, atol=1e-12)


def test_exact_float32_utility_gives_float32() -> None:
    scores = torch.rand(5)
    assert shapley_exact(max_utility(scores), 5).dtype == torch.float32


# ---------------------------------------------------------------------------------------------------
# permutation sampling


def _random_game(K: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    table = torch.randn(1 << K, generator=generator, dtype=torch.float64)
    table[0] = 0.0
    return table, shapley_exact(table_utility(table, K), K)


@pytest.mark.parametrize("antithetic", [True, False])
def test_permutation_within_four_standard_errors(antithetic: bool) -> None:
    K = 6
    table, exact = _random_game(K, 6)
    phi, stderr = shapley_permutation(
        table_utility(table, K), K, 4000, antithetic=antithetic, generator=torch.Generator().manual_seed(0)
    )
    assert bool((stderr > 0).all())
    assert bool(((phi - exact).abs() <= 4 * stderr).all()), (phi - exact) / stderr


def test_permutation_standard_error_shrinks_like_one_over_sqrt_n() -> None:
    K = 8
    scores = torch.rand((1, K), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    utility = max_utility(scores)
    _, se_small = shapley_permutation(utility, K, 2000, generator=torch.Generator().manual_seed(1))
    _, se_large = shapley_permutation(utility, K, 8000, generator=torch.Generator().manual_seed(2))
    ratio = se_small / se_large
    assert bool(((ratio > 1.7) & (ratio < 2.3)).all()), ratio


def test_permutation_is_efficient_per_sample() -> None:
    K = 9
    table, _ = _random_game(K, 8)
    table[0] = -0.7
    for n in (2, 6):
        phi, _ = shapley_permutation(
            table_utility(table, K), K, n, generator=torch.Generator().manual_seed(n)
        )
        assert float(phi.sum()) == pytest.approx(float(table[-1] - table[0]), abs=1e-12)


def test_permutation_reproducible_across_batch_sizes_and_one_pair_exact_for_two_players() -> None:
    K = 5
    table, _ = _random_game(K, 9)
    utility = table_utility(table, K)
    a = shapley_permutation(utility, K, 200, generator=torch.Generator().manual_seed(3))
    b = shapley_permutation(utility, K, 200, generator=torch.Generator().manual_seed(3), batch_size=7)
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=1e-13)
    # K = 2: an order and its reverse are the only two orders, so one antithetic pair is exact
    table2, exact2 = _random_game(2, 10)
    phi2, se2 = shapley_permutation(table_utility(table2, 2), 2, 2)
    torch.testing.assert_close(phi2, exact2, rtol=0, atol=1e-13)
    assert bool(torch.isnan(se2).all())  # one i.i.d. sample: no standard error


def test_permutation_batched_games_and_one_player() -> None:
    K = 6
    scores = torch.rand((3, K), generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    phi, stderr = shapley_permutation(
        max_utility(scores), K, 3000, generator=torch.Generator().manual_seed(4)
    )
    assert phi.shape == stderr.shape == (3, K)
    assert bool(((phi - shapley_max(scores)).abs() <= 4 * stderr + 1e-12).all())
    one, _ = shapley_permutation(max_utility(torch.tensor([[-2.0]])), 1, 4)
    assert one.tolist() == [[-2.0]]


def test_permutation_antithetic_helps_on_the_max_game() -> None:
    K = 8
    scores = torch.rand((20, K), generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    _, se_anti = shapley_permutation(max_utility(scores), K, 2000, generator=torch.Generator().manual_seed(5))
    _, se_plain = shapley_permutation(
        max_utility(scores), K, 2000, antithetic=False, generator=torch.Generator().manual_seed(5)
    )
    assert float(se_anti.mean()) < float(se_plain.mean())


# ---------------------------------------------------------------------------------------------------
# structured set utilities


def test_coverage_closed_form_equals_exact() -> None:
    generator = torch.Generator().manual_seed(13)
    K, C = 7, 9
    covers = torch.rand((4, K, C), generator=generator) < 0.3
    weights = torch.rand((4, C), generator=generator, dtype=torch.float64) - 0.2  # some negative
    phi = shapley_coverage(covers, weights)
    torch.testing.assert_close(phi, shapley_exact(coverage_utility(covers, weights), K), rtol=0, atol=1e-12)
    covered = covers.any(dim=1)
    torch.testing.assert_close(phi.sum(-1), (weights * covered).sum(-1))


def test_coverage_by_hand() -> None:
    covers = torch.tensor([[1, 1, 0], [0, 1, 0], [0, 0, 0]], dtype=torch.bool)
    weights = torch.tensor([3.0, 2.0, 5.0])
    # topic 0 -> candidate 0 alone (3), topic 1 shared by 0 and 1 (1 each), topic 2 uncovered
    assert shapley_coverage(covers, weights).tolist() == [4.0, 1.0, 0.0]


def test_facility_location_closed_form_equals_exact_and_generalises_coverage() -> None:
    generator = torch.Generator().manual_seed(14)
    K, C = 6, 4
    similarity = torch.rand((3, K, C), generator=generator, dtype=torch.float64)
    weights = torch.rand((3, C), generator=generator, dtype=torch.float64)
    phi = shapley_facility_location(similarity, weights)
    exact = shapley_exact(facility_location_utility(similarity, weights), K)
    torch.testing.assert_close(phi, exact, rtol=0, atol=1e-12)
    covers = similarity > 0.5
    torch.testing.assert_close(
        shapley_facility_location(covers.double(), weights),
        shapley_coverage(covers, weights),
        rtol=0,
        atol=1e-12,
    )


def test_relevance_diversity_through_the_engine() -> None:
    generator = torch.Generator().manual_seed(15)
    K, D = 6, 3
    relevance = torch.rand((2, K), generator=generator, dtype=torch.float64)
    embeddings = torch.randn((2, K, D), generator=generator, dtype=torch.float64)
    no_bonus = shapley_exact(relevance_diversity_utility(relevance, embeddings, 0.0), K)
    torch.testing.assert_close(no_bonus, shapley_max(relevance), rtol=0, atol=1e-12)
    utility = relevance_diversity_utility(relevance, embeddings, 0.5)
    exact = shapley_exact(utility, K)
    full = utility(torch.ones((1, K), dtype=torch.bool))[0]
    torch.testing.assert_close(exact.sum(-1), full)
    # the bonus by hand for a pair: log det(I + E E^T) of two members
    pair = torch.tensor([[True, True] + [False] * (K - 2)])
    e = embeddings[0, :2]
    by_hand = relevance[0, :2].max() + 0.5 * torch.logdet(torch.eye(2, dtype=torch.float64) + e @ e.T)
    torch.testing.assert_close(utility(pair)[0, 0], by_hand)
    # duplicating a candidate's embedding lowers the diversity credit of both copies
    dup = embeddings.clone()
    dup[0, 1] = dup[0, 0]
    phi_dup = shapley_exact(relevance_diversity_utility(relevance, dup, 0.5), K)
    assert float(phi_dup[0, 0]) < float(exact[0, 0])
    sampled, stderr = shapley_permutation(utility, K, 2000, generator=torch.Generator().manual_seed(6))
    assert bool(((sampled - exact).abs() <= 4 * stderr + 1e-12).all())


# ---------------------------------------------------------------------------------------------------
# bad input


def test_bad_input_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="scores"):
        shapley_max(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="scores"):
        shapley_max(torch.tensor([1.0, float("inf")]))
    with pytest.raises(TypeError, match="scores"):
        shapley_max([1.0, 2.0])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="present"):
        shapley_max(torch.ones(2, 3), present=torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="K"):
        shapley_exact(max_utility(torch.ones(3)), 0)
    with pytest.raises(TypeError, match="K"):
        shapley_exact(max_utility(torch.ones(3)), 3.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="K=40"):
        shapley_exact(max_utility(torch.ones(40)), 40)
    with pytest.raises(ValueError, match="utility"):
        shapley_exact(lambda masks: torch.zeros(3), 4)
    with pytest.raises(ValueError, match="utility values"):
        shapley_exact(lambda masks: torch.full((masks.shape[0],), float("nan")), 3)
    with pytest.raises(ValueError, match="masks"):
        max_utility(torch.ones(3))(torch.ones((2, 4), dtype=torch.bool))
    with pytest.raises(ValueError, match="n_permutations"):
        shapley_permutation(max_utility(torch.ones(3)), 3, 5)
    with pytest.raises(ValueError, match="n_permutations"):
        shapley_permutation(max_utility(torch.ones(3)), 3, 0)
    with pytest.raises(ValueError, match="weights"):
        shapley_coverage(torch.ones((3, 4), dtype=torch.bool), torch.ones(3))
    with pytest.raises(ValueError, match="covers"):
        shapley_coverage(torch.full((3, 4), 2.0), torch.ones(4))
    with pytest.raises(ValueError, match="diversity_weight"):
        relevance_diversity_utility(torch.ones(3), torch.ones(3, 2), -1.0)


# --------------------------------------------------------------------------------------------------
# The sort-free dense form of the max game


def _dense_case(K: int, seed: int, lead: tuple[int, ...] = (40, 3)) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 scores with ties, zeros and negatives (halves in [-3, 3]), and a random present mask."""
    g = torch.Generator().manual_seed(seed)
    scores = (torch.randn((*lead, K), generator=g, dtype=torch.float64) * 2).round().clamp(-6, 6) / 2
    present = torch.rand((*lead, K), generator=g) < 0.7
    return scores, present


@pytest.mark.parametrize("K", range(1, 17))
def test_shapley_max_dense_equals_sort(K: int) -> None:
    from credo.credit.shapley import shapley_max_dense

    scores, present = _dense_case(K, seed=K)
    for mask in (None, present):
        sort = shapley_max(scores, mask, method="sort")
        dense = shapley_max_dense(scores, mask)
        assert dense.dtype == torch.float64 and dense.shape == scores.shape
        assert torch.allclose(dense, sort, rtol=0, atol=1e-12)
        assert torch.allclose(shapley_max(scores, mask, method="dense"), sort, rtol=0, atol=1e-12)
    # absent players get exactly 0; efficiency over the present ones (max of present, 0 if none)
    dense = shapley_max_dense(scores, present)
    assert bool((dense[~present] == 0).all())
    best = torch.where(present, scores, torch.full_like(scores, -math.inf)).amax(-1)
    best = torch.where(present.any(-1), best, torch.zeros_like(best))
    assert torch.allclose(dense.sum(-1), best, rtol=0, atol=1e-12)
    assert torch.allclose(shapley_max_dense(scores).sum(-1), scores.amax(-1), rtol=0, atol=1e-12)


@pytest.mark.parametrize("K", [1, 2, 5, 9])
def test_shapley_max_dense_equals_exact(K: int) -> None:
    from credo.credit.shapley import shapley_max_dense

    scores, _ = _dense_case(K, seed=100 + K, lead=(6,))
    exact = shapley_exact(max_utility(scores), K)
    assert torch.allclose(shapley_max_dense(scores), exact, rtol=0, atol=1e-12)


def test_shapley_max_dense_ties_bit_identical_and_examples() -> None:
    from credo.credit.shapley import shapley_max_dense

    scores, present = _dense_case(12, seed=7, lead=(200,))
    for mask in (None, present):
        phi = shapley_max_dense(scores, mask)
        live = torch.ones_like(present) if mask is None else present
        same = (scores[..., :, None] == scores[..., None, :]) & live[..., :, None] & live[..., None, :]
        # tied present players get bit-identical values
        assert bool(((phi[..., :, None] == phi[..., None, :]) | ~same).all())
    phi = shapley_max_dense(torch.tensor([0.9, 0.5, 0.1], dtype=torch.float64))
    assert torch.allclose(phi, torch.tensor([19 / 30, 7 / 30, 1 / 30], dtype=torch.float64), atol=1e-15)
    phi = shapley_max_dense(torch.tensor([1.0, 0.0, 1.0, 0.0]))
    assert phi.dtype == torch.float32 and phi.tolist() == [0.5, 0.0, 0.5, 0.0]
    assert shapley_max_dense(torch.zeros(3, 0)).shape == (3, 0)
    all_absent = shapley_max_dense(torch.ones(2, 4), torch.zeros(2, 4, dtype=torch.bool))
    assert bool((all_absent == 0).all())


def test_shapley_max_dense_min_game_and_checks() -> None:
    from credo.credit.shapley import shapley_max_dense

    scores, present = _dense_case(6, seed=3)
    assert torch.allclose(
        -shapley_max_dense(-scores, present), shapley_min(scores, present), rtol=0, atol=1e-12
    )
    with pytest.raises(ValueError, match="NaN/inf"):
        shapley_max_dense(torch.tensor([1.0, math.nan]))
    with pytest.raises(ValueError, match="method"):
        shapley_max(scores, method="cumsum")  # type: ignore[arg-type]


def test_shapley_max_auto_picks_dense_on_cuda_for_small_K(monkeypatch: pytest.MonkeyPatch) -> None:
    """``method="auto"``: the dense form on CUDA for K <= 16, the sort everywhere else (checked on the
    CPU by faking the device type that the choice reads)."""
    import credo.credit.shapley as shapley_module

    calls: list[int] = []
    real_dense = shapley_module._shapley_max_dense

    def spy(scores: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
        calls.append(scores.shape[-1])
        return real_dense(scores, present)

    monkeypatch.setattr(shapley_module, "_shapley_max_dense", spy)
    small, _ = _dense_case(8, seed=1)
    large, _ = _dense_case(17, seed=2)
    shapley_max(small)
    shapley_max(large)
    assert calls == []  # CPU: sort
    shapley_max(small, method="dense")
    assert calls == [8]

    # the rule itself (a device object needs no GPU), then the routing under a rule that says yes
    assert shapley_module._auto_dense(torch.device("cuda"), 1)
    assert shapley_module._auto_dense(torch.device("cuda", 0), 16)
    assert not shapley_module._auto_dense(torch.device("cuda"), 17)
    assert not shapley_module._auto_dense(torch.device("cpu"), 8)
    monkeypatch.setattr(shapley_module, "_auto_dense", lambda device, K: K <= 16)
    calls.clear()
    for scores in (small, large):
        shapley_max(scores)
        shapley_max(scores, method="sort")
    assert calls == [8]  # auto where the rule says dense: K=8 only; never with method="sort"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
@pytest.mark.parametrize("K", [1, 4, 8, 16])
def test_shapley_max_dense_on_cuda(K: int) -> None:
    scores, present = _dense_case(K, seed=K, lead=(1000,))
    for mask in (None, present):
        sort = shapley_max(scores, mask, method="sort")
        auto = shapley_max(scores.cuda(), None if mask is None else mask.cuda())
        assert torch.allclose(auto.cpu(), sort, rtol=0, atol=1e-12)
