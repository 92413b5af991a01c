"""Rollout: sample G completions per prompt, and the per-token log-probs training needs.

Token layout (one row per completion, B = N prompts x G completions, prompt-major):

    input_ids = [ prompt (left-padded to P) | completion (right-padded to L) ]      [B, P + L]

``completion_mask[b, t]`` is True on the completion's tokens up to and including its first EOS (a
completion without EOS was truncated at ``max_new_tokens`` and keeps all L tokens). Every per-token
tensor here (``logprobs``, ``ref_logprobs``, ``values``, advantages, the credit layer's
``response_mask``) lives on the completion axis ``[B, L]``: column t is completion token t, whose
log-prob is read from the logits at position ``P + t - 1``.

Position ids are ``cumsum(attention_mask) - 1`` (0 on left padding), the convention of Hugging Face
``generate``, so the log-probs recorded while sampling equal those of a training forward pass with the
same parameters (tested with padding on either side).
"""

from __future__ import annotations

import contextlib
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Any

import torch
from torch import Tensor


@dataclass
class RolloutBatch:
    """B = N x G completions of one training step, on one device.

    Attributes:
        prompt_ids: ``[B, P]`` long, left-padded prompt tokens; prompt_mask: ``[B, P]`` bool.
        completion_ids: ``[B, L]`` long, right-padded completion tokens (EOS included).
        completion_mask: ``[B, L]`` bool, True on completion tokens up to and including EOS.
        logprobs: ``[B, L]`` float32 log pi_old(token) of the policy that sampled, at the sampling
            temperature (0 on padding).
        ref_logprobs: ``[B, L]`` log pi_ref of the frozen reference, or None (no KL term).
        values: ``[B, L]`` critic values V(s_t) before token t, or None (no critic).
        prompts, completions: the texts, ``B`` each (prompt text repeated G times).
        group_size: G. prompt_index: ``[B]`` long, the index of the row's prompt in this step.
        meta: per-row extra fields handed to reward functions (lists of length B).
        token_offsets: per row, the ``[start, end)`` character span of each completion token in the
            completion text; filled on first use (:meth:`offsets`), needed by candidate and per-step
            rewards.
    """

    prompt_ids: Tensor
    prompt_mask: Tensor
    completion_ids: Tensor
    completion_mask: Tensor
    logprobs: Tensor
    ref_logprobs: Tensor | None
    values: Tensor | None
    prompts: list[str]
    completions: list[str]
    group_size: int
    prompt_index: Tensor
    meta: dict[str, list[Any]] = field(default_factory=dict)
    token_offsets: list[list[tuple[int, int]]] | None = None

    @property
    def batch_size(self) -> int:
        return int(self.completion_ids.shape[0])

    def offsets(self, tokenizer: Any) -> list[list[tuple[int, int]]]:
        """``token_offsets``, computed once with :func:`completion_token_offsets`."""
        if self.token_offsets is None:
            self.token_offsets = completion_token_offsets(
                tokenizer, self.completion_ids, self.completion_mask, self.completions
            )
        return self.token_offsets

    def rows(self, index: Tensor) -> RolloutBatch:
        """The sub-batch of rows ``index`` ([b] long) — tensors sliced, texts kept aligned."""
        idx = index.tolist()

        def take(x: Tensor | None) -> Tensor | None:
            return None if x is None else x[index]

        return replace(
            self,
            prompt_ids=self.prompt_ids[index],
            prompt_mask=self.prompt_mask[index],
            completion_ids=self.completion_ids[index],
            completion_mask=self.completion_mask[index],
            logprobs=self.logprobs[index],
            ref_logprobs=take(self.ref_logprobs),
            values=take(self.values),
            prompts=[self.prompts[i] for i in idx],
            completions=[self.completions[i] for i in idx],
            prompt_index=self.prompt_index[index],
            meta={k: [v[i] for i in idx] for k, v in self.meta.items()},
            token_offsets=None if self.token_offsets is None else [self.token_offsets[i] for i in idx],
        )


