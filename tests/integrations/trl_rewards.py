"""The reward functions and layout shared by ``test_trl.py`` and ``trl_ddp_worker.py`` (which torchrun
runs as a script, so this is a plain module beside both)."""

from __future__ import annotations

from typing import Any

from credo.credit.reward_types import CandidateScores, candidate_reward

G = 4
SPANS = [(0, 2), (2, 4), (4, 6)]  # three candidates: the completion's characters 0-1, 2-3, 4-5


def chunk_score(text: str) -> float:
    return sum(ord(ch) % 5 for ch in text) / (4.0 * max(len(text), 1))


@candidate_reward
def chunk_reward(prompts: list[str], completions: list[str], **meta: Any) -> list[CandidateScores]:
    """Candidates: fixed 2-character chunks; a chunk scores by its characters; the set reward is the max."""
    out = []
    for text in completions:
        spans = [(a, b) if b <= len(text) else None for a, b in SPANS]
        scores = [chunk_score(text[a:b]) if (a, b) == span else 0.0 for (a, b), span in zip(SPANS, spans)]
        out.append(CandidateScores(scores=scores, spans=spans, set_reward=max(scores)))
    return out


def length_reward(prompts: list[str], completions: list[str], **meta: Any) -> list[float]:
    return [len(c) / 8.0 for c in completions]
