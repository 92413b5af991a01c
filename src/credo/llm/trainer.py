"""The policy-gradient trainer with pluggable credit, on any Hugging Face causal LM.

One training step (:meth:`Trainer.step`), top to bottom:

1. take this step's N prompts (a seeded permutation per pass over the prompts: resumable);
2. rollout: sample G completions per prompt, recording the policy's per-token log-probs as it
   samples (``logprobs = log pi_old``, never recomputed while the policy has not changed);
3. score with the frozen models: reference log-probs (if ``kl_beta > 0``), critic values (if the
   estimator needs them);
4. rewards: call the reward functions (completion, candidate and per-step rewards, weighted);
5. credit: ``credo.credit.compute_credit(estimator, CreditBatch(...))`` -> token advantages
   ``[B, L]`` (and value targets for ``gae``); the KL penalty ``-beta k(logp, ref)`` enters here as
   per-token rewards when ``kl_mode == "reward"``. The trainer never branches on the estimator's
   name, only on what its :class:`~credo.credit.EstimatorSpec` requires;
6. update: ``epochs`` passes x ``mini_batches`` optimizer steps, each over micro-batches with
   gradient accumulation; the loss normaliser is the whole mini-batch's, so splitting into
   micro-batches does not change the gradient; gradient clipping; AdamW; LR schedule;
7. log (tqdm, JSONL, TensorBoard / W&B when installed), write samples, checkpoint every N steps.

Runs single-process, or under ``accelerate launch`` (DDP / FSDP) with no code change: each process
takes whole prompts (so groups stay on one process) and the loss normalisers are global.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from credo.credit import (
    CreditBatch,
    CreditResult,
    compute_credit,
    get_estimator,
    kl_estimate,
    kl_reward_penalty,
    masked_mean,
)
from credo.llm.checkpoint import latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from credo.llm.config import TrainConfig, config_to_dict, validate_config
from credo.llm.losses import (
    LossNormalizer,
    aggregate,
    kl_loss,
    policy_gradient_loss,
    ppo_clip_loss,
    value_loss,
)
from credo.llm.rewards import (
    RewardOutput,
    WeightedReward,
    as_weighted_rewards,
    compute_rewards,
    resolve_callable,
)
from credo.llm.rollout import (
    RolloutBatch,
    entropy_from_logits,
    full_inputs,
    sample_completions,
    token_logprobs_from_logits,
)

# ----------------------------------------------------------------------------------------------------
# Models: the critic


class ValueModel(nn.Module):
    """A value head ``V(s_t) = w . h_t + b`` on a transformer backbone (``separate`` critic), or on
    hidden states handed in by the policy (``shared``: ``backbone`` is None)."""

    def __init__(self, hidden_size: int, backbone: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, hidden: Tensor | None = None, **inputs: Tensor) -> Tensor:
        """Values ``[B, T]`` of ``hidden: [B, T, H]``, or of the backbone run on ``inputs``."""
        if hidden is None:
            if self.backbone is None:
                raise ValueError("a shared value head needs the policy's hidden states")
            hidden = self.backbone(**inputs, use_cache=False).last_hidden_state
        return self.head(hidden.to(self.head.weight.dtype)).squeeze(-1).float()


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


def hidden_size_of(model: Any) -> int:
    cfg = model.config
    return int(getattr(cfg, "hidden_size", None) or cfg.n_embd)


# ----------------------------------------------------------------------------------------------------
# The loss of one micro-batch (a pure function of its inputs: tested for micro-batch invariance)


def micro_batch_loss(
    policy: Any,
    mb: RolloutBatch,
    advantages: Tensor,
    returns: Tensor | None,
    normalizer: LossNormalizer,
    config: TrainConfig,
    critic: ValueModel | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The scalar loss of micro-batch ``mb`` (rows of a rollout) and detached statistics.

    ``advantages``, ``returns``: ``[b, L]`` rows of the step's credit. Per token:
    ``policy term (pg or ppo_clip) + beta k(logp, ref) [kl_mode == "loss"] - c_H entropy``, aggregated
    with ``normalizer``; plus ``value_coef`` x the aggregated value loss when there is a critic.
    """
    lc = config.loss
    temperature = config.rollout.temperature
    mask = mb.completion_mask
    shared = critic is not None and critic.backbone is None
    input_ids, attention_mask, position_ids = full_inputs(
        mb.prompt_ids, mb.prompt_mask, mb.completion_ids, mask
    )
    P, L = mb.prompt_ids.shape[1], mb.completion_ids.shape[1]
    out = policy(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        logits_to_keep=L + 1,
        use_cache=False,
        output_hidden_states=shared,
    )
    logits = out.logits[:, :-1]
    logp = token_logprobs_from_logits(logits, mb.completion_ids, temperature)
    stats: dict[str, Tensor] = {}
    if lc.policy_loss == "pg":
        per_token = policy_gradient_loss(logp, advantages)
    else:
        per_token, clipped = ppo_clip_loss(logp, mb.logprobs, advantages, lc.clip_eps, lc.clip_eps_high)
        stats["clip_fraction"] = masked_mean(clipped.float(), mask).detach()
    if lc.kl_beta > 0 and lc.kl_mode == "loss":
        kl = kl_loss(logp, mb.ref_logprobs, lc.kl_kind)
        per_token = per_token + lc.kl_beta * kl
    if lc.entropy_coef > 0:
        entropy = entropy_from_logits(logits, temperature)
        per_token = per_token - lc.entropy_coef * entropy
        stats["entropy"] = masked_mean(entropy, mask).detach()
    loss = aggregate(per_token, mask, normalizer)
    stats["policy_loss"] = loss.detach()
    if critic is not None:
        if shared:
            values = critic(hidden=out.hidden_states[-1][:, P - 1 : P + L - 1])
        else:
            values = critic(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
            values = values[:, P - 1 : P + L - 1]
        assert returns is not None
        vloss = aggregate(value_loss(values, returns, mb.values, lc.value_clip), mask, normalizer)
        stats["value_loss"] = vloss.detach()
        loss = loss + lc.value_coef * vloss
    return loss, stats


# ----------------------------------------------------------------------------------------------------
# Helpers: devices, precision, schedules, seeding


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_seed(seed: int, step: int, rank: int) -> int:
    """The seed of training step ``step`` on process ``rank`` (distinct for every triple)."""
    return (seed * 1_000_003 + step) * 1_009 + rank


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


def _accelerator(device: str) -> Any | None:
    """An ``accelerate.Accelerator`` when accelerate is installed, else None (single process)."""
    try:
        from accelerate import Accelerator
    except ImportError:
        return None
    cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    return Accelerator(cpu=cpu)


def _make_set_task(config: TrainConfig) -> Any | None:
    """The ``credo.tasks`` task named by ``task.set_task``, or None."""
    if config.task.set_task is None:
        return None
    from credo.tasks import make_task

    try:
        return make_task(config.task.set_task, **config.task.set_task_options)
    except (ValueError, TypeError) as error:
        raise ValueError(f"config key 'task.set_task': {error}") from None


Prompt = str | dict[str, Any]


def _resolve_prompts(spec: Sequence[Prompt] | str | None) -> list[Prompt]:
    """The prompt list: strings, or dicts with a ``"prompt"`` text and extra fields that reach the
    reward functions as keyword arguments (one list entry per completion), as dataset columns do in
    TRL."""
    if spec is None:
        raise ValueError("no prompts: pass prompts=... or set task.prompts (a list or 'module:function')")
    prompts = resolve_callable(spec)() if isinstance(spec, str) else spec
    prompts = list(prompts)
    if not prompts:
        raise ValueError("prompts must be a non-empty list")
    for i, p in enumerate(prompts):
        if isinstance(p, dict):
            if not isinstance(p.get("prompt"), str):
                raise ValueError(f"prompt {i} is a dict without a 'prompt' string")
        elif not isinstance(p, str):
            raise TypeError(f"prompt {i} must be a str or a dict with a 'prompt' key, got {type(p).__name__}")
    return prompts


def prompt_text(prompt: Prompt) -> str:
    return prompt["prompt"] if isinstance(prompt, dict) else prompt


def prompt_meta(prompts: Sequence[Prompt], group_size: int) -> dict[str, list[Any]]:
    """Extra fields of dict prompts, one entry per completion (None where a prompt lacks the field)."""
    keys = sorted({k for p in prompts if isinstance(p, dict) for k in p if k != "prompt"})
    return {
        k: [p.get(k) if isinstance(p, dict) else None for p in prompts for _ in range(group_size)]
        for k in keys
    }


# ----------------------------------------------------------------------------------------------------
# The trainer


class Trainer:
    """Online RL for a causal LM with a credit estimator from :mod:`credo.credit`.

    Args:
        config: the run's :class:`~credo.llm.config.TrainConfig`.
        reward_functions: callables (see :mod:`credo.llm.rewards`); default ``config.task.rewards``.
        prompts: the prompt list (strings, or dicts with a ``"prompt"`` text whose other fields reach
            the reward functions as keyword arguments); default ``config.task.prompts``.
        sft_pairs: (prompt, answer) pairs for the warm-up; default ``config.task.sft_pairs``.
        model, tokenizer: an already loaded policy and tokenizer (else from ``config.model``).

    Everything that can be checked before training is checked here: the estimator's needs against
    the reward functions and critic, G against the estimator's minimum group, prompt lengths against
    the context.
    """

    def __init__(
        self,
        config: TrainConfig,
        reward_functions: Any = None,
        prompts: Sequence[Prompt] | None = None,
        sft_pairs: Sequence[tuple[str, str]] | None = None,
        model: Any = None,
        tokenizer: Any = None,
    ) -> None:
        validate_config(config)
        self.config = config
        self.spec = get_estimator(config.credit.estimator)
        self.set_task = _make_set_task(config)
        if reward_functions is None:
            reward_functions = list(config.task.rewards)
            if self.set_task is not None:
                reward_functions.append(self.set_task.reward_function())
            reward_functions = reward_functions or None
        if prompts is None and config.task.prompts is None and self.set_task is not None:
            tc = config.task
            prompts = [p.text for p in self.set_task.prompts("train", tc.num_prompts, seed=config.seed)]
        if sft_pairs is None and config.task.sft_pairs is None and self.set_task is not None:
            sft_pairs = self.set_task.sft_pairs(seed=config.seed)
        self.reward_fns: list[WeightedReward] = as_weighted_rewards(reward_functions)
        self._check_estimator_needs()
        if config.rollout.backend == "vllm" and importlib.util.find_spec("vllm") is None:
            raise ValueError(
                "rollout.backend='vllm' but vLLM is not installed: pip install vllm, or use 'hf'"
            )
        self.prompts = _resolve_prompts(prompts if prompts is not None else config.task.prompts)
        self.accelerator = _accelerator(config.device)
        self.device = self._pick_device()
        self.world_size = self.accelerator.num_processes if self.accelerator else 1
        self.rank = self.accelerator.process_index if self.accelerator else 0
        self.is_main = self.rank == 0
        seed_everything(config.seed)
        self.precision = self._pick_precision()
        self.model, self.tokenizer = self._load_model(model, tokenizer)
        self._check_prompt_lengths()
        self.step_count = 0
        checkpoint = self._find_checkpoint()
        if checkpoint is None and config.sft.steps > 0:
            self._sft_warmup(sft_pairs)
        self.reference = self._make_reference(checkpoint)
        self.critic = self._make_critic()
        self.optimizer = self._make_optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lr_lambda(config.optim.schedule, config.optim.warmup_steps, config.steps),
        )
        if config.gradient_checkpointing:
            enable = getattr(self.model, "activation_checkpointing_enable", None)
            (enable or self.model.gradient_checkpointing_enable)()
        if self.accelerator is not None:
            if self.critic is not None:
                self.model, self.critic, self.optimizer = self.accelerator.prepare(
                    self.model, self.critic, self.optimizer
                )
            else:
                self.model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        self.history: list[dict[str, float]] = []
        self._writers_opened = False
        if checkpoint is not None:
            self._load(checkpoint)

    # -- set-up ------------------------------------------------------------------------------------

    def _check_estimator_needs(self) -> None:
        kinds = {r.kind for r in self.reward_fns}
        lc = self.config.loss
        providers = {
            "candidate_scores": "candidates" in kinds,
            "candidate_spans": "candidates" in kinds,
            "token_rewards": "tokens" in kinds or (lc.kl_beta > 0 and lc.kl_mode == "reward"),
            "values": True,  # the trainer builds a critic
        }
        for need in self.spec.requires:
            if not providers.get(need, False):
                what = "a candidate reward function (see credo.llm.rewards.candidate_reward)"
                if need == "token_rewards":
                    what = "a per-step reward function or the KL penalty in the reward"
                raise ValueError(f"estimator {self.spec.name!r} needs {need}: add {what}")

    def _pick_device(self) -> torch.device:
        if self.accelerator is not None:
            return self.accelerator.device
        if self.config.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.config.device)

    def _pick_precision(self) -> str:
        p = self.config.precision
        bf16_ok = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        if p == "auto":
            return "bf16-mixed" if bf16_ok else "fp32"
        if p in ("bf16", "bf16-mixed") and self.device.type == "cuda" and not bf16_ok:
            raise ValueError(f"precision={p!r}: this CUDA device does not support bf16")
        return p

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast for ``bf16-mixed``, nothing otherwise."""
        if self.precision == "bf16-mixed":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _load_model(self, model: Any, tokenizer: Any) -> tuple[Any, Any]:
        from credo.llm.tiny import (
            DEFAULT_CHARS,
            build_char_tokenizer,
            build_tiny_model,
            load_tokenizer,
            tiny_model_config,
        )

        mc = self.config.model
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
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        model = model.to(device=self.device, dtype=dtype)
        disable_dropout(model)
        model.train()
        return model, tokenizer

    def _check_prompt_lengths(self) -> None:
        from credo.llm.tiny import context_length

        limit = context_length(self.model)
        new = self.config.rollout.max_new_tokens
        for i, prompt in enumerate(self.prompts):
            n = len(self.tokenizer(prompt_text(prompt), add_special_tokens=False)["input_ids"])
            if n + new > limit:
                raise ValueError(
                    f"prompt {i} has {n} tokens; with rollout.max_new_tokens={new} that is {n + new} > the "
                    f"model's context of {limit} tokens: shorten the prompt or max_new_tokens"
                )

    def _find_checkpoint(self) -> Path | None:
        if not (self.config.output_dir and self.config.resume):
            return None
        return latest_checkpoint(Path(self.config.output_dir) / "checkpoints")

    def _sft_warmup(self, sft_pairs: Sequence[tuple[str, str]] | None) -> None:
        from credo.llm.sft import sft_warmup

        pairs = sft_pairs if sft_pairs is not None else resolve_callable(self.config.task.sft_pairs)()
        sc = self.config.sft
        with self.autocast():
            sft_warmup(
                self.model,
                self.tokenizer,
                list(pairs),
                sc.steps,
                sc.lr,
                sc.batch_size,
                self.config.seed,
                progress=self.config.progress and self.is_main,
            )

    def _make_reference(self, checkpoint: Path | None) -> Any | None:
        """The frozen reference: the policy as RL starts (after SFT); saved once so a resumed run
        gets the same one."""
        if self.config.loss.kl_beta == 0:
            return None
        reference = copy.deepcopy(self.model).eval().requires_grad_(False)
        if self.config.output_dir:
            path = Path(self.config.output_dir) / "reference.pt"
            if checkpoint is not None and path.exists():
                reference.load_state_dict(torch.load(path, map_location=self.device))
            elif self.is_main:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                torch.save(reference.state_dict(), tmp)
                tmp.replace(path)
        return reference

    def _make_critic(self) -> ValueModel | None:
        if "values" not in self.spec.requires:
            return None
        backbone = None
        if self.config.critic.mode == "separate":
            backbone = copy.deepcopy(self.model.base_model)
        return ValueModel(hidden_size_of(self.model), backbone).to(self.device)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        oc = self.config.optim
        groups: list[dict[str, Any]] = [{"params": [p for p in self.model.parameters() if p.requires_grad]}]
        if self.critic is not None:
            groups.append({"params": list(self.critic.parameters()), "lr": self.config.critic.lr or oc.lr})
        fused = self.device.type == "cuda"  # one kernel, no full-size temporaries
        return torch.optim.AdamW(
            groups, lr=oc.lr, betas=tuple(oc.betas), eps=oc.eps, weight_decay=oc.weight_decay, fused=fused
        )

    # -- data ----------------------------------------------------------------------------------------

    def prompts_for_step(self, step: int) -> list[Prompt]:
        """This process's prompts of training step ``step``: a seeded permutation per pass over the
        prompt list, so the data position is a function of the step (resumable)."""
        n = self.config.rollout.prompts_per_step * self.world_size
        chosen = []
        for k in range(self.rank, n, self.world_size):
            position = step * n + k
            epoch, offset = divmod(position, len(self.prompts))
            chosen.append(self.prompts[self._permutation(epoch)[offset]])
        return chosen

    def _permutation(self, epoch: int) -> list[int]:
        """The prompt order of pass ``epoch`` over the prompts (seeded; the last two are cached)."""
        cache = self.__dict__.setdefault("_permutations", {})
        if epoch not in cache:
            generator = torch.Generator().manual_seed(self.config.seed + epoch)
            cache[epoch] = torch.randperm(len(self.prompts), generator=generator).tolist()
            for old in sorted(cache)[:-2]:
                del cache[old]
        return cache[epoch]

    # -- one training step ---------------------------------------------------------------------------

    def step(self) -> dict[str, float]:
        """One training step: rollout, scoring, credit, update, logging, checkpoint."""
        start = time.perf_counter()
        # 0. this step's random stream: a function of (seed, step, process), so a resumed run samples
        #    exactly what the uninterrupted one did, and processes draw different samples
        seed_everything(step_seed(self.config.seed, self.step_count, self.rank))
        # 1-5. prompts, rollout, frozen models, rewards, credit
        batch, scored, credit, rollout_time = self.make_experience(self.prompts_for_step(self.step_count))
        # 6. update
        update_stats = self.update(batch, credit.advantages.float(), credit.returns)
        self.step_count += 1
        elapsed = time.perf_counter() - start
        # 7. metrics, samples, checkpoint
        metrics = self._metrics(
            batch, scored, credit.advantages, update_stats, credit.info, elapsed, rollout_time
        )
        self.history.append(metrics)
        self._log(metrics, batch, scored)
        if self.config.checkpoint_every and self.step_count % self.config.checkpoint_every == 0:
            self.save()
        return metrics

    def make_experience(
        self, prompts: Sequence[Prompt]
    ) -> tuple[RolloutBatch, RewardOutput, CreditResult, float]:
        """Rollout, frozen-model scores, rewards and credit for ``prompts``: ``(batch, rewards, credit,
        rollout seconds)``. Advantages come from the registry, never from a local formula."""
        cfg = self.config
        start = time.perf_counter()
        batch = self.rollout(prompts)  # log pi_old recorded while sampling
        rollout_time = time.perf_counter() - start
        self.score_with_frozen_models(batch)  # reference log-probs, critic values
        scored = compute_rewards(self.reward_fns, batch, self.tokenizer)
        token_rewards = scored.token_rewards
        if cfg.loss.kl_beta > 0 and cfg.loss.kl_mode == "reward":
            penalty = kl_reward_penalty(
                batch.logprobs, batch.ref_logprobs, cfg.loss.kl_beta, cfg.loss.kl_kind
            )
            token_rewards = penalty if token_rewards is None else token_rewards + penalty
        credit = compute_credit(
            cfg.credit.estimator,
            CreditBatch(
                rewards=scored.rewards,
                response_mask=batch.completion_mask,
                group_size=batch.group_size,
                token_rewards=token_rewards,
                values=batch.values,
                candidate_scores=scored.candidate_scores,
                candidate_spans=scored.candidate_spans,
                candidate_shapley=scored.candidate_shapley,
            ),
            **cfg.credit.options,
        )
        return batch, scored, credit, rollout_time

    @torch.no_grad()
    def rollout(self, prompts: Sequence[Prompt]) -> RolloutBatch:
        """Sample G completions of each prompt with the current policy."""
        rc = self.config.rollout
        texts = [prompt_text(p) for p in prompts]
        if rc.backend == "vllm":
            from credo.llm.vllm_backend import sample_completions_vllm

            batch = sample_completions_vllm(self, texts)
        else:
            # A static KV cache is allocated in the weights' dtype; with fp32 weights under bf16
            # autocast ("bf16-mixed") the bf16 keys/values could not be written into it, so such
            # generation runs without autocast (in fp32).
            fp32_static = rc.static_cache and self.precision == "bf16-mixed"
            precision = contextlib.nullcontext() if fp32_static else self.autocast()
            with self._generation_context(), precision:
                batch = sample_completions(
                    self.unwrapped_model,
                    self.tokenizer,
                    texts,
                    rc.group_size,
                    rc.max_new_tokens,
                    rc.temperature,
                    rc.top_k,
                    static_cache=rc.static_cache,
                    pad_to_multiple_of=rc.pad_to_multiple_of,
                )
        batch.meta = prompt_meta(prompts, rc.group_size)
        return batch

    @torch.no_grad()
    def score_with_frozen_models(self, batch: RolloutBatch) -> None:
        """Fill ``batch.ref_logprobs`` (KL) and ``batch.values`` (critic), without gradients."""
        mb_size = self.config.optim.micro_batch_size
        T = self.config.rollout.temperature
        if self.reference is not None:
            parts = []
            for idx in torch.arange(batch.batch_size, device=self.device).split(mb_size):
                mb = batch.rows(idx)
                with self.autocast():
                    input_ids, attention_mask, position_ids = full_inputs(
                        mb.prompt_ids, mb.prompt_mask, mb.completion_ids, mb.completion_mask
                    )
                    logits = self.reference(
                        input_ids=input_ids,
                        attention_mask=attention_mask,
                        position_ids=position_ids,
                        logits_to_keep=mb.completion_ids.shape[1] + 1,
                        use_cache=False,
                    ).logits[:, :-1]
                parts.append(token_logprobs_from_logits(logits, mb.completion_ids, T))
            batch.ref_logprobs = torch.cat(parts).masked_fill(~batch.completion_mask, 0.0)
        if self.critic is not None:
            parts = []
            P, L = batch.prompt_ids.shape[1], batch.completion_ids.shape[1]
            for idx in torch.arange(batch.batch_size, device=self.device).split(mb_size):
                mb = batch.rows(idx)
                input_ids, attention_mask, position_ids = full_inputs(
                    mb.prompt_ids, mb.prompt_mask, mb.completion_ids, mb.completion_mask
                )
                with self.autocast():
                    critic = self.unwrap(self.critic)
                    if critic.backbone is None:
                        hidden = self.unwrapped_model(
                            input_ids=input_ids,
                            attention_mask=attention_mask,
                            position_ids=position_ids,
                            logits_to_keep=1,
                            use_cache=False,
                            output_hidden_states=True,
                        ).hidden_states[-1]
                        values = critic(hidden=hidden[:, P - 1 : P + L - 1])
                    else:
                        values = critic(
                            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
                        )
                        values = values[:, P - 1 : P + L - 1]
                parts.append(values.float())
            batch.values = torch.cat(parts).masked_fill(~batch.completion_mask, 0.0)

    def update(self, batch: RolloutBatch, advantages: Tensor, returns: Tensor | None) -> dict[str, float]:
        """``epochs`` x ``mini_batches`` optimizer steps over the rollout, with micro-batch gradient
        accumulation (the normaliser is each mini-batch's, global over processes)."""
        cfg = self.config
        B = batch.batch_size
        totals: dict[str, float] = {}  # losses: summed over a mini-batch's micro-batches
        means: dict[str, float] = {}  # per-micro-batch statistics (clip fraction, entropy)
        optimizer_steps = micro_steps = 0
        for _ in range(cfg.loss.epochs):
            shuffle = cfg.loss.epochs > 1 or cfg.optim.mini_batches > 1
            order = torch.randperm(B) if shuffle else torch.arange(B)
            for mini in order.to(self.device).chunk(cfg.optim.mini_batches):
                normalizer = self.normalizer(batch.completion_mask[mini])
                self.optimizer.zero_grad(set_to_none=True)
                micro = list(mini.split(cfg.optim.micro_batch_size))
                for i, idx in enumerate(micro):
                    with self._no_sync(last=i == len(micro) - 1):
                        with self.autocast():
                            loss, stats = micro_batch_loss(
                                self.model,
                                batch.rows(idx),
                                advantages[idx],
                                None if returns is None else returns[idx],
                                normalizer,
                                cfg,
                                self.critic,
                            )
                        self._backward(loss)
                    for k, v in stats.items():
                        target = totals if k.endswith("_loss") else means
                        target[k] = target.get(k, 0.0) + float(v)
                    micro_steps += 1
                grad_norm = self._clip_gradients()
                self.optimizer.step()
                totals["grad_norm"] = totals.get("grad_norm", 0.0) + grad_norm
                optimizer_steps += 1
        self.scheduler.step()
        result = {k: v / optimizer_steps for k, v in totals.items()}
        result.update({k: v / micro_steps for k, v in means.items()})
        result["loss"] = result.get("policy_loss", 0.0) + cfg.loss.value_coef * result.get("value_loss", 0.0)
        return result

    def normalizer(self, mask: Tensor) -> LossNormalizer:
        """The loss normaliser of the rows ``mask: [b, L]``, with totals summed over processes."""
        counts = torch.tensor([float(mask.sum()), float(mask.shape[0])], device=self.device)
        if self.accelerator is not None and self.world_size > 1:
            counts = self.accelerator.reduce(counts, reduction="sum")
        tokens, sequences = counts.tolist()
        return LossNormalizer(
            self.config.loss.aggregation,
            max(tokens, 1.0) / self.world_size,
            max(sequences, 1.0) / self.world_size,
        )

    # -- distributed plumbing ------------------------------------------------------------------------

    @property
    def unwrapped_model(self) -> Any:
        return self.unwrap(self.model)

    def unwrap(self, module: Any) -> Any:
        return self.accelerator.unwrap_model(module) if self.accelerator is not None else module

    def _generation_context(self) -> contextlib.AbstractContextManager[Any]:
        """FSDP shards parameters: gather them for ``generate``; no-op otherwise."""
        try:
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        except ImportError:  # pragma: no cover
            return contextlib.nullcontext()
        if isinstance(self.model, FSDP):
            return FSDP.summon_full_params(self.model, writeback=False, recurse=False)
        return contextlib.nullcontext()

    def _no_sync(self, last: bool) -> contextlib.AbstractContextManager[Any]:
        if self.accelerator is None or last or self.world_size == 1:
            return contextlib.nullcontext()
        return self.accelerator.no_sync(self.model)

    def _backward(self, loss: Tensor) -> None:
        if self.accelerator is not None:
            self.accelerator.backward(loss)
        else:
            loss.backward()

    def _clip_gradients(self) -> float:
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        max_norm = self.config.optim.max_grad_norm
        norm_bound = float("inf") if max_norm is None else max_norm
        if self.accelerator is not None:
            norm = self.accelerator.clip_grad_norm_(params, norm_bound)
        else:
            norm = torch.nn.utils.clip_grad_norm_(params, norm_bound)
        return float(norm)

    # -- the loop ------------------------------------------------------------------------------------

    def train(self, steps: int | None = None) -> list[dict[str, float]]:
        """Run until ``steps`` (default ``config.steps``) training steps are done in total."""
        from tqdm.auto import tqdm

        total = self.config.steps if steps is None else steps
        bar = tqdm(
            total=total,
            initial=self.step_count,
            desc="train",
            disable=not (self.config.progress and self.is_main),
        )
        try:
            while self.step_count < total:
                metrics = self.step()
                bar.update(1)
                bar.set_postfix(
                    reward=f"{metrics['reward/mean']:.3f}",
                    kl=f"{metrics.get('kl', 0.0):.4f}",
                    tok_s=f"{metrics['throughput/completion_tokens_per_s']:.0f}",
                )
        finally:
            bar.close()
            self.close()
        return self.history

    # -- observability -------------------------------------------------------------------------------

    def _metrics(
        self,
        batch: RolloutBatch,
        scored: RewardOutput,
        advantages: Tensor,
        update: dict[str, float],
        info: dict[str, Any],
        elapsed: float,
        rollout_time: float,
    ) -> dict[str, float]:
        mask = batch.completion_mask
        tokens = float(mask.sum())
        rewards = scored.rewards
        if self.accelerator is not None and self.world_size > 1:
            rewards = self.accelerator.gather(rewards)
        m: dict[str, float] = {
            "step": float(self.step_count),
            "reward/mean": float(rewards.mean()),
            "reward/std": float(rewards.std()) if rewards.numel() > 1 else 0.0,
            "completion/length": tokens / batch.batch_size,
            "advantage/mean": float(masked_mean(advantages.float(), mask)),
            "lr": float(self.scheduler.get_last_lr()[0]),
            "time/step_s": elapsed,
            "time/rollout_s": rollout_time,
            "throughput/completion_tokens_per_s": tokens * self.world_size / max(elapsed, 1e-9),
        }
        for name, values in scored.per_function.items():
            m[f"reward/{name}"] = float(values.mean())
        if batch.ref_logprobs is not None:
            m["kl"] = float(
                masked_mean(kl_estimate(batch.logprobs, batch.ref_logprobs, self.config.loss.kl_kind), mask)
            )
        for k, v in update.items():
            m[k] = float(v)
        for k, v in info.items():  # scalars as they are; tensors (e.g. candidate token counts) as means
            if isinstance(v, int | float) or (isinstance(v, Tensor) and v.numel() == 1):
                m[f"credit/{k}"] = float(v)
            elif isinstance(v, Tensor) and v.numel() > 1:
                m[f"credit/{k}_mean"] = float(v.float().mean())
        return m

    def _open_writers(self) -> None:
        self._writers_opened = True
        self._tb = None
        self._wandb = None
        if not (self.config.output_dir and self.is_main):
            return
        out = Path(self.config.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(_yaml_dump(config_to_dict(self.config)))
        if self.config.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(out / "tensorboard"))
            except ImportError:
                self._tb = None
        if self.config.wandb:
            try:
                import wandb

                self._wandb = wandb.init(config=config_to_dict(self.config), dir=str(out))
            except ImportError:
                self._wandb = None

    def _log(self, metrics: dict[str, float], batch: RolloutBatch, scored: RewardOutput) -> None:
        if not self._writers_opened:
            self._open_writers()
        if not (self.config.output_dir and self.is_main):
            return
        out = Path(self.config.output_dir)
        if self.step_count % self.config.log_every == 0:
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(metrics) + "\n")
            if self._tb is not None:
                for k, v in metrics.items():
                    self._tb.add_scalar(k, v, self.step_count)
            if self._wandb is not None:
                self._wandb.log(metrics, step=self.step_count)
        n = min(self.config.samples_per_step, batch.batch_size)
        if n:
            with open(out / "samples.txt", "a") as f:
                f.write(f"=== step {self.step_count}  mean reward {metrics['reward/mean']:.4f}\n")
                for b in range(n):
                    f.write(
                        f"--- prompt: {batch.prompts[b]!r}\n    completion: {batch.completions[b]!r}\n"
                        f"    reward: {float(scored.rewards[b]):.4f}\n"
                    )

    def close(self) -> None:
        """Close the TensorBoard writer (reopened on the next logged step)."""
        if getattr(self, "_tb", None) is not None:
            self._tb.close()
        self._writers_opened = False

    # -- checkpoints ---------------------------------------------------------------------------------

    def save(self) -> Path | None:
        """Checkpoint model(s), optimizer, scheduler, RNG states, step and data position (atomic)."""
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()
        if not self.is_main:
            return None
        objects: dict[str, Any] = {
            "policy": self.unwrapped_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
        }
        if self.critic is not None:
            objects["critic"] = self.unwrap(self.critic).state_dict()
        n = self.config.rollout.prompts_per_step * self.world_size
        state = {
            "step": self.step_count,
            "data_position": self.step_count * n,
            "config": config_to_dict(self.config),
        }
        return save_checkpoint(Path(self.config.output_dir) / "checkpoints", self.step_count, objects, state)

    def _load(self, path: Path) -> None:
        objects, state = load_checkpoint(path)
        self.unwrapped_model.load_state_dict(objects["policy"])
        if self.critic is not None:
            self.unwrap(self.critic).load_state_dict(objects["critic"])
        self.optimizer.load_state_dict(objects["optimizer"])
        self.scheduler.load_state_dict(objects["scheduler"])
        set_rng_state(objects["rng"])
        self.step_count = int(state["step"])
        metrics = Path(self.config.output_dir) / "metrics.jsonl"
        if metrics.exists() and self.is_main:  # drop lines logged after the checkpoint
            kept = [
                ln
                for ln in metrics.read_text().splitlines()
                if ln and json.loads(ln)["step"] <= self.step_count
            ]
            metrics.write_text("".join(ln + "\n" for ln in kept))
        samples = Path(self.config.output_dir) / "samples.txt"
        if samples.exists() and self.is_main:  # and the samples of those steps
            text = samples.read_text()
            cut = text.find(f"=== step {self.step_count + 1} ")
            if cut >= 0:
                samples.write_text(text[:cut])


def _yaml_dump(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)
