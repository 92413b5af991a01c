"""What a run records: each step's metrics, and where they go.

* :class:`UpdateStats`: the update's statistics, summed over its micro-batches and optimizer steps;
* :func:`step_metrics`: the step's metrics dict (rewards, lengths, advantages, KL, losses, credit info);
* :class:`RunLog`: ``output_dir/metrics.jsonl`` (every ``log_every`` steps), TensorBoard and W&B when
  installed and asked for, ``samples.txt`` (a few completions per step), ``config.yaml``; written by
  the main process only. On resume, :meth:`RunLog.trim` drops what was logged after the checkpoint;
  a fresh run into a used ``output_dir`` moves the old logs to ``*.old`` (:meth:`RunLog.start_fresh`),
  so that no log contradicts the run. What the run says about itself (resuming, a forced resume's
  config differences, a fresh start) goes to ``run.log`` (:meth:`RunLog.note`).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import yaml
from torch import Tensor

from credo.credit import kl_estimate, masked_mean
from credo.llm.config import TrainConfig, config_to_dict
from credo.llm.rewards import RewardOutput
from credo.llm.rollout import RolloutBatch


class UpdateStats:
    """Statistics of one update: losses (``*_loss``) and gradient norms are summed per optimizer step
    (over its micro-batches) and averaged over optimizer steps; the other micro-batch statistics
    (clip fraction, entropy) are averaged over micro-batches."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.means: dict[str, float] = {}
        self.optimizer_steps = 0
        self.micro_steps = 0

    def add_micro_batch(self, stats: dict[str, Tensor]) -> None:
        for k, v in stats.items():
            target = self.totals if k.endswith("_loss") else self.means
            target[k] = target.get(k, 0.0) + float(v)
        self.micro_steps += 1

    def add_optimizer_step(self, grad_norm: float) -> None:
        self.totals["grad_norm"] = self.totals.get("grad_norm", 0.0) + grad_norm
        self.optimizer_steps += 1

    def result(self, value_coef: float) -> dict[str, float]:
        """Per-optimizer-step losses and gradient norm, per-micro-batch means, and ``loss`` (policy
        loss + ``value_coef`` x value loss)."""
        result = {k: v / self.optimizer_steps for k, v in self.totals.items()}
        result.update({k: v / self.micro_steps for k, v in self.means.items()})
        result["loss"] = result.get("policy_loss", 0.0) + value_coef * result.get("value_loss", 0.0)
        return result


