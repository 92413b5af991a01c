"""Samplers: how a training step draws G completions per prompt from the current policy.

One sampler is chosen when the trainer is built (:func:`make_sampler`, from ``rollout.backend``); the
training step calls ``sampler.sample(prompt_texts) -> RolloutBatch`` and never branches on the
backend. Either way the batch records ``log pi_old``, the policy's per-token log-probs of what it
sampled, at the sampling temperature.

* :class:`HFSampler`: transformers ``generate`` on the policy itself (log-probs recorded while
  sampling: :func:`credo.llm.rollout.sample_completions`);
* :class:`VLLMSampler`: a vLLM engine loaded with the policy's current weights before each rollout,
  ``log pi_old`` recomputed by the policy (:mod:`credo.llm.vllm_backend`);
* :class:`GraphSampler`: credo's own static-cache decode loop on the policy, one CUDA graph replayed
  per token on CUDA (log-probs recorded while sampling: :mod:`credo.llm.graph_decode`).
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Sequence
from typing import Any, Protocol

import torch

from credo.llm.config import TrainConfig
from credo.llm.distributed import Distributed
from credo.llm.graph_decode import GraphDecoder, sample_completions_graph
from credo.llm.models import autocast
from credo.llm.rollout import RolloutBatch, sample_completions
from credo.llm.vllm_backend import make_engine, sample_completions_vllm


class Sampler(Protocol):
    def sample(self, prompts: Sequence[str]) -> RolloutBatch:
        """G completions of each prompt text (rows prompt-major), with ``log pi_old``."""
        ...


class _PolicySampler:
    """What every sampler holds: the policy (as the trainer holds it: wrapped for DDP / FSDP or not),
    its tokenizer, the run's config, precision, device and process group."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        config: TrainConfig,
        precision: str,
        device: torch.device,
        dist: Distributed,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.precision = precision
        self.device = device
        self.dist = dist


class HFSampler(_PolicySampler):
    """Sampling with transformers ``generate`` on the policy."""

    @torch.no_grad()
    def sample(self, prompts: Sequence[str]) -> RolloutBatch:
        rc = self.config.rollout
        # A static KV cache is allocated in the weights' dtype; with fp32 weights under bf16 autocast
        # ("bf16-mixed") the bf16 keys/values could not be written into it, so such generation runs
        # without autocast (in fp32).
        fp32_static = rc.static_cache and self.precision == "bf16-mixed"
        precision = contextlib.nullcontext() if fp32_static else autocast(self.precision, self.device)
        with self.dist.generation_context(self.model), precision:
            return sample_completions(
                self.dist.unwrap(self.model),
                self.tokenizer,
                prompts,
                rc.group_size,
                rc.max_new_tokens,
                rc.temperature,
                rc.top_k,
                static_cache=rc.static_cache,
                pad_to_multiple_of=rc.pad_to_multiple_of,
            )


class VLLMSampler(_PolicySampler):
    """Sampling with a vLLM engine (created on the first rollout) that gets the policy's weights
    before each rollout."""

    engine: Any = None

    @torch.no_grad()
    def sample(self, prompts: Sequence[str]) -> RolloutBatch:
        if self.engine is None:
            self.engine = make_engine(self.config.model, self.precision)
        return sample_completions_vllm(
            self.engine,
            self.dist.unwrap(self.model),
            self.tokenizer,
            list(prompts),
            self.config.rollout,
            self.device,
            lambda: autocast(self.precision, self.device),
        )


class GraphSampler(_PolicySampler):
    """Sampling with credo's decode loop (:func:`credo.llm.graph_decode.sample_completions_graph`).

    Its :class:`~credo.llm.graph_decode.GraphDecoder` keeps the KV cache and the captured CUDA graph
    between steps: the optimizer updates the weights in place, so the graph captured at the first
    rollout stays valid (it is captured again if any parameter's storage moved). Unlike
    ``generate``'s static cache (see :class:`HFSampler`), its cache stores keys and values in the
    autocast dtype under ``bf16-mixed``, so every precision runs as configured; autocast's weight
    cache is off, so a replayed graph casts the current weights.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        config: TrainConfig,
        precision: str,
        device: torch.device,
        dist: Distributed,
    ) -> None:
        super().__init__(model, tokenizer, config, precision, device, dist)
        self.decoder = GraphDecoder(compile=config.rollout.compile_decode)

    @torch.no_grad()
    def sample(self, prompts: Sequence[str]) -> RolloutBatch:
        rc = self.config.rollout
        precision = (
            torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=False)
            if self.precision == "bf16-mixed"
            else contextlib.nullcontext()
        )
        with self.dist.generation_context(self.model), precision:
            return sample_completions_graph(
                self.dist.unwrap(self.model),
                self.tokenizer,
                prompts,
                rc.group_size,
                rc.max_new_tokens,
                rc.temperature,
                rc.top_k,
                pad_to_multiple_of=rc.pad_to_multiple_of,
                decoder=self.decoder,
            )


SAMPLERS: dict[str, type[_PolicySampler]] = {"hf": HFSampler, "vllm": VLLMSampler, "graph": GraphSampler}


def check_backend(backend: str) -> None:
    """A ValueError, before anything is built, when ``backend`` cannot run here."""
    if backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ValueError("rollout.backend='vllm' but vLLM is not installed: pip install vllm, or use 'hf'")


def make_sampler(
    config: TrainConfig, model: Any, tokenizer: Any, precision: str, device: torch.device, dist: Distributed
) -> _PolicySampler:
    """The sampler of ``config.rollout.backend``."""
    check_backend(config.rollout.backend)
    return SAMPLERS[config.rollout.backend](model, tokenizer, config, precision, device, dist)
