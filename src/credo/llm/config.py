"""The trainer's configuration: one typed dataclass tree, loaded from YAML plus command-line overrides.

``load_config("run.yaml", ["--loss.kl_beta", "0.05", "--train.steps", "200"])`` reads the YAML,
applies the overrides (dotted keys reach nested sections), converts values to the declared types
(a ``Literal[...]`` field takes one of its values) and validates. Every problem is a ``ValueError``
(or ``TypeError``) naming the key: unknown keys come with a close-match suggestion. Checks against the
estimator registry (its name, its options, G against its minimum group size, B against its minimum
batch) run in :func:`validate_config`, when the config is loaded; those that need the model (prompts
longer than the context, missing reward functions) run in the trainer before any training starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import yaml

from credo.credit import get_estimator
from credo.credit._checks import check_annotation, describe_annotation
from credo.credit.registry import bind_options


@dataclass
class LoraSettings:
    """LoRA adapters (``peft``) on the policy: rank ``r``, scale ``alpha / r``, ``target_modules``
    (module names, or ``"all-linear"``: every linear layer but the output head). ``dropout`` must be 0:
    the trainer needs a training forward pass to give exactly the log-probs recorded at rollout."""

    r: int = 16
    alpha: float = 32
    dropout: float = 0.0
    target_modules: list[str] | str = "all-linear"

    def __post_init__(self) -> None:
        check_lora(self)


def check_lora(lora: LoraSettings | None, key: str = "model.lora") -> None:
    """A one-line ValueError naming the key for a LoRA setting out of range, or when ``peft`` (which
    LoRA needs) is not installed; nothing for ``lora=None``."""
    if lora is None:
        return
    if isinstance(lora.r, bool) or not isinstance(lora.r, int) or lora.r < 1:
        raise ValueError(f"config key '{key}.r' must be an integer >= 1, got {lora.r!r}")
    if not lora.alpha > 0:
        raise ValueError(f"config key '{key}.alpha' must be > 0, got {lora.alpha!r}")
    if not 0 <= lora.dropout < 1:
        raise ValueError(f"config key '{key}.dropout' must be in [0, 1), got {lora.dropout!r}")
    if lora.dropout != 0:
        raise ValueError(
            f"config key '{key}.dropout' must be 0, got {lora.dropout!r}: dropout makes the training "
            "forward pass disagree with the log-probs recorded at rollout (PPO ratio, KL)"
        )
    if not lora.target_modules:
        raise ValueError(f"config key '{key}.target_modules' must name modules or be 'all-linear'")
    if importlib.util.find_spec("peft") is None:
        raise ValueError(f"config key '{key}' needs peft, which is not installed: pip install peft")


@dataclass
class ModelConfig:
    """``model_path``: a local Hugging Face model directory (its tokenizer too, unless
    ``tokenizer_path``). Without it a tiny model is built from ``arch`` and the sizes below, with a
    character tokenizer over ``chars`` (printable ASCII and newline by default).

    ``lora``: train LoRA adapters instead of all weights (:class:`LoraSettings`; a mapping such as
    ``{r: 16}`` in YAML); None (the default): full fine-tuning."""

    model_path: str | None = None
    tokenizer_path: str | None = None
    arch: Literal["qwen2", "gpt2"] = "qwen2"
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int | None = None
    context_length: int = 256
    chars: str | None = None
    init_seed: int = 0
    lora: LoraSettings | None = None

    def __post_init__(self) -> None:
        if isinstance(self.lora, dict):  # a YAML mapping: checked and converted like a section
            self.lora = config_from_dict(self.lora, LoraSettings, "model.lora.")
        elif self.lora is not None and not isinstance(self.lora, LoraSettings):
            raise TypeError(
                f"config key 'model.lora' must be a mapping (r, alpha, dropout, target_modules) or null, "
                f"got {type(self.lora).__name__} {self.lora!r}"
            )


@dataclass
class TaskConfig:
    """``prompts``: a list of strings (or of dicts with a ``"prompt"`` text and extra fields handed to
    the reward functions), or an import path ``"module:function"`` returning one.
    ``rewards``: list of ``{fn: "module:function", weight: 1.0}``. ``sft_pairs``: import path of a
    function returning (prompt, answer) pairs for the SFT warm-up.

    ``set_task``: a set-valued task of :mod:`credo.tasks` by name (``synthetic_recommendation``,
    ``recommendation``, ``countdown``, ``brainstorm``), built with ``set_task_options`` (e.g.
    ``{k: 3}``); it supplies what is not given above: ``num_prompts`` training prompts, its
    per-candidate reward function (candidate scores, spans, set reward) and its SFT pairs."""

    prompts: list[Any] | str | None = None
    rewards: list[dict[str, Any]] = field(default_factory=list)
    sft_pairs: str | None = None
    set_task: str | None = None
    set_task_options: dict[str, Any] = field(default_factory=dict)
    num_prompts: int = 64


@dataclass
class SFTConfig:
    """Supervised warm-up before RL (0 steps: none). Loss on answer tokens only."""

    steps: int = 0
    lr: float = 3e-3
    batch_size: int = 16


@dataclass
class RolloutConfig:
    """``group_size``: G completions per prompt; ``prompts_per_step``: N prompts per step (B = N G).
    ``backend``: ``"hf"`` (transformers ``generate``), ``"vllm"`` (if installed) or ``"graph"``
    (credo's own decode loop, :mod:`credo.llm.graph_decode`: static KV cache, no host sync per token,
    the decode step replayed as one CUDA graph on CUDA, eager elsewhere). ``static_cache``: static KV
    cache, which transformers compiles (CUDA graphs) on CUDA (``hf`` only). ``compile_decode``: the
    graph backend's decode step runs the model through ``torch.compile`` before it is captured
    (fewer, fused kernels per token; a one-off compile at the first rollout; ``graph`` only)."""

    group_size: int = 8
    prompts_per_step: int = 4
    max_new_tokens: int = 32
    temperature: float = 1.0
    top_k: int | None = None
    backend: Literal["hf", "vllm", "graph"] = "hf"
    static_cache: bool = False
    compile_decode: bool = False
    pad_to_multiple_of: int | None = None


@dataclass
class CreditConfig:
    """``estimator``: a name in ``credo.credit.ESTIMATORS``; ``options``: keyword options it takes
    (e.g. ``{gamma: 1.0, lam: 0.95}`` for ``gae``)."""

    estimator: str = "grpo"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class LossConfig:
    """``policy_loss``: ``"pg"`` (vanilla policy gradient, on-policy, 1 epoch) or ``"ppo_clip"``.
    ``aggregation``: ``token_mean`` | ``seq_mean_token_sum`` | ``seq_mean_token_mean``.
    ``kl_beta``: KL coefficient; ``kl_mode``: ``"reward"`` (``-beta k`` per token in the reward,
    REINFORCE/RLOO/PPO) or ``"loss"`` (``+beta k`` in the loss, GRPO); ``kl_kind``: k1, k2 or k3."""

    policy_loss: Literal["pg", "ppo_clip"] = "pg"
    epochs: int = 1
    clip_eps: float = 0.2
    clip_eps_high: float | None = None
    aggregation: Literal["token_mean", "seq_mean_token_sum", "seq_mean_token_mean"] = "token_mean"
    kl_beta: float = 0.0
    kl_mode: Literal["reward", "loss"] = "reward"
    kl_kind: Literal["k1", "k2", "k3"] = "k1"
    entropy_coef: float = 0.0
    value_coef: float = 0.5
    value_clip: float | None = None


@dataclass
class CriticConfig:
    """Only used when the estimator needs values (e.g. ``gae``). ``mode``: ``"separate"`` (its own
    backbone, a copy of the policy's initial weights) or ``"shared"`` (a value head on the policy)."""

    mode: Literal["separate", "shared"] = "separate"
    lr: float | None = None


@dataclass
class OptimConfig:
    """AdamW with a schedule (``constant`` | ``linear`` | ``cosine``, after ``warmup_steps``)."""

    lr: float = 1e-5
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    schedule: Literal["constant", "linear", "cosine"] = "constant"
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0
    micro_batch_size: int = 8
    mini_batches: int = 1


@dataclass
class TrainConfig:
    """The whole run. ``precision``: ``auto`` (bf16 autocast on CUDA with bf16, fp32 elsewhere),
    ``fp32``, ``bf16-mixed`` (fp32 weights, bf16 autocast) or ``bf16`` (bf16 weights).

    ``resume``: with ``output_dir`` holding a checkpoint, ``true`` resumes from it if the checkpoint's
    config matches this one in what shapes the run (model, task, rollout, credit, loss, optim, critic,
    seed, precision; ``steps`` may be raised to continue) and otherwise refuses, naming the differing
    keys; ``"force"`` resumes anyway with this config's values (the differences are logged);
    ``false`` starts afresh (the old logs are moved to ``*.old``).

    ``compile_layers``: compile each decoder layer with ``torch.compile``, the policy's and those of
    a separate reference and critic (:func:`credo.llm.models.compile_run_layers`), for the passes
    without a KV cache (update, reference, critic): fused kernels, and with
    ``gradient_checkpointing`` the checkpoint inside the compiled layer. Sampling runs the layers
    uncompiled (``rollout.compile_decode`` compiles the decode step). A one-off compile at the first
    forward pass."""

    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    credit: CreditConfig = field(default_factory=CreditConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    steps: int = 100
    seed: int = 0
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16-mixed", "bf16"] = "auto"
    gradient_checkpointing: bool = False
    compile_layers: bool = False
    output_dir: str | None = None
    checkpoint_every: int = 0
    resume: bool | Literal["force"] = True
    log_every: int = 1
    samples_per_step: int = 4
    tensorboard: bool = True
    wandb: bool = False
    progress: bool = True


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _unknown_key_error(key: str, known: list[str], where: str) -> ValueError:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(known))}"
    return ValueError(f"unknown config key {where + key!r}{hint}")


