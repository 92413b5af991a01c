"""``compile_layers``: every decoder layer compiled in place (inductor on the CPU here), the activation
checkpoint inside the compiled region. Slow: each test compiles a layer's forward and backward."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch._dynamo.utils import counters

from credo.llm import toy
from credo.llm.config import config_from_dict
from credo.llm.critic import ValueModel
from credo.llm.graph_decode import GraphDecoder, sample_completions_graph
from credo.llm.models import (
    AdapterFreeReference,
    compile_decoder_layers,
    compile_run_layers,
    enable_gradient_checkpointing,
)
from credo.llm.rollout import sequence_logprobs
from credo.llm.tiny import build_char_tokenizer, build_tiny_model, tiny_model_config
from credo.llm.trainer import Trainer

from .configs import SMALL_MODEL

pytestmark = pytest.mark.slow


def _model(arch: str = "qwen2") -> Any:
    config = tiny_model_config(
        40, arch=arch, hidden_size=32, num_heads=4, num_kv_heads=2 if arch == "qwen2" else None
    )
    return build_tiny_model(config, seed=0).train()


def _loss_and_grads(
    model: Any, ids: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    loss = logits.float().log_softmax(-1).mean()
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("arch", ["qwen2", "gpt2"])
def test_compiled_checkpointed_layers_give_the_eager_checkpointed_gradients(arch: str) -> None:
    torch._dynamo.reset()
    counters.clear()
    model = _model(arch)
    eager = copy.deepcopy(model)  # copied before compiling: its layers keep their own forwards
    enable_gradient_checkpointing(eager)
    assert compile_decoder_layers(model, checkpointing=True) == 2
    gen = torch.Generator().manual_seed(0)
    for length in (9, 14, 23):  # new lengths reuse the dynamic-shape compile
        ids = torch.randint(4, 40, (3, length), generator=gen)
        mask = torch.ones(3, length, dtype=torch.long)
        mask[0, :4] = 0  # left padding
        loss, grads = _loss_and_grads(model, ids, mask)
        want_loss, want_grads = _loss_and_grads(eager, ids, mask)
        torch.testing.assert_close(loss, want_loss, atol=1e-5, rtol=1e-5)
        for got, want in zip(grads, want_grads):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert counters["stats"]["unique_graphs"] >= 1, "the layers ran eagerly: nothing was compiled"
    assert not counters["graph_break"], dict(counters["graph_break"])
    with torch.no_grad():  # no gradients: the plain compiled layer (no checkpoint)
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        torch.testing.assert_close(logits, eager(input_ids=ids, attention_mask=mask, use_cache=False).logits)


def test_a_model_without_decoder_layer_classes_is_refused() -> None:
    model = _model()
    model._no_split_modules = ["NoSuchLayer"]
    with pytest.raises(ValueError, match=r"compile_layers.*NoSuchLayer"):
        compile_decoder_layers(model, checkpointing=False)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`")
def test_trainer_trains_with_compiled_layers_and_the_graph_backend() -> None:
    torch._dynamo.reset()
    config = config_from_dict(
        {
            "model": SMALL_MODEL,
            "rollout": {
                "group_size": 4,
                "prompts_per_step": 2,
                "max_new_tokens": 6,
                "backend": "graph",
                "compile_decode": True,  # composes: sampling calls the layers uncompiled
            },
            "loss": {"kl_beta": 0.05},  # a reference copy: it must keep eager layers of its own
            "optim": {"lr": 1e-3, "micro_batch_size": 4},
            "gradient_checkpointing": True,
            "compile_layers": True,
            "steps": 2,
            "progress": False,
        }
    )
    trainer = Trainer(config, reward_functions=toy.letter_fraction_reward, prompts=toy.letters_prompts())
    history = trainer.train()
    assert len(history) == 2 and all(torch.isfinite(torch.tensor(m["loss"])) for m in history)
    assert trainer.reference is not None and trainer.sampler.decoder.compile
    policy_layers = [m for m in trainer.model.modules() if type(m).__name__ == "Qwen2DecoderLayer"]
    reference_layers = [m for m in trainer.reference.modules() if type(m).__name__ == "Qwen2DecoderLayer"]
    assert all("forward" in vars(m) for m in policy_layers)  # compiled in place
    assert all("forward" in vars(m) for m in reference_layers)  # the reference copy's own compile
    assert all(p.forward is not r.forward for p, r in zip(policy_layers, reference_layers))


def test_compile_run_layers_covers_a_separate_reference_and_critic_once() -> None:
    policy = _model()
    reference = copy.deepcopy(policy)
    critic = ValueModel(32, backbone=copy.deepcopy(policy.model))
    compile_run_layers(policy, reference, critic, checkpointing=True)
    layers = [
        [m for m in model.modules() if type(m).__name__ == "Qwen2DecoderLayer"]
        for model in (policy, reference, critic.backbone)
    ]
    assert all(len(group) == 2 and all(m._credo_compiled for m in group) for group in layers)
    forwards = [m.forward for m in layers[0]]
    compile_run_layers(policy, AdapterFreeReference(policy), None, checkpointing=True)  # shared: kept
    assert [m.forward for m in layers[0]] == forwards


def test_rollout_logprobs_equal_the_compiled_layers_training_forward() -> None:
    """Sampling (compiled decode step, layers called uncompiled with a KV cache) records the log-probs
    that the update's forward through the compiled, checkpointed layers recomputes, with gradients on:
    the exact agreement the policy-gradient ratio relies on."""
    torch._dynamo.reset()
    tokenizer = build_char_tokenizer("ab")
    config = tiny_model_config(len(tokenizer), hidden_size=32, num_heads=4, num_kv_heads=2)
    model = build_tiny_model(config, seed=0)
    model.set_attn_implementation("sdpa")
    enable_gradient_checkpointing(model)
    assert compile_decoder_layers(model, checkpointing=True) == 2
    torch.manual_seed(0)
    batch = sample_completions_graph(
        model.eval(), tokenizer, ["a", "abbab", "ba"], group_size=2, max_new_tokens=8, temperature=1.1,
        decoder=GraphDecoder(compile=True),
    )  # fmt: skip
    model.train()
    recomputed = sequence_logprobs(
        model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids, batch.completion_mask, 1.1
    )
    assert recomputed.requires_grad
    torch.testing.assert_close(recomputed.detach(), batch.logprobs, atol=1e-5, rtol=1e-5)
