"""The CUDA fast path (static KV cache, compiled decoding with CUDA graphs); skipped without CUDA."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from credo.llm import toy
from credo.llm.config import config_from_dict
from credo.llm.models import attention_kernels
from credo.llm.rollout import TRIM_MULTIPLE, sample_completions, sequence_logprobs, trim_inputs
from credo.llm.trainer import Trainer

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"),
]


def test_static_cache_rollout_logprobs_match_a_forward_pass(tokenizer: Any) -> None:
    from credo.llm.tiny import build_tiny_model, tiny_model_config

    model = build_tiny_model(tiny_model_config(len(tokenizer), hidden_size=64, num_heads=4)).cuda()
    torch.manual_seed(0)
    for _ in range(2):  # the second call reuses the compiled step and the cache
        batch = sample_completions(
            model,
            tokenizer,
            ["Hi", "Hello there: "],
            group_size=4,
            max_new_tokens=12,
            static_cache=True,
            pad_to_multiple_of=16,
        )
        with torch.no_grad():
            again = sequence_logprobs(
                model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids, batch.completion_mask
            )
        torch.testing.assert_close(again, batch.logprobs, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16"])
def test_trainer_steps_on_cuda(precision: str) -> None:
    config = config_from_dict(
        {
            "model": {"hidden_size": 64, "num_heads": 4, "context_length": 64},
            "rollout": {
                "group_size": 4,
                "prompts_per_step": 2,
                "max_new_tokens": 8,
                "static_cache": True,
                "pad_to_multiple_of": 16,
            },
            "loss": {"kl_beta": 0.04, "kl_mode": "loss", "kl_kind": "k3"},
            "optim": {"lr": 1e-3, "micro_batch_size": 4},
            "precision": precision,
            "device": "cuda",
            "gradient_checkpointing": True,
            "steps": 3,
            "progress": False,
        }
    )
    trainer = Trainer(config, reward_functions=toy.letter_fraction_reward, prompts=toy.letters_prompts())
    history = trainer.train()
    assert len(history) == 3 and all(torch.isfinite(torch.tensor(m["loss"])) for m in history)
    assert trainer.device.type == "cuda"


def test_attention_kernels_keep_sdpa_off_cudnn_within_a_step() -> None:
    cuda = torch.device("cuda")
    q = torch.randn(2, 4, 37, 16, device=cuda, dtype=torch.bfloat16)
    mask = torch.ones(2, 1, 37, 37, device=cuda, dtype=torch.bool).tril()
    expected = torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=mask)
    with attention_kernels(cuda):
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        got = torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=mask)
    torch.testing.assert_close(got, expected, atol=2e-2, rtol=2e-2)
    before = torch.backends.cuda.cudnn_sdp_enabled()
    with attention_kernels(torch.device("cpu")):  # nothing changes off CUDA
        assert torch.backends.cuda.cudnn_sdp_enabled() == before


def test_trimmed_widths_are_rounded_up_on_cuda() -> None:
    prompt_mask = torch.zeros(2, 70, dtype=torch.bool, device="cuda")
    prompt_mask[0, 60:] = True
    completion_mask = torch.zeros(2, 100, dtype=torch.bool, device="cuda")
    completion_mask[1, :33] = True
    ones = torch.ones(2, 100, dtype=torch.long, device="cuda")
    (ids, *_), width = trim_inputs(ones[:, :70], prompt_mask, ones, completion_mask)
    assert ids.shape == (2, TRIM_MULTIPLE) and width == 2 * TRIM_MULTIPLE
