"""Token attribution for a causal LM: which input tokens an output token owes its score to.

Two scores per input token for the output at position ``position`` (the next-token distribution
computed there), both for a Hugging Face style model (``model(input_ids=..., output_attentions=True)``
returning ``.logits [B, T, V]`` and ``.attentions``, a tuple over layers of ``[B, H, T, T]``;
``model.get_input_embeddings()``; ``model(inputs_embeds=...)``):

* attention (the seed's recipe): ``score[j] = mean over layers l and heads h of attn[l, h, position, j]``.
  Cheap, but attention weights say where information was read, not how much it mattered (Jain &
  Wallace 2019).
* integrated gradients (Sundararajan et al. 2017, ICML): with ``x`` the input embeddings and ``x'`` a
  baseline (zeros),
  ``IG[j] = sum_d (x - x')[j, d] * integral_0^1 d f(x' + alpha (x - x')) / d x[j, d] d alpha``,
  the integral by the midpoint rule over ``steps`` points; ``f`` is the log-probability (or logit) of
  ``target_token`` at ``position``. Completeness: ``sum_j IG[j] = f(x) - f(x')`` (up to the quadrature).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def _check_ids(input_ids: Tensor, position: int) -> Tensor:
    if not isinstance(input_ids, Tensor) or input_ids.is_floating_point():
        raise TypeError("input_ids must be an integer torch.Tensor of shape [T] or [1, T]")
    ids = input_ids.reshape(1, -1) if input_ids.ndim == 1 else input_ids
    if ids.ndim != 2 or ids.shape[0] != 1 or ids.shape[1] == 0:
        raise ValueError(f"input_ids must have shape [T] or [1, T] with T >= 1, got {tuple(input_ids.shape)}")
    if not 0 <= position < ids.shape[1]:
        raise ValueError(f"position must lie in [0, {ids.shape[1]}), got {position}")
    return ids


def attention_attribution(model: Any, input_ids: Tensor, position: int) -> Tensor:
    """``[T]`` mean attention of the output at ``position`` to each input token (layers and heads
    averaged; zero after ``position`` in a causal model; sums to 1).

    Args:
        model: a causal LM returning ``.attentions`` when called with ``output_attentions=True``.
        input_ids: ``[T]`` or ``[1, T]`` token ids.
        position: the output position explained (``-1`` style indices are not accepted).
    """
    ids = _check_ids(input_ids, position)
    with torch.no_grad():
        attentions = model(input_ids=ids, output_attentions=True).attentions
    if not attentions:
        raise ValueError("model returned no attentions (does it support output_attentions=True?)")
    stacked = torch.stack([layer[0] for layer in attentions])  # [L, H, T, T]
    return stacked[:, :, position, :].float().mean(dim=(0, 1))


def _target_score(model: Any, embeds: Tensor, position: int, target_token: int, target: str) -> Tensor:
    logits = model(inputs_embeds=embeds).logits[:, position, :].float()  # [S, V]
    if target == "logprob":
        logits = torch.log_softmax(logits, dim=-1)
    return logits[:, target_token]


def integrated_gradients(
    model: Any,
    input_ids: Tensor,
    position: int,
    target_token: int,
    *,
    steps: int = 32,
    target: str = "logprob",
    baseline: Tensor | None = None,
) -> Tensor:
    """``[T]`` integrated gradients of ``f = log p(target_token | tokens <= position)`` (or its logit,
    ``target="logit"``) with respect to each input token's embedding, summed over the embedding.

    Args:
        model: a causal LM accepting ``inputs_embeds`` and with ``get_input_embeddings()``.
        input_ids: ``[T]`` or ``[1, T]``.
        position: the output position explained.
        target_token: the vocabulary id scored there.
        steps: quadrature points on the straight path from ``baseline`` to the input.
        target: ``"logprob"`` or ``"logit"``.
        baseline: ``[T, D]`` baseline embeddings (default zeros).
    """
    ids = _check_ids(input_ids, position)
    if target not in ("logprob", "logit"):
        raise ValueError(f"target must be 'logprob' or 'logit', got {target!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    with torch.no_grad():
        x = model.get_input_embeddings()(ids)[0].float()  # [T, D]
    vocab = model(input_ids=ids).logits.shape[-1]
    if not 0 <= target_token < vocab:
        raise ValueError(f"target_token must lie in [0, {vocab}), got {target_token}")
    x0 = torch.zeros_like(x) if baseline is None else baseline.to(x)
    if x0.shape != x.shape:
        raise ValueError(f"baseline must have shape {tuple(x.shape)}, got {tuple(x0.shape)}")
    alphas = (torch.arange(steps, dtype=x.dtype, device=x.device) + 0.5) / steps  # midpoints
    path = (x0 + alphas[:, None, None] * (x - x0)).requires_grad_(True)  # [steps, T, D]
    scores = _target_score(model, path, position, target_token, target)
    (grads,) = torch.autograd.grad(scores.sum(), path)
    return ((x - x0) * grads.mean(dim=0)).sum(dim=-1).detach()


def target_score(
    model: Any, input_ids: Tensor, position: int, target_token: int, target: str = "logprob"
) -> float:
    """``f(x)``, the score that :func:`integrated_gradients` attributes (for completeness checks)."""
    ids = _check_ids(input_ids, position)
    with torch.no_grad():
        embeds = model.get_input_embeddings()(ids).float()
        return float(_target_score(model, embeds, position, target_token, target)[0])
