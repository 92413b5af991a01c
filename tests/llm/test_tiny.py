from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from credo.llm.tiny import (
    build_char_tokenizer,
    build_tiny_model,
    context_length,
    load_tokenizer,
    save_tokenizer,
    tiny_model_config,
)

TEXT = "Hello,  world!\n1. apple\n2. pear  \n\tend"


def test_char_tokenizer_round_trip_keeps_spaces_and_newlines(tokenizer: Any) -> None:
    text = TEXT.replace("\t", " ")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)  # one token per character
    assert tokenizer.decode(ids) == text
    assert tokenizer.pad_token_id == 0 and tokenizer.eos_token_id == 2


def test_offsets_mapping_is_one_char_per_token(tokenizer: Any) -> None:
    text = "1. a b\n2. cd"
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    assert [tuple(o) for o in enc["offset_mapping"]] == [(i, i + 1) for i in range(len(text))]


def test_save_load_round_trip_with_qwen2_model(tmp_path: Path, tokenizer: Any) -> None:
    model = build_tiny_model(tiny_model_config(len(tokenizer)))
    model.save_pretrained(tmp_path)
    save_tokenizer(tokenizer, tmp_path)
    loaded = load_tokenizer(tmp_path)
    text = "a b\n c"
    assert loaded.decode(loaded(text, add_special_tokens=False)["input_ids"]) == text
    assert loaded.padding_side == "left"
    assert (
        loaded(text, add_special_tokens=False)["input_ids"]
        == tokenizer(text, add_special_tokens=False)["input_ids"]
    )


def test_unknown_chars_map_to_unk() -> None:
    tok = build_char_tokenizer("ab")
    assert tok("abz", add_special_tokens=False)["input_ids"] == [4, 5, tok.unk_token_id]


@pytest.mark.parametrize("arch", ["qwen2", "gpt2"])
def test_tiny_model_builds_seeded(arch: str, tokenizer: Any) -> None:
    cfg = tiny_model_config(len(tokenizer), arch=arch, max_position_embeddings=64)
    a, b = build_tiny_model(cfg, seed=3), build_tiny_model(cfg, seed=3)
    params = sum(p.numel() for p in a.parameters())
    assert 10_000 < params < 5_000_000
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert context_length(a) == 64
    out = a(input_ids=torch.tensor([[5, 6, 7]])).logits
    assert out.shape == (1, 3, len(tokenizer))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="arch"):
        tiny_model_config(10, arch="llama9")
    with pytest.raises(ValueError, match="divisible"):
        tiny_model_config(10, hidden_size=30, num_heads=4)
    with pytest.raises(ValueError, match="chars"):
        build_char_tokenizer("")