class PhaseClock:
    """Wall time of a training step and of its phases: ``mark(name)`` closes the phase that began at
    the previous mark (or at construction). Host time: GPU work queued in one phase may finish in the
    next one, at its first synchronisation (the rollout's decoding, the update's gradient norm)."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.phases: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = self.phases.get(name, 0.0) + now - self.last
        self.last = now

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def step_metrics(
    step: int,
    batch: RolloutBatch,
    scored: RewardOutput,
    all_rewards: Tensor,
    advantages: Tensor,
    update: dict[str, float],
    info: dict[str, Any],
    lr: float,
    kl_kind: str,
    clock: PhaseClock,
    world_size: int,
) -> dict[str, float]:
    """The metrics of training step ``step`` (``all_rewards``: the rewards of every process), with
    ``time/step_s`` and ``time/<phase>_s`` for each phase ``clock`` marked."""
    elapsed = clock.elapsed()
    mask = batch.completion_mask
    tokens = float(mask.sum())
    m: dict[str, float] = {
        "step": float(step),
        "reward/mean": float(all_rewards.mean()),
        "reward/std": float(all_rewards.std()) if all_rewards.numel() > 1 else 0.0,
        "completion/length": tokens / batch.batch_size,
        "advantage/mean": float(masked_mean(advantages.float(), mask)),
        "lr": lr,
        "time/step_s": elapsed,
        **{f"time/{name}_s": seconds for name, seconds in clock.phases.items()},
        "throughput/completion_tokens_per_s": tokens * world_size / max(elapsed, 1e-9),
    }
    for name, values in scored.per_function.items():
        m[f"reward/{name}"] = float(values.mean())
    if batch.ref_logprobs is not None:
        m["kl"] = float(masked_mean(kl_estimate(batch.logprobs, batch.ref_logprobs, kl_kind), mask))
    for k, v in update.items():
        m[k] = float(v)
    for k, v in info.items():  # scalars as they are; tensors (e.g. candidate token counts) as means
        if isinstance(v, int | float) or (isinstance(v, Tensor) and v.numel() == 1):
            m[f"credit/{k}"] = float(v)
        elif isinstance(v, Tensor) and v.numel() > 1:
            m[f"credit/{k}_mean"] = float(v.float().mean())
    return m


class RunLog:
    """The run's files and metric writers under ``config.output_dir`` (nothing without one, or on a
    process other than the main one). Writers open on the first logged step."""

    def __init__(self, config: TrainConfig, is_main: bool) -> None:
        self.config = config
        self.out = Path(config.output_dir) if config.output_dir and is_main else None
        self.is_main = is_main
        self._opened = False
        self._tb: Any = None
        self._wandb: Any = None

    def _open(self) -> None:
        self._opened = True
        self._tb = self._wandb = None
        if self.out is None:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.yaml").write_text(yaml.safe_dump(config_to_dict(self.config), sort_keys=False))
        if self.config.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.out / "tensorboard"))
            except ImportError:
                self._tb = None
        if self.config.wandb:
            try:
                import wandb

                self._wandb = wandb.init(config=config_to_dict(self.config), dir=str(self.out))
            except ImportError:
                self._wandb = None

    def write(self, step: int, metrics: dict[str, float], batch: RolloutBatch, scored: RewardOutput) -> None:
        """Log step ``step``'s metrics (every ``log_every`` steps) and its first completions."""
        if not self._opened:
            self._open()
        if self.out is None:
            return
        if step % self.config.log_every == 0:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(metrics) + "\n")
            if self._tb is not None:
                for k, v in metrics.items():
                    self._tb.add_scalar(k, v, step)
            if self._wandb is not None:
                self._wandb.log(metrics, step=step)
        n = min(self.config.samples_per_step, batch.batch_size)
        if n:
            with open(self.out / "samples.txt", "a") as f:
                f.write(f"=== step {step}  mean reward {metrics['reward/mean']:.4f}\n")
                for b in range(n):
                    f.write(
                        f"--- prompt: {batch.prompts[b]!r}\n    completion: {batch.completions[b]!r}\n"
                        f"    reward: {float(scored.rewards[b]):.4f}\n"
                    )

    def note(self, message: str) -> None:
        """Print ``message`` (main process only) and append it to ``output_dir/run.log``."""
        if not self.is_main:
            return
        print(f"credo: {message}", flush=True)
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            with open(self.out / "run.log", "a") as f:
                f.write(message + "\n")

    def start_fresh(self, checkpoints: bool = False) -> list[str]:
        """A run that starts at step 0: move the logs of an earlier run in ``output_dir``
        (``metrics.jsonl``, ``samples.txt``, and ``checkpoints/`` if ``checkpoints``) to ``*.old``
        (replacing older ones), so that no row is duplicated. Returns the names moved."""
        if self.out is None:
            return []
        moved = []
        for name in ("metrics.jsonl", "samples.txt") + (("checkpoints",) if checkpoints else ()):
            path = self.out / name
            if path.exists():
                old = path.with_name(name + ".old")
                if old.is_dir():
                    shutil.rmtree(old)
                path.replace(old)
                moved.append(name)
        return moved

    def trim(self, step: int) -> None:
        """Drop the metrics and samples logged after step ``step`` (a run resumed from its checkpoint)."""
        if self.out is None:
            return
        metrics = self.out / "metrics.jsonl"
        if metrics.exists():
            kept = [ln for ln in metrics.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
            metrics.write_text("".join(ln + "\n" for ln in kept))
        samples = self.out / "samples.txt"
        if samples.exists():
            text = samples.read_text()
            cut = text.find(f"=== step {step + 1} ")
            if cut >= 0:
                samples.write_text(text[:cut])

    def close(self) -> None:
        """Close the TensorBoard writer (reopened on the next logged step)."""
        if self._tb is not None:
            self._tb.close()
        self._opened = False
