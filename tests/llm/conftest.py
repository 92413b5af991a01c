from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from credo.llm.tiny import build_char_tokenizer, build_tiny_model, tiny_model_config


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads, and two busy cores make thread pools thrash."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tokenizer() -> Any:
    return build_char_tokenizer()


@pytest.fixture
def tiny_model(tokenizer: Any) -> Any:
    return build_tiny_model(tiny_model_config(len(tokenizer), hidden_size=32, num_heads=2), seed=0)
