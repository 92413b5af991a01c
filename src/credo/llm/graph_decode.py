"""credo's own decode loop: a static KV cache, no host sync per token, and on CUDA one CUDA graph.

:func:`sample_completions_graph` returns exactly what :func:`credo.llm.rollout.sample_completions`
returns (same layout, same ``log pi_old`` convention) without transformers ``generate``:

1. **Prefill**: one forward pass of the left-padded prompts (``[B, P]``, position ids
   ``cumsum(mask) - 1`` clamped at 0) into a transformers ``StaticCache`` of ``C = P' + L`` slots
   (``P'``: ``P`` rounded up to a multiple of ``prompt_bucket``, the extra columns being masked left
   padding, so prompts of nearby lengths share one cache and one graph).
2. **Decode step**, a function of static buffers only (:class:`_DecodeState`): forward the current
   tokens ``[B, 1]`` with a precomputed 4-D attention mask ``[B, 1, 1, C]`` (transformers returns a
   4-D mask as is, so its mask builder, which may sync with the host, never runs), apply the
   temperature and top-k, sample with the Gumbel-max trick (``exponential_``: graph-safe RNG), write
   the token and its log-prob at column ``step`` (a device counter) of ``[B, L]`` output buffers,
   mark rows finished on EOS, and advance positions, mask and counter in place.
   Decode steps attend with :func:`grouped_decode_attention` (each group of query heads against its
   one key/value head, no copy of the cache), and with ``GraphDecoder(compile=True)`` (the config's
   ``rollout.compile_decode``) the step's forward goes through ``torch.compile`` first.
3. On CUDA the step is captured once as a ``torch.cuda.CUDAGraph`` and replayed for every token;
   elsewhere (and if capture fails) the same step runs eagerly. The only host syncs are one
   "all rows finished?" check every ``check_every`` tokens and the final trim; the output does not
   depend on them.

A captured graph is cached in a :class:`GraphDecoder` keyed by the shapes, dtype and sampling
settings. It reads the parameters at their addresses at capture time: this is valid because the
optimizer updates the weights in place. The decoder records every parameter's and buffer's
``data_ptr()`` at capture and captures again when any has changed (e.g. a model moved, reloaded, or
FSDP gathering into fresh storage).

transformers internals relied on (read in 5.17 and 5.25): ``StaticCache(config=, max_cache_len=)``
and its ``update(key_states, value_states, layer_idx, ...)`` (subclassed to store keys and values
in one dtype under autocast), whose layers allocate lazily on the first update and write at an
in-place device counter (``cumulative_length``), ``reset()`` in place; ``create_causal_mask`` returning a 4-D mask unchanged;
the cache keyword (``cache`` from 5.18, ``past_key_values`` before), found from the forward's
signature; ``AttentionInterface.register`` and the attention lookup by ``config._attn_implementation``
at each forward (switched for the decode steps, restored after).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from credo.llm.rollout import (
    RolloutBatch,
    check_sampling,
    completion_mask_from_ids,
    encode_groups,
    rollout_batch,
)

_SUPPORTED_ATTENTION = ("sdpa", "eager")


@dataclass(frozen=True)
class _Sampling:
    """The sampling settings baked into a step: temperature, top-k, EOS ids ``[E]``, pad id."""

    temperature: float
    top_k: int | None
    eos: Tensor
    pad: int


@dataclass
class _DecodeState:
    """Static buffers of one decode shape (B rows, C cache slots, L new tokens); every step reads and
    writes them in place, so a CUDA graph captured on them serves every token and every call.

    Attributes:
        sampling: the settings the step samples with (its EOS tensor lives as long as the graph).
        cache: the transformers ``StaticCache`` (``C`` slots per layer).
        tokens: ``[B, 1]`` long, the token to forward next (the last sampled one).
        positions: ``[B, 1]`` long, its position id.
        slot: ``[1]`` long, its cache slot (where its key/value is written).
        step: ``[1]`` long, the completion column the next sampled token goes to.
        mask: ``[B, 1, 1, C]`` bool, the slots the next forwarded token attends to.
        finished: ``[B]`` bool, rows that have sampled an EOS.
        out_tokens: ``[B, L]`` long; out_logprobs: ``[B, L]`` float32 (0 after EOS).
        graph: the captured step, None until captured (or when running eagerly).
        pointers: ``data_ptr()`` of every parameter and buffer when ``graph`` was captured.
    """

    sampling: _Sampling
    cache: Any
    tokens: Tensor
    positions: Tensor
    slot: Tensor
    step: Tensor
    mask: Tensor
    finished: Tensor
    out_tokens: Tensor
    out_logprobs: Tensor
    graph: Any = None
    pointers: tuple[int, ...] = ()
    capture_failed: bool = False

    def mutable(self) -> list[Tensor]:
        """Every tensor a step writes that matters later (the KV cache's contents past the current slot
        are never attended before being overwritten, so they are not included)."""
        counters = [layer.cumulative_length for layer in self.cache.layers]
        return [self.tokens, self.positions, self.slot, self.step, self.mask, self.finished, *counters]


@dataclass
class GraphDecoder:
    """Holds the decode states (KV caches, buffers, captured CUDA graphs) between calls.

    Keep one per policy (a sampler does) so a training run captures its decode step once. At most
    ``max_states`` shapes are kept (the oldest is dropped). ``captures`` counts graph captures.
    ``compile``: the decode step runs the model through ``torch.compile`` (prefill stays eager).
    """

    max_states: int = 4
    compile: bool = False
    states: dict[tuple[Any, ...], _DecodeState] = field(default_factory=dict)
    captures: int = 0
    forwards: dict[int, Callable[..., Any]] = field(default_factory=dict)

    def forward_of(self, model: Any) -> Callable[..., Any]:
        """The forward a decode step calls: ``model`` itself, or with ``compile`` its
        ``torch.compile`` (built once per model; inductor fuses the norms, rotary embeddings and
        activations, so the captured step launches fewer, larger kernels). Parameters are inputs of
        the compiled graph, so in-place optimizer updates are read on every call."""
        if not self.compile:
            return model
        if id(model) not in self.forwards:
            self.forwards[id(model)] = torch.compile(model, dynamic=False)
        return self.forwards[id(model)]

    def state(self, key: tuple[Any, ...], build: Callable[[], _DecodeState]) -> _DecodeState:
        """The state of ``key``, built (and the oldest evicted past ``max_states``) if absent."""
        if key not in self.states:
            while len(self.states) >= self.max_states:
                self.states.pop(next(iter(self.states)))
            self.states[key] = build()
        return self.states[key]


def _cache_keyword(model: Any) -> str:
    """The forward's keyword for the KV cache: ``cache`` (transformers >= 5.18) or ``past_key_values``."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _attention_implementation(model: Any) -> str:
    """The model's attention implementation; a ValueError for one that cannot take a 4-D mask."""
    impl = getattr(model.config, "_attn_implementation", None) or "eager"
    if impl not in _SUPPORTED_ATTENTION:
        raise ValueError(
            f"rollout.backend='graph' supports attn_implementation {_SUPPORTED_ATTENTION}, got {impl!r}"
        )
    return impl


