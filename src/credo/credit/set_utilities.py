"""Set utilities v(S) for sets of candidates, as engine callables, and their closed-form Shapley values.

Each ``*_utility`` factory takes the parameters of G games (leading dimensions ``*G``) and returns a
utility for :func:`credo.credit.shapley.shapley_exact` / :func:`shapley_permutation`: bool coalition
masks ``[M, K]`` in, values ``[M, *G]`` out, with v(empty) = 0 for every utility here.

* max / min / additive: the games of :mod:`credo.credit.shapley`'s closed forms (for tests and
  comparisons).
* weighted coverage (recommendation, brainstorming): candidate k covers a set of topics or items;
  v(S) = total weight of the topics covered by at least one member of S. Closed form: each topic's
  weight is split equally among the candidates that cover it (:func:`shapley_coverage`).
* facility location (a graded coverage): v(S) = sum_c w_c max_{k in S} s_kc, how well the set serves
  each of C user needs through its best candidate for that need. It is a weighted sum of max games,
  so its Shapley value is the weighted sum of :func:`shapley_max` over needs
  (:func:`shapley_facility_location`); binary ``s`` gives back weighted coverage.
* relevance + diversity (determinantal): v(S) = max_{k in S} rel_k + lam * log det(I + E_S E_S^T),
  the best candidate's relevance plus a DPP volume bonus for candidates that point in different
  directions. No closed form: computed through the engine (exact or permutation sampling).
"""

from __future__ import annotations

import torch
from torch import Tensor

from credo.credit._checks import as_bool, check_finite, check_tensor, float_dtype
from credo.credit.shapley import Utility, shapley_max


def _check_params(name: str, value: Tensor, min_dim: int) -> Tensor:
    check_tensor(name, value)
    if value.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimensions, got shape {tuple(value.shape)}")
    if value.dtype == torch.bool:
        return value
    check_finite(name, value)
    return value


def _check_mask(masks: Tensor, K: int) -> Tensor:
    check_tensor("masks", masks)
    if masks.dim() != 2 or masks.shape[1] != K:
        raise ValueError(f"coalition masks must be [M, K]=[M, {K}], got shape {tuple(masks.shape)}")
    return as_bool("masks", masks)


def _games_last(values: Tensor) -> Tensor:
    """``[*G, M]`` -> ``[M, *G]`` (the engine wants the coalition axis first)."""
    return values.movedim(-1, 0)


def max_utility(scores: Tensor) -> Utility:
    """v(S) = max_{k in S} r_k, v(empty) = 0. ``scores: [*G, K]``; utility returns ``[M, *G]``."""
    scores = _check_params("scores", scores, 1)
    values = scores.to(float_dtype(scores))
    K = values.shape[-1]

    def utility(masks: Tensor) -> Tensor:
        m = _check_mask(masks, K).to(values.device)
        picked = torch.where(m, values[..., None, :], torch.full((), -torch.inf, dtype=values.dtype))
        best = picked.amax(dim=-1)  # [*G, M]
        best = torch.where(m.any(dim=1), best, torch.zeros((), dtype=values.dtype))
        return _games_last(best)

    return utility


def min_utility(scores: Tensor) -> Utility:
    """v(S) = min_{k in S} r_k, v(empty) = 0. ``scores: [*G, K]``."""
    negated = max_utility(-_check_params("scores", scores, 1).to(float_dtype(scores)))
    return lambda masks: -negated(masks)


def additive_utility(scores: Tensor) -> Utility:
    """v(S) = sum_{k in S} r_k. ``scores: [*G, K]``."""
    scores = _check_params("scores", scores, 1)
    values = scores.to(float_dtype(scores))
    K = values.shape[-1]

    def utility(masks: Tensor) -> Tensor:
        m = _check_mask(masks, K).to(device=values.device, dtype=values.dtype)
        return _games_last(values @ m.T)

    return utility


