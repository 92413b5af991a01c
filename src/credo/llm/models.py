"""Set-up of a run: seeding, checks of the estimator's needs, device precision, the policy and
tokenizer (with LoRA adapters when ``model.lora`` is set), the frozen reference, the optimizer and
its learning-rate schedule.

Each function does one thing the trainer's constructor (or its SFT warm-up) needs; none of them keeps
state. The policy is loaded from ``model.model_path`` or built as a tiny local model
(:mod:`credo.llm.tiny`), with dropout off: the log-probs of a training forward pass must equal those
recorded at rollout for the same parameters (PPO's ratio, the KL).
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.checkpoint import checkpoint

from credo.credit import EstimatorSpec
from credo.llm.checkpoint import load_latest_checkpoint
from credo.llm.config import LoraSettings, LossConfig, ModelConfig, TrainConfig
from credo.llm.rewards import WeightedReward
from credo.llm.tiny import (
    DEFAULT_CHARS,
    build_char_tokenizer,
    build_tiny_model,
    load_tokenizer,
    tiny_model_config,
)

# ----------------------------------------------------------------------------------------------------
# Seeding


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_seed(seed: int, step: int, rank: int) -> int:
    """The seed of training step ``step`` on process ``rank`` (distinct for every triple)."""
    return (seed * 1_000_003 + step) * 1_009 + rank


# ----------------------------------------------------------------------------------------------------
# Checks before anything is built


def check_estimator_needs(spec: EstimatorSpec, reward_fns: Sequence[WeightedReward], lc: LossConfig) -> None:
    """A ValueError when nothing would supply a batch field the estimator requires."""
    kinds = {r.kind for r in reward_fns}
    providers = {
        "candidate_scores": "candidates" in kinds,
        "candidate_spans": "candidates" in kinds,
        "token_rewards": "tokens" in kinds or (lc.kl_beta > 0 and lc.kl_mode == "reward"),
        "values": True,  # the trainer builds a critic
    }
    for need in spec.requires:
        if not providers.get(need, False):
            what = "a candidate reward function (see credo.llm.rewards.candidate_reward)"
            if need == "token_rewards":
                what = "a per-step reward function or the KL penalty in the reward"
            raise ValueError(f"estimator {spec.name!r} needs {need}: add {what}")


# ----------------------------------------------------------------------------------------------------
# Precision


def pick_precision(precision: str, device: torch.device) -> str:
    """``precision`` with ``"auto"`` resolved: bf16 autocast on CUDA with bf16, fp32 elsewhere."""
    bf16_ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "auto":
        return "bf16-mixed" if bf16_ok else "fp32"
    if precision in ("bf16", "bf16-mixed") and device.type == "cuda" and not bf16_ok:
        raise ValueError(f"precision={precision!r}: this CUDA device does not support bf16")
    return precision


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast for ``bf16-mixed``, nothing otherwise."""
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def attention_kernels(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Within: ``scaled_dot_product_attention`` on CUDA picks among the flash, memory-efficient and
    math kernels, never cuDNN's; nothing changes elsewhere.

    torch (2.11 on an H200, seen) sends a masked attention call to cuDNN first, and cuDNN builds an
    execution plan for every new shape, a fraction of a second each, forward and backward. credo's
    update trims padding per micro-batch (:func:`credo.llm.rollout.trim_padding`), so almost every
    micro-batch is a new shape: the plans alone took most of a step at the speed benchmark's anchor.
    The trainer holds this around a whole step, backward passes included (gradient checkpointing runs
    its forward again there).
    """
    if device.type != "cuda":
        return contextlib.nullcontext()
    backends = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    return sdpa_kernel(backends)


# ----------------------------------------------------------------------------------------------------
# The policy, the reference


def disable_dropout(model: nn.Module) -> None:
    """Set every dropout probability to 0: the log-probs of a training forward pass must equal those
    recorded at rollout for the same parameters (PPO's ratio, the KL), which dropout would break."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    config = getattr(model, "config", None)
    for key in ("attention_dropout", "attn_pdrop", "resid_pdrop", "embd_pdrop", "hidden_dropout", "dropout"):
        if config is not None and isinstance(getattr(config, key, None), float):
            setattr(config, key, 0.0)


def load_policy(
    mc: ModelConfig, device: torch.device, precision: str, model: Any = None, tokenizer: Any = None
) -> tuple[Any, Any]:
    """The policy and its tokenizer (``model`` / ``tokenizer`` when given, else from ``mc``), on
    ``device``, in bf16 for ``precision="bf16"`` (else fp32), dropout off, in training mode."""
    if tokenizer is None:
        if mc.tokenizer_path or mc.model_path:
            tokenizer = load_tokenizer(mc.tokenizer_path or mc.model_path)
        else:
            tokenizer = build_char_tokenizer(mc.chars or DEFAULT_CHARS)
    if model is None:
        if mc.model_path:
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(mc.model_path)
        else:
            cfg = tiny_model_config(
                len(tokenizer),
                arch=mc.arch,
                hidden_size=mc.hidden_size,
                num_layers=mc.num_layers,
                num_heads=mc.num_heads,
                intermediate_size=mc.intermediate_size,
                max_position_embeddings=mc.context_length,
                pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            model = build_tiny_model(cfg, seed=mc.init_seed)
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token: completions could never stop")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    model = model.to(device=device, dtype=dtype)
    disable_dropout(model)
    if mc.lora is not None:
        base_path = str(Path(mc.model_path).resolve()) if mc.model_path else None
        model = apply_lora(model, mc.lora, base_path)
    model.train()
    return model, tokenizer


# ----------------------------------------------------------------------------------------------------
# LoRA (peft): adapters on the policy, the reference as the same network with its adapters off


def is_lora(model: Any) -> bool:
    """Whether ``model`` is a peft model (LoRA adapters on a frozen base)."""
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def apply_lora(model: Any, lora: LoraSettings, base_path: str | None = None) -> Any:
    """``model`` wrapped by ``peft.get_peft_model`` with fresh LoRA adapters (B = 0: the wrapped model
    computes what ``model`` did); only the adapters are trainable. ``base_path`` is recorded in the
    adapter's config (``base_model_name_or_path``) so that a saved adapter names its base model."""
    from peft import LoraConfig, get_peft_model

    settings = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, settings)
    peft_model.peft_config["default"].base_model_name_or_path = base_path
    disable_dropout(peft_model)
    return peft_model


def restart_lora(model: Any, lora: LoraSettings | None) -> Any:
    """After an SFT warm-up that trained the adapters: merge them into the base weights and start
    fresh adapters on the merged model, so that the base (the KL reference) is the warmed-up policy.
    ``model`` itself without LoRA."""
    if lora is None or not is_lora(model):
        return model
    return apply_lora(model.merge_and_unload(), lora, base_path=None)


def lora_base(model: Any) -> Any:
    """The network under the adapters (a peft model's ``get_base_model()``, its LoRA layers still in
    place), or ``model`` itself without LoRA: what a ``separate`` critic copies its backbone from."""
    return model.get_base_model() if is_lora(model) else model


class AdapterFreeReference:
    """The KL reference of a LoRA policy: the policy's own network with its adapters switched off
    (``peft_model.disable_adapter()``), so the base weights, frozen since RL started, compute it. No
    second copy of the model; called like a model, always without gradients."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with torch.no_grad(), self.policy.disable_adapter():
            return self.policy(*args, **kwargs)


def _trainable_names(model: Any) -> set[str]:
    """The names of ``model``'s trainable parameters (with LoRA: the adapters')."""
    return {name for name, p in model.named_parameters() if p.requires_grad}


def policy_state(model: Any) -> dict[str, torch.Tensor]:
    """What a checkpoint keeps of the policy: its whole state dict, or with LoRA only the adapters'
    (trainable) tensors; the frozen base is restored from where it came from (:func:`keep_lora_base`)."""
    state = model.state_dict()
    if not is_lora(model):
        return state
    trainable = _trainable_names(model)
    return {name: value for name, value in state.items() if name in trainable}


def load_policy_state(model: Any, state: dict[str, torch.Tensor]) -> None:
    """Load what :func:`policy_state` saved; with LoRA a ValueError unless ``state`` holds exactly the
    adapters' tensors (a checkpoint of another kind of run)."""
    if not is_lora(model):
        model.load_state_dict(state)
        return
    trainable = _trainable_names(model)
    mismatch = ValueError(
        "the checkpoint's policy does not hold this run's LoRA adapters (was it saved by a run with "
        "another model.lora setting, or without LoRA?)"
    )
    if set(state) != trainable:
        raise mismatch
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # the same adapters with other shapes (another rank r)
        raise mismatch from error


def keep_lora_base(
    model: Any, output_dir: str | None, resumed: bool, is_main: bool, device: torch.device, warmed_up: bool
) -> None:
    """With LoRA, checkpoints hold the adapters only; the frozen base weights come from
    ``model.model_path`` (or the tiny model's seed) again on resume, except after an SFT warm-up,
    which changed them (:func:`restart_lora`): then they are saved once in
    ``output_dir/lora_base.pt`` and loaded from it on resume. A fresh run without a warm-up removes
    an earlier run's file. Nothing without LoRA or without ``output_dir``."""
    if not (output_dir and is_lora(model)):
        return
    path = Path(output_dir) / "lora_base.pt"
    trainable = _trainable_names(model)
    if resumed:
        if path.exists():
            base = torch.load(path, map_location=device, weights_only=True)
            missing, unexpected = model.load_state_dict(base, strict=False)
            if unexpected or set(missing) - trainable:
                raise ValueError(f"{str(path)!r} does not hold this model's base weights")
    elif is_main and warmed_up:
        path.parent.mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in model.state_dict().items() if k not in trainable}
        tmp = path.with_suffix(".tmp")
        torch.save(base, tmp)
        tmp.replace(path)
    elif is_main:
        path.unlink(missing_ok=True)


