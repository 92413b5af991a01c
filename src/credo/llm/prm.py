"""Process reward models (PRM): a score for every step of a response, and best-of-N reranking.

Steps: a response is split into steps at a blank line (:data:`STEP_SEPARATOR` ``"\\n\\n"``, as in
search-and-learn); empty steps are dropped. Data (JSONL, TRL's stepwise-supervision names):
``{"prompt": str, "completions": [step, ...], "labels": [label, ...]}``, one label per step, a bool
(correct / incorrect) or a number in [0, 1]; the response text is ``separator.join(completions)``
after the prompt.

Model (TRL ``PRMTrainer`` style): :class:`ProcessRewardModel` is a :class:`RewardModel` whose head is
read at the last token of every step; the loss is binary cross-entropy of those logits against the
step labels, every other token ignored. ``step_scores`` are probabilities ``sigmoid(logit)``.

From step scores:

* an outcome score by :func:`aggregate` with ``"min"``, ``"prod"`` (product) or ``"last"``;
* per-token credit by :func:`step_token_credit` (every token of a step gets its step's score) and
  :meth:`ProcessRewardModel.as_token_reward` (a ``token_reward`` function for the trainer:
  ``"step_end"`` puts each step's score on the step's last character; ``"spread"`` on every character
  of the step, which is every token of the step for credo's character tokenizer);
* best-of-N reranking: :func:`best_of_n` with any completion scorer, counting scorer calls.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from credo.llm.reward_model import RewardModel
from credo.llm.rewards import token_reward

STEP_SEPARATOR = "\n\n"
Aggregation = Literal["min", "prod", "last"]


def split_steps(text: str, separator: str = STEP_SEPARATOR) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the non-empty steps of ``text`` (separators excluded)."""
    if not separator:
        raise ValueError("the step separator must be a non-empty string")
    spans, start = [], 0
    for piece in text.split(separator):
        end = start + len(piece)
        if piece.strip():
            spans.append((start, end))
        start = end + len(separator)
    return spans


def aggregate(step_scores: Sequence[float], how: Aggregation = "min") -> float:
    """One outcome score from step scores: their minimum, product, or the last one."""
    if not step_scores:
        raise ValueError("cannot aggregate the scores of a response with no steps")
    if how == "min":
        return float(min(step_scores))
    if how == "prod":
        return float(math.prod(step_scores))
    if how == "last":
        return float(step_scores[-1])
    raise ValueError(f"aggregation must be 'min', 'prod' or 'last', got {how!r}")


def step_token_credit(
    offsets: Sequence[tuple[int, int]], step_spans: Sequence[tuple[int, int]], scores: Sequence[float]
) -> list[float]:
    """Credit per token: a token whose characters start inside a step gets that step's score, other
    tokens (separators) 0. ``offsets``: each token's character span in the response."""
    if len(step_spans) != len(scores):
        raise ValueError(f"{len(step_spans)} steps but {len(scores)} scores")
    credit = [0.0] * len(offsets)
    for t, (start, _end) in enumerate(offsets):
        for (s, e), score in zip(step_spans, scores):
            if s <= start < e:
                credit[t] = float(score)
    return credit


@dataclass(frozen=True)
class StepExample:
    prompt: str
    steps: tuple[str, ...]
    labels: tuple[float, ...]


def parse_step_example(obj: Any, separator: str = STEP_SEPARATOR) -> StepExample:
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    missing = sorted({"prompt", "completions", "labels"} - set(obj))
    if missing:
        raise ValueError(f"missing field(s) {missing}")
    steps, labels = obj["completions"], obj["labels"]
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) and s.strip() for s in steps):
        raise ValueError("field 'completions' must be a non-empty list of non-empty step strings")
    if any(separator in s for s in steps):
        raise ValueError(f"a step contains the step separator {separator!r}")
    if not isinstance(labels, list) or len(labels) != len(steps):
        raise ValueError(f"field 'labels' must be a list with one label per step ({len(steps)})")
    values = []
    for label in labels:
        if isinstance(label, bool) or (isinstance(label, int | float) and 0 <= label <= 1):
            values.append(float(label))
        else:
            raise ValueError(f"a step label must be a bool or a number in [0, 1], got {label!r}")
    return StepExample(str(obj["prompt"]), tuple(steps), tuple(values))


def load_step_examples(path: str | os.PathLike[str], separator: str = STEP_SEPARATOR) -> list[StepExample]:
    """Step-labelled examples of a JSONL file; errors name ``file:line``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"step-label file {str(path)!r} does not exist")
    out = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                out.append(parse_step_example(json.loads(line), separator))
            except (json.JSONDecodeError, ValueError) as error:
                raise ValueError(f"{path}:{number}: {error}") from None
    if not out:
        raise ValueError(f"step-label file {str(path)!r} holds no examples")
    return out


def write_step_examples(examples: Sequence[StepExample], path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"prompt": e.prompt, "completions": list(e.steps), "labels": list(e.labels)} for e in examples]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def synthetic_step_examples(
    n: int, max_steps: int = 4, p_wrong: float = 0.3, seed: int = 0
) -> list[StepExample]:
    """A toy with a known step verifier: each step is 4 lowercase letters and is correct iff it
    holds an ``'a'``; labels are each step's correctness."""
    rng = random.Random(seed)
    letters = "bcdefghijklmnopqrstuvwxyz"
    examples = []
    for _ in range(n):
        steps, labels = [], []
        for _s in range(rng.randint(2, max_steps)):
            step = [rng.choice(letters) for _ in range(4)]
            ok = rng.random() >= p_wrong
            if ok:
                step[rng.randrange(4)] = "a"
            steps.append("".join(step))
            labels.append(1.0 if ok else 0.0)
        examples.append(StepExample("Steps:\n", tuple(steps), tuple(labels)))
    return examples


