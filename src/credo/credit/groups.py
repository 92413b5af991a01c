"""Outcome-reward baselines over groups of completions: REINFORCE, RLOO, GRPO, Dr.GRPO, REINFORCE++.

Rewards come either shaped ``[..., G]`` (the last dimension is the group: ``[N, G]`` for N prompts with
G completions each) or flat ``[B]`` with ``group_ids: [B]`` (groups may then differ in size). The
result has the shape of ``rewards``.

Numerics: group statistics are computed two-pass on rewards shifted by a member of their own group
(the group minimum), so a large common offset (1e6 + small noise in float32) does not cancel the
noise, as a one-pass ``E[x^2] - E[x]^2`` or ``(sum - r_i) / (G - 1)`` would. Advantages are formed
from the shifted values and never add the offset back.

Defined behaviour at the edges:

* NaN or inf rewards: ValueError naming ``rewards``.
* A group of one completion: RLOO, GRPO and Dr.GRPO raise (there is no "other" completion to compare
  with); REINFORCE's batch baseline works for any batch of two or more.
* A zero-variance group: its advantages are exactly 0 (no signal), with or without std scaling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from credo.credit._checks import check_eps, check_finite, check_tensor, float_dtype


@dataclass(frozen=True)
class GroupStats:
    """Per-row statistics of each row's group, all ``[B]`` (flattened rows)."""

    centred: Tensor  # r_i - mean of its group, exact to rounding of the shifted values
    std: Tensor  # unbiased (Bessel-corrected) std of its group; 0 for a group of one
    count: Tensor  # size of its group


def _flatten(rewards: Tensor, group_ids: Tensor | None) -> tuple[Tensor, Tensor]:
    check_tensor("rewards", rewards)
    check_finite("rewards", rewards)
    if group_ids is None:
        if rewards.dim() == 0 or rewards.shape[-1] == 0:
            raise ValueError(f"rewards must be [..., G] with G >= 1, got shape {tuple(rewards.shape)}")
        G = rewards.shape[-1]
        flat = rewards.reshape(-1)
        ids = torch.arange(flat.numel(), device=rewards.device) // G
        return flat, ids
    check_tensor("group_ids", group_ids)
    if rewards.dim() != 1 or group_ids.shape != rewards.shape:
        raise ValueError(
            f"with group_ids, rewards and group_ids must both be [B]; got rewards {tuple(rewards.shape)}, "
            f"group_ids {tuple(group_ids.shape)}"
        )
    if group_ids.dtype.is_floating_point or group_ids.dtype == torch.bool:
        raise TypeError(f"group_ids must be an integer tensor, got dtype {group_ids.dtype}")
    if rewards.numel() and int(group_ids.min()) < 0:
        raise ValueError("group_ids must be non-negative")
    return rewards, group_ids.long()


def group_stats(rewards: Tensor, group_ids: Tensor | None = None) -> GroupStats:
    """Centred rewards, unbiased std and size of each row's group (see module docstring).

    Args:
        rewards: ``[..., G]``, or ``[B]`` with ``group_ids: [B]``.

    Returns:
        GroupStats with ``[B]`` fields, B = rewards.numel(), in rewards' row-major order.
    """
    flat, ids = _flatten(rewards, group_ids)
    dtype = float_dtype(flat)
    values = flat.to(dtype)
    n_groups = int(ids.max()) + 1 if ids.numel() else 0
    count = torch.zeros(n_groups, dtype=dtype, device=values.device).index_add_(
        0, ids, torch.ones_like(values)
    )
    pivot = torch.zeros(n_groups, dtype=dtype, device=values.device).scatter_reduce(
        0, ids, values, reduce="amin", include_self=False
    )
    shifted = values - pivot[ids]
    shifted_mean = torch.zeros(n_groups, dtype=dtype, device=values.device).index_add_(
        0, ids, shifted
    ) / count.clamp(min=1)
    centred = shifted - shifted_mean[ids]
    sq = torch.zeros(n_groups, dtype=dtype, device=values.device).index_add_(0, ids, centred * centred)
    std = (sq / (count - 1).clamp(min=1)).sqrt()
    return GroupStats(centred=centred, std=std[ids], count=count[ids])


def _require_pairs(stats: GroupStats, estimator: str) -> None:
    if stats.count.numel() and float(stats.count.min()) < 2:
        raise ValueError(
            f"{estimator} needs at least 2 completions per group (G >= 2); a group has only one. "
            "Sample more completions per prompt, or use reinforce_advantages (batch baseline)."
        )


