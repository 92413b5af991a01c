"""Potential-based reward shaping (Ng, Harada & Russell 1999)."""

from __future__ import annotations

import torch
from torch import Tensor

from credo.credit._checks import (
    as_bool,
    check_finite,
    check_gamma,
    check_same_shape,
    check_tensor,
    float_dtype,
)


def potential_based_shaping(
    rewards: Tensor,
    potentials: Tensor,
    next_potentials: Tensor,
    gamma: float,
    terminated: Tensor | None = None,
) -> Tensor:
    """Shaped rewards ``r'_t = r_t + gamma * (1 - terminated_t) * phi(s_{t+1}) - phi(s_t)``.

    Adding ``F = gamma * phi(s') - phi(s)`` leaves optimal policies unchanged (Ng et al. 1999): along
    an episode the shaping telescopes to ``-phi(s_0)`` (plus ``gamma^T phi(s_T)`` if not terminal).
    A terminal state's potential is taken as 0.

    Args:
        rewards, potentials, next_potentials: ``[..., T]``; terminated: ``[..., T]`` bool or None.
        gamma: in [0, 1].

    Returns:
        ``[..., T]`` shaped rewards.
    """
    check_tensor("rewards", rewards)
    check_same_shape(
        "rewards", rewards, potentials=potentials, next_potentials=next_potentials, terminated=terminated
    )
    check_gamma("gamma", gamma)
    for name, value in (
        ("rewards", rewards),
        ("potentials", potentials),
        ("next_potentials", next_potentials),
    ):
        check_finite(name, value)
    dtype = float_dtype(rewards, potentials, next_potentials)
    alive = (
        torch.ones_like(rewards, dtype=dtype)
        if terminated is None
        else (~as_bool("terminated", terminated)).to(dtype)
    )
    return rewards.to(dtype) + gamma * alive * next_potentials.to(dtype) - potentials.to(dtype)
