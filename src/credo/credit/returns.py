"""Returns, TD errors, GAE and lambda-returns. Time is the last dimension: ``[..., T]``.

Conventions (DESIGN.md):

* ``dones[t]`` marks an episode boundary after step t (terminated *or* truncated): nothing flows
  backwards across it. Several episodes may sit in one row.
* ``terminated[t]`` marks "no bootstrap": the state after step t is terminal, its value is 0. A
  truncated step (done but not terminated) bootstraps from ``next_values[t]``.
* ``mask`` (optional, bool) marks real steps; masked-out steps (padding) are invisible: they add
  nothing, discount nothing, and their outputs are 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from credo.credit import scan as _scan
from credo.credit._checks import (
    as_bool,
    check_all_finite_or,
    check_finite,
    check_gamma,
    check_same_shape,
    check_tensor,
    float_dtype,
)


def _prepare(rewards: Tensor, mask: Tensor | None, **others: Tensor | None) -> Tensor:
    check_tensor("rewards", rewards)
    check_same_shape("rewards", rewards, mask=mask, **others)
    valid = torch.ones_like(rewards, dtype=torch.bool) if mask is None else as_bool("mask", mask)
    check_finite("rewards", rewards, valid)
    for name, value in others.items():
        if value is not None and value.is_floating_point():
            check_finite(name, value, valid)
    return valid


def discounted_returns(
    rewards: Tensor,
    dones: Tensor | None,
    gamma: float,
    bootstrap_value: Tensor | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    """Discounted returns ``G_t = r_t + gamma * (1 - done_t) * G_{t+1}``, ``G_T = bootstrap_value``.

    Args:
        rewards: ``[..., T]`` rewards.
        dones: ``[..., T]`` bool episode boundaries (None: one episode per row).
        gamma: discount in [0, 1].
        bootstrap_value: ``[...]`` value of the state after the last step of each row (for a row cut
            off mid-episode); ignored when the last step is done. None means 0.
        mask: ``[..., T]`` bool, real steps (padding is skipped).

    Returns:
        ``[..., T]`` returns (0 on padding).

    Reference: Sutton & Barto (2018), eq. 3.8.
    """
    valid = _prepare(rewards, mask, dones=dones)
    check_gamma("gamma", gamma)
    cut = torch.zeros_like(valid) if dones is None else as_bool("dones", dones)
    dtype = float_dtype(rewards)
    zero = torch.zeros((), dtype=dtype, device=rewards.device)
    x = torch.where(valid, rewards.to(dtype), zero)
    coef = torch.where(valid, gamma * (~cut).to(dtype), torch.ones((), dtype=dtype, device=rewards.device))
    out = _scan.reverse_linear_scan(x, coef, bootstrap_value)
    return torch.where(valid, out, zero)


def reward_to_go(rewards: Tensor, mask: Tensor | None = None, gamma: float = 1.0) -> Tensor:
    """Reward-to-go ``sum_{s >= t} gamma^(s-t) r_s`` over the real steps of each row.

    Args:
        rewards: ``[..., T]``; mask: ``[..., T]`` bool real steps; gamma: discount in [0, 1].

    Returns:
        ``[..., T]``, 0 on padding. (Williams 1992; the "causality" form of REINFORCE.)
    """
    return discounted_returns(rewards, None, gamma, mask=mask)


def td_errors(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor | None,
    gamma: float,
    mask: Tensor | None = None,
) -> Tensor:
    """One-step TD errors ``delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)``.

    Args:
        rewards, values, next_values: ``[..., T]`` (``next_values[t]`` is V of the state after step t).
        terminated: ``[..., T]`` bool, no bootstrap after step t (None: never terminated).
        gamma: discount in [0, 1]; mask: ``[..., T]`` bool real steps.

    Returns:
        ``[..., T]`` TD errors, 0 on padding. (Sutton 1988.)
    """
    valid = _prepare(rewards, mask, values=values, next_values=next_values, terminated=terminated)
    check_gamma("gamma", gamma)
    dtype = float_dtype(rewards, values, next_values)
    end = torch.zeros_like(valid) if terminated is None else as_bool("terminated", terminated)
    delta = rewards.to(dtype) + gamma * (~end).to(dtype) * next_values.to(dtype) - values.to(dtype)
    return torch.where(valid, delta, torch.zeros((), dtype=dtype, device=delta.device))


def gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    dones: Tensor | None,
    terminated: Tensor | None,
    gamma: float,
    lam: float,
    mask: Tensor | None = None,
) -> Tensor:
    """Generalised advantage estimation (Schulman et al. 2016, arXiv:1506.02438).

        delta_t = r_t + gamma * (1 - terminated_t) * next_values_t - values_t
        A_t     = delta_t + gamma * lam * (1 - dones_t) * A_{t+1}

    ``lam = 0`` gives the TD error, ``lam = 1`` the Monte Carlo return minus the value (within an
    episode whose ``next_values[t] == values[t+1]``).

    Args:
        rewards, values, next_values: ``[..., T]``.
        dones: ``[..., T]`` bool episode boundaries (terminated or truncated); None: none.
        terminated: ``[..., T]`` bool, terminal after step t (no bootstrap); None: none.
        gamma, lam: in [0, 1]. mask: ``[..., T]`` bool real steps (padding skipped, output 0 there).

    Returns:
        ``[..., T]`` advantages (float32, or float64 for float64 inputs). Not differentiable on CUDA.
    """
    check_tensor("rewards", rewards)
    check_same_shape(
        "rewards",
        rewards,
        values=values,
        next_values=next_values,
        dones=dones,
        terminated=terminated,
        mask=mask,
    )
    check_gamma("gamma", gamma)
    check_gamma("lam", lam)
    dtype = float_dtype(rewards, values, next_values)
    if mask is None:
        T = rewards.shape[-1] if rewards.dim() else 0
        if dtype == torch.float32 and T > 0 and _scan.triton_available(rewards.device):
            return _gae_triton(rewards, values, next_values, dones, terminated, gamma, lam)
        advantages = _gae_unmasked(rewards, values, next_values, dones, terminated, gamma, lam, dtype)
        # One check when all is well (no host sync on CUDA); on the CPU, diagnose a failure.
        check_all_finite_or(
            advantages,
            lambda: _prepare(rewards, None, values=values, next_values=next_values),
            _GAE_NOT_FINITE,
        )
        return advantages
    valid = _prepare(rewards, mask, values=values, next_values=next_values)
    cut = torch.zeros_like(valid) if dones is None else as_bool("dones", dones)
    end = torch.zeros_like(valid) if terminated is None else as_bool("terminated", terminated)
    delta = td_errors(rewards, values, next_values, end, gamma, mask=valid)
    one = torch.ones((), dtype=dtype, device=rewards.device)
    coef = torch.where(valid, gamma * lam * (~cut).to(dtype), one)
    advantages = _scan.reverse_linear_scan(delta, coef)
    return torch.where(valid, advantages, torch.zeros((), dtype=dtype, device=rewards.device))


_GAE_NOT_FINITE = (
    "gae: rewards, values or next_values hold NaN/inf (or the advantages overflowed); "
    "credit needs finite inputs"
)


def _gae_triton(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    dones: Tensor | None,
    terminated: Tensor | None,
    gamma: float,
    lam: float,
) -> Tensor:
    """GAE without padding on CUDA: one fused Triton kernel, which also flags rows holding NaN/inf.

    Host work for contiguous float inputs and bool (or None) flags: allocate the advantages, launch
    the kernel, and queue an asynchronous device-side assert on the device's "all finite" flag, which
    the kernel clears on a NaN/inf advantage (nothing waits for the GPU). No dtype conversions, no
    ``[..., T]`` flag tensors for ``None``, no reshapes, no second pass over the result.
    """
    cut = None if dones is None else as_bool("dones", dones)
    end = None if terminated is None else as_bool("terminated", terminated)
    advantages, all_finite = _scan._triton_scan.fused_gae(rewards, values, next_values, cut, end, gamma, lam)
    torch._assert_async(all_finite, _GAE_NOT_FINITE)
    return advantages


def _gae_unmasked(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    dones: Tensor | None,
    terminated: Tensor | None,
    gamma: float,
    lam: float,
    dtype: torch.dtype,
) -> Tensor:
    """GAE without padding off the Triton path: TD errors and the blocked scan."""
    never = torch.zeros(rewards.shape, dtype=torch.bool, device=rewards.device)
    cut = never if dones is None else as_bool("dones", dones)
    end = never if terminated is None else as_bool("terminated", terminated)
    delta = torch.addcmul(
        rewards.to(dtype) - values.to(dtype), next_values.to(dtype), (~end).to(dtype), value=gamma
    )
    coef = (~cut).to(dtype).mul_(gamma * lam)
    return _scan.reverse_linear_scan(delta, coef)


def lambda_returns(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    dones: Tensor | None,
    terminated: Tensor | None,
    gamma: float,
    lam: float,
    mask: Tensor | None = None,
) -> Tensor:
    """TD(lambda) returns ``G^lambda_t = A^GAE_t + V(s_t)`` (the critic's regression targets).

    Within an episode whose ``next_values[t] == values[t+1]`` this equals the recursive form
    ``G_t = r_t + gamma (1 - term_t) [(1 - lam) V(s_{t+1}) + lam G_{t+1}]`` (Sutton & Barto, 12.1),
    and at a truncation ``G_t = r_t + gamma V(s_{t+1})``. Same arguments and shapes as :func:`gae`.
    """
    advantages = gae(rewards, values, next_values, dones, terminated, gamma, lam, mask=mask)
    out = advantages + values.to(advantages.dtype)
    if mask is None:
        return out
    return torch.where(as_bool("mask", mask), out, torch.zeros((), dtype=out.dtype, device=out.device))
