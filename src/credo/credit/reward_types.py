"""The reward protocol shared by the layers that produce rewards (``credo.tasks``, user code) and the
one that consumes them (``credo.llm``): plain data and decorators, no model or tokenizer.

Reward functions are called as ``fn(prompts, completions, **meta)`` with lists of length B; their
kind says what they return:

* ``"completion"`` (any plain callable): ``list[float]``, one reward per completion;
* ``"candidates"`` (decorate with :func:`candidate_reward`): per completion a
  :class:`CandidateScores`: K scores, K character spans in the completion text, the set reward, and
  the set utility as a one-row :class:`~credo.credit.games.SetGame` over the K candidates;
* ``"tokens"`` (decorate with :func:`token_reward`): per completion ``(char_position, reward)``
  pairs, e.g. a process reward at the end of each reasoning step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from credo.credit.games import SetGame

RewardKind = Literal["completion", "candidates", "tokens"]
REWARD_KINDS: tuple[str, ...] = ("completion", "candidates", "tokens")


@dataclass(frozen=True)
class CandidateScores:
    """One completion's candidates.

    Attributes:
        scores: K per-candidate scores r_k.
        spans: K ``(start, end)`` character spans in the completion text, None for a candidate
            without one (missing or empty).
        set_reward: v(N), the reward of the whole answer.
        game: the set utility over these K candidates, a one-row :class:`SetGame` (default: the max
            game of ``scores``). Candidate estimators derive Shapley values and counterfactual
            values from it, so the credit sums to ``set_reward`` whatever the utility is.
    """

    scores: Sequence[float]
    spans: Sequence[tuple[int, int] | None]
    set_reward: float
    game: SetGame | None = None

    def __post_init__(self) -> None:
        if len(self.scores) != len(self.spans):
            raise ValueError(f"CandidateScores: {len(self.scores)} scores but {len(self.spans)} spans")
        if self.game is not None:
            if not isinstance(self.game, SetGame):
                raise TypeError(f"CandidateScores.game must be a SetGame, got {type(self.game).__name__}")
            if self.game.batch_size != 1 or self.game.num_players != len(self.scores):
                raise ValueError(
                    f"CandidateScores.game must be one game of {len(self.scores)} players, got "
                    f"{self.game.batch_size} games of {self.game.num_players}"
                )


def candidate_reward(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark ``fn`` as a per-candidate reward function (returns a list of :class:`CandidateScores`)."""
    fn.reward_kind = "candidates"  # type: ignore[attr-defined]
    return fn


def token_reward(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark ``fn`` as a per-step reward function (returns, per completion, ``(char_pos, reward)`` pairs)."""
    fn.reward_kind = "tokens"  # type: ignore[attr-defined]
    return fn
