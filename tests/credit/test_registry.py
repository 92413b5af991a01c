from __future__ import annotations

import pytest
import torch

from credo.credit import (
    ESTIMATORS,
    CreditBatch,
    compute_credit,
    gae,
    get_estimator,
    grpo_advantages,
    masked_whiten,
    rloo_advantages,
)

OUTCOME_ESTIMATORS = ["reinforce", "rloo", "grpo", "dr_grpo", "reinforce_pp", "gae"]


def _batch(device: torch.device, left_pad: bool = False) -> CreditBatch:
    g = torch.Generator().manual_seed(0)
    B, T, G = 6, 8, 3
    lengths = torch.tensor([8, 5, 3, 6, 8, 2])
    positions = torch.arange(T)
    mask = positions[None, :] < lengths[:, None]
    token_rewards = 0.01 * torch.randn(B, T, generator=g)
    values = torch.randn(B, T, generator=g)
    if left_pad:  # the same tokens, moved to the end of each row
        shift = lambda x: torch.stack([x[b].roll(int(T - lengths[b])) for b in range(B)])  # noqa: E731
        mask, token_rewards, values = shift(mask), shift(token_rewards), shift(values)
    return CreditBatch(
        rewards=torch.randn(B, generator=g).to(device),
        response_mask=mask.to(device),
        group_size=G,
        token_rewards=token_rewards.to(device),
        values=values.to(device),
    )


def test_registry_lists_every_outcome_estimator() -> None:
    for name in OUTCOME_ESTIMATORS:
        assert name in ESTIMATORS
    with pytest.raises(KeyError, match="known estimators"):
        get_estimator("ppo2")


@pytest.mark.parametrize("name", OUTCOME_ESTIMATORS)
def test_same_call_shape_and_padding_invisible(name: str, device: torch.device) -> None:
    right = compute_credit(name, _batch(device))
    left = compute_credit(name, _batch(device, left_pad=True))
    batch = _batch(device)
    assert right.advantages.shape == batch.response_mask.shape
    assert bool((right.advantages[~batch.response_mask] == 0).all())
    assert bool(torch.isfinite(right.advantages).all())
    # Left and right padding carry the same tokens in the same order: the same advantages.
    lengths = batch.response_mask.sum(1)
    for b in range(batch.batch_size):
        n = int(lengths[b])
        torch.testing.assert_close(right.advantages[b, :n], left.advantages[b, -n:], rtol=1e-5, atol=1e-5)


def test_bandit_estimators_put_group_advantage_on_every_token() -> None:
    batch = _batch(torch.device("cpu"))
    seq = batch.rewards + (batch.token_rewards * batch.response_mask).sum(1)
    rloo = compute_credit("rloo", batch).advantages
    grpo = compute_credit("grpo", batch).advantages
    expected_rloo = rloo_advantages(seq.reshape(2, 3)).reshape(6)
    expected_grpo = grpo_advantages(seq.reshape(2, 3)).reshape(6)
    mask = batch.response_mask
    torch.testing.assert_close(rloo, expected_rloo[:, None] * mask)
    torch.testing.assert_close(grpo, expected_grpo[:, None] * mask)


def test_gae_estimator_against_functional_gae() -> None:
    batch = _batch(torch.device("cpu"))
    result = compute_credit("gae", batch, gamma=0.99, lam=0.9, whiten=False)
    mask = batch.response_mask
    for b in range(batch.batch_size):
        n = int(mask[b].sum())
        r = (batch.token_rewards[b, :n] * 1).clone()
        r[n - 1] += batch.rewards[b]
        v = batch.values[b, :n]
        nv = torch.cat([v[1:], torch.zeros(1)])
        done = torch.zeros(n, dtype=torch.bool)
        done[-1] = True
        expected = gae(r[None], v[None], nv[None], done[None], done[None], 0.99, 0.9)[0]
        torch.testing.assert_close(result.advantages[b, :n], expected)
        torch.testing.assert_close(result.returns[b, :n], expected + v)
    whitened = compute_credit("gae", batch, gamma=0.99, lam=0.9).advantages
    torch.testing.assert_close(whitened, masked_whiten(result.advantages, mask))


def test_batch_checks_before_running() -> None:
    batch = _batch(torch.device("cpu"))
    with pytest.raises(ValueError, match="values"):
        compute_credit("gae", CreditBatch(rewards=batch.rewards, response_mask=batch.response_mask))
    with pytest.raises(ValueError, match="G >= 2"):
        compute_credit(
            "rloo", CreditBatch(rewards=batch.rewards, response_mask=batch.response_mask, group_size=1)
        )
    with pytest.raises(ValueError, match="group_size"):
        compute_credit("grpo", CreditBatch(rewards=batch.rewards, response_mask=batch.response_mask))
    with pytest.raises(ValueError, match="does not divide"):
        compute_credit(
            "grpo", CreditBatch(rewards=batch.rewards, response_mask=batch.response_mask, group_size=4)
        )
    with pytest.raises(ValueError, match="rewards"):
        compute_credit("reinforce", CreditBatch(rewards=torch.ones(5), response_mask=batch.response_mask))
    with pytest.raises(ValueError, match="rewards"):
        nan = batch.rewards.clone()
        nan[0] = float("nan")
        compute_credit("rloo", CreditBatch(rewards=nan, response_mask=batch.response_mask, group_size=3))
