"""The policy-gradient trainer with pluggable credit, on any Hugging Face causal LM.

:meth:`Trainer.step` is one training step, top to bottom in one function:

1. sample G completions of each of this step's N prompts (a seeded permutation per pass over the
   prompts: resumable), recording the policy's per-token log-probs as it samples
   (``logprobs = log pi_old``, never recomputed while the policy has not changed);
2. reference log-probs (if ``kl_beta > 0``) and 3. critic values (if the estimator needs them), from
   the frozen models;
4. rewards: the reward functions (completion, candidate and per-step rewards, weighted); the KL
   penalty ``-beta k(logp, ref)`` joins them as per-token rewards when ``kl_mode == "reward"``;
5. credit: ``credo.credit.compute_credit(estimator, credit_batch(...))`` -> token advantages ``[B, L]``
   (and value targets for ``gae``). The trainer never branches on the estimator's name, only on what
   its :class:`~credo.credit.EstimatorSpec` requires;
6. update: ``epochs`` passes x ``mini_batches`` optimizer steps, each over micro-batches with
   gradient accumulation (:func:`micro_batch_loss`); the loss normaliser is the whole mini-batch's,
   global over processes, so splitting into micro-batches does not change the gradient; gradient
   clipping; AdamW; LR schedule;
7. metrics and logs (:mod:`~credo.llm.run_log`), checkpoint every N steps.

Set-up lives beside it: :mod:`~credo.llm.models` (precision, policy, reference, optimizer),
:mod:`~credo.llm.critic`, :mod:`~credo.llm.sampler` (HF or vLLM, chosen once),
:mod:`~credo.llm.prompts`, :mod:`~credo.llm.distributed`. The SFT warm-up is an explicit call,
:meth:`Trainer.warm_up` (:meth:`Trainer.train` makes it). Set-valued tasks of ``credo.tasks`` are
wired in by ``credo.cli.wiring.build_trainer``; this package never imports them.

Runs single-process, or under ``accelerate launch`` (DDP / FSDP) with no code change: each process
takes whole prompts (so groups stay on one process) and the loss normalisers are global.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from credo.credit import (
    CreditResult,
    compute_credit,
    get_estimator,
    kl_reward_penalty,
)
from credo.llm.checkpoint import rng_state, save_checkpoint, set_rng_state
from credo.llm.config import TrainConfig, config_to_dict, validate_config
from credo.llm.critic import ValueModel, critic_values, make_critic
from credo.llm.distributed import Distributed
from credo.llm.losses import batch_normalizer, micro_batch_loss
from credo.llm.models import (
    attention_kernels,
    autocast,
    check_estimator_needs,
    compile_run_layers,
    enable_gradient_checkpointing,
    find_checkpoint,
    keep_lora_base,
    load_policy,
    load_policy_state,
    lora_base,
    make_optimizer,
    make_reference,
    make_scheduler,
    pick_precision,
    policy_state,
    restart_lora,
    seed_everything,
    step_seed,
)
from credo.llm.prompts import (
    Prompt,
    PromptOrder,
    check_prompt_lengths,
    prompt_meta,
    prompt_text,
    resolve_prompts,
)
from credo.llm.rewards import (
    RewardOutput,
    WeightedReward,
    as_weighted_rewards,
    compute_rewards,
    credit_batch,
    resolve_callable,
)
from credo.llm.rollout import (
    RolloutBatch,
    sequence_logprobs,
)
from credo.llm.run_log import PhaseClock, RunLog, UpdateStats, step_metrics
from credo.llm.sampler import check_backend, make_sampler
from credo.llm.sft import sft_warmup
from credo.llm.tiny import context_length


@dataclass
class Experience:
    """What the last step learned from: its rollout, rewards and credit (kept for inspection)."""

    batch: RolloutBatch
    rewards: RewardOutput
    credit: CreditResult


# ----------------------------------------------------------------------------------------------------
# Resuming

RESUME_KEYS = ("model", "task", "rollout", "credit", "loss", "optim", "critic", "seed", "precision")
"""The config keys (sections) a resumed run must share with its checkpoint; the others (steps, logging,
paths, progress, device) may change between the runs."""


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}"))
        return out
    if isinstance(value, str):  # a callable stored as its repr: its address differs between runs
        value = re.sub(r" at 0x[0-9a-fA-F]+", "", value)
    return {prefix: value}


def resume_differences(saved: dict[str, Any] | None, config: TrainConfig) -> list[str]:
    """``config key 'optim.lr': checkpoint has 0.001, this run has 0.0003`` for each key of
    :data:`RESUME_KEYS` where the checkpoint's saved config (``None``: an old checkpoint without
    one, nothing to compare) and ``config`` differ."""
    if not saved:
        return []
    current = json.loads(json.dumps(config_to_dict(config), default=str))  # as the checkpoint stored it
    old, new = {}, {}
    for key in RESUME_KEYS:
        old.update(_flatten(saved.get(key), key))
        new.update(_flatten(current.get(key), key))
    missing = object()
    return [
        f"config key {key!r}: checkpoint has {old.get(key)!r}, this run has {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key, missing) != new.get(key, missing)
    ]


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
    the reward functions and critic, prompt lengths against the context (the config's own checks ran
    when it was loaded). The constructor loads the policy and, when resuming, the checkpoint; it does
    not train. When an SFT warm-up is due (``sft.steps > 0``, no checkpoint), :meth:`warm_up` runs
    it and then builds what starts from the warmed-up policy (reference, critic, optimizer, sampler);
    :meth:`train` calls it first.
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
        if config.task.set_task is not None and reward_functions is None:
            raise ValueError(
                f"task.set_task={config.task.set_task!r}: set tasks are wired into the trainer by "
                "credo.cli.wiring.build_trainer (or `credo train`), which passes the task's prompts, "
                "reward function and SFT pairs"
            )
        if reward_functions is None:
            reward_functions = list(config.task.rewards) or None
        self.reward_fns: list[WeightedReward] = as_weighted_rewards(reward_functions)
        check_estimator_needs(self.spec, self.reward_fns, config.loss)
        check_backend(config.rollout.backend)
        self.prompts = resolve_prompts(prompts if prompts is not None else config.task.prompts)
        self.dist = Distributed.create(config.device)
        self.device = self.dist.device(config.device)
        seed_everything(config.seed)
        self.precision = pick_precision(config.precision, self.device)
        self.model, self.tokenizer = load_policy(config.model, self.device, self.precision, model, tokenizer)
        check_prompt_lengths(
            self.prompts, self.tokenizer, context_length(self.model), config.rollout.max_new_tokens
        )
        self.prompt_order = PromptOrder(
            self.prompts, config.seed, config.rollout.prompts_per_step, self.dist.rank, self.dist.world_size
        )
        self.step_count = 0
        self.history: list[dict[str, float]] = []
        self.run_log = RunLog(config, self.dist.is_main)
        self.last_experience: Experience | None = None
        self.reference: Any = None
        self.critic: ValueModel | None = None
        self.sft_pairs: list[tuple[str, str]] = []  # the warm-up's, when one is due
        checkpoint = find_checkpoint(config.output_dir, config.resume)
        self.resumed_from: Path | None = None
        if checkpoint is not None:
            self._check_resume(checkpoint[0], checkpoint[2])
        else:
            moved = self.run_log.start_fresh(checkpoints=config.resume is False)
            if moved:
                self.run_log.note(
                    f"starting a fresh run in {config.output_dir}: moved the earlier run's "
                    f"{', '.join(moved)} to {', '.join(m + '.old' for m in moved)}"
                )
        self.warm_up_due = checkpoint is None and config.sft.steps > 0
        if self.warm_up_due:  # the pairs are read now, so that a bad import path fails before training
            if sft_pairs is None and config.task.sft_pairs is None:
                raise ValueError("sft.steps > 0 needs SFT pairs: pass sft_pairs=... or set task.sft_pairs")
            self.sft_pairs = list(
                sft_pairs if sft_pairs is not None else resolve_callable(config.task.sft_pairs)()
            )
        else:
            self._build(checkpoint)

    def warm_up(self) -> None:
        """The supervised warm-up (``config.sft``) when due, then the parts that start from its weights:
        the frozen reference, the critic (a ``separate`` one copies the policy's backbone), the
        optimizer, the sampler. Does nothing when no warm-up is due or it has run."""
        if not self.warm_up_due:
            return
        sc = self.config.sft
        with self.autocast():
            sft_warmup(
                self.model, self.tokenizer, self.sft_pairs, sc.steps, sc.lr, sc.batch_size, self.config.seed,
                progress=self.config.progress and self.dist.is_main,
            )  # fmt: skip
        self._build(checkpoint=None)

    def _build(self, checkpoint: tuple[Path, dict[str, Any], dict[str, Any]] | None) -> None:
        """Reference, critic, optimizer and schedule, the process group's wrappers, the sampler; then
        the checkpoint's state, when resuming. With LoRA (``model.lora``), adapters trained by the
        warm-up are merged into the base first, so that the reference is the warmed-up policy."""
        cfg = self.config
        warmed_up = self.warm_up_due  # called by warm_up(), after the SFT steps
        if warmed_up:
            self.model = restart_lora(self.model, cfg.model.lora)
        keep_lora_base(
            self.model, cfg.output_dir, checkpoint is not None, self.dist.is_main, self.device, warmed_up
        )
        if cfg.loss.kl_beta > 0:
            self.reference = make_reference(
                self.model, cfg.output_dir, checkpoint is not None, self.dist.is_main, self.device
            )
        if "values" in self.spec.requires:
            self.critic = make_critic(lora_base(self.model), cfg.critic.mode, self.device)
        self.optimizer = make_optimizer(self.model, self.critic, cfg, self.device)
        self.scheduler = make_scheduler(self.optimizer, cfg)
        if cfg.compile_layers:  # after the reference and critic copies; checkpoints inside the compile
            compile_run_layers(self.model, self.reference, self.critic, cfg.gradient_checkpointing)
        elif cfg.gradient_checkpointing:
            enable_gradient_checkpointing(self.model)
        if self.critic is not None:
            self.model, self.critic, self.optimizer = self.dist.prepare(
                self.model, self.critic, self.optimizer
            )
        else:
            self.model, self.optimizer = self.dist.prepare(self.model, self.optimizer)
        self.sampler = make_sampler(cfg, self.model, self.tokenizer, self.precision, self.device, self.dist)
        self.warm_up_due = False
        if checkpoint is not None:
            self._load(checkpoint)

    @property
    def unwrapped_model(self) -> Any:
        return self.dist.unwrap(self.model)

    def autocast(self) -> Any:
        """bf16 autocast for ``bf16-mixed``, nothing otherwise."""
        return autocast(self.precision, self.device)

    def prompts_for_step(self, step: int) -> list[Prompt]:
        """This process's prompts of training step ``step`` (see :class:`~credo.llm.prompts.PromptOrder`)."""
        return self.prompt_order.for_step(step)

    # -- one training step ---------------------------------------------------------------------------

    def step(self) -> dict[str, float]:
        """One training step: sample, score, reward, credit, update, log, checkpoint."""
        if self.warm_up_due:
            raise RuntimeError("the SFT warm-up is due: call trainer.warm_up() before step() (train() does)")
        cfg, lc, oc = self.config, self.config.loss, self.config.optim
        # flash / memory-efficient / math attention, not cuDNN's (a plan per new shape: see
        # credo.llm.models.attention_kernels), for every pass of the step, backward included
        with attention_kernels(self.device):
            clock = PhaseClock()  # time/step_s and time/{rollout,score,update}_s in the metrics
            # 0. this step's random stream: a function of (seed, step, process), so a resumed run samples
            #    exactly what the uninterrupted one did, and processes draw different samples
            seed_everything(step_seed(cfg.seed, self.step_count, self.dist.rank))

            # 1. sample G completions per prompt; the batch records log pi_old
            prompts = self.prompts_for_step(self.step_count)
            batch = self.sampler.sample([prompt_text(p) for p in prompts])
            batch.meta = prompt_meta(prompts, cfg.rollout.group_size)  # dict prompts' fields, per completion
            clock.mark("rollout")

            # 2. reference log-probs (for the KL) and 3. critic values, without gradients
            with torch.no_grad():
                if self.reference is not None:
                    batch.ref_logprobs = sequence_logprobs(
                        self.reference, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                        batch.completion_mask, cfg.rollout.temperature, oc.micro_batch_size, self.autocast,
                    )  # fmt: skip
                if self.critic is not None:
                    critic, policy = self.dist.unwrap(self.critic), self.unwrapped_model
                    batch.values = critic_values(critic, policy, batch, oc.micro_batch_size, self.autocast)

            # 4. rewards; the KL penalty -beta k(logp, ref) as per-token rewards when kl_mode == "reward"
            scored = compute_rewards(self.reward_fns, batch, self.tokenizer)
            token_rewards = scored.token_rewards
            if lc.kl_beta > 0 and lc.kl_mode == "reward":
                penalty = kl_reward_penalty(batch.logprobs, batch.ref_logprobs, lc.kl_beta, lc.kl_kind)
                token_rewards = penalty if token_rewards is None else token_rewards + penalty

            # 5. credit: token advantages [B, L] (and value targets) from the registry's estimator
            credit = compute_credit(
                cfg.credit.estimator,
                credit_batch(scored, batch, token_rewards, batch.values),
                **cfg.credit.options,
            )
            self.last_experience = Experience(batch, scored, credit)
            advantages, returns = credit.advantages.float(), credit.returns
            clock.mark("score")  # reference, critic, rewards and credit

            # 6. update: epochs x mini-batches optimizer steps, each accumulating its micro-batches'
            #    gradients; the normaliser is the mini-batch's (global over processes)
            stats = UpdateStats()
            lengths = batch.completion_mask.sum(dim=1)
            for _ in range(lc.epochs):
                shuffle = lc.epochs > 1 or oc.mini_batches > 1
                order = torch.randperm(batch.batch_size) if shuffle else torch.arange(batch.batch_size)
                for rows in order.to(self.device).chunk(oc.mini_batches):
                    # longest completions first: micro-batches of similar lengths trim more padding
                    mini = rows[lengths[rows].argsort(descending=True, stable=True)]
                    mask = batch.completion_mask[mini]
                    counts = self.dist.global_counts(mask)
                    normalizer = batch_normalizer(lc.aggregation, mask, self.dist.world_size, *counts)
                    self.optimizer.zero_grad(set_to_none=True)
                    micro = list(mini.split(oc.micro_batch_size))
                    for i, idx in enumerate(micro):
                        with self.dist.no_sync(self.model, last=i == len(micro) - 1):
                            with self.autocast():
                                loss, micro_stats = micro_batch_loss(
                                    self.model, batch.rows(idx), advantages[idx],
                                    None if returns is None else returns[idx], normalizer, cfg, self.critic,
                                )  # fmt: skip
                            self.dist.backward(loss)
                        stats.add_micro_batch(micro_stats)
                    grad_norm = self.dist.clip_grad_norm(self.optimizer, oc.max_grad_norm)
                    self.optimizer.step()
                    stats.add_optimizer_step(grad_norm)
            self.scheduler.step()
            self.step_count += 1
            clock.mark("update")

            # 7. metrics, logs, samples, checkpoint
            metrics = self._metrics(batch, scored, credit, stats.result(lc.value_coef), clock)
            self.history.append(metrics)
            self.run_log.write(self.step_count, metrics, batch, scored)
            if cfg.checkpoint_every and self.step_count % cfg.checkpoint_every == 0:
                self.save()
            return metrics

    def _metrics(
        self, batch: RolloutBatch, scored: RewardOutput, credit: CreditResult, update: dict[str, float],
        clock: PhaseClock,
    ) -> dict[str, float]:  # fmt: skip
        lr = float(self.scheduler.get_last_lr()[0])
        return step_metrics(
            self.step_count, batch, scored, self.dist.gather(scored.rewards), credit.advantages, update,
            credit.info, lr, self.config.loss.kl_kind, clock, self.dist.world_size,
        )  # fmt: skip

    # -- the loop ------------------------------------------------------------------------------------

    def train(self, steps: int | None = None) -> list[dict[str, float]]:
        """The SFT warm-up if due, then training steps until ``steps`` (default ``config.steps``) are
        done in total."""
        self.warm_up()
        total = self.config.steps if steps is None else steps
        if self.resumed_from is not None and self.step_count >= total:
            self.run_log.note(f"run already finished at step {self.step_count}; raise steps to continue")
        bar = tqdm(
            total=total,
            initial=self.step_count,
            desc="train",
            disable=not (self.config.progress and self.dist.is_main),
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

    def close(self) -> None:
        """Close the TensorBoard writer (reopened on the next logged step)."""
        self.run_log.close()

    # -- checkpoints ---------------------------------------------------------------------------------

    def save(self) -> Path | None:
        """Checkpoint model(s), optimizer, scheduler, RNG states, step and data position (atomic)."""
        self.dist.wait_for_everyone()
        if not self.dist.is_main:
            return None
        objects: dict[str, Any] = {
            "policy": policy_state(self.unwrapped_model),  # with LoRA: the adapters
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
        }
        if self.critic is not None:
            objects["critic"] = self.dist.unwrap(self.critic).state_dict()
        n = self.config.rollout.prompts_per_step * self.dist.world_size
        state = {
            "step": self.step_count,
            "data_position": self.step_count * n,
            "config": config_to_dict(self.config),
        }
        return save_checkpoint(Path(self.config.output_dir) / "checkpoints", self.step_count, objects, state)

    def _check_resume(self, path: Path, state: dict[str, Any]) -> None:
        """Say where the run resumes; refuse (a ValueError naming the keys) when the checkpoint's config
        differs from this one in what matters, unless ``resume: force``, which logs the differences."""
        differences = resume_differences(state.get("config"), self.config)
        step = int(state["step"])
        if differences and self.config.resume != "force":
            raise ValueError(
                f"cannot resume from checkpoint {str(path)!r}: "
                + "; ".join(differences)
                + "; pass resume: force (or --resume force) to resume anyway"
            )
        self.run_log.note(f"resuming from step {step} (checkpoint {path})")
        for difference in differences:
            self.run_log.note(f"resume: force: {difference}; using this run's value")
        self.resumed_from = path

    def _load(self, checkpoint: tuple[Path, dict[str, Any], dict[str, Any]]) -> None:
        _, objects, state = checkpoint
        load_policy_state(self.unwrapped_model, objects["policy"])
        if self.critic is not None:
            self.dist.unwrap(self.critic).load_state_dict(objects["critic"])
        fresh_groups = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        fresh_base_lrs = list(self.scheduler.base_lrs)
        self.optimizer.load_state_dict(objects["optimizer"])
        self.scheduler.load_state_dict(objects["scheduler"])
        if self.config.resume == "force":  # this run's optimizer settings and lr, not the checkpoint's
            groups = self.optimizer.param_groups
            for group, fresh in zip(groups, fresh_groups, strict=True):
                group.update(fresh)
            self.scheduler.base_lrs = fresh_base_lrs
            for group, factor, base in zip(groups, self.scheduler.lr_lambdas, fresh_base_lrs, strict=True):
                group["lr"] = base * factor(self.scheduler.last_epoch)
            self.scheduler._last_lr = [group["lr"] for group in groups]
        set_rng_state(objects["rng"])
        self.step_count = int(state["step"])
        self.run_log.trim(self.step_count)  # drop what was logged after the checkpoint