def _attention_input(mask: Tensor, impl: str, dtype: torch.dtype) -> Tensor:
    """The 4-D mask as the attention takes it: bool (True = attend) for sdpa, additive for eager."""
    if impl == "sdpa":
        return mask
    zero = torch.zeros((), dtype=dtype, device=mask.device)
    return torch.where(mask, zero, torch.finfo(dtype).min)


def _sample_into(state: _DecodeState, logits: Tensor, sampling: _Sampling) -> None:
    """Sample the next token of every row from ``logits`` ``[B, V]`` and update ``state`` in place.

    The recorded log-prob is ``log softmax(logits / temperature)[token]`` under the untruncated
    distribution (top-k only restricts which tokens can be drawn), as
    :class:`credo.llm.rollout._RecordLogprobs` records it. Rows already finished get the pad token
    and log-prob 0. No host sync: every index is a device tensor.
    """
    logp = torch.log_softmax(logits.float() / sampling.temperature, dim=-1)  # [B, V]
    scores = logp
    if sampling.top_k:
        kth = torch.topk(logp, min(sampling.top_k, logp.shape[-1]), dim=-1).values[:, -1:]
        scores = logp.masked_fill(logp < kth, float("-inf"))
    # Gumbel-max: argmax(log p - log q), q ~ Exp(1), draws token v with probability p_v.
    q = torch.empty_like(logp).exponential_().clamp_min_(torch.finfo(logp.dtype).tiny)
    token = (scores - q.log()).argmax(dim=-1)  # [B]
    token_logp = logp.gather(-1, token[:, None]).squeeze(-1)
    done = state.finished
    token = token.masked_fill(done, sampling.pad)
    token_logp = token_logp.masked_fill(done, 0.0)
    column = state.step.clamp(max=state.out_tokens.shape[1] - 1)  # past L only in a capture's warm-up
    state.out_tokens.index_copy_(1, column, token[:, None])
    state.out_logprobs.index_copy_(1, column, token_logp[:, None])
    state.finished |= (token[:, None] == sampling.eos[None, :]).any(dim=-1)
    state.tokens.copy_(token[:, None])
    state.positions.add_(1)
    state.slot.add_(1)
    batch, cache_len = state.mask.shape[0], state.mask.shape[-1]
    slot = state.slot.clamp(max=cache_len - 1)  # past C only after the last token (never forwarded)
    state.mask.scatter_(-1, slot.view(1, 1, 1, 1).expand(batch, 1, 1, 1), True)
    state.step.add_(1)