def _convert(value: Any, annotation: Any, key: str) -> Any:
    """``value`` checked against the field's ``annotation`` (str from the command line parsed as YAML)
    and converted (numbers to float where a float is expected); a ValueError for a value outside a
    ``Literal``'s choices, a TypeError for any other mismatch, both naming the key."""
    ok, converted = check_annotation(value, annotation)
    if ok:
        return converted
    expected = describe_annotation(annotation)
    if typing.get_origin(annotation) is Literal:
        raise ValueError(f"config key {key!r} must be {expected}, got {value!r}")
    raise TypeError(f"config key {key!r} must be {expected}, got {type(value).__name__} {value!r}")


def config_from_dict(data: dict[str, Any], cls: type = TrainConfig, prefix: str = "") -> Any:
    """Build a config dataclass from a nested dict, converting and checking every value."""
    if not isinstance(data, dict):
        raise TypeError(f"config section {prefix or '<root>'!r} must be a mapping, got {type(data).__name__}")
    types_ = _field_types(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in types_:
            raise _unknown_key_error(str(key), list(types_), prefix)
        annotation = types_[key]
        full = f"{prefix}{key}"
        if dataclasses.is_dataclass(annotation):
            kwargs[key] = config_from_dict(value or {}, annotation, f"{full}.")
        else:
            kwargs[key] = _convert(value, annotation, full)
    return cls(**kwargs)


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as a plain nested dict (YAML-ready)."""
    return dataclasses.asdict(config)


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """``["--a.b", "1", "--c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}``; values are parsed as YAML scalars."""
    result: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) <= 2:
            raise ValueError(f"expected an override '--key value', got {arg!r}")
        if "=" in arg:
            key, raw = arg[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise ValueError(f"override {arg!r} has no value")
            key, raw = arg[2:], args[i + 1]
            i += 2
        value = yaml.safe_load(raw) if raw != "" else ""
        node = result
        parts = key.replace("-", "_").split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {key!r} conflicts with another override")
        node[parts[-1]] = value
    return result


def merge_config_dicts(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "options":
            out[key] = merge_config_dicts(out[key], value)
        else:
            out[key] = value
    return out


def load_config(
    path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None
) -> TrainConfig:
    """Read a YAML file (optional), apply overrides, convert and validate."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ValueError(f"config file {str(path)!r} does not exist")
        loaded = yaml.safe_load(path.read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise TypeError(f"config file {str(path)!r} must hold a mapping at the top level")
        data = loaded or {}
    if overrides:
        extra = parse_overrides(overrides) if isinstance(overrides, list) else overrides
        data = merge_config_dicts(data, extra)
    config = config_from_dict(data)
    validate_config(config)
    return config


def _positive(
    key: str, value: float | int | None, allow_zero: bool = False, allow_none: bool = False
) -> None:
    if value is None and allow_none:
        return
    if value is None or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"config key {key!r} must be {bound}, got {value!r}")


def _check_choices(config: Any, prefix: str = "") -> None:
    """Every ``Literal`` field of ``config`` (and its sections) holds one of its values, also where
    it was set in code rather than loaded."""
    for name, annotation in _field_types(type(config)).items():
        value = getattr(config, name)
        if dataclasses.is_dataclass(annotation):
            _check_choices(value, f"{prefix}{name}.")
        elif typing.get_origin(annotation) is Literal and value not in typing.get_args(annotation):
            choices = typing.get_args(annotation)
            raise ValueError(f"config key {prefix + name!r} must be one of {choices}, got {value!r}")


def resolve_device(requested: str, key: str = "config key 'device'") -> torch.device:
    """The torch device of ``requested``: ``auto`` (CUDA when there is one, else the CPU), ``cpu``,
    ``cuda`` or ``cuda:N``. A ValueError naming ``key`` for an unknown device, or a CUDA device this
    machine does not have (rather than running silently on the CPU). The one device check of the
    trainer's config, the reward-model configs and ``credo generate | evaluate``."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError):
        raise ValueError(f"{key}: unknown device {requested!r} (auto, cpu, cuda, cuda:N)") from None
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type == "cuda" and (count == 0 or (device.index or 0) >= count):
        raise ValueError(f"{key}: {requested!r} asked for, but this machine has {count} CUDA device(s)")
    return device


def validate_config(config: TrainConfig) -> None:
    """Checks that need no model: choices, ranges, the estimator's name, options, group and batch
    sizes, PPO settings. The estimator's options are bound here (:func:`credo.credit.registry.bind_options`),
    so a misspelt option fails when the config is loaded."""
    _check_choices(config)
    resolve_device(config.device)
    try:
        spec = get_estimator(config.credit.estimator)
    except KeyError as error:
        raise ValueError(f"config key 'credit.estimator': {error.args[0]}") from None
    config.credit.options = bind_options(spec.name, config.credit.options)
    r = config.rollout
    _positive("rollout.group_size", r.group_size)
    _positive("rollout.prompts_per_step", r.prompts_per_step)
    _positive("rollout.max_new_tokens", r.max_new_tokens)
    _positive("rollout.temperature", r.temperature)
    _positive("rollout.top_k", r.top_k, allow_none=True)
    if spec.needs_groups and r.group_size < spec.min_group_size:
        raise ValueError(
            f"estimator {spec.name!r} compares completions of the same prompt and needs "
            f"rollout.group_size >= {spec.min_group_size}, got {r.group_size}"
        )
    if r.group_size * r.prompts_per_step < spec.min_batch_size:
        raise ValueError(
            f"estimator {spec.name!r} needs a batch of at least {spec.min_batch_size} completions "
            f"(rollout.group_size x rollout.prompts_per_step), got {r.group_size * r.prompts_per_step}"
        )
    loss = config.loss
    _positive("loss.epochs", loss.epochs)
    _positive("loss.kl_beta", loss.kl_beta, allow_zero=True)
    _positive("loss.entropy_coef", loss.entropy_coef, allow_zero=True)
    _positive("loss.value_coef", loss.value_coef, allow_zero=True)
    _positive("loss.value_clip", loss.value_clip, allow_none=True)
    if loss.policy_loss == "pg" and (loss.epochs > 1 or config.optim.mini_batches > 1):
        raise ValueError(
            "loss.policy_loss='pg' is on-policy: it takes one update per rollout (loss.epochs=1, "
            "optim.mini_batches=1); use loss.policy_loss='ppo_clip' for several updates"
        )
    o = config.optim
    _positive("optim.lr", o.lr)
    _positive("optim.micro_batch_size", o.micro_batch_size)
    _positive("optim.mini_batches", o.mini_batches)
    _positive("optim.warmup_steps", o.warmup_steps, allow_zero=True)
    _positive("optim.max_grad_norm", o.max_grad_norm, allow_none=True)
    if len(o.betas) != 2 or not all(0 <= b < 1 for b in o.betas):
        raise ValueError(f"config key 'optim.betas' must be two numbers in [0, 1), got {o.betas}")
    B = r.group_size * r.prompts_per_step
    if B % o.mini_batches:
        raise ValueError(f"optim.mini_batches={o.mini_batches} must divide the batch size {B}")
    _positive("steps", config.steps)
    _positive("checkpoint_every", config.checkpoint_every, allow_zero=True)
    _positive("sft.steps", config.sft.steps, allow_zero=True)
    if config.checkpoint_every and not config.output_dir:
        raise ValueError("checkpoint_every > 0 needs output_dir")
    if config.model.model_path is None:
        _positive("model.context_length", config.model.context_length)
    elif not Path(config.model.model_path).is_dir():
        raise ValueError(
            f"config key 'model.model_path': {config.model.model_path!r} is not a local directory"
        )
    if config.sft.steps and not (config.task.sft_pairs or config.task.set_task):
        raise ValueError(
            "sft.steps > 0 needs task.sft_pairs (an import path returning (prompt, answer) pairs) or task.set_task"
        )
    _positive("task.num_prompts", config.task.num_prompts)
    check_lora(config.model.lora)
    _check_backend_options(config)


def _check_backend_options(config: TrainConfig) -> None:
    """Options that only some rollout backends take."""
    if config.rollout.compile_decode and config.rollout.backend != "graph":
        raise ValueError(
            "config key 'rollout.compile_decode': needs rollout.backend='graph', "
            f"got {config.rollout.backend!r}"
        )
    if config.model.lora is not None and config.rollout.backend == "vllm":
        raise ValueError(
            "config key 'model.lora': LoRA runs sample with rollout.backend='hf' (vllm is not supported)"
        )