class ProcessRewardModel(RewardModel):
    """A :class:`RewardModel` read at the last token of every step (logit of "this step is good")."""

    separator: str = STEP_SEPARATOR

    def token_logits(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Head logits ``[N, T]`` at every token."""
        out = self.backbone.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        return self.head(out.last_hidden_state.to(self.head.weight.dtype)).squeeze(-1)

    def encode_steps(
        self, prompts: Sequence[str], responses: Sequence[str]
    ) -> tuple[Tensor, Tensor, list[list[int]]]:
        """Right-padded ids and mask of ``prompt + response``, and the token index of each step's last
        character."""
        rows, ends = [], []
        for prompt, response in zip(prompts, responses, strict=True):
            enc = self.tokenizer(prompt + response, add_special_tokens=False, return_offsets_mapping=True)
            offsets = enc["offset_mapping"]
            step_ends = []
            for _s, e in split_steps(response, self.separator):
                last_char = len(prompt) + e - 1
                step_ends.append(max(t for t, (a, _b) in enumerate(offsets) if a <= last_char))
            rows.append(enc["input_ids"])
            ends.append(step_ends)
        T = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(rows), T), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), T), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return ids.to(self.device), mask.to(self.device), ends

    def step_logits(self, prompts: Sequence[str], responses: Sequence[str]) -> list[Tensor]:
        ids, mask, ends = self.encode_steps(prompts, responses)
        logits = self.token_logits(ids, mask)
        return [logits[i, torch.tensor(e, dtype=torch.long, device=ids.device)] for i, e in enumerate(ends)]

    def loss(self, examples: Sequence[StepExample]) -> Tensor:
        """Binary cross-entropy of every step's logit against its label (mean over steps)."""
        responses = [self.separator.join(e.steps) for e in examples]
        logits = torch.cat(self.step_logits([e.prompt for e in examples], responses))
        labels = torch.tensor(
            [x for e in examples for x in e.labels], device=logits.device, dtype=logits.dtype
        )
        return nn.functional.binary_cross_entropy_with_logits(logits, labels)

    @torch.no_grad()
    def step_scores(self, prompts: Sequence[str], responses: Sequence[str]) -> list[list[float]]:
        """Probabilities that each step is good, per response."""
        was_training = self.training
        self.eval()
        try:
            return [torch.sigmoid(x).float().cpu().tolist() for x in self.step_logits(prompts, responses)]
        finally:
            self.train(was_training)

    def as_reward_function(
        self, batch_size: int = 64, name: str = "process_reward_model", how: Aggregation = "min"
    ) -> Callable[..., list[float]]:
        """An outcome reward function: the aggregated step scores (0 for a response with no step)."""

        def process_reward_model(prompts: list[str], completions: list[str], **meta: Any) -> list[float]:
            out = []
            for i in range(0, len(prompts), batch_size):
                ps, cs = prompts[i : i + batch_size], completions[i : i + batch_size]
                out += [aggregate(s, how) if s else 0.0 for s in self.step_scores(ps, cs)]
            return out

        process_reward_model.__name__ = name
        return process_reward_model

    def as_token_reward(self, mode: Literal["step_end", "spread"] = "step_end") -> Callable[..., Any]:
        """A ``token_reward`` function: per completion, ``(char_position, step score)`` pairs."""
        if mode not in ("step_end", "spread"):
            raise ValueError(f"mode must be 'step_end' or 'spread', got {mode!r}")

        @token_reward
        def process_step_rewards(prompts: list[str], completions: list[str], **meta: Any) -> list[Any]:
            result = []
            for scores, text in zip(self.step_scores(prompts, completions), completions):
                spans = split_steps(text, self.separator)
                if mode == "step_end":
                    result.append([(e - 1, s) for (_b, e), s in zip(spans, scores)])
                else:
                    result.append([(c, s) for (b, e), s in zip(spans, scores) for c in range(b, e)])
            return result

        return process_step_rewards


def train_prm(
    model: ProcessRewardModel,
    examples: Sequence[StepExample],
    steps: int = 100,
    lr: float = 3e-3,
    batch_size: int = 16,
    seed: int = 0,
) -> list[float]:
    """AdamW on random mini-batches of step-labelled examples; returns the losses."""
    if not examples or steps < 1 or batch_size < 1:
        raise ValueError("train_prm needs examples, steps >= 1 and batch_size >= 1")
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model.loss([rng.choice(examples) for _ in range(batch_size)])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def first_wrong_step(scores: Sequence[float], threshold: float = 0.5) -> int | None:
    """Index of the first step scored below ``threshold`` (None: all pass)."""
    return next((i for i, s in enumerate(scores) if s < threshold), None)


@dataclass(frozen=True)
class Reranked:
    index: int
    completion: str
    score: float
    scorer_calls: int


def best_of_n(
    scorer: Callable[..., list[float]], prompt: str, completions: Sequence[str], **meta: Any
) -> Reranked:
    """The completion the scorer (a completion reward function, e.g. ``RewardModel.as_reward_function()``)
    scores highest; ``scorer_calls`` = N (one model evaluation per completion)."""
    if not completions:
        raise ValueError("best_of_n needs at least one completion")
    scores = scorer([prompt] * len(completions), list(completions), **meta)
    best = max(range(len(completions)), key=lambda i: scores[i])
    return Reranked(best, completions[best], float(scores[best]), len(completions))