def _decode_step(
    model: Any, forward: Callable[..., Any], state: _DecodeState, sampling: _Sampling, keyword: str, impl: str
) -> None:
    """One token: forward ``state.tokens`` through the cache (with ``forward``: the model or its
    compiled form), then :func:`_sample_into`."""
    out = forward(
        input_ids=state.tokens,
        attention_mask=_attention_input(state.mask, impl, model.get_input_embeddings().weight.dtype),
        position_ids=state.positions,
        use_cache=True,
        **{keyword: state.cache},
    )
    _sample_into(state, out.logits[:, -1], sampling)


DECODE_ATTENTION = "credo_grouped_decode"


def grouped_decode_attention(
    module: Any,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """Attention of a decode step against the whole static cache, grouped-query without copying it.

    ``softmax(q k^T * scaling + mask) v`` per head, with the numerics of transformers' eager attention
    (scores in the model's dtype, softmax in float32, weights cast back), but each group of
    ``G = H / H_kv`` query heads is batched against its one key/value head (query head ``h`` reads
    key/value head ``h // G``, as ``repeat_kv`` arranges it) instead of repeating the cache ``G``
    times, and no fused attention kernel is asked for: at one query per row the step reads the cache
    once in two batched matmuls. (transformers' sdpa path repeats the cache, two copies of it per layer
    and token, then calls a flash kernel built for long queries: most of the graph loop's time.)

    Registered with transformers' ``AttentionInterface`` as ``"credo_grouped_decode"``; the decode
    loop selects it only for its steps (:func:`_decode_attention`), so prefill and training keep the
    model's own attention.

    Args:
        query: ``[B, H, Q, D]``; key, value: ``[B, H_kv, C, D]`` (the cache's C slots).
        attention_mask: ``[B, 1, Q, C]``, bool (True: attend) or additive float; None: attend to all.
        scaling: the score scale (default ``D ** -0.5``).

    Returns:
        ``([B, Q, H, D], None)``, the layout transformers' attention functions return.
    """
    if kwargs.get("softcap") is not None:
        raise ValueError("credo's decode attention does not support softcapping (softcap)")
    batch, heads, q_len, dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    scale = dim**-0.5 if scaling is None else scaling
    q = query.reshape(batch, kv_heads, groups * q_len, dim)  # rows (g, q) of key/value head k
    scores = torch.matmul(q, key.transpose(2, 3)) * scale  # [B, H_kv, G Q, C]
    if attention_mask is not None:
        mask = (
            attention_mask[:, :, None]
            .expand(-1, -1, groups, -1, -1)
            .reshape(batch, -1, groups * q_len, key.shape[2])
        )
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.matmul(weights, value)  # [B, H_kv, G Q, D]
    return out.reshape(batch, heads, q_len, dim).transpose(1, 2).contiguous(), None


@functools.cache
def _register_decode_attention() -> None:
    """Add :func:`grouped_decode_attention` to transformers' attention functions (once)."""
    from transformers import AttentionInterface

    AttentionInterface.register(DECODE_ATTENTION, grouped_decode_attention)


@contextlib.contextmanager
def _decode_attention(model: Any) -> Any:
    """Within: ``model`` attends with :func:`grouped_decode_attention` (its config's attention
    implementation switched, and restored on exit)."""
    _register_decode_attention()
    saved = model.config._attn_implementation
    model.config._attn_implementation = DECODE_ATTENTION
    try:
        yield
    finally:
        model.config._attn_implementation = saved


def _graph_safe_autocast() -> contextlib.AbstractContextManager[Any]:
    """The enclosing CUDA autocast, with its weight-cast cache off: a graph must cast the (updated)
    weights on every replay, not replay reads of casts cached at capture time."""
    if not torch.is_autocast_enabled("cuda"):
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.get_autocast_dtype("cuda"), cache_enabled=False)


def _tensor_pointers(model: Any) -> tuple[int, ...]:
    """``data_ptr()`` of every parameter and buffer: a captured graph reads them at these addresses."""
    return tuple(t.data_ptr() for t in (*model.parameters(), *model.buffers()))