def enable_gradient_checkpointing(model: Any) -> None:
    enable = getattr(model, "activation_checkpointing_enable", None)
    (enable or model.gradient_checkpointing_enable)()


def compile_decoder_layers(model: Any, checkpointing: bool) -> int:
    """Compile every decoder layer of ``model`` in place with ``torch.compile(dynamic=True)``
    ("regional" compilation: one compiled code for all layers and all sequence lengths); with
    ``checkpointing``, the layer's activations are recomputed in backward by a checkpoint *inside*
    the compiled region. Returns the number of layers.

    The layers are the modules whose class is named in the model's ``_no_split_modules``
    (transformers' list of its decoder-layer classes). inductor fuses each layer's norms, rotary
    embeddings, activations and residual adds, forward and backward: fewer, larger kernels for an
    update that is launch-bound at small micro-batches. Why not transformers' own checkpointing:
    ``torch.utils.checkpoint`` disables dynamo inside it, so a compiled layer under it runs eagerly.
    The checkpoint runs only with gradients enabled (the reference pass runs the plain compiled
    layer); calls with a KV cache (sampling) run the layer uncompiled; and dynamo is told not to
    replay the forward's side effects in backward (transformers' kernel-hub wrapper sets a context
    variable in the attention: harmless to skip, and without it the checkpoint breaks the graph).
    Call this after every copy of the model is made (reference, critic): a deep copy would keep
    calling the original layers' compiled forwards.

    Raises:
        ValueError: the model names no decoder-layer class, or none is found in it.
    """
    names = set(getattr(model, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(
            f"config key 'compile_layers': found no decoder layers in {type(model).__name__} "
            f"(looked for the classes in its _no_split_modules: {sorted(names)})"
        )
    for layer in layers:
        if not getattr(layer, "_credo_compiled", False):  # a layer shared with a model compiled before
            layer.forward = _compiled_layer_forward(layer.forward, checkpointing)
            layer._credo_compiled = True
    return len(layers)


def compile_run_layers(policy: Any, reference: Any, critic: Any, checkpointing: bool) -> None:
    """``compile_layers`` for a run: the policy's decoder layers (checkpointed inside the compile
    with ``checkpointing``), and those of a separate reference copy and of a separate critic's
    backbone, which never checkpoint (the reference runs without gradients; the critic is not
    checkpointed). A LoRA reference is the policy itself with its adapters off: already compiled."""
    compile_decoder_layers(policy, checkpointing)
    if isinstance(reference, nn.Module):
        compile_decoder_layers(reference, checkpointing=False)
    backbone = getattr(critic, "backbone", None)
    if backbone is not None:
        compile_decoder_layers(backbone, checkpointing=False)


def _compiled_layer_forward(forward: Callable[..., Any], checkpointing: bool) -> Callable[..., Any]:
    """``forward`` (a layer's bound forward) compiled, checkpointed when gradients are enabled."""

    def run(*args: Any, **kwargs: Any) -> Any:
        if checkpointing and torch.is_grad_enabled():
            return checkpoint(forward, *args, use_reentrant=False, **kwargs)
        return forward(*args, **kwargs)

    compiled = torch.compile(run, dynamic=True)

    def call(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("cache") is not None or kwargs.get("past_key_values") is not None:
            # sampling (prefill, decode steps): the layer as it is. Its KV cache would specialise the
            # compile to every layer index (guards on the cache's per-layer state), and the decoders
            # have their own compile and graph (rollout.compile_decode, the hf static cache).
            return forward(*args, **kwargs)
        # transformers' hub-kernels wrapper has a side effect inside the checkpoint that dynamo
        # refuses unless this flag is on. Set and restored by hand: config.patch() costs 55 us per
        # enter and exit on the CPU machine (x layers x micro-batches a step), this 4 us
        config = torch._dynamo.config
        previous = config.skip_fwd_side_effects_in_bwd_under_checkpoint
        config.skip_fwd_side_effects_in_bwd_under_checkpoint = True
        try:
            return compiled(*args, **kwargs)
        finally:
            config.skip_fwd_side_effects_in_bwd_under_checkpoint = previous

    return call


def find_checkpoint(
    output_dir: str | None, resume: bool | str
) -> tuple[Path, dict[str, Any], dict[str, Any]] | None:
    """The checkpoint to resume from, if ``resume`` (``True`` or ``"force"``): ``(path, objects,
    state)`` of the newest readable one under ``output_dir/checkpoints`` (an unreadable newer one is
    skipped with a warning naming it), or None."""
    if not (output_dir and resume):
        return None
    return load_latest_checkpoint(Path(output_dir) / "checkpoints")


def make_reference(
    policy: Any, output_dir: str | None, resumed: bool, is_main: bool, device: torch.device
) -> Any:
    """The frozen reference: a copy of the policy as RL starts (after SFT). Saved once in
    ``output_dir/reference.pt`` so that a resumed run gets the same one. With LoRA, no copy: the
    policy with its adapters switched off (:class:`AdapterFreeReference`; its base weights are kept
    for resume by :func:`keep_lora_base`)."""
    if is_lora(policy):
        return AdapterFreeReference(policy)
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    if output_dir:
        path = Path(output_dir) / "reference.pt"
        if resumed and path.exists():
            reference.load_state_dict(torch.load(path, map_location=device))
        elif is_main:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save(reference.state_dict(), tmp)
            tmp.replace(path)
    return reference


# ----------------------------------------------------------------------------------------------------
# Optimizer and schedule


def make_optimizer(
    policy: Any, critic: nn.Module | None, config: TrainConfig, device: torch.device
) -> torch.optim.Optimizer:
    """AdamW over the policy's trainable parameters and the critic's (at ``critic.lr`` if set)."""
    oc = config.optim
    groups: list[dict[str, Any]] = [{"params": [p for p in policy.parameters() if p.requires_grad]}]
    if critic is not None:
        groups.append({"params": list(critic.parameters()), "lr": config.critic.lr or oc.lr})
    fused = device.type == "cuda"  # one kernel, no full-size temporaries
    return torch.optim.AdamW(
        groups, lr=oc.lr, betas=tuple(oc.betas), eps=oc.eps, weight_decay=oc.weight_decay, fused=fused
    )


def lr_lambda(schedule: str, warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the base LR at step s: linear warm-up, then constant, linear decay or cosine."""

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    oc = config.optim
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(oc.schedule, oc.warmup_steps, config.steps))
