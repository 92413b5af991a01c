"""The set-task protocol: prompts, canonical answers, a demo policy, per-candidate scorers, set utilities.

A *set task* asks for ``K`` candidates in one answer (a numbered list) and scores them the way
ShapE-GRPO (Shapley-Enhanced GRPO, arXiv 2603.29871) needs:

* ``score_candidates(prompt, candidates) -> [K]`` per-candidate scores ``r_k`` in ``score_range``
  (``[0, 1]`` for every built-in task), 0 for an unknown, invalid or repeated candidate;
* ``set_utility(prompt, candidates, scores) -> v(S)`` for the whole set, by default the max game
  ``v(S) = max_{k in S} r_k`` with ``v(empty) = 0`` (the user picks one candidate);
* ``coalition_utility(...)`` the same utility as a vectorised function of coalition masks
  ``[M, K] bool -> [M]``, for Shapley engines that enumerate or sample coalitions;
* ``score_completion(prompt, text) -> SetScoring``: parse + score, padded to ``K``.

Everything is pure Python (plus torch only inside coalition utilities), deterministic given the seeds,
and offline.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from credo.tasks.parsing import ParsedCandidates, format_numbered_list, parse_numbered_list

__all__ = [
    "SPLITS",
    "SetScoring",
    "SetTask",
    "Split",
    "TaskPrompt",
    "check_k",
    "check_split",
    "max_coalition_utility",
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
        coverage: ``[K, C]`` bool, candidate ``k`` covers category ``c`` (coverage tasks only, else None).
        category_weights: ``[C]`` weight of each category (coverage tasks only, else None).
    """

    candidates: tuple[str, ...]
    char_spans: tuple[tuple[int, int] | None, ...]
    scores: tuple[float, ...]
    set_reward: float
    parsed_ok: bool
    reason: str = ""
    issues: tuple[str, ...] = ()
    coverage: tuple[tuple[bool, ...], ...] | None = None
    category_weights: tuple[float, ...] | None = None
    shapley: tuple[float, ...] | None = None

    def to_candidate_scores(self) -> Any:
        """This scoring as :class:`credo.llm.rewards.CandidateScores` (scores, spans, set reward)."""
        from credo.llm.rewards import CandidateScores

        shapley = None if self.shapley is None else list(self.shapley)
        if shapley is None and self.coverage is not None and self.category_weights is not None:
            # The set utility is coverage, not the max of the scores: give the trainer its Shapley
            # values (closed form: each category's weight split among the candidates covering it).
            import torch

            from credo.credit.set_utilities import shapley_coverage

            weights = torch.tensor(self.category_weights, dtype=torch.float64)
            covers = torch.tensor(self.coverage, dtype=torch.bool).reshape(len(self.scores), len(weights))
            shapley = shapley_coverage(covers, weights).tolist()
        return CandidateScores(
            scores=list(self.scores), spans=list(self.char_spans), set_reward=self.set_reward, shapley=shapley
        )


def _check_mask(mask: Any, K: int) -> Any:
    import torch

    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor [M, K] bool, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor, got dtype {mask.dtype}")
    if mask.dim() != 2 or mask.shape[1] != K:
        raise ValueError(f"mask must have shape [M, {K}], got {tuple(mask.shape)}")
    return mask


def max_coalition_utility(scores: Sequence[float]) -> Callable[[Any], Any]:
    """``mask [M, K] bool -> [M]``: ``v(S) = max_{k in S} r_k``, 0 for the empty coalition.

    The returned function runs on the mask's device and dtype float32.
    """
    import torch

    values = [float(s) for s in scores]
    K = len(values)

    def utility(mask: Any) -> Any:
        mask = _check_mask(mask, K)
        r = torch.tensor(values, dtype=torch.float32, device=mask.device)
        if K == 0:
            return torch.zeros(mask.shape[0], dtype=torch.float32, device=mask.device)
        masked = torch.where(mask, r.expand_as(mask), torch.full_like(r, -torch.inf).expand_as(mask))
        best = masked.amax(dim=-1)
        return torch.where(mask.any(dim=-1), best, torch.zeros_like(best))

    return utility


class SetTask(ABC):
    """A task whose answer is a set of ``k`` candidates (see the module docstring).

    Subclasses implement :meth:`_make_prompts`, :meth:`demo_candidates` and :meth:`score_candidates`,
    and override :meth:`set_utility` / :meth:`coalition_utility` when the set utility is not the max.
    Every prompt a task returns is remembered by its text, so :meth:`prompt_from_text` (and the reward
    function of :meth:`reward_function`) can find its metadata again from the text alone.
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

    def set_utility(self, prompt: TaskPrompt, candidates: Sequence[str], scores: Sequence[float]) -> float:
        """Set utility ``v(S) = max_k r_k`` (0 for an empty set)."""
        return max((float(s) for s in scores), default=0.0)

    def coalition_utility(
        self, prompt: TaskPrompt, candidates: Sequence[str], scores: Sequence[float]
    ) -> Callable[[Any], Any]:
        """``mask [M, K] bool -> [M]`` float: the set utility of each coalition of these candidates
        (for the max game: the max of the masked scores, 0 for the empty coalition)."""
        return max_coalition_utility(scores)

    def candidate_shapley(
        self, prompt: TaskPrompt, candidates: Sequence[str], scores: Sequence[float]
    ) -> list[float] | None:
        """Shapley values of this task's set utility for these candidates, when the trainer cannot
        derive them from the scores (the max game it computes itself): None by default."""
        return None

    def _shapley_tuple(
        self, prompt: TaskPrompt, candidates: Sequence[str], scores: Sequence[float]
    ) -> tuple[float, ...] | None:
        phi = self.candidate_shapley(prompt, candidates, scores)
        return None if phi is None else tuple(float(p) for p in phi)

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
        return SetScoring(
            candidates=tuple(candidates),
            char_spans=tuple(spans),
            scores=tuple(scores),
            set_reward=float(self.set_utility(prompt, candidates, scores)),
            shapley=self._shapley_tuple(prompt, candidates, scores),
            parsed_ok=parsed.parsed_ok,
            reason=parsed.reason,
            issues=parsed.issues,
        )

    def reward_function(self) -> Callable[..., list[Any]]:
        """A candidate reward function for ``credo.llm`` (``fn(prompts, completions, **meta)`` returning
        ``CandidateScores`` per completion); prompts are looked up with :meth:`prompt_from_text`."""
        from credo.llm.rewards import candidate_reward

        task = self

        def reward(prompts: list[str], completions: list[str], **meta: Any) -> list[Any]:
            return [
                task.score_completion(task.prompt_from_text(p), c).to_candidate_scores()
                for p, c in zip(prompts, completions, strict=True)
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
