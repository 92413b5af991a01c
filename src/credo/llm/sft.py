"""Supervised warm-up: teach a (tiny) model a task's output format before RL.

Loss: next-token cross-entropy on the answer tokens and the EOS that ends them, averaged over those
tokens; prompt tokens and padding carry no loss. With the tiny models of ``credo.llm.tiny`` a few
hundred steps on a CPU take seconds, so RL starts from a policy whose answers already parse.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


def sft_batch(
    tokenizer: Any, pairs: Sequence[tuple[str, str]], device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """Right-padded ``(input_ids, attention_mask, labels)`` ``[n, T]`` of prompt + answer + EOS,
    labels ``-100`` outside the answer and its EOS."""
    rows, label_rows = [], []
    eos = tokenizer.eos_token_id
    for prompt, answer in pairs:
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a = [*tokenizer(answer, add_special_tokens=False)["input_ids"], eos]
        rows.append(p + a)
        label_rows.append([-100] * len(p) + a)
    T = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    input_ids = torch.full((len(rows), T), pad, dtype=torch.long)
    labels = torch.full((len(rows), T), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, (r, lab) in enumerate(zip(rows, label_rows)):
        input_ids[i, : len(r)] = torch.tensor(r)
        labels[i, : len(r)] = torch.tensor(lab)
        mask[i, : len(r)] = 1
    return input_ids.to(device), mask.to(device), labels.to(device)


def sft_loss(model: Any, input_ids: Tensor, attention_mask: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy of the labelled tokens (token t predicted from tokens < t)."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, :-1]
    target = labels[:, 1:]
    return torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100
    )


def sft_warmup(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    steps: int = 200,
    lr: float = 3e-3,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = False,
) -> list[float]:
    """Train ``model`` in place with AdamW on random mini-batches of ``pairs``; returns the losses."""
    if not pairs:
        raise ValueError("sft_warmup needs at least one (prompt, answer) pair")
    if steps < 0 or batch_size < 1:
        raise ValueError(f"sft_warmup needs steps >= 0 and batch_size >= 1, got {steps}, {batch_size}")
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for _ in tqdm(range(steps), desc="sft", disable=not progress):
        chunk = [pairs[rng.randrange(len(pairs))] for _ in range(batch_size)]
        loss = sft_loss(model, *sft_batch(tokenizer, chunk, device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses
