"""The set-task protocol: prompts, canonical answers, a demo policy, per-candidate scorers, the game.

A *set task* asks for ``K`` candidates in one answer (a numbered list) and scores them the way
candidate-level credit (ShapE-GRPO, arXiv 2603.29871, and the causal estimators) needs:

* ``score_candidates(prompt, candidates) -> [K]`` per-candidate scores ``r_k`` in ``score_range``
  (``[0, 1]`` for every built-in task), 0 for an unknown, invalid or repeated candidate;
* ``game(prompt, candidates, scores) -> SetGame``: the set utility of these K candidates as one
  :class:`credo.credit.games.SetGame` (by default the max game ``v(S) = max_{k in S} r_k``, the user
  picks one candidate). The set reward is its ``v(N)``, and estimators derive Shapley values and
  counterfactual values from the same object, so there is one definition of the utility;
* ``score_completion(prompt, text) -> SetScoring``: parse + score, padded to ``K``.

Everything is deterministic given the seeds, and offline.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from credo.credit.games import MaxGame, SetGame
from credo.credit.reward_types import CandidateScores, candidate_reward
from credo.tasks.parsing import ParsedCandidates, format_numbered_list, parse_numbered_list

__all__ = [
    "SPLITS",
    "SetScoring",
    "SetTask",
    "Split",
    "TaskPrompt",
    "check_k",
    "check_split",
    "scores_tensor",
]

Split = Literal["train", "eval"]
SPLITS: tuple[str, ...] = ("train", "eval")


def check_k(k: Any, name: str = "k") -> int:
    """Validate a candidate count: an int ``>= 1``."""
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"{name} must be an int (the number of candidates), got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"{name} must be >= 1 (the number of candidates asked for), got {k}")
    return k


def check_split(split: Any) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return str(split)


def _check_count(n: Any, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{name} must be an int, got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"{name} must be >= 0, got {n}")
    return n


@dataclass(frozen=True)
class TaskPrompt:
    """One prompt of a task: the ``text`` shown to the model and the ``meta`` its scorer needs
    (task-specific, e.g. the simulated user, the numbers and target, the categories)."""

    text: str
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SetScoring:
    """A scored answer, padded to the task's ``K``.

    Attributes:
        candidates: ``[K]`` candidate strings (``""`` for a missing one).
        char_spans: ``[K]`` ``(start, end)`` character spans in the completion (``text[s:e]`` is the
            candidate), None for a missing or empty candidate.
        scores: ``[K]`` per-candidate scores ``r_k`` (0 for a missing/invalid/repeated candidate).
        set_reward: the set utility ``v(S)`` of the whole answer.
        parsed_ok: the answer gave exactly ``K`` non-empty candidates; ``reason`` says why not.
        issues: tolerated format deviations (see :func:`~credo.tasks.parsing.parse_numbered_list`).
        game: the set utility over these K candidates (a one-row :class:`SetGame`).
        coverage: ``[K, C]`` bool, candidate ``k`` covers category ``c`` (coverage tasks only, else None).
        category_weights: ``[C]`` weight of each category (coverage tasks only, else None).
    """

    candidates: tuple[str, ...]
    char_spans: tuple[tuple[int, int] | None, ...]
    scores: tuple[float, ...]
    set_reward: float
    parsed_ok: bool
    game: SetGame
    reason: str = ""
    issues: tuple[str, ...] = ()
    coverage: tuple[tuple[bool, ...], ...] | None = None
    category_weights: tuple[float, ...] | None = None

    def to_candidate_scores(self) -> CandidateScores:
        """This scoring as the reward protocol's :class:`CandidateScores` (scores, spans, set reward,
        game)."""
        return CandidateScores(
            scores=list(self.scores), spans=list(self.char_spans), set_reward=self.set_reward, game=self.game
        )


def scores_tensor(scores: Sequence[float]) -> torch.Tensor:
    """``[1, K]`` float64: one answer's candidate scores, as a game's row."""
    return torch.tensor([[float(s) for s in scores]], dtype=torch.float64)


class SetTask(ABC):
    """A task whose answer is a set of ``k`` candidates (see the module docstring).

    Subclasses implement :meth:`_make_prompts`, :meth:`demo_candidates` and :meth:`score_candidates`,
    and override :meth:`game` when the set utility is not the max. Prompts reach the reward function
    of :meth:`reward_function` with their metadata (``task_prompt``); for prompts given as bare text,
    :meth:`prompt_from_text` finds a prompt this task has returned (or, for tasks whose text holds
    everything, parses it).
    """

    name: str = "set_task"
    score_range: tuple[float, float] = (0.0, 1.0)

    def __init__(self, k: int = 3) -> None:
        self.k = check_k(k)
        self._by_text: dict[str, TaskPrompt] = {}

    # ----- prompts -------------------------------------------------------------------------------
    @abstractmethod
    def _make_prompts(self, split: str, n: int, rng: random.Random) -> list[TaskPrompt]:
        """``n`` prompts of ``split`` drawn with ``rng``."""

    def prompts(self, split: Split = "train", n: int = 64, seed: int = 0) -> list[TaskPrompt]:
        """``n`` prompts of the ``"train"`` or ``"eval"`` split, deterministic given ``seed``.

        The two splits never share a prompt's subject (a user, a puzzle, a set of categories), so eval
        scores measure generalisation.
        """
        split = check_split(split)
        n = _check_count(n)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        result = self._make_prompts(split, n, random.Random(f"{self.name}:{split}:{seed}"))
        for p in result:
            self._by_text.setdefault(p.text, p)
        return result

    def prompt_from_text(self, text: str) -> TaskPrompt:
        """The :class:`TaskPrompt` whose text is ``text`` (one this task has returned before)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        try:
            return self._by_text[text]
        except KeyError:
            raise ValueError(
                f"task {self.name!r} has not produced a prompt with text {text[:80]!r}; "
                "score completions against prompts returned by task.prompts(...)"
            ) from None

    # ----- answers -------------------------------------------------------------------------------
    def format_answer(self, prompt: TaskPrompt, candidates: Sequence[str]) -> str:
        """The canonical answer: ``"1. a\\n2. b\\n..."`` (what SFT warm-up data teaches)."""
        return format_numbered_list(list(candidates))

    @abstractmethod
    def demo_candidates(self, prompt: TaskPrompt, rng: random.Random) -> list[str]:
        """``k`` candidates from a reasonable but imperfect policy (a mix of good and poor ones), for
        SFT warm-up data that leaves RL room to improve."""

    def sft_pairs(self, n: int = 256, seed: int = 0, split: Split = "train") -> list[tuple[str, str]]:
        """``n`` (prompt text, canonical answer of :meth:`demo_candidates`) pairs."""
        rng = random.Random(f"{self.name}:sft:{seed}")
        return [
            (p.text, self.format_answer(p, self.demo_candidates(p, rng)))
            for p in self.prompts(split, n, seed)
        ]

    # ----- scoring -------------------------------------------------------------------------------
    @abstractmethod
    def score_candidates(self, prompt: TaskPrompt, candidates: Sequence[str]) -> list[float]:
        """``[len(candidates)]`` per-candidate scores in :attr:`score_range`; 0 for an unknown,
        invalid, empty or repeated candidate (only the first occurrence of a repeat scores)."""

    def game(self, prompt: TaskPrompt, candidates: Sequence[str], scores: Sequence[float]) -> SetGame:
        """The set utility of these candidates as a one-row game: the max game ``v(S) = max_k r_k``
        (0 for an empty set) unless a task says otherwise."""
        return MaxGame(scores_tensor(scores))

    def _pad(self, parsed: ParsedCandidates) -> tuple[list[str], list[tuple[int, int] | None]]:
        candidates = list(parsed.candidates[: self.k])
        spans = list(parsed.spans[: self.k])
        while len(candidates) < self.k:
            candidates.append("")
            spans.append(None)
        return candidates, spans

    def score_completion(self, prompt: TaskPrompt, completion: str) -> SetScoring:
        """Parse ``completion`` as a numbered list of ``k`` candidates and score it.

        Missing candidates are ``""`` with span None and score 0; items beyond ``k`` are ignored.
        """
        if not isinstance(prompt, TaskPrompt):
            raise TypeError(f"prompt must be a TaskPrompt, got {type(prompt).__name__}")
        parsed = parse_numbered_list(completion, self.k)
        candidates, spans = self._pad(parsed)
        scores = [float(s) for s in self.score_candidates(prompt, candidates)]
        game = self.game(prompt, candidates, scores)
        return SetScoring(
            candidates=tuple(candidates),
            char_spans=tuple(spans),
            scores=tuple(scores),
            set_reward=float(game.grand_value()[0]),
            game=game,
            parsed_ok=parsed.parsed_ok,
            reason=parsed.reason,
            issues=parsed.issues,
        )

    def reward_function(self) -> Callable[..., list[CandidateScores]]:
        """A candidate reward function (``fn(prompts, completions, **meta)`` returning
        :class:`CandidateScores` per completion). Each completion's prompt comes from the ``task_prompt``
        metadata (one :class:`TaskPrompt` per completion, as ``credo.cli`` passes prompts to the
        trainer), or, for bare-text prompts, from :meth:`prompt_from_text`."""
        task = self

        def reward(
            prompts: list[str],
            completions: list[str],
            task_prompt: Sequence[TaskPrompt] | None = None,
            **meta: Any,
        ) -> list[CandidateScores]:
            found = task_prompt if task_prompt is not None else [task.prompt_from_text(p) for p in prompts]
            return [
                task.score_completion(p, c).to_candidate_scores()
                for p, c in zip(found, completions, strict=True)
            ]

        reward.__name__ = f"{self.name}_reward"
        return candidate_reward(reward)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, k={self.k})"


def first_occurrences(keys: Sequence[Any]) -> list[bool]:
    """``[K]`` True where ``keys[k]`` is not None and has not appeared earlier (repeats score 0)."""
    seen: set[Any] = set()
    result = []
    for key in keys:
        fresh = key is not None and key not in seen
        result.append(fresh)
        if key is not None:
            seen.add(key)
    return result
