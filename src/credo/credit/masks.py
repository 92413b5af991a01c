"""Masked reductions. Padding never leaks into a sum, a mean or a normalisation."""

from __future__ import annotations

import torch
from torch import Tensor


def masked_sum(x: Tensor, mask: Tensor, dim: int | tuple[int, ...] | None = None) -> Tensor:
    """Sum of ``x`` where ``mask`` is True. ``x``, ``mask``: same shape."""
    zeros = torch.zeros((), dtype=x.dtype, device=x.device)
    kept = torch.where(mask.bool(), x, zeros)
    return kept.sum() if dim is None else kept.sum(dim=dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | tuple[int, ...] | None = None) -> Tensor:
    """Mean of ``x`` over the positions where ``mask`` is True (0 where no position is True)."""
    count = mask.bool().sum() if dim is None else mask.bool().sum(dim=dim)
    return masked_sum(x, mask, dim) / count.clamp(min=1).to(x.dtype)


def masked_var(x: Tensor, mask: Tensor, unbiased: bool = True) -> Tensor:
    """Variance over all masked positions, two-pass (centred), so a large offset does not cancel."""
    mean = masked_mean(x, mask)
    count = mask.bool().sum()
    centred_sq = masked_sum((x - mean) ** 2, mask)
    denominator = (count - 1) if unbiased else count
    return centred_sq / denominator.clamp(min=1).to(x.dtype)


def masked_whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """Normalise ``x`` to mean 0, std 1 over the masked positions; padding stays 0.

    ``shift_mean=False`` only divides by the std (as PPO implementations do for rewards).
    """
    mean = masked_mean(x, mask)
    std = masked_var(x, mask).sqrt()
    centred = x - mean if shift_mean else x
    zeros = torch.zeros((), dtype=x.dtype, device=x.device)
    return torch.where(mask.bool(), centred / (std + eps), zeros)
