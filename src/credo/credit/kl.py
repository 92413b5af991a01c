"""Per-token KL estimators between the policy and a frozen reference (Schulman 2020, "Approximating
KL divergence", http://joschu.net/blog/kl-approx.html), and the two ways RLHF methods use them.

With the log-ratio ``d = log pi(a|s) - log pi_ref(a|s)`` of a token sampled from pi:

* k1 = d                        unbiased, high variance, can be negative
* k2 = d^2 / 2                  biased, low variance, >= 0
* k3 = (exp(-d) - 1) + d        unbiased, low variance, >= 0 (GRPO's choice)

Uses: *in the reward* (REINFORCE, RLOO, PPO): ``r_t <- r_t - beta * k(d_t)``, detached, see
:func:`kl_reward_penalty`; *in the loss* (GRPO): ``loss += beta * k3(d_t)`` averaged like the policy
loss, differentiable, see :func:`kl_estimate`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from credo.credit._checks import check_same_shape, check_tensor


def kl_k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k1 = log pi - log pi_ref. ``[...]`` -> ``[...]``."""
    return logp - ref_logp


def kl_k2(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k2 = (log pi - log pi_ref)^2 / 2. ``[...]`` -> ``[...]``."""
    return 0.5 * (logp - ref_logp) ** 2


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k3 = pi_ref/pi - 1 - log(pi_ref/pi). ``[...]`` -> ``[...]``, always >= 0."""
    log_ratio = ref_logp - logp
    return torch.expm1(log_ratio) - log_ratio


KL_ESTIMATORS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


def kl_estimate(logp: Tensor, ref_logp: Tensor, kind: str = "k3") -> Tensor:
    """Per-token KL estimate of ``kind`` in {"k1", "k2", "k3"}. ``logp, ref_logp: [B, T]`` -> ``[B, T]``."""
    check_tensor("logp", logp)
    check_tensor("ref_logp", ref_logp)
    check_same_shape("logp", logp, ref_logp=ref_logp)
    try:
        estimator = KL_ESTIMATORS[kind]
    except KeyError:
        raise ValueError(f"kind must be one of {sorted(KL_ESTIMATORS)}, got {kind!r}") from None
    return estimator(logp, ref_logp)


def kl_reward_penalty(logp: Tensor, ref_logp: Tensor, beta: float, kind: str = "k1") -> Tensor:
    """The KL-in-reward term ``-beta * k(logp, ref_logp)``, detached, ``[B, T]``.

    Pass it as per-token rewards (``CreditBatch.token_rewards``): the seed's REINFORCE/RLOO examples
    sum it with the outcome reward on the last token into the completion-level reward.
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    return (-beta * kl_estimate(logp, ref_logp, kind)).detach()