def reinforce_advantages(rewards: Tensor, baseline: Tensor | float | None = None) -> Tensor:
    """REINFORCE with a baseline (Williams 1992): ``A_i = R_i - b``.

    Args:
        rewards: ``[...]`` completion-level rewards.
        baseline: None for the batch mean (as in the seed's example), or a given value, such as a
            moving average of past rewards (see :func:`moving_average_baseline`).

    Returns:
        ``[...]`` advantages.
    """
    check_tensor("rewards", rewards)
    check_finite("rewards", rewards)
    dtype = float_dtype(rewards)
    values = rewards.to(dtype)
    if baseline is None:
        if values.numel() < 2:
            raise ValueError("reinforce_advantages with a batch-mean baseline needs at least 2 rewards")
        flat = values.reshape(-1)
        pivot = flat.min()
        return (values - pivot) - (flat - pivot).mean()
    b = torch.as_tensor(baseline, dtype=dtype, device=values.device)
    if not bool(torch.isfinite(b).all()):
        raise ValueError("baseline must be finite")
    return values - b


def moving_average_baseline(previous: Tensor | float | None, rewards: Tensor, decay: float = 0.9) -> Tensor:
    """Exponential moving average of the batch-mean reward: ``b' = decay * b + (1 - decay) * mean(R)``.

    ``previous=None`` starts the average at the current batch mean.
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay must lie in [0, 1), got {decay}")
    check_finite("rewards", rewards)
    mean = rewards.to(float_dtype(rewards)).mean()
    if previous is None:
        return mean
    return decay * torch.as_tensor(previous, dtype=mean.dtype, device=mean.device) + (1.0 - decay) * mean


def rloo_advantages(rewards: Tensor, group_ids: Tensor | None = None) -> Tensor:
    """REINFORCE leave-one-out (Kool et al. 2019; Ahmadian et al. 2024, arXiv:2402.14740).

        A_i = R_i - 1/(G-1) * sum_{j != i} R_j = G/(G-1) * (R_i - mean_j R_j)

    Args:
        rewards: ``[..., G]``, or ``[B]`` with ``group_ids: [B]``.

    Returns:
        advantages shaped like ``rewards``; each group's advantages sum to 0.
    """
    stats = group_stats(rewards, group_ids)
    _require_pairs(stats, "rloo_advantages")
    adv = stats.centred * stats.count / (stats.count - 1)
    return adv.reshape(rewards.shape)


def grpo_advantages(
    rewards: Tensor, group_ids: Tensor | None = None, scale: bool = True, eps: float = 1e-6
) -> Tensor:
    """Group-relative advantages (GRPO, Shao et al. 2024, arXiv:2402.03300).

        A_i = (R_i - mean_G R) / (std_G R + eps)        (scale=True, GRPO)
        A_i =  R_i - mean_G R                            (scale=False, Dr.GRPO, Liu et al. 2025,
                                                          arXiv:2503.20783)

    The std is Bessel-corrected (as TRL computes it). A zero-variance group gets exactly 0.

    Args:
        rewards: ``[..., G]``, or ``[B]`` with ``group_ids: [B]``.
        scale: divide by the group std. eps: added to the std.

    Returns:
        advantages shaped like ``rewards``.
    """
    check_eps("eps", eps)
    stats = group_stats(rewards, group_ids)
    _require_pairs(stats, "grpo_advantages")
    adv = stats.centred / (stats.std + eps) if scale else stats.centred
    return adv.reshape(rewards.shape)


def dr_grpo_advantages(rewards: Tensor, group_ids: Tensor | None = None) -> Tensor:
    """Dr.GRPO: GRPO without the std division (Liu et al. 2025). See :func:`grpo_advantages`."""
    return grpo_advantages(rewards, group_ids, scale=False)


def reinforce_pp_advantages(
    rewards: Tensor, group_ids: Tensor | None = None, subtract_group_mean: bool = False, eps: float = 1e-8
) -> Tensor:
    """REINFORCE++ (Hu 2025, arXiv:2501.03262): normalise with global batch statistics.

        A_i = (R_i - mean_batch R) / (std_batch R + eps)

    ``subtract_group_mean=True`` is "REINFORCE++-baseline": subtract each group's mean first, then
    normalise by the std over the whole batch. (The token-level form, with per-token KL in the return,
    is the registered estimator ``"reinforce_pp"``.)

    Args:
        rewards: ``[..., G]`` or ``[B]`` (with ``group_ids`` when subtracting group means).

    Returns:
        advantages shaped like ``rewards``; a constant batch gives 0.
    """
    check_eps("eps", eps)
    if subtract_group_mean:
        centred = group_stats(rewards, group_ids).centred
    else:
        check_tensor("rewards", rewards)
        check_finite("rewards", rewards)
        flat = rewards.reshape(-1).to(float_dtype(rewards))
        shifted = flat - flat.min() if flat.numel() else flat
        centred = shifted - shifted.mean()
    if centred.numel() < 2:
        raise ValueError("reinforce_pp_advantages needs at least 2 rewards in the batch")
    centred = centred - centred.mean()
    std = centred.std()
    return (centred / (std + eps)).reshape(rewards.shape)
