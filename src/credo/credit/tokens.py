"""Spreading credit onto tokens: every estimator ends in token-level advantages ``[B, T]``.

Three ways of filling that tensor (DESIGN.md):

* bandit: one scalar per completion on every response token (:func:`expand_to_tokens`);
* token MDP: an outcome reward on the last response token plus per-token rewards such as the KL
  penalty (:func:`outcome_token_rewards`), then returns or GAE over time;
* candidate spans: one credit per token span (a candidate of a set-valued answer), and a default for
  response tokens outside every span (:func:`spans_to_token_credit`), the form ShapE-GRPO needs.

Padding (``response_mask`` False) always gets 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from credo.credit._checks import as_bool, check_finite, check_tensor, float_dtype


def _check_mask(response_mask: Tensor) -> Tensor:
    check_tensor("response_mask", response_mask)
    if response_mask.dim() != 2:
        raise ValueError(f"response_mask must be [B, T], got shape {tuple(response_mask.shape)}")
    return as_bool("response_mask", response_mask)


def _check_per_row(name: str, value: Tensor, B: int) -> None:
    check_tensor(name, value)
    if value.shape != (B,):
        raise ValueError(f"{name} must be [B]=[{B}], got shape {tuple(value.shape)}")
    check_finite(name, value)


def expand_to_tokens(credit: Tensor, response_mask: Tensor) -> Tensor:
    """Bandit formulation: ``credit[b]`` on every response token of row b.

    Args:
        credit: ``[B]``; response_mask: ``[B, T]`` bool.

    Returns:
        ``[B, T]``, 0 on padding.
    """
    mask = _check_mask(response_mask)
    _check_per_row("credit", credit, mask.shape[0])
    dtype = float_dtype(credit)
    return credit.to(dtype)[:, None] * mask.to(dtype)


def last_token_index(response_mask: Tensor) -> Tensor:
    """``[B]`` index of the last response token of each row (left or right padding alike).

    Raises if a row has no response token.
    """
    mask = _check_mask(response_mask)
    empty = ~mask.any(dim=1)
    if bool(empty.any()):
        rows = torch.nonzero(empty).flatten().tolist()[:5]
        raise ValueError(f"response_mask has rows with no response token (rows {rows})")
    T = mask.shape[1]
    return (T - 1) - mask.flip(dims=[1]).to(torch.int8).argmax(dim=1)


def outcome_token_rewards(
    rewards: Tensor, response_mask: Tensor, token_rewards: Tensor | None = None
) -> Tensor:
    """Token-MDP rewards: the outcome reward on the last response token, plus per-token rewards.

        r_t = token_rewards_t + [t == last(b)] * rewards_b            (0 on padding)

    This is the seed's ``per_token_reward[range(B), -1] += score`` with the KL penalty as
    ``token_rewards`` (``-beta * (logp - ref_logp)``), made padding-aware.

    Args:
        rewards: ``[B]``; response_mask: ``[B, T]`` bool; token_rewards: ``[B, T]`` or None.

    Returns:
        ``[B, T]`` per-token rewards.
    """
    mask = _check_mask(response_mask)
    B, T = mask.shape
    _check_per_row("rewards", rewards, B)
    dtype = float_dtype(rewards) if token_rewards is None else float_dtype(rewards, token_rewards)
    out = torch.zeros((B, T), dtype=dtype, device=mask.device)
    if token_rewards is not None:
        check_tensor("token_rewards", token_rewards)
        if token_rewards.shape != (B, T):
            raise ValueError(f"token_rewards must be [B, T]=[{B}, {T}], got {tuple(token_rewards.shape)}")
        check_finite("token_rewards", token_rewards, mask)
        out = torch.where(mask, token_rewards.to(dtype), out)
    rows = torch.arange(B, device=mask.device)
    out[rows, last_token_index(mask)] += rewards.to(dtype)
    return out


def sequence_rewards(rewards: Tensor, response_mask: Tensor, token_rewards: Tensor | None = None) -> Tensor:
    """Bandit reward of each completion: outcome plus the sum of its per-token rewards, ``[B]``."""
    return outcome_token_rewards(rewards, response_mask, token_rewards).sum(dim=1)


def _check_spans(spans: Tensor, B: int, K: int | None, T: int, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    check_tensor("spans", spans)
    if spans.dim() != 3 or spans.shape[0] != B or spans.shape[2] != 2:
        raise ValueError(f"spans must be [B, K, 2]=[{B}, K, 2], got shape {tuple(spans.shape)}")
    if K is not None and spans.shape[1] != K:
        raise ValueError(f"spans has K={spans.shape[1]} candidates but span_credit has K={K}")
    if spans.dtype.is_floating_point or spans.dtype == torch.bool:
        raise TypeError(f"spans must be an integer tensor, got dtype {spans.dtype}")
    start, end = spans[..., 0].long(), spans[..., 1].long()
    present = (start >= 0) | (end >= 0)
    if bool((present & ((start < 0) | (end <= start))).any()):
        raise ValueError(
            "spans: a present span needs 0 <= start < end ([start, end) token indices); use -1 for none"
        )
    if bool((present & (end > T)).any()):
        raise ValueError(f"spans: a span ends past the sequence end T={T}")
    # Overlap: order each row's present spans by start, then each end must not pass the next start.
    big = torch.iinfo(torch.long).max
    order = torch.where(present, start, torch.full_like(start, big)).argsort(dim=1)
    s_sorted, e_sorted = start.gather(1, order), end.gather(1, order)
    p_sorted = present.gather(1, order)
    clash = p_sorted[:, 1:] & (e_sorted[:, :-1] > s_sorted[:, 1:])
    if bool(clash.any()):
        row = int(torch.nonzero(clash.any(dim=1)).flatten()[0])
        raise ValueError(f"spans overlap in row {row}: candidates' token spans must be disjoint")
    return start, end, present


def span_index_map(spans: Tensor, response_mask: Tensor) -> Tensor:
    """``[B, T]`` long: which candidate each token belongs to (k), or -1 outside every span.

    Built exactly in O(B*T) with an integer difference array and a cumulative sum.
    """
    mask = _check_mask(response_mask)
    B, T = mask.shape
    start, end, present = _check_spans(spans, B, None, T, mask)
    K = spans.shape[1]
    label = torch.arange(1, K + 1, device=mask.device).expand(B, K) * present
    diff = torch.zeros((B, T + 1), dtype=torch.long, device=mask.device)
    diff.scatter_add_(1, torch.where(present, start, T), label)
    diff.scatter_add_(1, torch.where(present, end, T), -label)
    owner = diff[:, :T].cumsum(dim=1) - 1
    if bool(((owner >= 0) & ~mask).any()):
        raise ValueError("spans cover tokens outside response_mask (prompt or padding): check span offsets")
    return owner


def span_token_counts(spans: Tensor) -> Tensor:
    """``[B, K]`` number of tokens in each span (0 for an absent span)."""
    start, end = spans[..., 0].long(), spans[..., 1].long()
    present = (start >= 0) & (end > start)
    return torch.where(present, end - start, torch.zeros_like(start))


def spans_to_token_credit(
    span_credit: Tensor, spans: Tensor, response_mask: Tensor, outside: Tensor
) -> Tensor:
    """Candidate-level credit: span k's tokens get ``span_credit[b, k]``, other response tokens
    get ``outside[b]``, padding gets 0.

    Args:
        span_credit: ``[B, K]`` credit of each span (candidate).
        spans: ``[B, K, 2]`` integer ``[start, end)`` token indices on the axis of ``response_mask``;
            ``-1`` (both ends) marks a candidate without a span (unparsable). Spans must be disjoint,
            inside ``[0, T]`` and on response tokens.
        response_mask: ``[B, T]`` bool.
        outside: ``[B]`` credit of response tokens outside every span.

    Returns:
        ``[B, T]`` token credit.
    """
    mask = _check_mask(response_mask)
    B, T = mask.shape
    check_tensor("span_credit", span_credit)
    if span_credit.dim() != 2 or span_credit.shape[0] != B:
        raise ValueError(f"span_credit must be [B, K]=[{B}, K], got shape {tuple(span_credit.shape)}")
    _check_spans(spans, B, span_credit.shape[1], T, mask)
    check_finite("span_credit", span_credit)
    _check_per_row("outside", outside, B)
    return credit_by_owner(span_credit, span_index_map(spans, mask), mask, outside)


def credit_by_owner(span_credit: Tensor, owner: Tensor, response_mask: Tensor, outside: Tensor) -> Tensor:
    """:func:`spans_to_token_credit` for spans already checked and mapped by :func:`span_index_map`
    (``owner [B, T]``): estimators validate their spans once per call and reuse the map."""
    mask = response_mask
    dtype = float_dtype(span_credit, outside)
    inside = span_credit.to(dtype).gather(1, owner.clamp(min=0))
    credit = torch.where(owner >= 0, inside, outside.to(dtype)[:, None])
    return torch.where(mask, credit, torch.zeros((), dtype=dtype, device=mask.device))
