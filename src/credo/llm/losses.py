"""Policy-gradient, PPO-clip, value, KL and entropy losses, how per-token losses are aggregated, and
the loss of one micro-batch (:func:`micro_batch_loss`, which combines them after the policy's forward
pass).

Every term here is a *per-token* loss ``[B, T]``; :func:`aggregate` turns it into the
scalar that is back-propagated. Keeping the two apart makes the aggregation a visible choice (it
changes results: Liu et al. 2025, "Understanding R1-Zero-like training", Dr.GRPO) and lets the
trainer split a batch into micro-batches without changing the gradient: the normaliser
(:class:`LossNormalizer`) is computed once for the *whole* batch (all micro-batches and all
processes) before any micro-batch is processed.

Aggregation modes, for a per-token loss ``l[b, t]`` and response mask ``m[b, t]``, B sequences:

* ``token_mean``          sum_{b,t} m l / sum_{b,t} m              every token weighs the same
                                                                   (DAPO, Dr.GRPO's recommendation);
* ``seq_mean_token_sum``  (1/B) sum_b sum_t m l                    the bandit loss of REINFORCE and
                                                                   RLOO (seed 003: ``-(sum_t logp_t)
                                                                   * A``, mean over completions);
                                                                   long completions weigh more;
* ``seq_mean_token_mean`` (1/B) sum_b (sum_t m l / sum_t m)        each sequence weighs the same,
                                                                   its tokens share 1/|y_b| (the
                                                                   original GRPO; short completions'
                                                                   tokens weigh more).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from credo.credit import kl_estimate, masked_mean
from credo.llm.config import TrainConfig
from credo.llm.critic import ValueModel
from credo.llm.rollout import (
    RolloutBatch,
    entropy_from_logits,
    full_inputs,
    token_logprobs_from_logits,
    trim_padding,
)

AGGREGATIONS: tuple[str, ...] = ("token_mean", "seq_mean_token_sum", "seq_mean_token_mean")


@dataclass(frozen=True)
class LossNormalizer:
    """The denominators of an aggregation, for the whole batch.

    Attributes:
        mode: one of :data:`AGGREGATIONS`.
        num_tokens: response tokens in the whole batch (``token_mean``'s denominator).
        num_sequences: sequences in the whole batch (the ``seq_mean_*`` denominators).

    Under data parallelism each process holds part of the batch and gradients are *averaged* over
    processes, so each process uses ``global_count / world_size`` (see :func:`batch_normalizer`).
    """

    mode: str
    num_tokens: float
    num_sequences: float

    def __post_init__(self) -> None:
        if self.mode not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {self.mode!r}")
        if self.num_tokens <= 0 or self.num_sequences <= 0:
            raise ValueError("LossNormalizer needs num_tokens > 0 and num_sequences > 0")


def batch_normalizer(
    mode: str,
    response_mask: Tensor,
    world_size: int = 1,
    global_tokens: float | None = None,
    global_sequences: float | None = None,
) -> LossNormalizer:
    """The normaliser of the batch whose mask is ``response_mask: [B, T]`` (this process's rows).

    ``global_tokens`` / ``global_sequences``: totals over all processes where known (the trainer
    sums them with :meth:`credo.llm.distributed.Distributed.global_counts`); the per-process denominators are those totals divided by ``world_size``.
    """
    tokens = float(response_mask.sum()) if global_tokens is None else float(global_tokens)
    sequences = float(response_mask.shape[0]) if global_sequences is None else float(global_sequences)
    return LossNormalizer(mode, max(tokens, 1.0) / world_size, max(sequences, 1.0) / world_size)


def aggregate(per_token: Tensor, mask: Tensor, normalizer: LossNormalizer) -> Tensor:
    """Scalar loss of ``per_token: [b, T]`` over ``mask: [b, T]`` (any subset of the batch's rows).

    Summing :func:`aggregate` over micro-batches that partition a batch gives exactly the
    aggregation over the whole batch (the denominators are the batch's, not the micro-batch's).
    """
    mask = mask.bool()
    kept = torch.where(mask, per_token, torch.zeros((), dtype=per_token.dtype, device=per_token.device))
    if normalizer.mode == "token_mean":
        return kept.sum() / normalizer.num_tokens
    if normalizer.mode == "seq_mean_token_sum":
        return kept.sum() / normalizer.num_sequences
    per_sequence = kept.sum(dim=1) / mask.sum(dim=1).clamp(min=1).to(per_token.dtype)
    return per_sequence.sum() / normalizer.num_sequences


def policy_gradient_loss(logprobs: Tensor, advantages: Tensor) -> Tensor:
    """Vanilla policy gradient (REINFORCE / RLOO bandit form, seed 003): ``l_t = -A_t * log pi(y_t)``.

    With a completion-level advantage on every token and ``seq_mean_token_sum`` aggregation this is
    the seed's ``-(sum_t logp_t) * advantage`` averaged over completions. ``advantages`` is treated
    as a constant (detached). Shapes ``[B, T]`` -> ``[B, T]``.
    """
    return -advantages.detach() * logprobs


def ppo_clip_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
) -> tuple[Tensor, Tensor]:
    """PPO's clipped surrogate (Schulman et al. 2017), per token:

        r_t = exp(log pi(y_t) - log pi_old(y_t)),
        l_t = max(-A_t r_t, -A_t clip(r_t, 1 - eps, 1 + eps_high)).

    ``clip_eps_high`` defaults to ``clip_eps`` (DAPO's "clip-higher" when larger). On-policy (r = 1)
    its gradient equals :func:`policy_gradient_loss`'s. Returns ``(loss [B, T], clipped [B, T] bool)``.
    """
    high = clip_eps if clip_eps_high is None else clip_eps_high
    if clip_eps <= 0 or high <= 0:
        raise ValueError(f"clip_eps and clip_eps_high must be > 0, got {clip_eps}, {high}")
    advantages = advantages.detach()
    ratio = torch.exp(logprobs - old_logprobs.detach())
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + high)
    return torch.maximum(unclipped, clipped), clipped > unclipped


def value_loss(
    values: Tensor, returns: Tensor, old_values: Tensor | None = None, clip_range: float | None = None
) -> Tensor:
    """The critic's squared error ``0.5 (V_t - R_t)^2`` per token; with ``clip_range`` PPO's clipped
    form ``0.5 max((V_t - R_t)^2, (clip(V_t, V_old - c, V_old + c) - R_t)^2)``. ``[B, T]`` -> ``[B, T]``."""
    returns = returns.detach()
    loss = (values - returns) ** 2
    if clip_range is not None:
        if old_values is None:
            raise ValueError("value_loss: clip_range needs old_values")
        old = old_values.detach()
        clipped = old + torch.clamp(values - old, -clip_range, clip_range)
        loss = torch.maximum(loss, (clipped - returns) ** 2)
    return 0.5 * loss


def kl_loss(logprobs: Tensor, ref_logprobs: Tensor, kind: str = "k3") -> Tensor:
    """KL to the reference *in the loss* (GRPO, Shao et al. 2024): per-token ``k(logp, ref_logp)``,
    differentiable in ``logprobs``; multiply by beta and aggregate like the policy loss."""
    return kl_estimate(logprobs, ref_logprobs.detach(), kind)


# ----------------------------------------------------------------------------------------------------
# The loss of one micro-batch: the policy's forward pass and every term above (a pure function of its
# inputs; summed over micro-batches that partition a mini-batch it is the mini-batch's loss)


def micro_batch_loss(
    policy: Any,
    mb: RolloutBatch,
    advantages: Tensor,
    returns: Tensor | None,
    normalizer: LossNormalizer,
    config: TrainConfig,
    critic: ValueModel | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The scalar loss of micro-batch ``mb`` (rows of a rollout) and detached statistics.

    ``advantages``, ``returns``: ``[b, L]`` rows of the step's credit. The forward pass and every term
    run on the columns that hold tokens of some row (:func:`~credo.llm.rollout.trim_padding`): the
    dropped ones are masked out of the loss anyway, so loss and gradient are unchanged. Per token:
    ``policy term (pg or ppo_clip) + beta k(logp, ref) [kl_mode == "loss"] - c_H entropy``, aggregated
    with ``normalizer``; plus ``value_coef`` x the aggregated value loss when there is a critic.
    """
    lc = config.loss
    temperature = config.rollout.temperature
    mb, (advantages, returns) = trim_padding(mb, advantages, returns)  # [b, w]: padding columns dropped
    assert advantages is not None
    mask = mb.completion_mask
    shared = critic is not None and critic.backbone is None
    input_ids, attention_mask, position_ids = full_inputs(
        mb.prompt_ids, mb.prompt_mask, mb.completion_ids, mask
    )
    P, L = mb.prompt_ids.shape[1], mb.completion_ids.shape[1]
    out = policy(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        logits_to_keep=L + 1,
        use_cache=False,
        output_hidden_states=shared,
    )
    logits = out.logits[:, :-1]
    logp = token_logprobs_from_logits(logits, mb.completion_ids, temperature)
    stats: dict[str, Tensor] = {}
    if lc.policy_loss == "pg":
        per_token = policy_gradient_loss(logp, advantages)
    else:
        per_token, clipped = ppo_clip_loss(logp, mb.logprobs, advantages, lc.clip_eps, lc.clip_eps_high)
        stats["clip_fraction"] = masked_mean(clipped.float(), mask).detach()
    if lc.kl_beta > 0 and lc.kl_mode == "loss":
        kl = kl_loss(logp, mb.ref_logprobs, lc.kl_kind)
        per_token = per_token + lc.kl_beta * kl
    if lc.entropy_coef > 0:
        entropy = entropy_from_logits(logits, temperature)
        per_token = per_token - lc.entropy_coef * entropy
        stats["entropy"] = masked_mean(entropy, mask).detach()
    loss = aggregate(per_token, mask, normalizer)
    stats["policy_loss"] = loss.detach()
    if critic is not None:
        if shared:
            values = critic(hidden=out.hidden_states[-1][:, P - 1 : P + L - 1])
        else:
            values = critic(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
            values = values[:, P - 1 : P + L - 1]
        assert returns is not None
        vloss = aggregate(value_loss(values, returns, mb.values, lc.value_clip), mask, normalizer)
        stats["value_loss"] = vloss.detach()
        loss = loss + lc.value_coef * vloss
    return loss, stats
