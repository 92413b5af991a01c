"""Toy tasks with verifiable rewards, small enough for a CPU test or a demo run in a minute.

* ``letters``: "Letters: " -> a string of letters; reward = the fraction of the letter ``a`` among
  the first 8 characters (:func:`letter_fraction_reward`). SFT pairs teach the format (8 random
  lowercase letters then EOS); RL then has to raise the share of ``a``.
* ``vowel list``: "List 3 letters:" -> ``"x y z"``; each candidate letter scores 1 if it is a vowel;
  the set reward is the best candidate's score (the max game of ShapE-GRPO) —
  :func:`vowel_candidates_reward`, a per-candidate reward with character spans.
"""

from __future__ import annotations

import random
from typing import Any

from credo.llm.rewards import CandidateScores, candidate_reward

LETTERS = "abcdefghijklmnopqrstuvwxyz"
VOWELS = set("aeiou")


def letters_prompts() -> list[str]:
    """Prompts of the ``letters`` task (a few variants, so prompts differ in length)."""
    return ["Letters: ", "Write letters: ", "Some letters: ", "Letters please: "]


def letters_sft_pairs(n: int = 256, length: int = 8, seed: int = 0) -> list[tuple[str, str]]:
    """(prompt, answer) pairs: ``length`` uniformly random lowercase letters."""
    rng = random.Random(seed)
    prompts = letters_prompts()
    return [(rng.choice(prompts), "".join(rng.choice(LETTERS) for _ in range(length))) for _ in range(n)]


def letter_fraction_reward(prompts: list[str], completions: list[str], **meta: Any) -> list[float]:
    """Fraction of ``'a'`` among the first 8 characters of each completion (0 for an empty one)."""
    return [c[:8].count("a") / 8.0 for c in completions]


def vowel_list_prompts() -> list[str]:
    return ["List 3 letters:", "Three letters:"]


def vowel_list_sft_pairs(n: int = 256, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    prompts = vowel_list_prompts()
    return [(rng.choice(prompts), " ".join(rng.choice(LETTERS) for _ in range(3))) for _ in range(n)]


@candidate_reward
def vowel_candidates_reward(prompts: list[str], completions: list[str], **meta: Any) -> list[CandidateScores]:
    """Candidates are the first 3 whitespace-separated items; each scores 1.0 if it is a single vowel.
    Set reward: the maximum candidate score (0 with no candidate)."""
    result = []
    for text in completions:
        scores: list[float] = []
        spans: list[tuple[int, int] | None] = []
        position = 0
        for item in text.split(" "):
            if item and len(scores) < 3:
                scores.append(1.0 if item in VOWELS else 0.0)
                spans.append((position, position + len(item)))
            position += len(item) + 1
        while len(scores) < 3:
            scores.append(0.0)
            spans.append(None)
        result.append(CandidateScores(scores=scores, spans=spans, set_reward=max(scores)))
    return result
