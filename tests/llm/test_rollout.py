from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from credo.llm.rollout import (
    char_spans_to_token_spans,
    completion_mask_from_ids,
    completion_token_offsets,
    sample_completions,
    sequence_logprobs,
)
from credo.llm.sft import sft_warmup
from credo.llm.tiny import build_char_tokenizer, build_tiny_model, tiny_model_config


def _slow_logprobs(model: Any, prompt: list[int], completion: list[int]) -> torch.Tensor:
    """Unpadded, one row at a time: log p(completion_t | prompt, completion_<t), the obvious way."""
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return torch.stack([logp[len(prompt) + t - 1, tok] for t, tok in enumerate(completion)])


def test_completion_mask_stops_after_first_eos() -> None:
    ids = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8], [2, 0, 0, 0]])
    mask = completion_mask_from_ids(ids, 2)
    assert mask.tolist() == [[True, True, False, False], [True] * 4, [True, False, False, False]]


@pytest.mark.parametrize("arch", ["qwen2", "gpt2"])
def test_rollout_logprobs_equal_training_forward_and_slow_reference(arch: str, tokenizer: Any) -> None:
    tiny_model = build_tiny_model(tiny_model_config(len(tokenizer), arch=arch, hidden_size=32, num_heads=2))
    # Teach EOS after 1-4 letters so completions end at different lengths (right padding), and use
    # prompts of different lengths (left padding).
    pairs = [("Go: ", "a" * (1 + i % 4)) for i in range(32)] + [("Longer prompt here: ", "bb")] * 8
    sft_warmup(tiny_model, tokenizer, pairs, steps=60, lr=1e-2, batch_size=16)
    torch.manual_seed(0)
    prompts = ["Go: ", "Longer prompt here: "]
    batch = sample_completions(
        tiny_model, tokenizer, prompts, group_size=3, max_new_tokens=12, temperature=1.3
    )
    lengths = batch.completion_mask.sum(dim=1)
    assert len(set(lengths.tolist())) > 1, "want completions of different lengths"
    assert (batch.prompt_mask.sum(dim=1) < batch.prompt_ids.shape[1]).any(), "want left padding"
    with torch.no_grad():
        recomputed = sequence_logprobs(
            tiny_model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids, batch.completion_mask, 1.3
        )
    torch.testing.assert_close(recomputed, batch.logprobs, atol=1e-5, rtol=1e-5)
    # against the slow unpadded reference at temperature 1
    with torch.no_grad():
        at_t1 = sequence_logprobs(
            tiny_model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids, batch.completion_mask
        )
    for b in range(batch.batch_size):
        prompt = batch.prompt_ids[b][batch.prompt_mask[b]].tolist()
        completion = batch.completion_ids[b][batch.completion_mask[b]].tolist()
        torch.testing.assert_close(
            at_t1[b, : len(completion)], _slow_logprobs(tiny_model, prompt, completion), atol=1e-5, rtol=1e-5
        )
        assert (at_t1[b, len(completion) :] == 0).all()
        assert batch.completions[b] == tokenizer.decode(completion, skip_special_tokens=True)


def test_rollout_layout_and_groups(tiny_model: Any, tokenizer: Any) -> None:
    batch = sample_completions(tiny_model, tokenizer, ["a", "bcd"], group_size=4, max_new_tokens=5)
    assert batch.batch_size == 8 and batch.group_size == 4
    assert batch.prompts == ["a"] * 4 + ["bcd"] * 4
    assert batch.prompt_index.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert batch.completion_ids.shape[1] <= 5
    sub = batch.rows(torch.tensor([1, 6]))
    assert sub.prompts == ["a", "bcd"] and sub.completions == [batch.completions[1], batch.completions[6]]
    with pytest.raises(ValueError, match="group_size"):
        sample_completions(tiny_model, tokenizer, ["a"], group_size=0, max_new_tokens=5)


def test_char_spans_map_to_token_spans(tokenizer: Any) -> None:
    text = "1. ab\n2. c"
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]])
    mask = torch.ones_like(ids, dtype=torch.bool)
    (offsets,) = completion_token_offsets(tokenizer, ids, mask, [text])
    assert len(offsets) == len(text) + 1 and offsets[-1] == (len(text), len(text))
    spans = char_spans_to_token_spans([(3, 5), (9, 10), None, (4, 4)], offsets)
    assert spans == [(3, 5), (9, 10), None, None]


def test_top_k_one_is_greedy_and_logprobs_stay_untruncated(tiny_model: Any, tokenizer: Any) -> None:
    torch.manual_seed(0)
    batch = sample_completions(tiny_model, tokenizer, ["abc"], group_size=3, max_new_tokens=6, top_k=1)
    assert len(set(batch.completions)) == 1  # greedy: every sample is the same
    with torch.no_grad():
        full = sequence_logprobs(
            tiny_model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids, batch.completion_mask
        )
    torch.testing.assert_close(batch.logprobs, full, atol=1e-5, rtol=1e-5)
    assert (batch.logprobs[batch.completion_mask] < 0).all()  # not the truncated (log 1 = 0) distribution


@settings(max_examples=30, deadline=None)
@given(st.text(alphabet="ab c\n1.", min_size=1, max_size=30), st.data())
def test_char_spans_round_trip_through_token_offsets(text: str, data: st.DataObject) -> None:
    tokenizer = build_char_tokenizer()
    ids = torch.tensor([[*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]])
    (offsets,) = completion_token_offsets(tokenizer, ids, torch.ones_like(ids, dtype=torch.bool), [text])
    start = data.draw(st.integers(0, len(text) - 1))
    end = data.draw(st.integers(start + 1, len(text)))
    ((t0, t1),) = char_spans_to_token_spans([(start, end)], offsets)
    assert tokenizer.decode(ids[0, t0:t1]) == text[start:end]


def test_every_eos_id_of_model_and_tokenizer_ends_a_completion(tiny_model: Any, tokenizer: Any) -> None:
    from credo.llm.rollout import eos_token_ids

    tiny_model.generation_config.eos_token_id = [2, 7]
    assert eos_token_ids(tiny_model, tokenizer) == [2, 7]
    mask = completion_mask_from_ids(torch.tensor([[5, 7, 9], [2, 7, 9], [5, 6, 9]]), [2, 7])
    assert mask.tolist() == [[True, True, False], [True, False, False], [True, True, True]]
