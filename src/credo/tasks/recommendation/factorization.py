"""Biased matrix factorisation, ``r_hat(u, i) = mu + b_u + c_i + p_u . q_i``, fitted by alternating
least squares (Koren, Bell & Volinsky 2009, "Matrix factorization techniques for recommender systems").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MatrixFactorisation", "fit_matrix_factorisation"]


@dataclass(frozen=True)
class MatrixFactorisation:
    """``r_hat(u, i) = mu + user_bias[u] + item_bias[i] + user_factors[u] . item_factors[i]``.

    Shapes: ``user_bias: [U]``, ``item_bias: [I]``, ``user_factors: [U, R]``, ``item_factors: [I, R]``.
    """

    mu: float
    user_bias: np.ndarray
    item_bias: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted ratings of the pairs ``(users[n], items[n])``: ``[N]``."""
        return (
            self.mu
            + self.user_bias[users]
            + self.item_bias[items]
            + np.einsum("nr,nr->n", self.user_factors[users], self.item_factors[items])
        )

    def predict_matrix(self, items: np.ndarray) -> np.ndarray:
        """Predicted ratings of every user for ``items``: ``[U, len(items)]``."""
        return (
            self.mu
            + self.user_bias[:, None]
            + self.item_bias[None, items]
            + self.user_factors @ self.item_factors[items].T
        )


def _ridge_solve(
    groups: np.ndarray, design: np.ndarray, target: np.ndarray, n_groups: int, reg: float
) -> np.ndarray:
    """For every group g, ``argmin_x sum_{n in g} (design[n] . x - target[n])^2 + reg n_g |x|^2``
    (weighted-lambda ridge regression), all groups at once: ``[n_groups, D]``."""
    D = design.shape[1]
    counts = np.bincount(groups, minlength=n_groups).astype(float)
    gram = np.empty((n_groups, D, D))
    for a in range(D):
        for b in range(a, D):
            gram[:, a, b] = gram[:, b, a] = np.bincount(
                groups, weights=design[:, a] * design[:, b], minlength=n_groups
            )
    rhs = np.stack(
        [np.bincount(groups, weights=design[:, a] * target, minlength=n_groups) for a in range(D)], axis=1
    )
    gram += (reg * np.maximum(counts, 1.0))[:, None, None] * np.eye(D)[None]
    return np.linalg.solve(gram, rhs[..., None])[..., 0]


def fit_matrix_factorisation(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    n_users: int,
    n_items: int,
    rank: int = 10,
    reg: float = 0.1,
    n_iters: int = 10,
    seed: int = 0,
) -> MatrixFactorisation:
    """Biased matrix factorisation by alternating least squares (weighted-lambda regularisation).

    Each half-step solves, for every user u (then every item i), the ridge regression of
    ``r - mu - c_i`` on ``[q_i, 1]`` (unknowns ``[p_u, b_u]``) with penalty ``reg * n_u``.

    Args:
        users, items: ``[N]`` int indices in ``[0, n_users)``, ``[0, n_items)``.
        ratings: ``[N]`` float ratings.
        rank: latent dimension R; reg: regulariser; n_iters: ALS sweeps; seed: factor initialisation.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    ratings = np.asarray(ratings, dtype=float)
    if not (users.shape == items.shape == ratings.shape) or users.ndim != 1 or len(users) == 0:
        raise ValueError("users, items and ratings must be non-empty 1-D arrays of one length")
    if users.min() < 0 or users.max() >= n_users or items.min() < 0 or items.max() >= n_items:
        raise ValueError("user or item index out of range")
    if rank < 1 or reg <= 0 or n_iters < 1:
        raise ValueError(f"need rank >= 1, reg > 0, n_iters >= 1; got {rank}, {reg}, {n_iters}")
    rng = np.random.default_rng(seed)
    mu = float(ratings.mean())
    P = rng.normal(0.0, 0.1, size=(n_users, rank))
    Q = rng.normal(0.0, 0.1, size=(n_items, rank))
    bu = np.zeros(n_users)
    bi = np.zeros(n_items)
    ones = np.ones((len(ratings), 1))
    for _ in range(n_iters):
        x = _ridge_solve(users, np.hstack([Q[items], ones]), ratings - mu - bi[items], n_users, reg)
        P, bu = x[:, :rank], x[:, rank]
        x = _ridge_solve(items, np.hstack([P[users], ones]), ratings - mu - bu[users], n_items, reg)
        Q, bi = x[:, :rank], x[:, rank]
    return MatrixFactorisation(mu=mu, user_bias=bu, item_bias=bi, user_factors=P, item_factors=Q)
