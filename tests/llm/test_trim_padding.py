"""Trimming a micro-batch's all-padding columns (left of the prompts, right of the completions) changes
neither the log-probs, nor the loss, nor its gradient; and the trainer's update runs with rows ordered
by length within each mini-batch.

Not bit-identical: the trimmed forward pass multiplies narrower matrices (another blocking of the
float32 sums in the matmuls and the attention), so results agree to ~1e-7, not to the last bit; the
dropped columns themselves contribute exact zeros (masked keys, masked loss terms).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch

import credo.llm.critic as critic_module
import credo.llm.losses as losses_module
import credo.llm.rollout as rollout_module
import credo.llm.trainer as trainer_module
from credo.llm.config import config_from_dict
from credo.llm.critic import ValueModel, critic_values
from credo.llm.losses import batch_normalizer, micro_batch_loss
from credo.llm.rollout import (
    RolloutBatch,
    completion_mask_from_ids,
    encode_prompts,
    full_inputs,
    pad_completion,
    padding_bounds,
    rollout_batch,
    sequence_logprobs,
    trim_inputs,
    trim_padding,
)
from credo.llm.trainer import Trainer

from .configs import SMALL_MODEL
from .test_losses import _loss_config  # the same loss settings as the micro-batching test

ATOL, RTOL = 1e-5, 1e-5
L = 8
PROMPTS = ["a", "hello: ", "abc"]  # 1, 7 and 3 characters: left padding of 6, 0 and 4 columns


def _batch(tokenizer: Any, lengths: list[int], seed: int = 0) -> RolloutBatch:
    """Two completions per prompt of :data:`PROMPTS`, row b ending with EOS at token ``lengths[b] - 1``
    (``lengths[b] == 1``: an empty completion, EOS first; ``> L``: no EOS, all L tokens), with random
    old/reference log-probs and values (ratios != 1, so PPO clips)."""
    g = torch.Generator().manual_seed(seed)
    prompt_ids, prompt_mask = encode_prompts(tokenizer, PROMPTS, torch.device("cpu"))
    prompt_ids, prompt_mask = prompt_ids.repeat_interleave(2, 0), prompt_mask.repeat_interleave(2, 0)
    B = prompt_ids.shape[0]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    completion_ids = torch.randint(4, len(tokenizer), (B, L), generator=g)
    for b, n in enumerate(lengths):
        if n <= L:
            completion_ids[b, n - 1] = eos
    mask = completion_mask_from_ids(completion_ids, eos)
    completion_ids = completion_ids.masked_fill(~mask, pad)
    logprobs = (-torch.rand(B, L, generator=g)).masked_fill(~mask, 0.0)
    batch = rollout_batch(tokenizer, PROMPTS, 2, prompt_ids, prompt_mask, completion_ids, mask, logprobs)
    batch.ref_logprobs = (batch.logprobs - 0.2 * torch.rand(B, L, generator=g)).masked_fill(~mask, 0.0)
    batch.values = torch.randn(B, L, generator=g).masked_fill(~mask, 0.0)
    return batch


def _no_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    """The untrimmed path: the same code with trimming replaced by the identity."""
    monkeypatch.setattr(losses_module, "trim_padding", lambda mb, *xs: (mb, list(xs)))
    for module in (rollout_module, critic_module):
        monkeypatch.setattr(module, "trim_inputs", lambda *tensors: (tensors, tensors[2].shape[1]))


# ---- the trim itself ---------------------------------------------------------------------------------


def test_bounds_and_positions(tokenizer: Any) -> None:
    batch = _batch(tokenizer, [1, 3, 2, 5, 4, 1])
    rows = batch.rows(torch.tensor([0, 4, 5]))  # prompts "a" and "abc": 4 padding columns in both
    assert padding_bounds(rows.prompt_mask, rows.completion_mask) == (4, 4)
    trimmed, (adv, none) = trim_padding(rows, torch.arange(3 * L).view(3, L), None)
    assert none is None
    assert trimmed.prompt_ids.shape == (3, 3) and trimmed.completion_ids.shape == (3, 4)
    assert adv is not None and torch.equal(adv, torch.arange(3 * L).view(3, L)[:, :4])
    for name in ("logprobs", "ref_logprobs", "values", "completion_mask", "completion_ids"):
        assert torch.equal(getattr(trimmed, name), getattr(rows, name)[:, :4]), name
    assert trimmed.completions == rows.completions and trimmed.prompts == rows.prompts
    # every kept token keeps its input id, attention and position id
    full = full_inputs(rows.prompt_ids, rows.prompt_mask, rows.completion_ids, rows.completion_mask)
    cut = full_inputs(
        trimmed.prompt_ids, trimmed.prompt_mask, trimmed.completion_ids, trimmed.completion_mask
    )
    P = rows.prompt_ids.shape[1]
    for a, b in zip(full, cut):
        assert torch.equal(a[:, 4 : P + 4], b)
    # the dropped columns held no token of any row
    assert not rows.prompt_mask[:, :4].any() and not rows.completion_mask[:, 4:].any()
    assert torch.equal(pad_completion(trimmed.logprobs, L), rows.logprobs)


def test_nothing_to_trim_is_unchanged(tokenizer: Any) -> None:
    batch = _batch(tokenizer, [9, 2, 1, 1, 3, 4])  # row 2: the longest prompt; row 0: no EOS
    rows = batch.rows(torch.tensor([0, 2]))
    assert padding_bounds(rows.prompt_mask, rows.completion_mask) == (0, L)
    trimmed, (adv,) = trim_padding(rows, rows.values)
    for name in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "logprobs", "values"):
        assert torch.equal(getattr(trimmed, name), getattr(rows, name)), name
    assert adv is not None and torch.equal(adv, rows.values)


def test_kept_widths_are_rounded_up_to_the_multiple() -> None:
    prompt_mask = torch.zeros(2, 70, dtype=torch.bool)
    prompt_mask[0, 60:] = True  # 10 prompt columns hold tokens
    completion_mask = torch.zeros(2, 100, dtype=torch.bool)
    completion_mask[1, :33] = True  # 33 completion columns hold tokens
    assert padding_bounds(prompt_mask, completion_mask) == (60, 33)
    assert padding_bounds(prompt_mask, completion_mask, multiple=32) == (38, 64)  # 32 prompt, 64 completion
    assert padding_bounds(prompt_mask, completion_mask, multiple=64) == (6, 64)
    assert padding_bounds(prompt_mask, completion_mask, multiple=128) == (0, 100)  # capped at P and L
    (ids, mask, c_ids, c_mask), width = trim_inputs(
        torch.ones(2, 70, dtype=torch.long),
        prompt_mask,
        torch.ones(2, 100, dtype=torch.long),
        completion_mask,
        multiple=32,
    )
    assert ids.shape == mask.shape == (2, 32) and c_ids.shape == c_mask.shape == (2, 64) and width == 64
    with pytest.raises(ValueError, match="multiple"):
        padding_bounds(prompt_mask, completion_mask, multiple=0)
    # the default: exact on the CPU (a new shape costs nothing there), TRIM_MULTIPLE on CUDA
    ones = torch.ones(2, 100, dtype=torch.long)
    (ids, *_), width = trim_inputs(ones[:, :70], prompt_mask, ones, completion_mask)
    assert ids.shape == (2, 10) and width == 33


def test_edge_bounds() -> None:
    # one prompt column always stays (its logit predicts completion token 0); one completion column too
    assert padding_bounds(torch.zeros(2, 3, dtype=torch.bool), torch.zeros(2, 4, dtype=torch.bool)) == (2, 1)
    assert padding_bounds(torch.ones(2, 3, dtype=torch.bool), torch.ones(2, 4, dtype=torch.bool)) == (0, 4)


# ---- same numbers as the untrimmed path --------------------------------------------------------------


@pytest.mark.parametrize("micro", [None, 2, 3])
def test_sequence_logprobs_match_untrimmed(
    micro: int | None, tiny_model: Any, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = _batch(tokenizer, [1, 3, 2, 5, 4, 1])
    args = (batch.prompt_ids, batch.prompt_mask, batch.completion_ids, batch.completion_mask, 0.9, micro)
    with torch.no_grad():
        trimmed = sequence_logprobs(tiny_model, *args)
        _no_trim(monkeypatch)
        full = sequence_logprobs(tiny_model, *args)
    assert trimmed.shape == full.shape == (6, L)
    torch.testing.assert_close(trimmed, full, atol=ATOL, rtol=RTOL)
    assert torch.equal(trimmed == 0, full == 0)  # zeros exactly on padding


@pytest.mark.parametrize("mode", ["shared", "separate"])
def test_critic_values_match_untrimmed(
    mode: str, tiny_model: Any, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = _batch(tokenizer, [1, 3, 2, 5, 4, 1])
    critic = ValueModel(32, copy.deepcopy(tiny_model.base_model) if mode == "separate" else None)
    torch.nn.init.normal_(critic.head.weight, std=0.1)
    trimmed = critic_values(critic, tiny_model, batch, 2)
    _no_trim(monkeypatch)
    full = critic_values(critic, tiny_model, batch, 2)
    assert trimmed.shape == full.shape == (6, L)
    torch.testing.assert_close(trimmed, full, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("mode", ["token_mean", "seq_mean_token_mean"])
@pytest.mark.parametrize("policy_loss", ["pg", "ppo_clip"])
@pytest.mark.parametrize("critic_mode", ["shared", "separate"])
def test_loss_and_gradients_match_untrimmed(
    mode: str,
    policy_loss: str,
    critic_mode: str,
    tiny_model: Any,
    tokenizer: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batch = _batch(tokenizer, [1, 3, 2, 5, 4, 1])  # rows 0 and 5: empty completions (EOS first)
    g = torch.Generator().manual_seed(2)
    advantages, returns = torch.randn(6, L, generator=g), torch.randn(6, L, generator=g)
    critic = ValueModel(32, copy.deepcopy(tiny_model.base_model) if critic_mode == "separate" else None)
    torch.nn.init.normal_(critic.head.weight, std=0.1)
    config = _loss_config(mode, policy_loss)
    normalizer = batch_normalizer(mode, batch.completion_mask)
    params = [*tiny_model.parameters(), *critic.parameters()]

    def run() -> tuple[list[float], list[dict[str, torch.Tensor]], list[torch.Tensor]]:
        for p in params:
            p.grad = None
        losses, stats = [], []
        # micro-batches with left and right padding to trim, and one ([2, 3]: prompt "hello: ") without
        for idx in (torch.tensor([0, 4, 5]), torch.tensor([2, 3]), torch.tensor([1])):
            loss, s = micro_batch_loss(
                tiny_model, batch.rows(idx), advantages[idx], returns[idx], normalizer, config, critic
            )
            loss.backward()
            losses.append(float(loss.detach()))
            stats.append(s)
        return losses, stats, [p.grad.clone() for p in params]

    trimmed = run()
    _no_trim(monkeypatch)
    full = run()
    torch.testing.assert_close(trimmed[0], full[0], atol=ATOL, rtol=RTOL)
    for a, b in zip(trimmed[1], full[1]):
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], atol=ATOL, rtol=RTOL)
    for a, b in zip(trimmed[2], full[2]):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=RTOL)
    assert any(float(a.abs().sum()) > 0 for a in trimmed[2])


def test_untrimmable_micro_batch_loss_is_bit_identical(
    tiny_model: Any, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = _batch(tokenizer, [9, 2, 1, 1, 3, 4]).rows(torch.tensor([0, 2]))
    advantages = torch.randn(2, L, generator=torch.Generator().manual_seed(3))
    config = _loss_config("token_mean", "ppo_clip")
    normalizer = batch_normalizer("token_mean", batch.completion_mask)

    def run() -> tuple[torch.Tensor, list[torch.Tensor]]:
        tiny_model.zero_grad(set_to_none=True)
        loss, _ = micro_batch_loss(tiny_model, batch, advantages, None, normalizer, config)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in tiny_model.parameters()]

    trimmed = run()
    _no_trim(monkeypatch)
    full = run()
    assert torch.equal(trimmed[0], full[0])
    assert all(torch.equal(a, b) for a, b in zip(trimmed[1], full[1]))


# ---- the trainer ---------------------------------------------------------------------------------------


def test_trainer_orders_rows_within_mini_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    config = config_from_dict(
        {
            "model": SMALL_MODEL,
            "rollout": {"group_size": 4, "prompts_per_step": 2, "max_new_tokens": 8},
            "loss": {"policy_loss": "ppo_clip", "epochs": 2, "kl_beta": 0.05},
            "optim": {"lr": 1e-3, "micro_batch_size": 2, "mini_batches": 2},
            "progress": False,
            "steps": 3,
        }
    )
    seen: list[list[int]] = []  # per micro-batch, the completion lengths of its rows
    original = trainer_module.micro_batch_loss

    def recording(policy: Any, mb: RolloutBatch, *args: Any, **kwargs: Any) -> Any:
        seen.append(mb.completion_mask.sum(dim=1).tolist())
        return original(policy, mb, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "micro_batch_loss", recording)

    def reward(prompts: list[str], completions: list[str], **meta: Any) -> list[float]:
        return [(sum(map(ord, c)) % 11) / 10.0 for c in completions]

    trainer = Trainer(config, reward_functions=reward, prompts=["ab", "hello: ", "c", "xyz"])
    history = trainer.train()
    assert len(history) == 3
    assert all(math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"]) for m in history)
    # 3 steps x 2 epochs x 2 mini-batches x 2 micro-batches of 2 rows
    assert len(seen) == 24 and all(len(s) == 2 for s in seen)
    for i in range(0, 24, 2):  # each mini-batch (two micro-batches): longest completions first
        lengths = seen[i] + seen[i + 1]
        assert lengths == sorted(lengths, reverse=True)
    for i in range(0, 24, 8):  # both epochs of a step cover the same 8 rows
        first, second = (sorted(n for s in seen[j : j + 4] for n in s) for j in (i, i + 4))
        assert first == second
