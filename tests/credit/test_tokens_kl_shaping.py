from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from credo.credit import (
    discounted_returns,
    expand_to_tokens,
    kl_estimate,
    kl_reward_penalty,
    last_token_index,
    outcome_token_rewards,
    potential_based_shaping,
    span_token_counts,
    spans_to_token_credit,
)

from .reference import spans_loop


def test_expand_and_outcome_with_left_and_right_padding(device: torch.device) -> None:
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], dtype=torch.bool, device=device)
    credit = torch.tensor([2.0, -1.0, 0.5], device=device)
    torch.testing.assert_close(expand_to_tokens(credit, mask), credit[:, None] * mask.float())
    assert last_token_index(mask).tolist() == [2, 4, 4]
    kl = torch.full((3, 5), -0.1, device=device)
    out = outcome_token_rewards(credit, mask, kl)
    expected = torch.where(mask, kl, torch.zeros_like(kl))
    expected[0, 2] += 2.0
    expected[1, 4] += -1.0
    expected[2, 4] += 0.5
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="no response token"):
        last_token_index(torch.tensor([[False, False]]))


def test_spans_to_token_credit_by_hand_and_against_loop(device: torch.device) -> None:
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    spans = torch.tensor([[[0, 2], [3, 5], [-1, -1]], [[5, 7], [1, 3], [3, 4]]])
    credit = torch.tensor([[0.5, 0.25, 9.0], [1.0, 2.0, 3.0]])
    outside = torch.tensor([0.75, -1.0])
    out = spans_to_token_credit(
        credit.to(device), spans.to(device), mask.to(device), outside.to(device)
    ).cpu()
    expected = torch.tensor([[0.5, 0.5, 0.75, 0.25, 0.25, 0.75, 0.0], [0.0, 2.0, 2.0, 3.0, -1.0, 1.0, 1.0]])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out.double(), spans_loop(credit, spans, mask, outside))
    assert span_token_counts(spans).tolist() == [[2, 2, 0], [2, 2, 1]]


def test_spans_bad_input_names_the_problem() -> None:
    mask = torch.ones(1, 6, dtype=torch.bool)
    credit, outside = torch.ones(1, 2), torch.zeros(1)
    with pytest.raises(ValueError, match="K="):
        spans_to_token_credit(torch.ones(1, 3), torch.tensor([[[0, 1], [2, 3]]]), mask, outside)
    with pytest.raises(ValueError, match="overlap"):
        spans_to_token_credit(credit, torch.tensor([[[0, 3], [2, 4]]]), mask, outside)
    with pytest.raises(ValueError, match="past the sequence end"):
        spans_to_token_credit(credit, torch.tensor([[[0, 3], [4, 9]]]), mask, outside)
    with pytest.raises(ValueError, match="start < end"):
        spans_to_token_credit(credit, torch.tensor([[[3, 3], [4, 5]]]), mask, outside)
    with pytest.raises(ValueError, match="span_credit"):
        spans_to_token_credit(
            torch.tensor([[1.0, float("nan")]]), torch.tensor([[[0, 1], [2, 3]]]), mask, outside
        )
    with pytest.raises(ValueError, match="outside response_mask"):
        spans_to_token_credit(
            credit, torch.tensor([[[0, 1], [2, 3]]]), torch.tensor([[0, 1, 1, 1, 1, 1]]).bool(), outside
        )


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_spans_property_matches_loop(data: st.DataObject) -> None:
    B, T, K = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 12)), data.draw(st.integers(1, 4))
    spans = torch.full((B, K, 2), -1, dtype=torch.long)
    for b in range(B):
        cuts = sorted(data.draw(st.lists(st.integers(0, T), min_size=2 * K, max_size=2 * K)))
        for k in range(K):
            s, e = cuts[2 * k], cuts[2 * k + 1]
            if e > s and data.draw(st.booleans()):
                spans[b, k] = torch.tensor([s, e])
    mask = torch.ones(B, T, dtype=torch.bool)
    credit = torch.randn(B, K, dtype=torch.float64)
    outside = torch.randn(B, dtype=torch.float64)
    torch.testing.assert_close(
        spans_to_token_credit(credit, spans, mask, outside), spans_loop(credit, spans, mask, outside)
    )


def test_kl_estimators_formulas_and_unbiasedness() -> None:
    logp = torch.tensor([-1.0, -2.0, -0.5])
    ref = torch.tensor([-1.5, -1.0, -0.5])
    d = logp - ref
    torch.testing.assert_close(kl_estimate(logp, ref, "k1"), d)
    torch.testing.assert_close(kl_estimate(logp, ref, "k2"), 0.5 * d**2)
    torch.testing.assert_close(kl_estimate(logp, ref, "k3"), torch.exp(-d) - 1 + d)
    torch.testing.assert_close(kl_reward_penalty(logp, ref, 0.1), -0.1 * d)
    with pytest.raises(ValueError, match="kind"):
        kl_estimate(logp, ref, "k4")
    # k1 and k3 are unbiased for KL(pi || ref) under samples from pi; k3 is never negative.
    p = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    q = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    true_kl = float((p * (p / q).log()).sum())
    for kind in ("k1", "k3"):
        expectation = float((p * kl_estimate(p.log(), q.log(), kind)).sum())
        assert math.isclose(expectation, true_kl, rel_tol=1e-12)
    assert bool((kl_estimate(p.log(), q.log(), "k3") >= 0).all())


def test_potential_shaping_telescopes_and_keeps_returns_up_to_phi0() -> None:
    g = torch.Generator().manual_seed(0)
    rewards = torch.randn(3, 10, generator=g, dtype=torch.float64)
    phi = torch.randn(3, 11, generator=g, dtype=torch.float64)
    terminated = torch.zeros(3, 10, dtype=torch.bool)
    terminated[:, -1] = True
    shaped = potential_based_shaping(rewards, phi[:, :-1], phi[:, 1:], 0.9, terminated)
    ret = discounted_returns(rewards, terminated, 0.9)
    shaped_ret = discounted_returns(shaped, terminated, 0.9)
    torch.testing.assert_close(shaped_ret[:, 0], ret[:, 0] - phi[:, 0])
    with pytest.raises(ValueError, match="gamma"):
        potential_based_shaping(rewards, phi[:, :-1], phi[:, 1:], 2.0)
