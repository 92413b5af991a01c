"""Gradient quality of a credit estimator at a fixed policy: pure tensor functions.

A credit estimator turns a batch of sampled answers into advantages; with the policy's score function
they make a policy-gradient estimate. For N prompts (groups) the estimate is the mean of N per-group
estimates ``g_n`` (the G answers of one prompt: ``(1/G) sum_g sum_t A_{g,t} grad log pi(a_{g,t})``).
These functions measure how good such estimates are, without training:

* :func:`half_batch_agreement`: the cosine between the means of two independent halves of the
  groups. Both halves estimate the same expected gradient ``mu``; with per-half noise of total
  variance ``s^2``, ``E[cos] ~ |mu|^2 / (|mu|^2 + s^2)``: a signal-to-noise ratio that needs no
  reference and is free of the estimator's scale (1: no noise; 0: noise only).
* :func:`reference_alignment`: the cosine between the full estimate and a reference gradient (the
  exact gradient of J where it is known, else a large-batch unbiased estimate): noise *and* bias
  in direction.
* :func:`token_advantage_variance`: the variance of the advantages over the response tokens.
* :func:`gradient_bias`: many independent per-group estimates against the reference: the expected
  gradient's distance from it, its scale along it, its error in direction, and the noise level
  below which a bias cannot be told from chance.

Every function takes tensors (any device) and returns Python floats or a small dataclass.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from credo.credit.masks import masked_var

__all__ = [
    "GradientBias",
    "cosine",
    "gradient_bias",
    "half_batch_agreement",
    "reference_alignment",
    "token_advantage_variance",
]


def cosine(a: Tensor, b: Tensor) -> float:
    """``a . b / (|a| |b|)`` of two tensors of equal size (flattened; in float64); 0.0 when either is
    zero (no direction)."""
    if a.numel() != b.numel():
        raise ValueError(f"cosine needs tensors of equal size, got {a.numel()} and {b.numel()} elements")
    a, b = a.reshape(-1).double(), b.reshape(-1).to(a.device).double()
    norms = a.norm() * b.norm()
    if float(norms) == 0.0:
        return 0.0
    return float((a @ b) / norms)


def _check_estimates(name: str, estimates: Tensor) -> None:
    if estimates.dim() != 2:
        raise ValueError(
            f"{name} must be [N, P] (one gradient estimate per row), got {tuple(estimates.shape)}"
        )


def half_batch_agreement(per_group_grads: Tensor, generator: torch.Generator | None = None) -> float:
    """The cosine between the mean gradients of two halves of the N groups ``[N, P]`` (N even).

    Without ``generator`` the halves are rows ``0..N/2-1`` and ``N/2..N-1`` (the groups of a batch are
    independent draws, so any fixed split will do); with one, a random split drawn from it.
    """
    _check_estimates("per_group_grads", per_group_grads)
    N = per_group_grads.shape[0]
    if N < 2 or N % 2:
        raise ValueError(f"half-batch agreement needs an even number of groups N >= 2, got N={N}")
    order = torch.arange(N) if generator is None else torch.randperm(N, generator=generator)
    order = order.to(per_group_grads.device)
    first, second = order[: N // 2], order[N // 2 :]
    return cosine(per_group_grads[first].mean(dim=0), per_group_grads[second].mean(dim=0))


def reference_alignment(per_group_grads: Tensor, reference: Tensor) -> float:
    """The cosine between the mean of the per-group gradients ``[N, P]`` and ``reference [P]``."""
    _check_estimates("per_group_grads", per_group_grads)
    return cosine(per_group_grads.mean(dim=0), reference)


def token_advantage_variance(advantages: Tensor, mask: Tensor) -> float:
    """The (Bessel-corrected) variance of ``advantages [B, T]`` over the tokens where ``mask`` holds."""
    if advantages.shape != mask.shape:
        raise ValueError(f"advantages {tuple(advantages.shape)} and mask {tuple(mask.shape)} differ in shape")
    return float(masked_var(advantages.double(), mask.bool()))


@dataclass(frozen=True)
class GradientBias:
    """The expected gradient E[g] (estimated by the mean of M independent estimates) against a reference.

    Attributes:
        bias: ``|E[g] - ref| / |ref|``: 0 for an unbiased estimator (up to ``noise``). Meaningful for
            estimators on the scale of the return; an estimator that divides by a group std has an
            arbitrary scale, so read ``direction_bias`` for it.
        noise: ``|se| / |ref|``, the norm of the standard errors of the mean: the ``bias`` an unbiased
            estimator shows by chance (its expected value is about ``noise``).
        scale: ``E[g] . ref / |ref|^2``, the expected gradient's length along the reference (1 for an
            unbiased estimator; ``(G-1)/G`` for Dr.GRPO's self-inclusive mean).
        direction_bias: ``|E[g] - scale ref| / |scale ref|``, the part of E[g] orthogonal to the
            reference relative to the part along it (the tangent of the angle between them): 0 for any
            estimator whose expected gradient points along the reference, whatever its scale (inf
            when ``scale <= 0``).
        direction_noise: ``noise / scale``, the ``direction_bias`` that chance alone gives.
        max_abs_z, mean_z2: the per-component z-scores ``(mean - ref) / se`` (components with a
            standard error > 1e-12): ``mean_z2 ~ 1`` for an unbiased estimator.
        samples: M, the number of estimates.
    """

    bias: float
    noise: float
    scale: float
    direction_bias: float
    direction_noise: float
    max_abs_z: float
    mean_z2: float
    samples: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def gradient_bias(estimates: Tensor, reference: Tensor) -> GradientBias:
    """:class:`GradientBias` of M independent estimates ``[M, P]`` (M >= 2) against ``reference [P]``."""
    _check_estimates("estimates", estimates)
    M = estimates.shape[0]
    if M < 2:
        raise ValueError(f"gradient_bias needs at least 2 estimates (for the standard errors), got {M}")
    estimates = estimates.double()
    reference = reference.reshape(-1).to(estimates.device).double()
    if reference.numel() != estimates.shape[1]:
        raise ValueError(f"reference has {reference.numel()} elements, the estimates {estimates.shape[1]}")
    ref_norm = float(reference.norm())
    if ref_norm == 0.0:
        raise ValueError("gradient_bias needs a non-zero reference gradient")
    mean = estimates.mean(dim=0)
    se = estimates.std(dim=0) / math.sqrt(M)
    scale = float(mean @ reference) / ref_norm**2
    bias = float((mean - reference).norm()) / ref_norm
    noise = float(se.norm()) / ref_norm
    orthogonal = float((mean - scale * reference).norm()) / ref_norm
    live = se > 1e-12
    z = torch.where(
        live, (mean - reference) / torch.where(live, se, torch.ones_like(se)), torch.zeros_like(se)
    )
    return GradientBias(
        bias=bias,
        noise=noise,
        scale=scale,
        direction_bias=orthogonal / scale if scale > 0 else math.inf,
        direction_noise=noise / scale if scale > 0 else math.inf,
        max_abs_z=float(z.abs().max()),
        mean_z2=float((z[live] ** 2).mean()) if bool(live.any()) else 0.0,
        samples=M,
    )
