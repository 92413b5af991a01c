"""Synthetic recommendation (``"synthetic_recommendation"``): 40 four-letter-ish items in 8 categories
with latent features (category, quality); the prompt's liked items reveal the user's favourite
category, and the best recommendations are the unseen items of that category with the highest
quality. Learnable by a tiny model in minutes (the CPU demo's task).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

import numpy as np

from credo.tasks.base import TaskPrompt
from credo.tasks.recommendation.catalogue import Baseline, CatalogueRecommendation, Choice

__all__ = ["SYNTHETIC_CATEGORIES", "SyntheticRecommendation"]

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

    Hedging options (``choice``, ``temperature``, ``baseline``, ``popular_k``): see
    :class:`CatalogueRecommendation`. Popularity (the ``"popular"`` baseline's order,
    :meth:`popularity_order`) is item quality, decreasing, ties in catalogue order: the popular list is
    the best-made items of every category, whatever the user's taste.

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
        choice: Choice = "max",
        temperature: float = 0.1,
        baseline: Baseline = "none",
        popular_k: int = 10,
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

    def popularity_order(self) -> np.ndarray:
        """Items by decreasing quality (ties in catalogue order): the synthetic catalogue's
        popularity."""
        return np.argsort(-self.item_quality, kind="stable")

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
