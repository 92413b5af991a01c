"""credo's decode loop (``rollout.backend: graph``): the same RolloutBatch and log-prob convention as the
HF path, eagerly on CPU; the CUDA-graph replay against the eager loop on CUDA (``cuda`` marker)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
import torch

import credo.llm.graph_decode as graph_decode
from credo.llm import toy
from credo.llm.config import config_from_dict, validate_config
from credo.llm.graph_decode import GraphDecoder, grouped_decode_attention, sample_completions_graph
from credo.llm.rollout import completion_logits, completion_mask_from_ids, sequence_logprobs
from credo.llm.tiny import build_char_tokenizer, build_tiny_model, tiny_model_config

from .configs import SMALL_MODEL


def _small_vocab(
    arch: str = "qwen2", attention: str = "sdpa", kv_heads: int | None = None
) -> tuple[Any, Any]:
    """A 6-token vocabulary (pad, bos, EOS, unk, a, b): EOS has probability ~1/6 per token, so rows end
    at many different lengths, some early. ``kv_heads``: grouped-query attention (qwen2)."""
    tokenizer = build_char_tokenizer("ab")
    config = tiny_model_config(len(tokenizer), arch=arch, hidden_size=32, num_heads=4, num_kv_heads=kv_heads)
    model = build_tiny_model(config, seed=0)
    model.set_attn_implementation(attention)
    return model, tokenizer


PROMPTS = ["a", "abbab", "ba"]  # different lengths: left padding


@pytest.mark.parametrize(
    ("arch", "attention", "kv_heads"),
    [
        ("qwen2", "sdpa", None),
        ("qwen2", "sdpa", 2),
        ("qwen2", "sdpa", 1),
        ("gpt2", "sdpa", None),
        ("qwen2", "eager", 2),
    ],
)
@pytest.mark.parametrize(("temperature", "top_k"), [(1.3, None), (0.7, 3)])
def test_recorded_logprobs_equal_teacher_forced_ones(
    arch: str, attention: str, kv_heads: int | None, temperature: float, top_k: int | None
) -> None:
    model, tokenizer = _small_vocab(arch, attention, kv_heads)
    torch.manual_seed(0)
    batch = sample_completions_graph(
        model, tokenizer, PROMPTS, group_size=4, max_new_tokens=16, temperature=temperature, top_k=top_k
    )
    B, L = batch.completion_ids.shape
    assert B == 12 and L <= 16 and batch.prompt_index.tolist() == [i for i in range(3) for _ in range(4)]
    assert batch.prompts == [p for p in PROMPTS for _ in range(4)]
    lengths = batch.completion_mask.sum(dim=1)
    assert len(set(lengths.tolist())) > 2 and (lengths < L).any(), "want EOS early in some rows"
    assert (batch.prompt_mask.sum(dim=1) < batch.prompt_ids.shape[1]).any(), "want left padding"
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    assert torch.equal(batch.completion_mask, completion_mask_from_ids(batch.completion_ids, eos))
    assert (batch.completion_ids[~batch.completion_mask] == pad).all()
    assert (batch.logprobs[~batch.completion_mask] == 0).all()
    with torch.no_grad():
        recomputed = sequence_logprobs(
            model,
            batch.prompt_ids,
            batch.prompt_mask,
            batch.completion_ids,
            batch.completion_mask,
            temperature,
        )
    torch.testing.assert_close(recomputed, batch.logprobs, atol=1e-5, rtol=1e-5)
    assert (batch.logprobs[batch.completion_mask] < 0).all()  # the untruncated distribution
    if top_k is not None:  # every sampled token is among the top-k of its distribution
        with torch.no_grad():
            logits = completion_logits(
                model, (batch.prompt_ids, batch.prompt_mask, batch.completion_ids, batch.completion_mask)
            )
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1]
        chosen = logits.gather(-1, batch.completion_ids[..., None]).squeeze(-1)
        assert (chosen[batch.completion_mask] >= kth[batch.completion_mask]).all()
    for b in range(B):
        tokens = batch.completion_ids[b][batch.completion_mask[b]].tolist()
        assert batch.completions[b] == tokenizer.decode(tokens, skip_special_tokens=True)


def test_near_zero_temperature_gives_generates_greedy_tokens(tiny_model: Any, tokenizer: Any) -> None:
    prompts = ["Hi", "Hello there: ", "abc"]
    batch = sample_completions_graph(
        tiny_model, tokenizer, prompts, group_size=2, max_new_tokens=10, temperature=1e-4
    )
    ids = batch.prompt_ids[::2]
    with torch.no_grad():
        greedy = tiny_model.generate(
            input_ids=ids,
            attention_mask=batch.prompt_mask[::2].long(),
            do_sample=False,
            max_new_tokens=10,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )[:, ids.shape[1] :]
    mask = completion_mask_from_ids(greedy, tokenizer.eos_token_id)
    expected = greedy.masked_fill(~mask, tokenizer.pad_token_id).repeat_interleave(2, dim=0)
    assert torch.equal(batch.completion_ids, expected)


def test_stopping_early_gives_the_same_output_as_running_every_step() -> None:
    model, tokenizer = _small_vocab()
    runs = []
    for check_every in (1, None):
        torch.manual_seed(5)
        runs.append(
            sample_completions_graph(
                model, tokenizer, PROMPTS, group_size=2, max_new_tokens=60, check_every=check_every
            )
        )
    stopped, full = runs
    assert stopped.completion_ids.shape[1] < 60, "want every row to end before max_new_tokens"
    assert torch.equal(stopped.completion_ids, full.completion_ids)
    assert torch.equal(stopped.completion_mask, full.completion_mask)
    assert torch.equal(stopped.logprobs, full.logprobs)
    assert stopped.completions == full.completions


def test_a_reused_decoder_and_a_single_token_work(tiny_model: Any, tokenizer: Any) -> None:
    decoder = GraphDecoder()
    for prompts in (["ab", "cd"], ["abc", "d"], ["ab", "cd"]):
        torch.manual_seed(1)
        batch = sample_completions_graph(tiny_model, tokenizer, prompts, 2, 5, decoder=decoder)
        with torch.no_grad():
            again = sequence_logprobs(
                tiny_model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids, batch.completion_mask
            )
        torch.testing.assert_close(again, batch.logprobs, atol=1e-5, rtol=1e-5)
    assert len(decoder.states) == 1  # prompts within one bucket share the cache
    one = sample_completions_graph(tiny_model, tokenizer, ["ab"], 3, 1, decoder=decoder)
    assert one.completion_ids.shape == (3, 1)
    with pytest.raises(ValueError, match="needs the model on CUDA"):
        sample_completions_graph(tiny_model, tokenizer, ["ab"], 1, 3, use_cuda_graph=True)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`")
@pytest.mark.parametrize("precision", ["fp32", "bf16-mixed"])
def test_trainer_runs_with_the_graph_backend(precision: str) -> None:
    from credo.llm.sampler import GraphSampler
    from credo.llm.trainer import Trainer

    config = config_from_dict(
        {
            "model": SMALL_MODEL,
            "rollout": {"group_size": 4, "prompts_per_step": 2, "max_new_tokens": 6, "backend": "graph"},
            "optim": {"lr": 1e-3, "micro_batch_size": 4},
            "precision": precision,
            "steps": 2,
            "progress": False,
        }
    )
    trainer = Trainer(config, reward_functions=toy.letter_fraction_reward, prompts=toy.letters_prompts())
    history = trainer.train()
    assert isinstance(trainer.sampler, GraphSampler)
    assert len(history) == 2 and all(torch.isfinite(torch.tensor(m["loss"])) for m in history)


@pytest.mark.parametrize(("heads", "kv_heads", "q_len"), [(4, 4, 1), (8, 2, 1), (6, 1, 1), (8, 2, 3)])
@pytest.mark.parametrize("mask_kind", ["bool", "additive", "none"])
def test_grouped_decode_attention_equals_eager_attention_with_repeated_heads(
    heads: int, kv_heads: int, q_len: int, mask_kind: str
) -> None:
    """The grouped form against transformers' eager attention (``repeat_kv``, then one score matrix per
    query head), on random tensors with rows of different visible lengths."""
    from transformers.models.qwen2.modeling_qwen2 import eager_attention_forward

    gen = torch.Generator().manual_seed(heads * 10 + kv_heads)
    batch, slots, dim = 3, 7, 8
    query = torch.randn(batch, heads, q_len, dim, generator=gen)
    key, value = (torch.randn(batch, kv_heads, slots, dim, generator=gen) for _ in range(2))
    visible = torch.arange(slots)[None, :] < torch.tensor([3, 5, 7])[:, None]  # [B, C]
    visible[1, 0] = False  # a masked slot in the middle of the sequence (left padding)
    allowed = visible[:, None, None, :].expand(batch, 1, q_len, slots)
    additive = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
    module = torch.nn.Module()
    module.num_key_value_groups, module.training = heads // kv_heads, False
    expected, _ = eager_attention_forward(
        module, query, key, value, None if mask_kind == "none" else additive, scaling=0.3
    )
    mask = {"bool": allowed, "additive": additive, "none": None}[mask_kind]
    got, weights = grouped_decode_attention(module, query, key, value, mask, scaling=0.3)
    assert weights is None and got.shape == (batch, q_len, heads, dim)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_a_compiled_decode_step_records_the_teacher_forced_logprobs() -> None:
    """``GraphDecoder(compile=True)``: the step's forward through ``torch.compile`` (inductor on the
    CPU here) samples rows whose recorded log-probs are the teacher-forced ones."""
    model, tokenizer = _small_vocab("qwen2", "sdpa", kv_heads=2)
    decoder = GraphDecoder(compile=True)
    torch.manual_seed(0)
    for _ in range(2):  # the second call reuses the compiled forward
        batch = sample_completions_graph(
            model, tokenizer, PROMPTS, group_size=2, max_new_tokens=8, temperature=1.1, decoder=decoder
        )
        with torch.no_grad():
            recomputed = sequence_logprobs(
                model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids, batch.completion_mask, 1.1
            )
        torch.testing.assert_close(recomputed, batch.logprobs, atol=1e-5, rtol=1e-5)
    assert len(decoder.forwards) == 1
    assert model.config._attn_implementation == "sdpa"  # the decode attention is switched back


def test_compile_decode_needs_the_graph_backend() -> None:
    config = config_from_dict({"rollout": {"backend": "graph", "compile_decode": True}})
    validate_config(config)
    with pytest.raises(ValueError, match=r"rollout\.compile_decode.*'hf'") as error:
        validate_config(config_from_dict({"rollout": {"backend": "hf", "compile_decode": True}}))
    assert "\n" not in str(error.value)


def test_config_accepts_the_graph_backend_and_rejects_unknown_ones() -> None:
    assert config_from_dict({"rollout": {"backend": "graph"}}).rollout.backend == "graph"
    with pytest.raises(ValueError, match=r"rollout\.backend") as error:
        config_from_dict({"rollout": {"backend": "graphs"}})
    assert "\n" not in str(error.value)


def _cuda_model(tokenizer: Any) -> Any:
    return build_tiny_model(tiny_model_config(len(tokenizer), hidden_size=64, num_heads=4), seed=0).cuda()


def _sample_cuda(model: Any, tokenizer: Any, use_graph: bool, decoder: GraphDecoder | None = None) -> Any:
    torch.manual_seed(7)
    return sample_completions_graph(
        model,
        tokenizer,
        ["Hi", "Hello there: ", "abc"],
        group_size=4,
        max_new_tokens=40,
        temperature=0.9,
        top_k=50,
        use_cuda_graph=use_graph,
        decoder=decoder,
    )


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
@pytest.mark.parametrize("autocast", [False, True])
def test_cuda_graph_matches_the_eager_loop(tokenizer: Any, autocast: bool) -> None:
    model = _cuda_model(tokenizer)
    context = (
        torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
        if autocast
        else contextlib.nullcontext()
    )
    with context:
        decoder = GraphDecoder()
        eager = _sample_cuda(model, tokenizer, use_graph=False)
        graph = _sample_cuda(model, tokenizer, use_graph=True, decoder=decoder)
        assert decoder.captures == 1
        assert torch.equal(eager.completion_ids, graph.completion_ids)
        torch.testing.assert_close(eager.logprobs, graph.logprobs, atol=1e-6, rtol=1e-6)
        again = _sample_cuda(model, tokenizer, use_graph=True, decoder=decoder)
        assert decoder.captures == 1, "the second call replays the captured graph"
        assert torch.equal(again.completion_ids, graph.completion_ids)
        # the optimizer updates weights in place: the captured graph sees the new values
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1.05)
        updated_eager = _sample_cuda(model, tokenizer, use_graph=False)
        updated_graph = _sample_cuda(model, tokenizer, use_graph=True, decoder=decoder)
        assert decoder.captures == 1
        assert torch.equal(updated_eager.completion_ids, updated_graph.completion_ids)
        torch.testing.assert_close(updated_eager.logprobs, updated_graph.logprobs, atol=1e-6, rtol=1e-6)
        with torch.no_grad():  # the same precision as sampling: agree with a training forward pass
            teacher = sequence_logprobs(
                model,
                updated_graph.prompt_ids,
                updated_graph.prompt_mask,
                updated_graph.completion_ids,
                updated_graph.completion_mask,
                0.9,
            )
    tol = 3e-2 if autocast else 1e-4
    torch.testing.assert_close(teacher, updated_graph.logprobs, atol=tol, rtol=tol)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
def test_cuda_graph_is_captured_again_when_the_weights_move(tokenizer: Any) -> None:
    model = _cuda_model(tokenizer)
    decoder = GraphDecoder()
    first = _sample_cuda(model, tokenizer, use_graph=True, decoder=decoder)
    for p in model.parameters():  # new storage (as a reload would give): the old graph is stale
        p.data = p.data.clone()
    second = _sample_cuda(model, tokenizer, use_graph=True, decoder=decoder)
    assert decoder.captures == 2
    assert torch.equal(first.completion_ids, second.completion_ids)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
def test_compiled_and_captured_decode_records_the_teacher_forced_logprobs(tokenizer: Any) -> None:
    model = _cuda_model(tokenizer)
    decoder = GraphDecoder(compile=True)
    batch = _sample_cuda(model, tokenizer, use_graph=True, decoder=decoder)
    assert decoder.captures == 1 and len(decoder.forwards) == 1
    with torch.no_grad():
        teacher = sequence_logprobs(
            model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids, batch.completion_mask, 0.9
        )
    torch.testing.assert_close(teacher, batch.logprobs, atol=1e-4, rtol=1e-4)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
def test_a_failed_capture_decodes_eagerly_without_the_compiled_forward(
    tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: Any) -> None:
        raise RuntimeError("no capture here")

    monkeypatch.setattr(graph_decode, "_capture", fail)
    model = _cuda_model(tokenizer)
    decoder = GraphDecoder(compile=True)
    with pytest.warns(RuntimeWarning, match="capture of the decode step failed"):
        graph = _sample_cuda(model, tokenizer, use_graph=True, decoder=decoder)
    eager = _sample_cuda(model, tokenizer, use_graph=False)
    assert decoder.captures == 0
    assert torch.equal(eager.completion_ids, graph.completion_ids)
