"""The registered credit estimators: outcome-reward baselines and GAE.

Each has the registry's call shape ``fn(batch: CreditBatch, **options) -> CreditResult`` and returns
token-level advantages ``[B, T]``. The bandit estimators (reinforce, rloo, grpo, dr_grpo) first form
each completion's reward as the outcome plus the sum of its per-token rewards (the seed's REINFORCE
and RLOO examples: KL penalty per token, score on the last token), take the group baseline, and put
the completion's advantage on each of its tokens. ``reinforce_pp`` and ``gae`` work per token.
"""

from __future__ import annotations

import torch

from credo.credit._checks import check_eps
from credo.credit.groups import grpo_advantages, reinforce_advantages, rloo_advantages
from credo.credit.masks import masked_whiten
from credo.credit.registry import CreditBatch, CreditResult, group_ids_of, register_estimator
from credo.credit.returns import gae, reward_to_go
from credo.credit.tokens import expand_to_tokens, outcome_token_rewards, sequence_rewards


def _bandit(batch: CreditBatch, advantages: torch.Tensor, seq_rewards: torch.Tensor) -> CreditResult:
    return CreditResult(
        advantages=expand_to_tokens(advantages, batch.response_mask),
        info={"sequence_rewards": seq_rewards, "sequence_advantages": advantages},
    )


@register_estimator("reinforce", min_batch_size=2)
def reinforce_estimator(batch: CreditBatch) -> CreditResult:
    """REINFORCE with the batch-mean baseline (Williams 1992; seed 003's example)."""
    seq = sequence_rewards(batch.rewards, batch.response_mask, batch.token_rewards)
    return _bandit(batch, reinforce_advantages(seq), seq)


@register_estimator("rloo", needs_groups=True, min_group_size=2)
def rloo_estimator(batch: CreditBatch) -> CreditResult:
    """RLOO: leave-one-out baseline within each prompt's group (Ahmadian et al. 2024)."""
    seq = sequence_rewards(batch.rewards, batch.response_mask, batch.token_rewards)
    return _bandit(batch, rloo_advantages(seq, group_ids_of(batch)), seq)


@register_estimator("grpo", needs_groups=True, min_group_size=2)
def grpo_estimator(batch: CreditBatch, eps: float = 1e-6) -> CreditResult:
    """GRPO: group mean and std normalisation (Shao et al. 2024)."""
    seq = sequence_rewards(batch.rewards, batch.response_mask, batch.token_rewards)
    return _bandit(batch, grpo_advantages(seq, group_ids_of(batch), scale=True, eps=eps), seq)


@register_estimator("dr_grpo", needs_groups=True, min_group_size=2)
def dr_grpo_estimator(batch: CreditBatch) -> CreditResult:
    """Dr.GRPO: group mean baseline without std scaling (Liu et al. 2025)."""
    seq = sequence_rewards(batch.rewards, batch.response_mask, batch.token_rewards)
    return _bandit(batch, grpo_advantages(seq, group_ids_of(batch), scale=False), seq)


@register_estimator("reinforce_pp")
def reinforce_pp_estimator(batch: CreditBatch, eps: float = 1e-8) -> CreditResult:
    """REINFORCE++ (Hu 2025): per-token return-to-go of outcome + KL rewards, whitened over the batch.

    A_t = whiten_batch( sum_{s >= t} r_s ),  r_s = token_rewards_s + [s = last] R
    """
    check_eps("eps", eps)
    token_rewards = outcome_token_rewards(batch.rewards, batch.response_mask, batch.token_rewards)
    returns = reward_to_go(token_rewards, batch.response_mask)
    return CreditResult(advantages=masked_whiten(returns, batch.response_mask, eps=eps), info={})


@register_estimator("gae", requires=("values",))
def gae_estimator(
    batch: CreditBatch, gamma: float = 1.0, lam: float = 0.95, whiten: bool = True
) -> CreditResult:
    """PPO's token-level GAE with a critic (Schulman et al. 2016; Ouyang et al. 2022).

    Rewards: outcome on the last response token plus ``token_rewards`` (e.g. the KL penalty). The
    completion ends after its last response token (terminal: no bootstrap). Response tokens must be
    contiguous in each row (left or right padding). ``returns = raw advantages + values`` are the
    critic's targets; ``whiten`` normalises the advantages over the batch's response tokens.
    Defaults gamma=1, lam=0.95 follow the common RLHF PPO settings (Huang et al. 2024); seed 003
    reports lam=1 works best for LLMs, so try it.
    """
    mask = batch.response_mask.bool()
    values = batch.values.to(torch.float64 if batch.values.dtype == torch.float64 else torch.float32)
    token_rewards = outcome_token_rewards(batch.rewards, mask, batch.token_rewards)
    next_mask = torch.zeros_like(mask)
    next_mask[:, :-1] = mask[:, 1:]
    next_values = torch.zeros_like(values)
    next_values[:, :-1] = values[:, 1:]
    next_values = torch.where(next_mask, next_values, torch.zeros_like(values))
    end = mask & ~next_mask
    advantages = gae(token_rewards, values, next_values, end, end, gamma, lam, mask=mask)
    returns = torch.where(mask, advantages + values, torch.zeros_like(values))
    if whiten:
        advantages = masked_whiten(advantages, mask)
    return CreditResult(advantages=advantages, returns=returns, info={})
