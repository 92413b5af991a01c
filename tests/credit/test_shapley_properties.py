"""Hypothesis properties: the four Shapley axioms for shapley_exact on random set functions (tables over
the 2^K coalitions), and invariants of the max closed form."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from credo.credit.shapley import shapley_exact, shapley_max, shapley_permutation

from .test_shapley import table_utility

finite = st.floats(min_value=-10, max_value=10, allow_nan=False, allow_infinity=False)


@st.composite
def games(draw: st.DrawFn, min_players: int = 1, max_players: int = 6) -> tuple[int, torch.Tensor]:
    K = draw(st.integers(min_players, max_players))
    values = draw(st.lists(finite, min_size=1 << K, max_size=1 << K))
    return K, torch.tensor(values, dtype=torch.float64)


def _swap_bits(code: int, i: int, j: int) -> int:
    bi, bj = (code >> i) & 1, (code >> j) & 1
    if bi != bj:
        code ^= (1 << i) | (1 << j)
    return code


@settings(max_examples=60, deadline=None)
@given(games())
def test_efficiency(game: tuple[int, torch.Tensor]) -> None:
    K, table = game
    phi = shapley_exact(table_utility(table, K), K)
    assert float(phi.sum()) == pytest.approx(float(table[-1] - table[0]), abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(games(min_players=2), st.data())
def test_symmetry(game: tuple[int, torch.Tensor], data: st.DataObject) -> None:
    K, table = game
    i, j = data.draw(st.lists(st.integers(0, K - 1), min_size=2, max_size=2, unique=True))
    swapped = torch.tensor([float(table[_swap_bits(c, i, j)]) for c in range(1 << K)], dtype=torch.float64)
    symmetric = (table + swapped) / 2  # v(S u i) = v(S u j) for every S without i and j
    phi = shapley_exact(table_utility(symmetric, K), K)
    assert float(phi[i]) == pytest.approx(float(phi[j]), abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(games(min_players=2), st.data())
def test_null_player(game: tuple[int, torch.Tensor], data: st.DataObject) -> None:
    K, table = game
    i = data.draw(st.integers(0, K - 1))
    codes = torch.arange(1 << K)
    null = table[codes & ~(1 << i)]  # v(S) = v(S \ {i}): i never changes the value
    phi = shapley_exact(table_utility(null, K), K)
    assert float(phi[i]) == pytest.approx(0.0, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(games(), st.data(), finite)
def test_additivity(game: tuple[int, torch.Tensor], data: st.DataObject, scale: float) -> None:
    K, v = game
    w = torch.tensor(data.draw(st.lists(finite, min_size=1 << K, max_size=1 << K)), dtype=torch.float64)
    phi_v = shapley_exact(table_utility(v, K), K)
    phi_w = shapley_exact(table_utility(w, K), K)
    phi_sum = shapley_exact(table_utility(v + scale * w, K), K)
    torch.testing.assert_close(phi_sum, phi_v + scale * phi_w, rtol=0, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(games(max_players=5), st.integers(0, 2**31 - 1))
def test_permutation_samples_are_efficient(game: tuple[int, torch.Tensor], seed: int) -> None:
    K, table = game
    phi, _ = shapley_permutation(table_utility(table, K), K, 4, generator=torch.Generator().manual_seed(seed))
    assert float(phi.sum()) == pytest.approx(float(table[-1] - table[0]), abs=1e-9)


score_lists = st.lists(st.sampled_from([-1.5, -1.0, 0.0, 0.25, 0.5, 1.0]) | finite, min_size=1, max_size=12)


@settings(max_examples=100, deadline=None)
@given(score_lists, st.randoms(use_true_random=False))
def test_max_closed_form_invariants(scores: list[float], rng) -> None:
    r = torch.tensor(scores, dtype=torch.float64)
    K = r.numel()
    phi = shapley_max(r)
    # efficiency
    assert float(phi.sum()) == pytest.approx(float(r.max()), abs=1e-9)
    # permutation equivariance
    perm = list(range(K))
    rng.shuffle(perm)
    p = torch.tensor(perm)
    torch.testing.assert_close(shapley_max(r[p]), phi[p], rtol=0, atol=1e-12)
    # order preserving: a higher score never gets less credit; ties get identical credit
    for a in range(K):
        for b in range(K):
            if r[a] == r[b]:
                assert float(phi[a]) == float(phi[b])
            elif r[a] > r[b]:
                assert float(phi[a]) >= float(phi[b]) - 1e-12
    # a common shift c changes each value by c / K (v gains c on every non-empty coalition)
    torch.testing.assert_close(shapley_max(r + 0.75), phi + 0.75 / K, rtol=0, atol=1e-9)
    # positive scaling
    torch.testing.assert_close(shapley_max(2.5 * r), 2.5 * phi, rtol=0, atol=1e-9)
