"""Shapley values of set utilities, batched over many sets at once.

A set of K players (the K candidates of one LLM answer) shares a set-level value ``v``; the Shapley
value gives player i its average marginal contribution over all orders in which the set can be built:

    phi_i = sum_{S subset N \\ {i}} |S|! (K - |S| - 1)! / K! * (v(S u {i}) - v(S))

It is the only split with the four axioms: efficiency (sum_i phi_i = v(N) - v(empty)), symmetry
(players with equal marginals everywhere get equal values), null player (a player who never adds
anything gets 0) and additivity (phi[v + w] = phi[v] + phi[w]).

This module has:

* closed forms, vectorised over leading dimensions: :func:`shapley_max` (v(S) = max_{k in S} r_k, the
  utility of ShapE-GRPO, "Shapley-Enhanced Reward Allocation for Multi-Candidate LLM Training",
  arXiv:2603.29871; by sort + cumsum, sort-free by :func:`shapley_max_dense`, or sort-free in one fused
  Triton kernel on CUDA), :func:`shapley_min` and :func:`shapley_additive`;
* :func:`shapley_exact`: any utility, all 2^K coalitions enumerated in vectorised chunks (K <= ~20);
* :func:`shapley_permutation`: unbiased Monte Carlo over permutations, with antithetic pairs and a
  standard error per player, for any K.

A *utility* is a callable taking a bool coalition mask ``[M, K]`` (row m is the coalition S_m, True
for members) and returning ``[M]`` values, or ``[M, *game_shape]`` for many games evaluated at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from credo.credit import _triton_shapley
from credo.credit._checks import as_bool, check_finite, check_tensor, float_dtype

Utility = Callable[[Tensor], Tensor]

MAX_EXACT_PLAYERS = 26  # 2^26 coalitions; beyond this shapley_exact refuses (use shapley_permutation)
DENSE_MAX_PLAYERS = 16  # shapley_max(method="auto") uses the sort-free O(K^2) form on CUDA up to this K
TRITON_MAX_PLAYERS = _triton_shapley.MAX_PLAYERS  # ... and the fused Triton kernel, when Triton is there
_METHODS = ("auto", "sort", "dense", "triton")


def _check_scores(scores: Tensor, present: Tensor | None, validate: bool) -> tuple[Tensor, Tensor | None]:
    check_tensor("scores", scores)
    if scores.dim() == 0:
        raise ValueError("scores must be [..., K], got a 0-d tensor")
    if scores.dtype == torch.bool or scores.is_complex():
        raise TypeError(f"scores must be a real tensor, got dtype {scores.dtype}")
    if validate:
        check_finite("scores", scores)
    if present is None:
        return scores, None
    check_tensor("present", present)
    if present.shape != scores.shape:
        raise ValueError(
            f"present must have the shape of scores {tuple(scores.shape)}, got {tuple(present.shape)}"
        )
    return scores, as_bool("present", present)


def _auto_dense(device: torch.device, K: int) -> bool:
    """``method="auto"``: the sort-free dense form on CUDA for K <= DENSE_MAX_PLAYERS."""
    return device.type == "cuda" and K <= DENSE_MAX_PLAYERS


def _auto_triton(device: torch.device, K: int) -> bool:
    """``method="auto"``: the fused Triton kernel on CUDA for K <= TRITON_MAX_PLAYERS, if installed."""
    return device.type == "cuda" and K <= TRITON_MAX_PLAYERS and _triton_shapley.AVAILABLE


def shapley_max(
    scores: Tensor,
    present: Tensor | None = None,
    validate: bool = True,
    method: Literal["auto", "sort", "dense", "triton"] = "auto",
) -> Tensor:
    """Shapley values of the max game, closed form: v(S) = max_{k in S} r_k, v(empty) = 0.

    Sort each set ascending, r_(1) <= ... <= r_(K), and put r_(0) = 0 (= v(empty)). Then

        phi_(m) = sum_{j=1..m} (r_(j) - r_(j-1)) / (K - j + 1)

    Why (and why it holds for every real score, negatives included): for a non-empty S,
    max(S) = r_(1) + sum_{j>=2} (r_(j) - r_(j-1)) * [S meets U_j], with U_j the players of rank >= j;
    and for S empty both sides are 0 when the first term is written r_(1) * [S meets U_1]. So
    v = sum_j d_j * u_j with d_j = r_(j) - r_(j-1) (r_(0) = 0) and u_j(S) = [S meets U_j], a game
    whose Shapley value is 1/|U_j| = 1/(K - j + 1) for each member of U_j and 0 for the others.
    Additivity gives the formula. With negative scores the first increment d_1 = r_(1) is negative:
    the least player's value is r_(1)/K, because joining the empty coalition *lowers* v from 0 to
    r_(1) for every player first in line. Efficiency: sum_k phi_k = r_(K) = max_k r_k.

    Ties get bit-identical values (a tie adds a zero increment to the prefix sum), and binary scores
    give 1/m to each of m winners. O(K log K) per set (a sort and a cumulative sum; the paper's form
    is O(K^2)), with no Python loop over sets.

    Which method ``"auto"`` picks, and why (measured on an H200, 10M sets of float32 scores, against
    the bandwidth bound: read 4 bytes x K and write 4 bytes x K per set at 4.8 TB/s, 0.13 ms at K=8):
    a GPU sorts short rows slowly (sort: 62-72 ms for K=4..32), and the torch dense form, sort-free but
    materialising ``[N, K, K]`` comparisons in memory, takes 9 ms at K=4, 34 ms at K=8, 131 ms at
    K=16 and 522 ms at K=32. The Triton kernel keeps a set in one lane's registers (one read of the
    scores, one write of phi) and sorts it with a bitonic network there: 0.14 ms at K=4 (2.1x the
    bound), 0.25 ms at K=8 (1.9x), 1.07 ms at K=16 (4.0x) and 4.9 ms at K=32 (9.2x)
    (:mod:`credo.credit._triton_shapley` has the kernels and their measurements).
    So on CUDA:
    ``"triton"`` for K <= 32 when Triton is installed, else ``"dense"`` for K <= 16, else ``"sort"``;
    on the CPU ``"sort"`` (the fastest there).

    Args:
        scores: ``[..., K]`` real scores r_k.
        present: optional ``[..., K]`` bool; absent players (unparsable candidates) are left out of
            the game: the game is played by the present players only (K = their number), and absent
            players get exactly 0. A set with no present player gets all zeros.
        validate: check for NaN/inf (a device sync); pass False in a hot loop on trusted input.
        method: ``"sort"`` (sort + cumulative sum, O(K log K) per set), ``"dense"``
            (:func:`shapley_max_dense`, sort-free pairwise comparisons, O(K^2) per set, ``[..., K, K]``
            in memory), ``"triton"`` (one fused Triton kernel, a set per lane in registers: the
            dense formula for K <= 8, a sorting network above; K <= 32, CUDA, or the CPU under
            ``TRITON_INTERPRET=1``), or ``"auto"``:
            triton on CUDA with K <= 32 when Triton is installed, else dense on CUDA with K <= 16,
            else sort (see above). All give the same values up to rounding (about 1e-15 relative in
            float64, 1e-7 in float32), bit-identical values for ties, and exactly 0 for absent players.

    Returns:
        phi: ``[..., K]`` in ``float_dtype(scores)`` (float64 in, float64 out; otherwise float32).
    """
    if method not in _METHODS:
        raise ValueError(f"method must be 'auto', 'sort', 'dense' or 'triton', got {method!r}")
    scores, present = _check_scores(scores, present, validate)
    K = scores.shape[-1]
    if method == "triton" or (method == "auto" and _auto_triton(scores.device, K)):
        return _shapley_max_triton(scores, present)
    if method == "dense" or (method == "auto" and _auto_dense(scores.device, K)):
        return _shapley_max_dense(scores, present)
    dtype = float_dtype(scores)
    values = scores.to(dtype)
    if K == 0:
        return values.clone()
    if present is None:
        # Tie order does not matter: tied players add a zero increment, so they get the same value.
        sorted_values, order = values.sort(dim=-1)
    else:
        # Absent players sort first with value 0: their increments are 0, they receive 0, and the
        # first present player's increment is r - 0 with weight 1/(K_present) as it should be.
        key = torch.where(present, values, torch.full_like(values, -math.inf))
        order = key.argsort(dim=-1)
        sorted_values = torch.where(present, values, torch.zeros_like(values)).gather(-1, order)
    previous = torch.cat([torch.zeros_like(sorted_values[..., :1]), sorted_values[..., :-1]], dim=-1)
    # 1 / (K - j + 1) for j = 1..K
    weights = 1.0 / torch.arange(K, 0, -1, dtype=dtype, device=values.device)
    phi_sorted = ((sorted_values - previous) * weights).cumsum(dim=-1)
    return torch.empty_like(phi_sorted).scatter_(-1, order, phi_sorted)


def shapley_max_dense(scores: Tensor, present: Tensor | None = None, validate: bool = True) -> Tensor:
    """:func:`shapley_max` without a sort: pairwise comparisons ``[..., K, K]``, O(K^2) per set.

    The sorted form sums, for the player of rank m, the increments d_j / (K - j + 1) of ranks j <= m
    (r_(0) = 0). Group the ranks by distinct score level instead: a level t held by c_t present
    players (its multiplicity) adds one increment t - prev(t) (prev(t): the largest present score
    below t, or 0 = v(empty) for the lowest level), with weight 1 / n_ge(t) (n_ge(t): the number of
    present players scoring >= t, i.e. K - j + 1 at the level's first rank); the tied ranks after
    the first add zero increments. Summing over *players* j instead of levels, each of the c_j
    players at a level carries 1 / c_j of it:

        phi_i = sum_{j present, r_j <= r_i} (r_j - prev(r_j)) / (n_ge(r_j) * c(r_j))

    Everything is a masked reduction over ``[..., K, K]`` comparisons: n_ge and c are counts, prev a
    masked max, phi a masked sum. Tied players have identical comparison rows, so they get
    bit-identical values (as with the sort). Efficiency: sum_i phi_i = sum_j (r_j - prev(r_j)) / c_j
    = the sum of the level increments = max_k r_k. Agreement with the sort form is up to rounding.

    No sort and no data-dependent shapes: a handful of elementwise kernels and reductions (and one
    graph for ``torch.compile``); memory O(K^2) per set. Worth it on a GPU for small K (there
    ``shapley_max`` picks it for K <= 16 when Triton is not installed; with Triton it runs the same
    formula fused in one kernel, ``method="triton"``); on the CPU the sort form is faster.

    Args and result as in :func:`shapley_max`.
    """
    scores, present = _check_scores(scores, present, validate)
    return _shapley_max_dense(scores, present)


def _shapley_max_triton(scores: Tensor, present: Tensor | None) -> Tensor:
    """One Triton kernel (:mod:`credo.credit._triton_shapley`), one set per lane in registers: the
    dense formula's K^2 comparisons for K <= 8, a sorting network above. ``[..., K]`` in, ``[..., K]`` out in
    ``float_dtype(scores)``; K <= 32; CUDA, or the CPU under TRITON_INTERPRET=1."""
    return _triton_shapley.shapley_max(scores, present, float_dtype(scores))


def _shapley_max_dense(scores: Tensor, present: Tensor | None) -> Tensor:
    dtype = float_dtype(scores)
    values = scores.to(dtype)
    K = values.shape[-1]
    if K == 0:
        return values.clone()
    row = values[..., :, None]  # r_i
    col = values[..., None, :]  # r_j
    # below[..., i, j]: j is present and r_j <= r_i (and i is present)
    below = col <= row
    if present is not None:
        below = below & present[..., :, None] & present[..., None, :]
    tied = below & below.transpose(-1, -2)  # r_j == r_i, both present
    strictly = below & ~tied  # r_j < r_i
    # per player j (as the row index i of these reductions): n_ge, multiplicity, prev
    n_ge = below.sum(dim=-2)  # players k with r_k >= r_j
    count = tied.sum(dim=-1)  # c_j
    lower = torch.where(strictly, col, torch.full_like(col, -math.inf)).amax(dim=-1)
    prev = torch.where(strictly.any(dim=-1), lower, torch.zeros_like(lower))
    # absent players have n_ge = count = 0 and are masked out of every sum: divide by 1 instead
    weight = (n_ge * count).clamp_(min=1).to(dtype)
    term = (values - prev) / weight
    phi = torch.where(below, term[..., None, :], torch.zeros((), dtype=dtype, device=values.device))
    return phi.sum(dim=-1)


def shapley_min(scores: Tensor, present: Tensor | None = None, validate: bool = True) -> Tensor:
    """Shapley values of the min game: v(S) = min_{k in S} r_k, v(empty) = 0, closed form.

    min(S) = -max_{k in S}(-r_k) and both games have v(empty) = 0, so by linearity
    ``shapley_min(r) = -shapley_max(-r)``. Shapes and ``present`` as in :func:`shapley_max`.
    """
    scores, present = _check_scores(scores, present, validate)
    return -shapley_max(-scores.to(float_dtype(scores)), present, validate=False)


def shapley_additive(scores: Tensor, present: Tensor | None = None, validate: bool = True) -> Tensor:
    """Shapley values of the additive game v(S) = sum_{k in S} r_k: phi_k = r_k (0 if absent)."""
    scores, present = _check_scores(scores, present, validate)
    phi = scores.to(float_dtype(scores)).clone()
    return phi if present is None else torch.where(present, phi, torch.zeros_like(phi))


# --------------------------------------------------------------------------------------------------
# Exact enumeration


def _check_players(K: int) -> None:
    if isinstance(K, bool) or not isinstance(K, int):
        raise TypeError(f"K must be an int, got {type(K).__name__}")
    if K < 1:
        raise ValueError(f"K (number of players) must be >= 1, got {K}")


def coalition_masks(codes: Tensor, K: int) -> Tensor:
    """``[M, K]`` bool membership of the coalitions whose bit codes are ``codes: [M]`` (bit k = player k)."""
    bits = torch.arange(K, device=codes.device)
    return ((codes[:, None] >> bits) & 1).bool()


def shapley_weights(K: int) -> tuple[Tensor, Tensor]:
    """Exact Shapley coefficients for every coalition size s = 0..K, float64, ``([K+1], [K+1])``.

    ``w_in[s]``: coefficient of v(S) in phi_i when i is in S and |S| = s: (s-1)!(K-s)!/K!
    ``w_out[s]``: coefficient of -v(S) in phi_i when i is not in S and |S| = s: s!(K-s-1)!/K!
    Computed as 1 / (K * C(K-1, s-1)) and 1 / (K * C(K-1, s)) with exact integer binomials, so there
    is no factorial overflow and each weight is correctly rounded (0 where the size is impossible).
    """
    w_in = [0.0] + [1.0 / (K * math.comb(K - 1, s - 1)) for s in range(1, K + 1)]
    w_out = [1.0 / (K * math.comb(K - 1, s)) for s in range(K)] + [0.0]
    return torch.tensor(w_in, dtype=torch.float64), torch.tensor(w_out, dtype=torch.float64)


def _evaluate(utility: Utility, masks: Tensor) -> Tensor:
    values = utility(masks)
    if not isinstance(values, Tensor):
        raise TypeError(f"utility must return a torch.Tensor, got {type(values).__name__}")
    if values.dim() == 0 or values.shape[0] != masks.shape[0]:
        raise ValueError(
            f"utility must return [M, ...] for a coalition mask [M, K]=[{masks.shape[0]}, {masks.shape[1]}], "
            f"got shape {tuple(values.shape)}"
        )
    check_finite("utility values", values)
    return values


def shapley_exact(
    utility: Utility,
    K: int,
    batch_size: int = 1 << 15,
    device: torch.device | str | None = None,
) -> Tensor:
    """Exact Shapley values of any utility by enumerating all 2^K coalitions.

        phi_i = sum_{S containing i} w_in(|S|) v(S) - sum_{S not containing i} w_out(|S|) v(S)

    (the marginal-contribution sum regrouped by coalition, weights from :func:`shapley_weights`).
    Coalitions are evaluated in chunks of ``batch_size`` masks, one utility call per chunk, and
    accumulated in float64, so memory stays O(batch_size * K) whatever K is.

    Args:
        utility: bool masks ``[M, K]`` -> values ``[M]`` or ``[M, *G]`` (G games at once). It is
            called on ``v(empty)`` too (an all-False row).
        K: number of players, 1 <= K <= 26 (2^K utility evaluations; about 20 is practical).
        batch_size: coalitions per utility call.
        device: where the masks are built (default CPU).

    Returns:
        phi: ``[K]``, or ``[*G, K]`` for batched games; float64 if the utility returns float64,
        float32 otherwise.
    """
    _check_players(K)
    if K > MAX_EXACT_PLAYERS:
        raise ValueError(
            f"K={K} is too large for exact enumeration (2^K coalitions); use shapley_permutation"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device("cpu") if device is None else torch.device(device)
    w_in, w_out = (w.to(device) for w in shapley_weights(K))
    total = 1 << K
    phi: Tensor | None = None
    out_dtype = torch.float32
    for start in range(0, total, batch_size):
        codes = torch.arange(start, min(start + batch_size, total), device=device)
        masks = coalition_masks(codes, K)
        values = _evaluate(utility, masks)
        out_dtype = float_dtype(values)
        sizes = masks.sum(dim=1)
        # coef[m, i] = w_in(|S_m|) if i in S_m else -w_out(|S_m|)
        coef = torch.where(masks, w_in[sizes][:, None], -w_out[sizes][:, None])
        flat = values.to(torch.float64).reshape(values.shape[0], -1)  # [M, G]
        contribution = coef.T @ flat.to(coef.device)  # [K, G]
        phi = contribution if phi is None else phi + contribution
        game_shape = values.shape[1:]
    assert phi is not None
    return phi.T.reshape(*game_shape, K).to(out_dtype)


# --------------------------------------------------------------------------------------------------
# Monte Carlo over permutations


def _random_permutations(n: int, K: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    noise = torch.rand((n, K), generator=generator, device=device)
    return noise.argsort(dim=1)


def shapley_permutation(
    utility: Utility,
    K: int,
    n_permutations: int,
    antithetic: bool = True,
    generator: torch.Generator | None = None,
    batch_size: int = 1 << 14,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Monte Carlo Shapley values from random player orders (Castro et al. 2009), unbiased.

    For an order pi, player pi_j's marginal contribution is v(P_j) - v(P_{j-1}) with P_j the first j
    players of pi; its expectation over uniform orders is phi_i. Per order the K contributions
    telescope to v(N) - v(empty) exactly (both are evaluated once and shared), so every sample, and
    the mean, is efficient.

    With ``antithetic=True`` each order is paired with its reverse (which puts the players of the
    first half last): the pair average is still unbiased for phi and the pairs are i.i.d., so the
    standard error is computed over pair averages. Its variance is below that of two independent
    orders for most utilities (a player's contribution tends to fall as the coalition grows).

    All K-1 interior prefix coalitions of a batch of orders are evaluated in one utility call;
    utility calls cover ``n_permutations * (K - 1) + 2`` coalitions in total.

    Args:
        utility: bool masks ``[M, K]`` -> ``[M]`` or ``[M, *G]``.
        K: number of players (>= 1).
        n_permutations: orders sampled in total (reverses included); even and >= 2 with
            ``antithetic``. The standard error needs at least 2 i.i.d. samples (else it is NaN).
        generator: a ``torch.Generator`` for reproducibility (its device is used).
        batch_size: orders per utility call.

    Returns:
        ``(phi, stderr)``, both ``[K]`` or ``[*G, K]``: the estimate and its standard error
        (sample std of the i.i.d. samples / sqrt(number of samples)).
    """
    _check_players(K)
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, int) or n_permutations < 1:
        raise ValueError(f"n_permutations must be a positive int, got {n_permutations!r}")
    if antithetic and n_permutations % 2:
        raise ValueError(
            f"n_permutations={n_permutations} must be even with antithetic=True (each order and its reverse)"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if generator is not None:
        device = generator.device
    device = torch.device("cpu") if device is None else torch.device(device)
    empty_and_full = torch.stack(
        [torch.zeros(K, dtype=torch.bool, device=device), torch.ones(K, dtype=torch.bool, device=device)]
    )
    raw_ends = _evaluate(utility, empty_and_full)
    out_dtype = float_dtype(raw_ends)
    game_shape = raw_ends.shape[1:]
    ends = raw_ends.to(torch.float64).reshape(2, -1).to(device)  # [2, G]: v(empty), v(N)
    G = ends.shape[1]
    n_base = n_permutations // 2 if antithetic else n_permutations
    base = _random_permutations(n_base, K, generator, device)
    orders = torch.cat([base, base.flip(dims=[1])]) if antithetic else base  # [P, K]
    P = orders.shape[0]
    contributions = torch.empty((P, K, G), dtype=torch.float64, device=device)
    steps = torch.arange(1, K, device=device)  # interior prefix lengths 1..K-1
    for start in range(0, P, batch_size):
        chunk = orders[start : start + batch_size]
        n = chunk.shape[0]
        rank = torch.empty_like(chunk).scatter_(1, chunk, torch.arange(K, device=device).expand(n, K))
        parts = [ends[0].expand(n, 1, G)]
        if K > 1:
            # interior prefix j (1..K-1) holds the players of rank < j
            masks = rank[:, None, :] < steps[None, :, None]  # [n, K-1, K]
            interior = _evaluate(utility, masks.reshape(-1, K))
            parts.append(interior.to(device=device, dtype=torch.float64).reshape(n, K - 1, G))
        parts.append(ends[1].expand(n, 1, G))
        prefix_values = torch.cat(parts, dim=1)  # [n, K+1, G]
        marginal_by_rank = prefix_values[:, 1:] - prefix_values[:, :-1]  # [n, K, G]
        contributions[start : start + n] = marginal_by_rank.gather(1, rank[:, :, None].expand(n, K, G))
    samples = (contributions[:n_base] + contributions[n_base:]) / 2 if antithetic else contributions
    n_samples = samples.shape[0]
    phi = samples.mean(dim=0)  # [K, G]
    if n_samples > 1:
        stderr = samples.std(dim=0, correction=1) / math.sqrt(n_samples)
    else:
        stderr = torch.full_like(phi, math.nan)
    return (
        phi.T.reshape(*game_shape, K).to(out_dtype),
        stderr.T.reshape(*game_shape, K).to(out_dtype),
    )
