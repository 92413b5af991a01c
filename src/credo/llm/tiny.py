"""Tiny causal LMs and a character-level tokenizer, built locally (nothing is downloaded).

Tests, the toy configs and the CPU benchmarks use these: a Qwen2 (or GPT-2) architecture built from a
config with a few hundred thousand to a few million parameters, and a ``PreTrainedTokenizerFast`` whose
vocabulary is one token per character (printable ASCII plus newline), so every character of a
completion maps to exactly one token and ``return_offsets_mapping`` is exact.

A locally built char tokenizer must be loaded with :class:`~transformers.PreTrainedTokenizerFast`
(see :func:`load_tokenizer`): saved next to a Qwen2 config, ``AutoTokenizer`` would pick
``Qwen2Tokenizer``, whose pre-tokenizer silently drops spaces and newlines.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

SPECIAL_TOKENS: dict[str, str] = {
    "pad_token": "<pad>",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
}
DEFAULT_CHARS: str = "".join(chr(i) for i in range(32, 127)) + "\n"
_MARKER = "credo_char_tokenizer.json"


def build_char_tokenizer(chars: str = DEFAULT_CHARS) -> Any:
    """A character-level ``PreTrainedTokenizerFast``: ids 0-3 are ``<pad> <s> </s> <unk>``, then one id
    per character of ``chars`` (duplicates removed, order kept).

    Spaces and newlines are ordinary tokens (no pre-tokenizer strips them); decoding concatenates the
    characters back (``decoders.Fuse``), so ``decode(encode(text)) == text`` for text over ``chars``.
    """
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    if not isinstance(chars, str) or not chars:
        raise ValueError("chars must be a non-empty string")
    vocab: dict[str, int] = {}
    for token in SPECIAL_TOKENS.values():
        vocab[token] = len(vocab)
    for ch in chars:
        if ch not in vocab:
            vocab[ch] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=SPECIAL_TOKENS["unk_token"]))
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **SPECIAL_TOKENS)
    tokenizer.padding_side = "left"
    return tokenizer


def save_tokenizer(tokenizer: Any, path: str | os.PathLike[str]) -> None:
    """``save_pretrained`` plus a marker file so :func:`load_tokenizer` knows to use the fast class."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(path)
    (path / _MARKER).write_text(json.dumps({"class": "PreTrainedTokenizerFast"}))


def load_tokenizer(path: str | os.PathLike[str]) -> Any:
    """Load a tokenizer from a local directory, left padding (batched generation).

    A credo char tokenizer (marker file present, or a ``tokenizer.json`` without a slow-tokenizer
    vocabulary) loads as ``PreTrainedTokenizerFast``; anything else through ``AutoTokenizer``.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"tokenizer path {str(path)!r} is not a directory")
    if (path / _MARKER).exists():
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
    else:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def tiny_model_config(
    vocab_size: int,
    arch: str = "qwen2",
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int | None = None,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 256,
    pad_token_id: int = 0,
    bos_token_id: int = 1,
    eos_token_id: int = 2,
) -> Any:
    """A ``Qwen2Config`` or ``GPT2Config`` for a tiny causal LM (tied embeddings)."""
    from transformers import GPT2Config, Qwen2Config

    if hidden_size % num_heads:
        raise ValueError(f"hidden_size={hidden_size} must be divisible by num_heads={num_heads}")
    ids = {"pad_token_id": pad_token_id, "bos_token_id": bos_token_id, "eos_token_id": eos_token_id}
    if arch == "qwen2":
        return Qwen2Config(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            intermediate_size=intermediate_size or 2 * hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            num_key_value_heads=num_kv_heads or num_heads,
            max_position_embeddings=max_position_embeddings,
            tie_word_embeddings=True,
            **ids,
        )
    if arch == "gpt2":
        return GPT2Config(
            vocab_size=vocab_size,
            n_embd=hidden_size,
            n_layer=num_layers,
            n_head=num_heads,
            n_inner=intermediate_size,
            n_positions=max_position_embeddings,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **ids,
        )
    raise ValueError(f"arch must be 'qwen2' or 'gpt2', got {arch!r}")


def build_tiny_model(config: Any, seed: int = 0, dtype: torch.dtype = torch.float32) -> Any:
    """A randomly initialised ``AutoModelForCausalLM`` from ``config``, seeded (same seed, same weights)."""
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model


def context_length(model: Any) -> int:
    """The longest sequence ``model`` accepts (``max_position_embeddings`` or ``n_positions``)."""
    cfg = model.config
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError("cannot tell the model's context length from its config")
