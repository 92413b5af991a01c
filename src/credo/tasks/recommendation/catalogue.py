"""The scorer shared by the recommendation tasks: :class:`CatalogueRecommendation`, a fixed catalogue
of named items matched by :func:`~credo.tasks.recommendation.titles.normalise_title`.

Scoring rules: an unknown title, a repeat (after the first occurrence) or an item already shown in the
prompt scores 0 and is not *valid* (:meth:`CatalogueRecommendation.candidate_items`).

Two options make a task with headroom, where K good, distinct recommendations beat one
(:class:`CatalogueRecommendation`, ``choice="logit"``, ``baseline="popular"``):

* ``choice``: how the user values the set. ``"max"`` (default): the user watches the best item,
  v(S) = max_{k in S} r_k, so one good title is worth as much as K. ``"logit"``: the user picks the
  best of S and of an outside option of utility 0 under Gumbel(tau) taste noise (logit choice,
  McFadden 1974), v(S) = tau log(1 + sum_{k in S} exp(r_k / tau))
  (:class:`~credo.credit.games.LogSumExpGame`); K distinct good items are worth about
  ``r + tau log K``, so hedging pays.
* ``baseline``: the scale of the item scores. ``"none"`` (default): the task's utility in [0, 1].
  ``"popular"``: per-user normalisation against a non-personalised recommender, so that recommending
  hits does not saturate the reward: ``r_i = (raw_i - pop_u) / (best_u - pop_u)``, popular titles
  about 0, the oracle's list about 1 (formulas in :meth:`CatalogueRecommendation.item_scores`).
"""

from __future__ import annotations

import math
import random
from abc import abstractmethod
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from credo.credit.games import AdditiveGame, LogSumExpGame, MaxGame, SetGame
from credo.tasks.base import SetTask, TaskPrompt, first_occurrences, scores_tensor
from credo.tasks.recommendation.titles import normalise_title

__all__ = ["BASELINES", "CHOICES", "CatalogueRecommendation"]

Choice = Literal["max", "logit"]
Baseline = Literal["none", "popular"]
CHOICES: tuple[str, ...] = ("max", "logit")
BASELINES: tuple[str, ...] = ("none", "popular")


def _check_options(choice: object, temperature: object, baseline: object, popular_k: object) -> None:
    if choice not in CHOICES:
        raise ValueError(f"choice must be one of {CHOICES}, got {choice!r}")
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        raise TypeError(f"temperature must be a float > 0, got {type(temperature).__name__}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite float > 0, got {temperature!r}")
    if isinstance(popular_k, bool) or not isinstance(popular_k, int) or popular_k < 1:
        raise ValueError(f"popular_k must be an int >= 1, got {popular_k!r}")