def _capture(model: Any, state: _DecodeState, step: Callable[[], None]) -> Any:
    """Capture ``step`` as a CUDA graph (after an eager warm-up on a side stream), leaving the state and
    the RNG as they were before. Returns the graph."""
    saved = [t.clone() for t in state.mutable()]
    rng = torch.cuda.get_rng_state(state.tokens.device)
    try:
        with _graph_safe_autocast():
            side = torch.cuda.Stream(device=state.tokens.device)
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    step()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                step()
    finally:
        for tensor, value in zip(state.mutable(), saved):
            tensor.copy_(value)
        torch.cuda.set_rng_state(rng, state.tokens.device)
    return graph


def _graph_for(model: Any, decoder: GraphDecoder, state: _DecodeState, step: Callable[[], None]) -> Any:
    """The captured graph of ``state`` (captured now if absent or if the weights moved), or None to run
    eagerly because capture failed (with a one-line warning)."""
    pointers = _tensor_pointers(model)
    if state.graph is not None and state.pointers == pointers:
        return state.graph
    if state.capture_failed:
        return None
    state.graph = None
    try:
        state.graph = _capture(model, state, step)
    except Exception as error:  # a capture failure must not stop training: decode eagerly
        state.capture_failed = True
        first_line = (str(error).splitlines() or [""])[0]
        warnings.warn(
            f"CUDA graph capture of the decode step failed ({type(error).__name__}: {first_line}); "
            "decoding eagerly",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    state.pointers = pointers
    decoder.captures += 1
    return state.graph


@functools.cache
def _static_cache_class() -> type:
    """``StaticCache`` storing keys and values in one dtype (``kv_dtype``; None: as computed).

    Under bf16 autocast with fp32 weights a Qwen2 layer computes bf16 values but fp32 keys (rotary
    embeddings in the hidden states' dtype), which transformers < 5.18 cannot store in one lazily
    allocated cache; both are stored in the autocast dtype, the dtype attention casts them to anyway.
    """
    from transformers import StaticCache

    class _StaticCache(StaticCache):  # type: ignore[misc, valid-type]
        kv_dtype: torch.dtype | None = None

        def update(self, key_states: Tensor, value_states: Tensor, *args: Any, **kwargs: Any) -> Any:
            if self.kv_dtype is not None:
                key_states, value_states = key_states.to(self.kv_dtype), value_states.to(self.kv_dtype)
            return super().update(key_states, value_states, *args, **kwargs)

    return _StaticCache


def _build_state(
    model: Any, sampling: _Sampling, batch: int, cache_len: int, new_tokens: int, device: torch.device
) -> _DecodeState:
    cache = _static_cache_class()(config=model.config, max_cache_len=cache_len)
    if torch.is_autocast_enabled(device.type):
        cache.kv_dtype = torch.get_autocast_dtype(device.type)

    def zeros(*shape: int, dtype: torch.dtype = torch.long) -> Tensor:
        return torch.zeros(shape, dtype=dtype, device=device)

    return _DecodeState(
        sampling=sampling,
        cache=cache,
        tokens=zeros(batch, 1),
        positions=zeros(batch, 1),
        slot=zeros(1),
        step=zeros(1),
        mask=zeros(batch, 1, 1, cache_len, dtype=torch.bool),
        finished=zeros(batch, dtype=torch.bool),
        out_tokens=zeros(batch, new_tokens),
        out_logprobs=zeros(batch, new_tokens, dtype=torch.float32),
    )


def _prefill(model: Any, state: _DecodeState, ids: Tensor, mask: Tensor, keyword: str) -> Tensor:
    """Reset ``state`` and run the prompts ``[B, P']`` (left-padded, mask ``[B, P']`` bool) through the
    cache. Returns the logits ``[B, V]`` of the first completion token."""
    prompt_len = ids.shape[1]
    cache_len = state.mask.shape[-1]
    state.cache.reset()
    full_mask = F.pad(mask, (0, cache_len - prompt_len), value=False)  # [B, C]
    positions = (mask.long().cumsum(dim=1) - 1).clamp(min=0)
    out = model(
        input_ids=ids,
        attention_mask=full_mask.long(),
        position_ids=positions,
        use_cache=True,
        logits_to_keep=1,
        **{keyword: state.cache},
    )
    state.tokens.zero_()
    state.positions.copy_(mask.long().sum(dim=1, keepdim=True) - 1)  # advanced to n_prompt on sampling
    state.slot.fill_(prompt_len - 1)  # advanced to P' (the first completion token's slot) on sampling
    state.step.zero_()
    state.mask.copy_(full_mask[:, None, None, :])
    state.finished.zero_()
    state.out_tokens.zero_()
    state.out_logprobs.zero_()
    return out.logits[:, -1]


def _decode(
    run_step: Callable[[], None], state: _DecodeState, new_tokens: int, check_every: int | None
) -> None:
    """Tokens 1 .. L-1 (token 0 comes from the prefill), stopping early once every row is finished
    (checked every ``check_every`` tokens: one host sync each)."""
    for t in range(1, new_tokens):
        if check_every and t % check_every == 0 and bool(state.finished.all()):
            break
        run_step()


@torch.no_grad()
def sample_completions_graph(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    group_size: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    pad_to_multiple_of: int | None = None,
    use_cuda_graph: bool | None = None,
    decoder: GraphDecoder | None = None,
    check_every: int | None = 32,
    prompt_bucket: int = 64,
) -> RolloutBatch:
    """Sample ``group_size`` completions of each prompt with credo's static-cache decode loop; the same
    :class:`~credo.llm.rollout.RolloutBatch` as :func:`~credo.llm.rollout.sample_completions`.

    Args:
        model: a transformers causal LM (sdpa or eager attention), not wrapped (DDP / FSDP).
        prompts: N prompt texts; rows of the result are prompt-major, B = N x ``group_size``.
        temperature, top_k: as ``sample_completions``: the log-probs ``[B, L]`` are those of the
            tempered, untruncated distribution, 0 after EOS.
        use_cuda_graph: replay one captured CUDA graph per token; None: iff the model is on CUDA.
        decoder: keeps caches and captured graphs between calls (a fresh one if None).
        check_every: check every this many tokens whether all rows have ended, to stop early (None:
            never; the output is the same either way).
        prompt_bucket: the cache's prompt part is rounded up to a multiple of this many slots.

    Returns:
        A RolloutBatch with ``completion_ids`` ``[B, L]``, L the longest completion (at most
        ``max_new_tokens``), padded after EOS, and no reference log-probs or values.
    """
    check_sampling(group_size, temperature)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    device = next(model.parameters()).device
    use_graph = device.type == "cuda" if use_cuda_graph is None else use_cuda_graph
    if use_graph and device.type != "cuda":
        raise ValueError(f"use_cuda_graph=True needs the model on CUDA, it is on {device}")
    decoder = decoder if decoder is not None else GraphDecoder()
    impl, keyword = _attention_implementation(model), _cache_keyword(model)

    prompt_ids, prompt_mask, eos, pad = encode_groups(
        model, tokenizer, prompts, group_size, pad_to_multiple_of
    )
    batch, prompt_len = prompt_ids.shape
    extra = -prompt_len % max(prompt_bucket, 1)
    ids = F.pad(prompt_ids, (extra, 0), value=pad)
    mask = F.pad(prompt_mask, (extra, 0), value=False)
    cache_len = ids.shape[1] + max_new_tokens
    autocast_dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None
    key = (batch, cache_len, max_new_tokens, next(model.parameters()).dtype, autocast_dtype, impl, id(model))
    key += (temperature, top_k, tuple(eos), pad, use_graph)
    sampling = _Sampling(temperature, top_k, torch.tensor(eos, device=device), pad)
    state = decoder.state(
        key, lambda: _build_state(model, sampling, batch, cache_len, max_new_tokens, device)
    )
    sampling = state.sampling  # the one a cached graph was captured with

    was_training = model.training
    model.eval()
    try:
        _sample_into(state, _prefill(model, state, ids, mask, keyword), sampling)

        forward = decoder.forward_of(model)

        def step() -> None:
            _decode_step(model, forward, state, sampling, keyword, impl)

        with _decode_attention(model):
            graph = _graph_for(model, decoder, state, step) if use_graph and max_new_tokens > 1 else None
            if use_graph and graph is None:  # capture (or compiling, inside it) failed: plain eager steps
                forward = model
            _decode(graph.replay if graph is not None else step, state, max_new_tokens, check_every)
    finally:
        model.train(was_training)

    completion_ids = state.out_tokens.clone()
    completion_mask = completion_mask_from_ids(completion_ids, eos)
    length = int(completion_mask.sum(dim=1).max())
    completion_ids = completion_ids[:, :length].masked_fill(~completion_mask[:, :length], pad)
    logprobs = state.out_logprobs[:, :length].masked_fill(~completion_mask[:, :length], 0.0)
    return rollout_batch(
        tokenizer,
        prompts,
        group_size,
        prompt_ids,
        prompt_mask,
        completion_ids,
        completion_mask[:, :length],
        logprobs,
    )
