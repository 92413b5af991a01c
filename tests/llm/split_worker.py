"""Run by test_split_invariance.py under torchrun / accelerate launch: a few GRPO steps on a global batch
of ``--global-prompts`` prompts per step, split over however many processes were launched.

TEST-ONLY: the trainer's sampler is replaced by :class:`PromptSeededSampler`, which wraps the real one
but seeds each prompt's sampling from the prompt text and the step (not from the process), and cuts
each completion at a length chosen from (prompt, step, completion index). So a prompt gets the same
completions whichever process samples it, and a 2-process run learns from exactly the samples of a
1-process run with twice the prompts per process: the split-invariance test can compare them.

Rank 0 writes ``OUT/result.json`` (per-step loss averaged over processes, mean reward, ...) and
``OUT/params.pt`` (the full policy state dict, gathered under FSDP).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from credo.llm.config import load_config
from credo.llm.rollout import RolloutBatch, rollout_batch
from credo.llm.trainer import Trainer

PROMPTS = [
    "Letters: ",
    "Write letters: ",
    "Some letters: ",
    "Letters please: ",
    "More letters: ",
    "Letters again: ",
    "Type letters: ",
    "Give me letters: ",
]


class PromptSeededSampler:
    """Test-only sampler: the real sampler run on one prompt at a time, seeded from
    ``(prompt text, step)``; each completion then cut at a length drawn from the same seed (so that
    completion lengths differ and the token / sequence normalisers differ), and every row padded to
    the same widths (prompt: the longest prompt, completion: ``max_new_tokens``)."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.inner = trainer.sampler
        tok = trainer.tokenizer
        self.pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.prompt_width = max(len(tok(p, add_special_tokens=False)["input_ids"]) for p in PROMPTS)

    def sample(self, prompts: Sequence[str]) -> RolloutBatch:
        rc = self.trainer.config.rollout
        G, L, P = rc.group_size, rc.max_new_tokens, self.prompt_width
        rows: dict[str, list[torch.Tensor]] = {k: [] for k in ("pids", "pmask", "cids", "cmask", "logp")}
        for text in prompts:
            seed = zlib.crc32(f"{self.trainer.step_count}|{text}".encode())
            with torch.random.fork_rng(devices=[]):  # the step's own random stream is left as it was
                torch.manual_seed(seed)
                one = self.inner.sample([text])
                lengths = torch.randint(1, L + 1, (G,)).tolist()
            for j in range(G):
                pm = one.prompt_mask[j].bool()
                pids = one.prompt_ids[j][pm]
                rows["pids"].append(torch.cat([pids.new_full((P - len(pids),), self.pad), pids]))
                rows["pmask"].append(torch.arange(P) >= P - len(pids))
                n = min(lengths[j], int(one.completion_mask[j].sum()))  # cut (or keep an earlier EOS)
                cids = one.completion_ids[j].new_full((L,), self.pad)
                cids[:n] = one.completion_ids[j][:n]
                rows["cids"].append(cids)
                rows["cmask"].append(torch.arange(L) < n)
                logp = torch.zeros(L, dtype=one.logprobs.dtype)
                logp[:n] = one.logprobs[j][:n].cpu()
                rows["logp"].append(logp)
        device = self.trainer.device
        t = {k: torch.stack(v).to(device) for k, v in rows.items()}
        return rollout_batch(
            self.trainer.tokenizer, prompts, G, t["pids"], t["pmask"], t["cids"], t["cmask"], t["logp"]
        )


def char_reward(prompts: list[str], completions: list[str], **meta: Any) -> list[float]:
    """A reward that varies between completions (unlike the letters task's on an untrained model)."""
    return [sum(map(ord, c)) % 11 / 10.0 for c in completions]


def local_counts(mask: torch.Tensor, world_size: int) -> tuple[float, float]:
    """A per-process normaliser (this process's counts x world_size): the bug the test must catch."""
    return float(mask.sum()) * world_size, float(mask.shape[0]) * world_size


def full_state(trainer: Trainer) -> dict[str, torch.Tensor] | None:
    """The policy's full state dict on rank 0 (None elsewhere); a collective under FSDP."""
    accelerator = trainer.dist.accelerator
    if accelerator is not None:
        state = accelerator.get_state_dict(trainer.model)  # gathers FSDP shards (to rank 0)
    else:
        state = trainer.unwrapped_model.state_dict()
    return {k: v.detach().cpu().clone() for k, v in state.items()} if trainer.dist.is_main else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--aggregation", default="token_mean")
    parser.add_argument("--global-prompts", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--checkpoint-every", type=int, default=0)
    parser.add_argument("--die-after", type=int, default=0, help="SIGKILL every process after this step")
    parser.add_argument("--policy-loss", default="pg")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--local-normaliser", action="store_true", help="negative control")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    assert args.global_prompts % world == 0, "the global batch must split evenly over processes"
    config = load_config(
        None,
        [
            *("--model.hidden_size", "32", "--model.num_heads", "2", "--model.context_length", "64"),
            *("--rollout.group_size", "4", "--rollout.max_new_tokens", "6"),
            *("--rollout.prompts_per_step", str(args.global_prompts // world)),  # per process
            *("--loss.aggregation", args.aggregation, "--loss.policy_loss", args.policy_loss),
            *("--loss.epochs", str(args.epochs)),
            *("--optim.lr", "1e-3", "--optim.micro_batch_size", "3"),
            *("--steps", str(args.steps), "--progress", "false", "--output_dir", args.out),
            *("--checkpoint_every", str(args.checkpoint_every), "--device", "cpu"),
        ],
    )
    trainer = Trainer(config, reward_functions=char_reward, prompts=PROMPTS)
    trainer.warm_up()
    trainer.sampler = PromptSeededSampler(trainer)  # type: ignore[assignment]
    if args.local_normaliser:
        trainer.dist.global_counts = lambda mask: local_counts(mask, world)  # type: ignore[method-assign]
    start = trainer.step_count
    if args.die_after:
        trainer.train(args.die_after)
        trainer.dist.wait_for_everyone()
        os.kill(os.getpid(), signal.SIGKILL)  # a crash: no clean-up of any kind
    history = trainer.train()
    losses = torch.tensor([h["loss"] for h in history], dtype=torch.float64)
    # each process's logged loss is its share, scaled by world_size: the global loss is their mean
    all_losses = trainer.dist.gather(losses).reshape(trainer.dist.world_size, -1).mean(0)
    state = full_state(trainer)
    if trainer.dist.is_main:
        assert state is not None
        out = Path(args.out)
        torch.save(state, out / "params.pt")
        result: dict[str, Any] = {
            "world": trainer.dist.world_size,
            "start": start,
            "loss": all_losses.tolist(),
            "reward": [h["reward/mean"] for h in history],
            "grad_norm": [h.get("grad_norm", 0.0) for h in history],
            "distributed_type": str(getattr(trainer.dist.accelerator, "distributed_type", None)),
            "model_class": type(trainer.model).__name__,
        }
        (out / "result.json").write_text(json.dumps(result))
    trainer.dist.wait_for_everyone()


if __name__ == "__main__":
    main()