def _check_coverage(covers: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    covers = _check_params("covers", covers, 2)
    covers = as_bool("covers", covers)
    weights = _check_params("weights", weights, 1)
    if weights.shape != covers.shape[:-2] + covers.shape[-1:]:
        raise ValueError(
            f"weights must be [*G, C]={(*covers.shape[:-2], covers.shape[-1])} for covers [*G, K, C]="
            f"{tuple(covers.shape)}, got shape {tuple(weights.shape)}"
        )
    return covers, weights.to(float_dtype(weights))


def coverage_utility(covers: Tensor, weights: Tensor) -> Utility:
    """Weighted coverage: v(S) = sum_c w_c * [some k in S covers topic c].

    Args:
        covers: ``[*G, K, C]`` bool, candidate k covers topic c. weights: ``[*G, C]`` topic weights.
    """
    covers, w = _check_coverage(covers, weights)
    K = covers.shape[-2]
    cover_f = covers.to(w.dtype)

    def utility(masks: Tensor) -> Tensor:
        m = _check_mask(masks, K).to(device=w.device, dtype=w.dtype)
        # hits[*G, M, C] = number of members of S_m covering c
        hits = torch.einsum("mk,...kc->...mc", m, cover_f)
        return _games_last(((hits > 0).to(w.dtype) * w[..., None, :]).sum(dim=-1))

    return utility


def shapley_coverage(covers: Tensor, weights: Tensor) -> Tensor:
    """Closed-form Shapley values of weighted coverage: phi_k = sum_{c covered by k} w_c / n_c.

    v = sum_c w_c * u_c with u_c(S) = [S meets cover(c)], a game in which the n_c candidates covering
    c are symmetric and the others are null players, so by efficiency each coverer gets w_c / n_c;
    additivity sums over topics. Topics nobody covers add nothing. Holds for negative weights too.

    Args:
        covers: ``[*G, K, C]`` bool; weights: ``[*G, C]``.

    Returns:
        phi: ``[*G, K]``; sums to the weight of the covered topics.
    """
    covers, w = _check_coverage(covers, weights)
    cover_f = covers.to(w.dtype)
    n_coverers = cover_f.sum(dim=-2)  # [*G, C]
    share = w / n_coverers.clamp(min=1)
    return (cover_f * share[..., None, :]).sum(dim=-1)


def _check_facility(similarity: Tensor, weights: Tensor | None) -> tuple[Tensor, Tensor]:
    similarity = _check_params("similarity", similarity, 2)
    s = similarity.to(float_dtype(similarity))
    if weights is None:
        return s, torch.ones(s.shape[:-2] + s.shape[-1:], dtype=s.dtype, device=s.device)
    weights = _check_params("weights", weights, 1)
    if weights.shape != s.shape[:-2] + s.shape[-1:]:
        raise ValueError(
            f"weights must be [*G, C]={(*s.shape[:-2], s.shape[-1])} for similarity [*G, K, C]="
            f"{tuple(s.shape)}, got shape {tuple(weights.shape)}"
        )
    return s, weights.to(s.dtype)


def facility_location_utility(similarity: Tensor, weights: Tensor | None = None) -> Utility:
    """Facility location: v(S) = sum_c w_c * max_{k in S} s_kc, v(empty) = 0.

    Args:
        similarity: ``[*G, K, C]`` how well candidate k serves need c; weights: ``[*G, C]`` (default 1).
    """
    s, w = _check_facility(similarity, weights)
    per_need = max_utility(s.transpose(-1, -2))  # games [*G, C], players K

    def utility(masks: Tensor) -> Tensor:
        best = per_need(masks)  # [M, *G, C]
        return (best * w).sum(dim=-1)

    return utility


def shapley_facility_location(similarity: Tensor, weights: Tensor | None = None) -> Tensor:
    """Closed form: phi_k = sum_c w_c * shapley_max(s_{.,c})_k (a weighted sum of max games).

    Args:
        similarity: ``[*G, K, C]``; weights: ``[*G, C]`` (default 1).

    Returns:
        phi: ``[*G, K]``.
    """
    s, w = _check_facility(similarity, weights)
    per_need = shapley_max(s.transpose(-1, -2), validate=False)  # [*G, C, K]
    return (per_need * w[..., :, None]).sum(dim=-2)


def relevance_diversity_utility(
    relevance: Tensor, embeddings: Tensor, diversity_weight: float = 1.0
) -> Utility:
    """Best relevance plus a determinantal diversity bonus:

        v(S) = max_{k in S} rel_k + lam * log det(I + E_S E_S^T),   v(empty) = 0

    ``E_S`` holds the embeddings of S's members; log det(I + L_S) is the log-volume a DPP assigns to S
    (0 for the empty set and for a single zero vector; it grows when members point apart and is
    submodular). Evaluated for M coalitions at once as ``slogdet(I + D_m L D_m)`` with ``D_m`` the
    diagonal membership matrix (non-members become identity rows), so no Python loop over coalitions.

    Memory: one call builds ``[*G, M, K, K]`` kernels, so lower the engine's ``batch_size`` (M) for
    many games or large K.

    Args:
        relevance: ``[*G, K]``; embeddings: ``[*G, K, D]``; diversity_weight: lam >= 0.
    """
    relevance = _check_params("relevance", relevance, 1)
    embeddings = _check_params("embeddings", embeddings, 2)
    if embeddings.shape[:-1] != relevance.shape:
        raise ValueError(
            f"embeddings must be [*G, K, D] with [*G, K]={tuple(relevance.shape)}, got {tuple(embeddings.shape)}"
        )
    if diversity_weight < 0:
        raise ValueError(f"diversity_weight must be >= 0, got {diversity_weight}")
    dtype = float_dtype(relevance, embeddings)
    e = embeddings.to(dtype)
    kernel = e @ e.transpose(-1, -2)  # [*G, K, K]
    K = relevance.shape[-1]
    relevance_part = max_utility(relevance.to(dtype))
    eye = torch.eye(K, dtype=dtype, device=e.device)

    def utility(masks: Tensor) -> Tensor:
        m = _check_mask(masks, K).to(device=e.device, dtype=dtype)  # [M, K]
        pair = m[:, :, None] * m[:, None, :]  # [M, K, K]
        kernel_s = kernel[..., None, :, :] * pair + eye  # [*G, M, K, K]
        logdet = torch.linalg.slogdet(kernel_s).logabsdet  # [*G, M]
        return relevance_part(masks) + diversity_weight * _games_last(logdet)

    return utility
