"""Seed 003's REINFORCE and RLOO examples, computed by the seed's own steps (the reference, written
out here) and by credo's functions: same rewards, advantages and loss.

One deliberate difference: in the seed's code the KL term of the reward is computed from log-probs that
require grad and the advantage is not detached, so its gradient also flows through the KL inside the
advantage. credo treats credit as a fixed target (``kl_reward_penalty`` is detached), which is the
policy-gradient estimator the seed's text describes; the gradient test compares against the seed's
code with the advantage detached, and checks that the seed's undetached gradient does differ.
"""

from __future__ import annotations

import torch

from credo.credit import (
    CreditBatch,
    compute_credit,
    kl_reward_penalty,
    reinforce_advantages,
    rloo_advantages,
    sequence_rewards,
)

KL_BETA = 0.1


def _reinforce_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    logp = torch.tensor([[-12.3, -8.3, -2.3], [-10.0, -7.0, -3.0]], requires_grad=True)
    ref = torch.tensor([[-11.3, -8.4, -2.0], [-9.5, -7.2, -2.8]])
    score = torch.tensor([1.0, 0.5])
    return logp, ref, score


def _rloo_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    logp = torch.tensor(
        [
            [[-12.3, -8.3, -2.3], [-10.0, -7.0, -3.0], [-10.5, -12.2, -9.1]],
            [[-11.0, -10.3, -1.3], [-11.1, -11.1, -0.8], [-8.2, -11.9, -0.1]],
            [[-1.8, -2.1, -0.2], [-0.7, -3.5, -0.1], [-1.0, -2.2, -1.1]],
        ],
        requires_grad=True,
    )
    ref = torch.tensor(
        [
            [[-11.8, -8.4, -2.3], [-10.1, -7.2, -3.1], [-10.3, -12.9, -9.1]],
            [[-11.8, -9.7, -1.3], [-12.3, -11.9, -0.2], [-8.1, -12.0, -0.5]],
            [[-2.7, -2.0, -1.2], [-0.7, -3.6, -0.2], [-0.7, -1.2, -0.9]],
        ]
    )
    score = torch.tensor([[1, 2, 3], [2, 3, 4], [3, 4, 5]]).float()
    return logp, ref, score


def test_reinforce_example_matches_seed() -> None:
    # The seed's steps.
    logp, ref, score = _reinforce_inputs()
    kl_div = -KL_BETA * (logp - ref)
    per_token_reward = kl_div.clone()
    per_token_reward[range(per_token_reward.size(0)), -1] += score
    seed_reward = per_token_reward.sum(dim=1)
    seed_adv = seed_reward - seed_reward.mean().detach()
    seed_loss = (-logp.sum(dim=1) * seed_adv).mean()
    seed_loss.backward(retain_graph=True)
    undetached_grad = logp.grad.clone()
    logp.grad = None
    (-logp.sum(dim=1) * seed_adv.detach()).mean().backward()
    seed_grad = logp.grad.clone()

    # credo.
    logp2, ref2, score2 = _reinforce_inputs()
    mask = torch.ones(2, 3, dtype=torch.bool)
    penalty = kl_reward_penalty(logp2, ref2, KL_BETA, kind="k1")
    reward = sequence_rewards(score2, mask, penalty)
    adv = reinforce_advantages(reward)
    torch.testing.assert_close(reward, seed_reward.detach())
    torch.testing.assert_close(adv, seed_adv.detach())
    # Values worked by hand: rewards 1.0 + 0.1*(1.0 - 0.1 + 0.3) = 1.12 and 0.5 + 0.1*(0.5 - 0.2 + 0.2) = 0.55.
    torch.testing.assert_close(reward, torch.tensor([1.12, 0.55]))
    torch.testing.assert_close(adv, torch.tensor([0.285, -0.285]))

    # Through the registry, token-level advantages times per-token log-probs give the same loss.
    result = compute_credit(
        "reinforce", CreditBatch(rewards=score2, response_mask=mask, token_rewards=penalty)
    )
    loss = (-(logp2 * result.advantages).sum(dim=1)).mean()
    loss.backward()
    torch.testing.assert_close(loss, seed_loss.detach())
    torch.testing.assert_close(logp2.grad, seed_grad)
    assert not torch.allclose(undetached_grad, seed_grad)


def test_rloo_example_matches_seed() -> None:
    logp, ref, score = _rloo_inputs()
    K = 3
    kl_div = -KL_BETA * (logp - ref)
    per_token_reward = kl_div.clone()
    per_token_reward[:, :, -1] += score
    seed_reward = per_token_reward.sum(dim=-1)
    baseline = ((seed_reward.sum(dim=-1)[:, None] - seed_reward) / (K - 1)).detach()
    seed_adv = seed_reward - baseline
    seed_loss = (-logp.sum(dim=-1) * seed_adv).mean()
    seed_loss.backward(retain_graph=True)
    undetached_grad = logp.grad.clone()
    logp.grad = None
    (-logp.sum(dim=-1) * seed_adv.detach()).mean().backward()
    seed_grad = logp.grad.clone()

    logp2, ref2, score2 = _rloo_inputs()
    B, T = 9, 3
    mask = torch.ones(B, T, dtype=torch.bool)
    penalty = kl_reward_penalty(logp2.reshape(B, T), ref2.reshape(B, T), KL_BETA)
    reward = sequence_rewards(score2.reshape(B), mask, penalty)
    adv = rloo_advantages(reward.reshape(3, K))
    torch.testing.assert_close(reward.reshape(3, K), seed_reward.detach())
    torch.testing.assert_close(adv, seed_adv.detach(), rtol=1e-5, atol=1e-5)
    # Without KL the scores 1, 2, 3 give leave-one-out advantages -1.5, 0, 1.5 in every group.
    torch.testing.assert_close(rloo_advantages(score2), torch.tensor([[-1.5, 0.0, 1.5]] * 3))

    result = compute_credit(
        "rloo",
        CreditBatch(rewards=score2.reshape(B), response_mask=mask, group_size=K, token_rewards=penalty),
    )
    loss = (-(logp2.reshape(B, T) * result.advantages).sum(dim=1)).mean()
    loss.backward()
    torch.testing.assert_close(loss, seed_loss.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logp2.grad.reshape(3, K, T), seed_grad, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(undetached_grad, seed_grad)
