from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from credo.credit import (
    dr_grpo_advantages,
    group_stats,
    grpo_advantages,
    moving_average_baseline,
    reinforce_advantages,
    reinforce_pp_advantages,
    rloo_advantages,
)

from .reference import grpo_loop, rloo_loop


def test_group_estimators_against_loops(device: torch.device) -> None:
    rewards = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    r = rewards.to(device)
    torch.testing.assert_close(rloo_advantages(r).cpu().double(), rloo_loop(rewards), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grpo_advantages(r).cpu().double(), grpo_loop(rewards), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        dr_grpo_advantages(r).cpu().double(), grpo_loop(rewards, scale=False), rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(reinforce_advantages(r).cpu(), rewards - rewards.mean(), rtol=1e-5, atol=1e-5)


def test_flat_rewards_with_group_ids_and_unequal_groups() -> None:
    rewards = torch.tensor([1.0, 5.0, 2.0, 3.0, 9.0, 4.0, 6.0])
    ids = torch.tensor([0, 1, 0, 0, 1, 2, 2])
    adv = rloo_advantages(rewards, ids)
    # group 0: {1, 2, 3}; group 1: {5, 9}; group 2: {4, 6}
    expected = torch.tensor([1 - 2.5, 5 - 9.0, 2 - 2.0, 3 - 1.5, 9 - 5.0, 4 - 6.0, 6 - 4.0])
    torch.testing.assert_close(adv, expected)
    g = grpo_advantages(rewards, ids)
    torch.testing.assert_close(g[[0, 2, 3]], torch.tensor([-1.0, 0.0, 1.0]), atol=1e-5, rtol=1e-5)


def test_large_common_offset_keeps_group_statistics_exact() -> None:
    noise = torch.tensor([[0.25, -0.5, 0.75, 0.0], [1.0, 0.5, -1.0, -0.25]])
    shifted = noise + 1e6  # exactly representable in float32 (multiples of 1/16 near 1e6)
    assert torch.equal(shifted - 1e6, noise)
    torch.testing.assert_close(rloo_advantages(shifted), rloo_advantages(noise))
    torch.testing.assert_close(grpo_advantages(shifted), grpo_advantages(noise))
    torch.testing.assert_close(reinforce_pp_advantages(shifted), reinforce_pp_advantages(noise))
    torch.testing.assert_close(reinforce_advantages(shifted), reinforce_advantages(noise))
    # The naive one-pass variance in float32 gets this wrong; group_stats does not.
    naive_var = (shifted**2).mean(-1) - shifted.mean(-1) ** 2
    true_var = noise.var(-1, unbiased=False)
    assert not torch.allclose(naive_var, true_var, atol=1e-2)
    torch.testing.assert_close(group_stats(shifted).std.reshape(2, 4)[:, 0], noise.std(-1))


def test_group_of_one_and_zero_variance_groups() -> None:
    with pytest.raises(ValueError, match="G >= 2"):
        rloo_advantages(torch.tensor([[1.0], [2.0]]))
    with pytest.raises(ValueError, match="G >= 2"):
        grpo_advantages(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0, 0, 1]))
    flat = torch.tensor([[3.0, 3.0, 3.0], [1.0, 2.0, 3.0]])
    for adv in (grpo_advantages(flat), rloo_advantages(flat), dr_grpo_advantages(flat)):
        assert torch.equal(adv[0], torch.zeros(3))
        assert bool(torch.isfinite(adv).all())


def test_nan_rewards_are_an_error() -> None:
    bad = torch.tensor([[1.0, float("nan")]])
    for fn in (rloo_advantages, grpo_advantages, reinforce_advantages, reinforce_pp_advantages):
        with pytest.raises(ValueError, match="rewards"):
            fn(bad)
    with pytest.raises(TypeError, match="group_ids"):
        rloo_advantages(torch.ones(4), torch.zeros(4))


def test_moving_average_baseline() -> None:
    b = moving_average_baseline(None, torch.tensor([1.0, 3.0]))
    assert float(b) == 2.0
    b = moving_average_baseline(b, torch.tensor([4.0, 6.0]), decay=0.75)
    assert float(b) == pytest.approx(0.75 * 2.0 + 0.25 * 5.0)
    torch.testing.assert_close(
        reinforce_advantages(torch.tensor([1.0, 4.0]), baseline=b), torch.tensor([1.0, 4.0]) - b
    )


def test_reinforce_pp_is_global_normalisation() -> None:
    rewards = torch.tensor([[1.0, 2.0], [10.0, 11.0]])
    adv = reinforce_pp_advantages(rewards)
    flat = rewards.flatten()
    torch.testing.assert_close(adv.flatten(), (flat - flat.mean()) / flat.std(), rtol=1e-5, atol=1e-6)
    base = reinforce_pp_advantages(rewards, subtract_group_mean=True)
    centred = torch.tensor([-0.5, 0.5, -0.5, 0.5])
    torch.testing.assert_close(base.flatten(), centred / centred.std(), rtol=1e-5, atol=1e-6)


@settings(max_examples=50, deadline=None)
@given(
    N=st.integers(1, 5),
    G=st.integers(2, 9),
    offset=st.sampled_from([0.0, 100.0, -3.0e4]),
    seed=st.integers(0, 10_000),
)
def test_properties_rloo_sums_to_zero_grpo_standardises(N: int, G: int, offset: float, seed: int) -> None:
    rewards = torch.randn(N, G, generator=torch.Generator().manual_seed(seed)) + offset
    assert torch.allclose(rloo_advantages(rewards).sum(-1), torch.zeros(N), atol=1e-3)
    adv = grpo_advantages(rewards, eps=0.0)
    torch.testing.assert_close(adv.mean(-1), torch.zeros(N), atol=1e-4, rtol=0)
    torch.testing.assert_close(adv.std(-1), torch.ones(N), atol=1e-4, rtol=1e-4)
