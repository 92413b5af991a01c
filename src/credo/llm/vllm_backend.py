"""Optional rollout backend: vLLM (used when ``rollout.backend == "vllm"`` and vLLM is installed;
see :class:`credo.llm.sampler.VLLMSampler`).

vLLM samples; the trainer then recomputes ``log pi_old`` with one forward pass of its own policy
(vLLM's sampler log-probs come from different kernels and, depending on the version, before or after
temperature, so they are not used as the PPO ratio's denominator). Before each rollout the policy's
current weights are loaded into the vLLM engine.

This path needs a GPU and ``pip install vllm``; it is not exercised by the CPU test-suite.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

from credo.llm.config import ModelConfig, RolloutConfig
from credo.llm.rollout import (
    RolloutBatch,
    completion_mask_from_ids,
    encode_prompts,
    eos_token_ids,
    rollout_batch,
    sequence_logprobs,
)


def make_engine(mc: ModelConfig, precision: str) -> Any:
    """A vLLM engine on the model directory ``mc.model_path``."""
    try:
        from vllm import LLM
    except ImportError as error:
        raise ImportError(
            "rollout.backend='vllm' needs vLLM: pip install vllm (or use backend 'hf')"
        ) from error
    path = mc.model_path
    if not path:
        raise ValueError("rollout.backend='vllm' needs model.model_path (vLLM loads a model directory)")
    dtype = "bfloat16" if precision in ("bf16", "bf16-mixed") else "float32"
    return LLM(
        model=path,
        tokenizer=mc.tokenizer_path or path,
        dtype=dtype,
        gpu_memory_utilization=0.3,
        enable_prefix_caching=True,
    )


def _load_weights(engine: Any, model: Any) -> None:
    """Push the policy's weights into the engine (the attribute path differs between vLLM versions)."""
    weights = list(model.state_dict().items())
    if hasattr(engine, "collective_rpc"):
        try:
            engine.collective_rpc(lambda worker: worker.model_runner.model.load_weights(weights))
            return
        except Exception:
            pass
    runner = engine.llm_engine.model_executor.driver_worker.model_runner
    runner.model.load_weights(weights)


@torch.no_grad()
def sample_completions_vllm(
    engine: Any,
    policy: Any,
    tokenizer: Any,
    prompts: list[str],
    rc: RolloutConfig,
    device: torch.device,
    precision: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> RolloutBatch:
    """Sample ``rc.group_size`` completions per prompt with vLLM after loading ``policy``'s weights
    into ``engine``; same :class:`RolloutBatch` layout as the HF path (``log pi_old`` from ``policy``,
    its forward pass under ``precision()``)."""
    from vllm import SamplingParams

    _load_weights(engine, policy)
    prompt_ids, prompt_mask = encode_prompts(tokenizer, prompts, device, rc.pad_to_multiple_of)
    params = SamplingParams(
        n=rc.group_size,
        temperature=rc.temperature,
        max_tokens=rc.max_new_tokens,
        top_k=rc.top_k or -1,
        seed=int(torch.randint(0, 2**31 - 1, ()).item()),
    )
    token_prompts = [{"prompt_token_ids": ids[m].tolist()} for ids, m in zip(prompt_ids, prompt_mask)]
    outputs = engine.generate(token_prompts, params, use_tqdm=False)
    rows = [list(o.token_ids) for out in outputs for o in out.outputs]
    L = max(1, max(len(r) for r in rows))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    completion_ids = torch.full((len(rows), L), pad, dtype=torch.long)
    for b, r in enumerate(rows):
        completion_ids[b, : len(r)] = torch.tensor(r, dtype=torch.long)
    completion_ids = completion_ids.to(device)
    lengths = torch.tensor([len(r) for r in rows], device=device)
    within = torch.arange(L, device=device)[None, :] < lengths[:, None]
    completion_mask = completion_mask_from_ids(completion_ids, eos_token_ids(policy, tokenizer)) & within
    G = rc.group_size
    prompt_ids, prompt_mask = prompt_ids.repeat_interleave(G, 0), prompt_mask.repeat_interleave(G, 0)
    logprobs = sequence_logprobs(
        policy, prompt_ids, prompt_mask, completion_ids, completion_mask, rc.temperature, precision=precision
    )
    return rollout_batch(
        tokenizer, prompts, G, prompt_ids, prompt_mask, completion_ids, completion_mask, logprobs
    )
