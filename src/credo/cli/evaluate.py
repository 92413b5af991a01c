"""Held-out evaluation of a policy on a set-level task.

For each held-out prompt, sample ``samples_per_prompt`` answers from the policy (the policy's own
behaviour, temperature as in training, a fixed random stream so every policy is judged on the same
draws), parse and score them with the task, and report:

* ``set_utility``: the task's set utility v(S) of the answer (the user picks one candidate);
* ``mean_candidate_score``: the mean of the K candidate scores (are the K-1 others still useful?);
* ``distinct_valid``: the number of candidates with a positive score (repeats and unknown items
  score 0, so these are distinct and valid);
* ``unparsable``: the share of answers that did not give exactly K candidates;
* ``early_stop``: the share of answers that stopped before K candidates (fewer than K candidates
  with a non-empty parse; an answer with K or more is not early-stopped, extra items are ignored);
* ``kl_to_start``: the mean over answers of ``sum_t (log pi - log pi_start)``, a Monte Carlo
  estimate of the sequence-level KL(pi || pi_start) to the starting (reference) policy;
* ``completion_tokens``: the mean answer length in tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from credo.llm.rollout import sample_completions, sequence_logprobs
from credo.tasks.base import SetScoring, SetTask, TaskPrompt


def _n_candidates(scoring: SetScoring) -> int:
    """The number of candidates of an answer with a non-empty parse (at most K: the scoring keeps K)."""
    return sum(1 for c in scoring.candidates if c.strip())


@torch.no_grad()
def evaluate_set_policy(
    model: Any,
    tokenizer: Any,
    task: SetTask,
    prompts: Sequence[TaskPrompt],
    samples_per_prompt: int = 4,
    max_new_tokens: int = 48,
    temperature: float = 1.0,
    reference: Any = None,
    seed: int = 1234,
    batch_prompts: int = 32,
) -> dict[str, float]:
    """Evaluate ``model`` on ``prompts`` (see the module docstring); returns the metric means."""
    if not prompts:
        raise ValueError("evaluate_set_policy needs at least one prompt")
    if samples_per_prompt < 1:
        raise ValueError(f"samples_per_prompt must be >= 1, got {samples_per_prompt}")
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {}
    n_answers = 0
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for start in range(0, len(prompts), batch_prompts):
                chunk = list(prompts[start : start + batch_prompts])
                batch = sample_completions(
                    model, tokenizer, [p.text for p in chunk], samples_per_prompt, max_new_tokens, temperature
                )
                kl = torch.zeros(batch.batch_size)
                if reference is not None:
                    ref = sequence_logprobs(
                        reference,
                        batch.prompt_ids,
                        batch.prompt_mask,
                        batch.completion_ids,
                        batch.completion_mask,
                        temperature,
                    )
                    kl = ((batch.logprobs.float() - ref) * batch.completion_mask).sum(1).cpu()
                lengths = batch.completion_mask.sum(1).cpu()
                for b, text in enumerate(batch.completions):
                    scoring = task.score_completion(chunk[b // samples_per_prompt], text)
                    row = {
                        "set_utility": scoring.set_reward,
                        "mean_candidate_score": sum(scoring.scores) / len(scoring.scores),
                        "distinct_valid": float(sum(s > 0 for s in scoring.scores)),
                        "unparsable": 0.0 if scoring.parsed_ok else 1.0,
                        "early_stop": 1.0 if _n_candidates(scoring) < task.k else 0.0,
                        "kl_to_start": float(kl[b]),
                        "completion_tokens": float(lengths[b]),
                    }
                    for key, value in row.items():
                        totals[key] = totals.get(key, 0.0) + value
                    n_answers += 1
    finally:
        model.train(was_training)
    return {key: value / n_answers for key, value in totals.items()}