def full_inputs(
    prompt_ids: Tensor, prompt_mask: Tensor, completion_ids: Tensor, completion_mask: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """``(input_ids, attention_mask, position_ids)``, each ``[B, P + L]``, for a forward pass.

    Completion padding after EOS is masked out of attention (it cannot affect earlier tokens anyway:
    attention is causal); position ids count attended tokens, as ``generate`` does.
    """
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
    attention_mask = torch.cat([prompt_mask.bool(), completion_mask.bool()], dim=1)
    position_ids = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
    return input_ids, attention_mask.long(), position_ids


TRIM_MULTIPLE = 32
"""On CUDA, trimmed micro-batches keep prompt and completion widths that are multiples of this (or the
whole width): a few shapes recur from step to step instead of a new one per micro-batch, so whatever
a kernel library does once per shape (plans, heuristics, allocations) is done a few times per run.
On the CPU, where a new shape costs nothing, the trim is exact."""


def padding_bounds(prompt_mask: Tensor, completion_mask: Tensor, multiple: int = 1) -> tuple[int, int]:
    """``(start, width)`` of the columns of a micro-batch that hold tokens: prompt columns before
    ``start`` and completion columns from ``width`` on are padding in every row.

    Args:
        prompt_mask: ``[b, P]`` bool (left padding). completion_mask: ``[b, L]`` bool (right padding).
        multiple: round the kept prompt width ``P - start`` and ``width`` up to a multiple of this
            (at most ``P`` and ``L``); 1: the exact bounds.

    Returns:
        ``start`` in ``[0, P - 1]`` (one prompt column is always kept: the logit at position
        ``P - 1`` predicts completion token 0) and ``width`` in ``[min(1, L), L]``.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    P, L = prompt_mask.shape[1], completion_mask.shape[1]
    device = completion_mask.device
    # first prompt column holding a token (P if none), one past the last completion column holding
    # one (0 if none); both read back in one transfer (one host sync per micro-batch)
    first = torch.where(prompt_mask.bool().any(dim=0), torch.arange(P, device=device), P)
    end = torch.where(completion_mask.bool().any(dim=0), torch.arange(1, L + 1, device=device), 0)
    zero = torch.zeros((), dtype=torch.long, device=device)
    start, width = torch.stack([first.min() if P else zero + P, end.max() if L else zero]).tolist()
    start, width = min(start, max(P - 1, 0)), max(width, min(1, L))
    kept = -(-(P - start) // multiple) * multiple
    return max(P - kept, 0), min(-(-width // multiple) * multiple, L)


def trim_inputs(
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    completion_ids: Tensor,
    completion_mask: Tensor,
    multiple: int | None = None,
) -> tuple[tuple[Tensor, Tensor, Tensor, Tensor], int]:
    """The four token tensors without the columns that are padding in every row (see
    :func:`padding_bounds`; the kept widths rounded up to ``multiple``, by default
    :data:`TRIM_MULTIPLE` on CUDA and 1 elsewhere), and the kept completion width ``w``.

    Shapes ``[b, P]``, ``[b, P]``, ``[b, L]``, ``[b, L]`` -> ``[b, P']``, ``[b, P']``, ``[b, w]``,
    ``[b, w]``. Dropped prompt columns are leading columns that are masked in every row, so
    :func:`full_inputs` gives every kept token the same position id; dropped completion columns come
    after every row's last token and, attention being causal, cannot change the earlier logits.
    """
    if multiple is None:
        multiple = TRIM_MULTIPLE if completion_mask.is_cuda else 1
    start, width = padding_bounds(prompt_mask, completion_mask, multiple)
    trimmed = (
        prompt_ids[:, start:],
        prompt_mask[:, start:],
        completion_ids[:, :width],
        completion_mask[:, :width],
    )
    return trimmed, width


def trim_padding(
    batch: RolloutBatch, *row_tensors: Tensor | None
) -> tuple[RolloutBatch, list[Tensor | None]]:
    """``batch`` (a micro-batch) without the prompt and completion columns that are padding in every
    row, and ``row_tensors`` (``[b, L]`` tensors on the completion axis, e.g. advantages and returns,
    or None) cut to the same width ``[b, w]``.

    The batch's ``logprobs``, ``ref_logprobs`` and ``values`` are cut too; texts and offsets are kept.
    Ordering the rows by length before splitting into micro-batches makes ``w`` small.
    """
    (prompt_ids, prompt_mask, completion_ids, completion_mask), width = trim_inputs(
        batch.prompt_ids, batch.prompt_mask, batch.completion_ids, batch.completion_mask
    )

    def cut(x: Tensor | None) -> Tensor | None:
        return None if x is None else x[:, :width]

    trimmed = replace(
        batch,
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        completion_ids=completion_ids,
        completion_mask=completion_mask,
        logprobs=batch.logprobs[:, :width],
        ref_logprobs=cut(batch.ref_logprobs),
        values=cut(batch.values),
    )
    return trimmed, [cut(x) for x in row_tensors]


def pad_completion(x: Tensor, length: int) -> Tensor:
    """``x: [b, w]`` zero-padded on the right to ``[b, length]`` (undoes a trim's cut)."""
    return torch.nn.functional.pad(x, (0, length - x.shape[1]))


def token_logprobs_from_logits(logits: Tensor, tokens: Tensor, temperature: float = 1.0) -> Tensor:
    """``log softmax(logits / temperature)[tokens]`` in float32. logits ``[B, L, V]``, tokens ``[B, L]``."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    return torch.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Per-position entropy ``-sum_v p_v log p_v`` of ``softmax(logits / temperature)``, ``[B, L]``."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def completion_logits(model: Any, batch_tensors: tuple[Tensor, Tensor, Tensor, Tensor]) -> Tensor:
    """Logits predicting each completion token: ``[B, L, V]`` (positions ``P-1 .. P+L-2``)."""
    prompt_ids, prompt_mask, completion_ids, completion_mask = batch_tensors
    L = completion_ids.shape[1]
    input_ids, attention_mask, position_ids = full_inputs(
        prompt_ids, prompt_mask, completion_ids, completion_mask
    )
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        logits_to_keep=L + 1,
        use_cache=False,
    )
    return out.logits[:, :-1]


def sequence_logprobs(
    model: Any,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    completion_ids: Tensor,
    completion_mask: Tensor,
    temperature: float = 1.0,
    micro_batch_size: int | None = None,
    precision: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> Tensor:
    """Per-token log-probs ``[B, L]`` (float32, 0 on padding) of the completion tokens under ``model``
    (at ``temperature``): the one function that scores completions with a model that did not sample
    them (the trainer's frozen reference, the vLLM backend's ``log pi_old``, evaluation's KL).

    ``micro_batch_size``: rows per forward pass (default all), each run without the columns that are
    padding in all its rows (:func:`trim_inputs`); ``precision``: a context for each forward pass
    (e.g. bf16 autocast). No gradients are turned off here: wrap in ``torch.no_grad()``.
    """
    B, L = completion_ids.shape
    chunks = [
        slice(start, start + (micro_batch_size or B)) for start in range(0, B, micro_batch_size or max(B, 1))
    ]
    parts = []
    for rows in chunks:
        tensors, _ = trim_inputs(
            prompt_ids[rows], prompt_mask[rows], completion_ids[rows], completion_mask[rows]
        )
        with precision():
            logits = completion_logits(model, tensors)
        parts.append(pad_completion(token_logprobs_from_logits(logits, tensors[2], temperature), L))
    return torch.cat(parts).masked_fill(~completion_mask.bool(), 0.0)


class _RecordLogprobs:
    """Logits processor: applies the temperature, optional top-k, and records the log-prob of each
    sampled token under the tempered (untruncated) distribution.

    At step t it sees the token sampled at step t-1 (the last column of ``input_ids``) and reads its
    log-prob from the distribution it saved at step t-1; :meth:`finish` reads the last token's. Only
    one ``[B, V]`` distribution is held at a time.
    """

    def __init__(self, temperature: float, top_k: int | None) -> None:
        self.temperature = temperature
        self.top_k = top_k
        self.previous: Tensor | None = None
        self.recorded: list[Tensor] = []

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        if self.previous is not None:
            self.recorded.append(self.previous.gather(-1, input_ids[:, -1:]).squeeze(-1))
        scores = scores.float() / self.temperature
        self.previous = torch.log_softmax(scores, dim=-1)
        if self.top_k:
            kth = torch.topk(scores, min(self.top_k, scores.shape[-1]), dim=-1).values[:, -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        return scores

    def finish(self, last_tokens: Tensor) -> Tensor:
        """``[B, L]`` recorded log-probs, given the last sampled tokens ``[B]``."""
        assert self.previous is not None
        self.recorded.append(self.previous.gather(-1, last_tokens[:, None]).squeeze(-1))
        return torch.stack(self.recorded, dim=1)


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every id that ends a completion: the tokenizer's EOS and those of the model's generation config
    (chat models often have several, e.g. an end-of-turn token)."""
    ids: list[int] = []
    candidates = [
        tokenizer.eos_token_id,
        getattr(getattr(model, "generation_config", None), "eos_token_id", None),
    ]
    for value in candidates:
        for i in value if isinstance(value, list | tuple) else [value]:
            if isinstance(i, int) and i not in ids:
                ids.append(i)
    if not ids:
        raise ValueError(
            "neither the tokenizer nor the model defines an EOS token: completions could never stop"
        )
    return ids


def completion_mask_from_ids(completion_ids: Tensor, eos_token_id: int | Sequence[int]) -> Tensor:
    """``[B, L]`` bool: True up to and including the first EOS of each row (all True without EOS)."""
    eos_ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    is_eos = torch.zeros_like(completion_ids, dtype=torch.bool)
    for e in eos_ids:
        is_eos |= completion_ids == e
    eos_before = is_eos.long().cumsum(dim=1) - is_eos.long()  # EOS strictly before t
    return eos_before == 0


def encode_prompts(
    tokenizer: Any, prompts: Sequence[str], device: torch.device, pad_to_multiple_of: int | None = None
) -> tuple[Tensor, Tensor]:
    """Left-padded prompt ids and mask ``[N, P]`` (no special tokens added)."""
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(
            list(prompts),
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,
            pad_to_multiple_of=pad_to_multiple_of,
        )
    finally:
        tokenizer.padding_side = side
    return enc["input_ids"].to(device), enc["attention_mask"].to(device).bool()


def encode_groups(
    model: Any, tokenizer: Any, prompts: Sequence[str], group_size: int, pad_to_multiple_of: int | None
) -> tuple[Tensor, Tensor, list[int], int]:
    """What a sampler starts from: the left-padded prompt ids and mask ``[N G, P]``, each prompt
    repeated ``group_size`` times (rows prompt-major, on the model's device), the EOS ids and the pad
    id (the tokenizer's, else the first EOS)."""
    device = next(model.parameters()).device
    prompt_ids, prompt_mask = encode_prompts(tokenizer, prompts, device, pad_to_multiple_of)
    eos = eos_token_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    return (
        prompt_ids.repeat_interleave(group_size, dim=0),
        prompt_mask.repeat_interleave(group_size, dim=0),
        eos,
        pad,
    )


def check_sampling(group_size: int, temperature: float) -> None:
    """A ValueError naming the argument when a sampler's ``group_size`` or ``temperature`` is invalid."""
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


@torch.no_grad()
def sample_completions(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    group_size: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    static_cache: bool = False,
    pad_to_multiple_of: int | None = None,
) -> RolloutBatch:
    """Sample ``group_size`` completions of each prompt with ``model.generate`` (KV cache, one batched
    prefill of the left-padded prompts), recording the policy's per-token log-probs as it samples.

    ``static_cache=True`` asks ``generate`` for a static KV cache, with which transformers compiles
    the decoding step (CUDA graphs) on CUDA. Returns a :class:`RolloutBatch` without reference
    log-probs or values (see :func:`score_with_models`).
    """
    from transformers import GenerationConfig, LogitsProcessorList

    check_sampling(group_size, temperature)
    prompt_ids, prompt_mask, eos, pad = encode_groups(
        model, tokenizer, prompts, group_size, pad_to_multiple_of
    )
    gen_config = GenerationConfig(
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=max_new_tokens,
        eos_token_id=eos,
        pad_token_id=pad,
        return_dict_in_generate=False,
        cache_implementation="static" if static_cache else None,
    )
    recorder = _RecordLogprobs(temperature, top_k)
    was_training = model.training
    model.eval()
    try:
        sequences = model.generate(
            input_ids=prompt_ids,
            attention_mask=prompt_mask.long(),
            generation_config=gen_config,
            logits_processor=LogitsProcessorList([recorder]),
        )
    finally:
        model.train(was_training)
    completion_ids = sequences[:, prompt_ids.shape[1] :]
    logprobs = recorder.finish(completion_ids[:, -1])
    completion_mask = completion_mask_from_ids(completion_ids, eos)
    completion_ids = completion_ids.masked_fill(~completion_mask, pad)
    logprobs = logprobs.masked_fill(~completion_mask, 0.0)
    return rollout_batch(
        tokenizer, prompts, group_size, prompt_ids, prompt_mask, completion_ids, completion_mask, logprobs
    )


def rollout_batch(
    tokenizer: Any,
    prompts: Sequence[str],
    group_size: int,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    completion_ids: Tensor,
    completion_mask: Tensor,
    logprobs: Tensor,
) -> RolloutBatch:
    """The :class:`RolloutBatch` of ``group_size`` sampled completions per prompt (rows prompt-major,
    prompt tensors already repeated per completion), with decoded texts; any sampling backend ends here."""
    return RolloutBatch(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        completion_ids=completion_ids,
        completion_mask=completion_mask,
        logprobs=logprobs,
        ref_logprobs=None,
        values=None,
        prompts=[p for p in prompts for _ in range(group_size)],
        completions=decode_completions(tokenizer, completion_ids, completion_mask),
        group_size=group_size,
        prompt_index=torch.arange(len(prompts), device=completion_ids.device).repeat_interleave(group_size),
    )


def decode_completions(tokenizer: Any, completion_ids: Tensor, completion_mask: Tensor) -> list[str]:
    """The completions' texts, special tokens (EOS) dropped."""
    rows = [ids[mask].tolist() for ids, mask in zip(completion_ids.cpu(), completion_mask.cpu())]
    return tokenizer.batch_decode(rows, skip_special_tokens=True)


def completion_token_offsets(
    tokenizer: Any, completion_ids: Tensor, completion_mask: Tensor, completions: Sequence[str]
) -> list[list[tuple[int, int]]]:
    """Character span ``[start, end)`` in the completion text of each completion token.

    Re-tokenises each text with ``return_offsets_mapping``; where that does not give back the sampled
    tokens (a BPE can tokenise a text in several ways), falls back to incremental decoding. Special
    tokens (EOS) get the empty span at the end of the text.
    """
    special = set(tokenizer.all_special_ids)
    result: list[list[tuple[int, int]]] = []
    for ids_row, mask_row, text in zip(completion_ids.cpu(), completion_mask.cpu(), completions):
        ids = ids_row[mask_row].tolist()
        plain = [i for i in ids if i not in special]
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if enc["input_ids"] == plain:
            plain_offsets = iter([tuple(o) for o in enc["offset_mapping"]])
        else:  # incremental decoding: token k covers decode(ids[:k+1]) minus decode(ids[:k])
            spans, previous = [], 0
            for k in range(len(plain)):
                length = len(tokenizer.decode(plain[: k + 1], skip_special_tokens=True))
                spans.append((previous, max(previous, length)))
                previous = max(previous, length)
            plain_offsets = iter(spans)
        offsets = [(len(text), len(text)) if i in special else next(plain_offsets) for i in ids]
        result.append(offsets)
    return result


def char_spans_to_token_spans(
    char_spans: Sequence[tuple[int, int] | None], token_offsets: Sequence[tuple[int, int]]
) -> list[tuple[int, int] | None]:
    """Token span ``[t0, t1)`` of the tokens overlapping each character span ``[c0, c1)``.

    Args:
        char_spans: ``K`` character spans in the completion text, or None.
        token_offsets: the tokenizer's offset mapping of the completion, one ``(char_start, char_end)``
            per token (``[T]`` pairs). Zero-width tokens (special tokens, reported as ``(0, 0)`` or
            ``(n, n)``) cover no character and are never part of a span.

    Returns:
        ``K`` token spans: token ``t`` is inside iff ``start_t < c1 and end_t > c0`` (it overlaps the
        span, so a token crossing the span's boundary is included); None for a None or empty span, or
        when no token overlaps it.

    Cost: ``O(T + K log T)`` when the non-empty tokens' offsets are sorted (as for every left-to-right
    tokenizer), ``O(K T)`` otherwise.
    """
    real = [(t, int(s), int(e)) for t, (s, e) in enumerate(token_offsets) if e > s]
    starts = [s for _, s, _ in real]
    ends = [e for _, _, e in real]
    is_sorted = all(a <= b for a, b in pairwise(starts)) and all(a <= b for a, b in pairwise(ends))
    result: list[tuple[int, int] | None] = []
    for span in char_spans:
        if span is None:
            result.append(None)
            continue
        c0, c1 = int(span[0]), int(span[1])
        if c1 <= c0:
            result.append(None)
            continue
        if is_sorted:
            lo = bisect_right(ends, c0)  # first token ending after c0
            hi = bisect_left(starts, c1)  # tokens [lo, hi) start before c1
            hits = [real[i][0] for i in range(lo, hi)]
        else:
            hits = [t for t, s, e in real if s < c1 and e > c0]
        result.append((hits[0], hits[-1] + 1) if hits else None)
    return result


def char_position_to_token(position: int, offsets: Sequence[tuple[int, int]]) -> int:
    """The index of the token covering character ``position`` (the last token if past the end)."""
    for t, (s, e) in enumerate(offsets):
        if s <= position < e:
            return t
    return len(offsets) - 1
