"""Inference-time search with a reward model: best-of-N, PRM-guided beam search and diverse verifier
tree search (DVTS), each counting its model calls so they can be compared at equal budget.

Steps are separated by ``step_separator`` (a blank line, :data:`credo.llm.prm.STEP_SEPARATOR`). A
*step sample* continues a prefix (prompt + partial answer) with the policy until the first separator
(kept at the end of the step: the answer goes on) or EOS (the answer is finished); a sample that
reaches ``max_step_tokens`` with neither is a finished, truncated answer.

Counting (:class:`SearchResult`):

* ``generator_calls``: sampled sequences, one per row of the policy's ``generate`` — a full answer in
  :func:`best_of_n`, one step in the tree searches (a batched ``generate`` of R rows counts R);
* ``scorer_calls``: texts scored by the reward model (one forward row each): every candidate once in
  :func:`best_of_n`, every new partial answer once in the tree searches;
* ``generated_tokens``: tokens of the kept samples (the answer or the step, EOS and separator
  included; what the sampler produced after a step's separator is dropped and not counted);
* ``model_calls`` = ``generator_calls + scorer_calls``.

Searches:

* :func:`best_of_n`: N full answers, the one ``scorer`` (an outcome RM's or a PRM's
  ``as_reward_function``) scores highest. Cost: N generator + N scorer calls.
* :func:`prm_beam_search` (seed 000's ``search_with_prm``): the prompt is expanded with
  ``beam_width * expansions`` step samples; every later round expands each of the (at most)
  ``beam_width`` live beams with ``expansions`` samples. Every new partial answer is scored by the PRM
  (its step scores aggregated by ``how``: min, prod or last); finished answers leave the beam for the
  pool of completed answers, and the best ``beam_width`` unfinished ones go on. After ``max_steps``
  rounds the live beams join the pool; the answer is the pool's best score. Cost per round: at most
  ``beam_width * expansions`` generator and as many scorer calls.
* :func:`dvts` (search-and-learn's diverse verifier tree search): the budget is split into
  ``subtrees`` independent subtrees, each a beam search of width 1: its root takes ``expansions``
  step samples, the PRM keeps the best, which is expanded again with ``expansions`` samples, and so
  on until it finishes or ``max_steps`` rounds. The answer is the best-scored final answer over the
  subtrees. With ``subtrees == beam_width`` it costs what :func:`prm_beam_search` costs (per round
  ``subtrees * expansions`` calls of each kind, fewer once subtrees finish) but one subtree cannot
  crowd out the others, which keeps the answers diverse.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from credo.llm.prm import (
    STEP_SEPARATOR,
    Aggregation,
    ProcessRewardModel,
    aggregate,
    split_steps,
    synthetic_step_examples,
    train_prm,
)
from credo.llm.rollout import sample_completions
from credo.llm.sft import sft_warmup
from credo.llm.tiny import build_tiny_model, tiny_model_config


@dataclass
class Budget:
    """Model calls so far (see the module docstring for what each counts)."""

    generator_calls: int = 0
    scorer_calls: int = 0
    generated_tokens: int = 0

    @property
    def model_calls(self) -> int:
        return self.generator_calls + self.scorer_calls


@dataclass(frozen=True)
class Step:
    """One sampled continuation: ``text`` (ends with the separator unless ``finished``)."""

    text: str
    finished: bool
    tokens: int


@dataclass
class SearchResult:
    completion: str
    score: float
    budget: Budget
    candidates: list[tuple[str, float]] = field(default_factory=list)

    @property
    def generator_calls(self) -> int:
        return self.budget.generator_calls

    @property
    def scorer_calls(self) -> int:
        return self.budget.scorer_calls

    @property
    def model_calls(self) -> int:
        return self.budget.model_calls


def sample_steps(
    policy: Any,
    tokenizer: Any,
    prefixes: Sequence[str],
    k: int,
    max_step_tokens: int = 32,
    step_separator: str = STEP_SEPARATOR,
    temperature: float = 1.0,
    budget: Budget | None = None,
) -> list[list[Step]]:
    """``k`` next steps of each prefix (prompt + partial answer), cut after the first separator."""
    batch = sample_completions(policy, tokenizer, list(prefixes), k, max_step_tokens, temperature)
    rows: list[list[Step]] = [[] for _ in prefixes]
    for r, text in enumerate(batch.completions):
        ids = batch.completion_ids[r][batch.completion_mask[r]].tolist()
        cut = text.find(step_separator)
        if cut >= 0:
            kept = text[: cut + len(step_separator)]
            step = Step(kept, False, len(tokenizer(kept, add_special_tokens=False)["input_ids"]))
        else:
            step = Step(text, True, len(ids))
        rows[r // k].append(step)
    if budget is not None:
        budget.generator_calls += len(prefixes) * k
        budget.generated_tokens += sum(s.tokens for row in rows for s in row)
    return rows


def _finish(text: str, step_separator: str) -> str:
    """A final answer: trailing separators removed."""
    while step_separator and text.endswith(step_separator):
        text = text[: -len(step_separator)]
    return text


def best_of_n(
    policy: Any,
    tokenizer: Any,
    prompt: str,
    n: int,
    rm: Callable[..., list[float]],
    max_new_tokens: int = 64,
    temperature: float = 1.0,
) -> SearchResult:
    """N sampled full answers reranked by ``rm`` (``fn(prompts, completions) -> scores``)."""
    if n < 1:
        raise ValueError(f"best_of_n needs n >= 1, got {n}")
    batch = sample_completions(policy, tokenizer, [prompt], n, max_new_tokens, temperature)
    answers = list(batch.completions)
    scores = [float(s) for s in rm([prompt] * n, answers)]
    budget = Budget(n, n, int(batch.completion_mask.sum()))
    best = max(range(n), key=lambda i: scores[i])
    return SearchResult(answers[best], scores[best], budget, list(zip(answers, scores, strict=True)))


def score_partials(
    prm: ProcessRewardModel,
    prompt: str,
    partials: Sequence[str],
    how: Aggregation,
    budget: Budget,
) -> list[float]:
    """Aggregated PRM step scores of each partial answer (-inf for one without a step)."""
    if not partials:
        return []
    step_scores = prm.step_scores([prompt] * len(partials), list(partials))
    budget.scorer_calls += len(partials)
    return [aggregate(s, how) if s else float("-inf") for s in step_scores]


def _tree_search(
    policy: Any,
    tokenizer: Any,
    prm: ProcessRewardModel,
    prompt: str,
    groups: int,
    beam_width: int,
    expansions: int,
    max_steps: int,
    step_separator: str,
    how: Aggregation,
    max_step_tokens: int,
    temperature: float,
) -> SearchResult:
    """``groups`` independent beam searches of width ``beam_width``, sampled in shared batches."""
    if min(groups, beam_width, expansions, max_steps) < 1:
        raise ValueError("groups, beam_width, expansions and max_steps must all be >= 1")
    budget = Budget()
    done: list[tuple[str, float]] = []
    live: list[list[tuple[str, float]]] = [[("", 0.0)] for _ in range(groups)]
    for depth in range(max_steps):
        beams = [(g, text) for g, group in enumerate(live) for text, _ in group]
        if not beams:
            break
        k = expansions * (beam_width if depth == 0 else 1)
        steps = sample_steps(
            policy, tokenizer, [prompt + t for _, t in beams], k, max_step_tokens, step_separator,
            temperature, budget,
        )  # fmt: skip
        children = [(g, text + s.text, s.finished) for (g, text), row in zip(beams, steps) for s in row]
        scores = score_partials(prm, prompt, [c for _, c, _ in children], how, budget)
        live = [[] for _ in range(groups)]
        for (g, text, finished), score in zip(children, scores):
            (done if finished else live[g]).append((text, score))
        live = [sorted(group, key=lambda x: -x[1])[:beam_width] for group in live]
    done += [x for group in live for x in group]
    pool = [(_finish(t, step_separator), s) for t, s in done]
    best = max(pool, key=lambda x: x[1])
    return SearchResult(best[0], best[1], budget, pool)


def prm_beam_search(
    policy: Any,
    tokenizer: Any,
    prm: ProcessRewardModel,
    prompt: str,
    beam_width: int = 4,
    expansions: int = 4,
    max_steps: int = 8,
    step_separator: str = STEP_SEPARATOR,
    how: Aggregation = "min",
    max_step_tokens: int = 32,
    temperature: float = 1.0,
) -> SearchResult:
    """Beam search over steps scored by a PRM (see the module docstring)."""
    return _tree_search(
        policy, tokenizer, prm, prompt, 1, beam_width, expansions, max_steps, step_separator, how,
        max_step_tokens, temperature,
    )  # fmt: skip


def dvts(
    policy: Any,
    tokenizer: Any,
    prm: ProcessRewardModel,
    prompt: str,
    subtrees: int = 4,
    expansions: int = 4,
    max_steps: int = 8,
    step_separator: str = STEP_SEPARATOR,
    how: Aggregation = "min",
    max_step_tokens: int = 32,
    temperature: float = 1.0,
) -> SearchResult:
    """Diverse verifier tree search: ``subtrees`` independent width-1 PRM beams (module docstring)."""
    return _tree_search(
        policy, tokenizer, prm, prompt, subtrees, 1, expansions, max_steps, step_separator, how,
        max_step_tokens, temperature,
    )  # fmt: skip


# ----------------------------------------------------------------- a synthetic step task with a true reward


def synthetic_step_is_correct(step: str) -> bool:
    """The step rule of :func:`credo.llm.prm.synthetic_step_examples`: 4 lowercase letters, one an ``a``."""
    return len(step) == 4 and step.isalpha() and step.islower() and "a" in step


def synthetic_steps_true_reward(prompt: str, answer: str, step_separator: str = STEP_SEPARATOR) -> float:
    """Hidden reward of an answer of the synthetic step task: the share of correct steps (0 without steps)."""
    steps = [answer[a:b] for a, b in split_steps(answer, step_separator)]
    return sum(map(synthetic_step_is_correct, steps)) / len(steps) if steps else 0.0


def synthetic_search_setup(tokenizer: Any, seed: int = 0) -> tuple[Any, ProcessRewardModel]:
    """A tiny policy SFT'd on synthetic step answers whose steps are right half of the time
    (``synthetic_step_examples(p_wrong=0.5)``, 150 AdamW steps) and a 1-layer PRM trained on the step
    labels of other synthetic examples (80 steps): the setup of the search comparison (seconds on a CPU)."""
    torch.manual_seed(seed)
    data = synthetic_step_examples(400, p_wrong=0.5, seed=seed)
    policy = build_tiny_model(tiny_model_config(len(tokenizer), hidden_size=32, num_heads=2), seed=seed)
    pairs = [(e.prompt, STEP_SEPARATOR.join(e.steps)) for e in data]
    sft_warmup(policy, tokenizer, pairs, steps=150, lr=1e-2, seed=seed)
    backbone = build_tiny_model(
        tiny_model_config(len(tokenizer), hidden_size=32, num_heads=2, num_layers=1), seed=seed + 1
    )
    prm = ProcessRewardModel(backbone, tokenizer)
    train_prm(prm, synthetic_step_examples(300, seed=seed + 2), steps=80, batch_size=16, seed=seed)
    return policy, prm