class CatalogueRecommendation(SetTask):
    """Recommendation over a fixed catalogue of named items; subclasses say what each prompt's user
    likes (:meth:`utilities`). ``prompt.meta["liked"]`` holds the indices of the items shown.

    A candidate is *valid* when it names a catalogue item that the prompt did not show and that no
    earlier candidate named (:meth:`candidate_items`). Score of a candidate: ``item_scores(prompt)[i]``
    for the item ``i`` a valid candidate names (``utilities(prompt)[i]`` in ``[0, 1]`` with the
    default ``baseline="none"``), 0 for an invalid one.

    Set utility (:meth:`game`), with ``choice``:

    * ``"max"`` (default): v(S) = max_{k in S} r_k (with ``baseline="popular"``: max(0, max_{k in S}
      r_k), the outside option of utility 0 bounding it below, the ``tau -> 0`` limit of the logit);
    * ``"logit"``: v(S) = tau log(1 + sum_{k in S valid} exp(r_k / tau)), ``tau = temperature``
      (:class:`~credo.credit.games.LogSumExpGame`): the expected gain of a user who takes the best of
      S or of an outside option of utility 0, under Gumbel(tau) noise. Invalid candidates are absent
      from the game (they add nothing, Shapley value 0). Monotone, submodular, v(empty) = 0, and K
      good distinct items earn up to ``tau log K`` more than the best one alone.

    Plus ``count_bonus * (valid candidates in S) / K`` when ``count_bonus > 0``: a user who asked for
    K recommendations values K useful ones, so an answer cannot reach the top by naming one good item
    and no others. The bonus is an additive game, so its Shapley value is ``count_bonus / K`` per valid
    candidate on top of the choice game's. (With ``choice="max", baseline="none"`` "valid" means a
    positive score, as it always has.)

    ``baseline``: ``"none"`` (scores are the utilities) or ``"popular"`` (per-user normalisation
    against the popular list, :meth:`item_scores`; ``popular_k`` items). ``score_range`` is ``(0, 1)``
    for ``"none"`` and unbounded for ``"popular"`` (scores are in units of ``best_u - pop_u``,
    negative for items the user likes less than the popular ones).

    ``demo_candidates``: each slot is, with probability ``p_good``, a random item among the user's
    ``good_pool`` best unseen items, otherwise a uniformly random unseen item.
    """

    def __init__(
        self,
        k: int,
        item_names: Sequence[str],
        p_good: float = 0.5,
        good_pool: int = 5,
        count_bonus: float = 0.0,
        choice: Choice = "max",
        temperature: float = 0.1,
        baseline: Baseline = "none",
        popular_k: int = 10,
    ) -> None:
        super().__init__(k)
        if not count_bonus >= 0.0:
            raise ValueError(f"count_bonus must be >= 0, got {count_bonus}")
        self.count_bonus = float(count_bonus)
        if not 0.0 <= p_good <= 1.0:
            raise ValueError(f"p_good must be in [0, 1], got {p_good}")
        if good_pool < 1:
            raise ValueError(f"good_pool must be >= 1, got {good_pool}")
        _check_options(choice, temperature, baseline, popular_k)
        self.choice: str = choice
        self.temperature = float(temperature)
        self.baseline: str = baseline
        self.popular_k = int(popular_k)
        self.score_range = (0.0, 1.0) if baseline == "none" else (-math.inf, math.inf)
        self.item_names: list[str] = list(item_names)
        self.p_good = float(p_good)
        self.good_pool = int(good_pool)
        self._alias: dict[str, int] = {}
        for i, name in enumerate(self.item_names):
            self._add_alias(name, i)

    def game(self, prompt: TaskPrompt, candidates: Sequence[str], scores: Sequence[float]) -> SetGame:
        """The set utility of ``choice`` over the scores, plus ``count_bonus / K`` per valid candidate
        (an additive game) when ``count_bonus > 0`` (see the class docstring). Default: v(S) =
        max_{k in S} r_k + count_bonus * |{k in S: r_k > 0}| / K."""
        if self.choice == "max" and self.baseline == "none":
            best = MaxGame(scores_tensor(scores))
            if self.count_bonus == 0.0:
                return best
            valid = (scores_tensor(scores) > 0).to(torch.float64)
            return best + AdditiveGame(self.count_bonus / self.k * valid)
        valid = torch.tensor([[i is not None for i in self.candidate_items(prompt, candidates)]])
        present: torch.Tensor | None
        if self.choice == "logit":
            game: SetGame = LogSumExpGame(scores_tensor(scores), self.temperature, present=valid)
            present = valid
        else:  # max(0, max_k r_k): the outside option of utility 0 (scores may be negative)
            game, present = MaxGame(scores_tensor(scores).clamp(min=0.0)), None
        if self.count_bonus == 0.0:
            return game
        return game + AdditiveGame(self.count_bonus / self.k * valid.to(torch.float64), present=present)

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

    def popularity_order(self) -> np.ndarray:
        """Catalogue indices, most popular first (the ``"popular"`` baseline's order). Default: the
        catalogue order (MovieLens builds its catalogue from the most-rated titles down)."""
        return np.arange(self.n_items)

    def popular_items(self, prompt: TaskPrompt, n: int | None = None) -> list[int]:
        """The ``n`` (default ``popular_k``) most popular items the prompt did not show: what a
        non-personalised recommender would name."""
        liked = set(prompt.meta.get("liked", ()))
        order = [int(i) for i in self.popularity_order() if int(i) not in liked]
        return order[: self.popular_k if n is None else n]

    def item_scores(self, prompt: TaskPrompt) -> np.ndarray:
        """``[n_items]`` score of every catalogue item for this prompt's user.

        ``baseline="none"``: :meth:`utilities` (``raw``, in ``[0, 1]``). ``baseline="popular"``:

            r_i = (raw_i - pop_u) / (best_u - pop_u),
            pop_u  = mean of raw over the popular_k most popular unseen items (:meth:`popular_items`),
            best_u = mean of raw over the user's K best unseen items (:meth:`best_items`, the
                     oracle's K recommendations),

        so the popular list scores about 0 on average and the oracle's list 1 on average; items the
        user likes less than the popular ones score below 0. The formula is invariant to a per-user
        affine rescaling of ``raw`` (e.g. MovieLens' ``user_minmax`` scale gives the same scores as
        the predicted ratings). When ``best_u <= pop_u`` (only possible with ``popular_k < K`` or
        ties) the denominator is 1.
        """
        raw = self.utilities(prompt)
        if self.baseline == "none":
            return raw
        popular, best = self.popular_items(prompt), self.best_items(prompt)
        pop = float(raw[popular].mean()) if popular else 0.0
        top = float(raw[best].mean()) if best else 1.0
        scale = top - pop if top - pop > 1e-12 else 1.0
        return (raw - pop) / scale

    def candidate_items(self, prompt: TaskPrompt, candidates: Sequence[str]) -> list[int | None]:
        """``[len(candidates)]`` the catalogue item each valid candidate names, None for an invalid one
        (naming no item, an item shown in the prompt, or an item an earlier candidate named)."""
        liked = set(prompt.meta.get("liked", ()))
        keys = [self.match(c) for c in candidates]
        fresh = first_occurrences(keys)
        return [i if ok and i is not None and i not in liked else None for i, ok in zip(keys, fresh)]

    def score_candidates(self, prompt: TaskPrompt, candidates: Sequence[str]) -> list[float]:
        score = self.item_scores(prompt)
        return [0.0 if i is None else float(score[i]) for i in self.candidate_items(prompt, candidates)]

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
