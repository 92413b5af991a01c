"""Run by ``test_trl.py`` under ``torchrun`` (or alone, one process): two ``CredoGRPOTrainer`` steps with
``shape_grpo`` on a tiny model, CPU, gloo; each process saves what it saw to ``OUT/rank{r}.pt``.

The global generation batch is ``GLOBAL_BATCH`` completions whatever the number of processes (each process
takes ``GLOBAL_BATCH // world`` rows), in groups of ``G``: with two processes, one group's rows sit on both
processes. Generation is replaced by a sampler that depends only on the global row index and the step (not
on the process layout, nor on the weights), so a 1-process and a 2-process run see the same global batch.

Usage: ``torchrun --nproc_per_node 2 trl_ddp_worker.py OUT`` or ``python trl_ddp_worker.py OUT``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch

torch.set_num_threads(1)

import datasets  # noqa: E402
from trl import GRPOConfig  # noqa: E402
from trl_rewards import G, chunk_reward, length_reward  # noqa: E402  (beside this script)

from credo.integrations.trl import CredoGRPOTrainer  # noqa: E402
from credo.llm.tiny import build_char_tokenizer, build_tiny_model, tiny_model_config  # noqa: E402

GLOBAL_BATCH = 12  # three groups of four; with two processes, rows 4-5 and 6-7 of group 1 are split
LETTERS = "abcdefghijklmnopqrstuvwxyz"
MAX_COMPLETION = 8


def layout_free_generate(tokenizer: Any, process_index: int) -> Any:
    """A ``generate`` whose completion of global row ``r`` at call ``k`` depends only on ``(r, k)``: 3 to 8
    letters, then EOS (when shorter than the limit), then padding."""
    letter_ids = tokenizer.convert_tokens_to_ids(list(LETTERS))
    calls = [0]

    def generate(input_ids: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        B = input_ids.shape[0]
        out = torch.full((B, MAX_COMPLETION), tokenizer.pad_token_id, dtype=input_ids.dtype)
        for b in range(B):
            rng = torch.Generator().manual_seed(1000 * calls[0] + process_index * B + b)
            length = int(torch.randint(3, MAX_COMPLETION + 1, (1,), generator=rng))
            picks = torch.randint(len(letter_ids), (length,), generator=rng)
            out[b, :length] = torch.tensor([letter_ids[i] for i in picks.tolist()])
            if length < MAX_COMPLETION:
                out[b, length] = tokenizer.eos_token_id
        calls[0] += 1
        return torch.cat([input_ids, out.to(input_ids.device)], dim=1)

    return generate


def main(out_dir: str) -> None:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    tokenizer = build_char_tokenizer()
    model = build_tiny_model(
        tiny_model_config(vocab_size=len(tokenizer), hidden_size=32, num_heads=2), seed=0
    )
    dataset = datasets.Dataset.from_dict({"prompt": ["abc: ", "xyz: ", "List: ", "Go: ", "Up: ", "Hi: "]})
    args = GRPOConfig(
        output_dir=out_dir,
        per_device_train_batch_size=GLOBAL_BATCH // world,
        num_generations=G,
        max_completion_length=MAX_COMPLETION,
        max_steps=2,
        learning_rate=1e-3,
        reward_weights=[1.0, 0.5],
        use_cpu=True,
        bf16=False,
        ddp_backend="gloo" if world > 1 else None,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        seed=0,
    )
    trainer = CredoGRPOTrainer(
        model=model,
        reward_funcs=[chunk_reward, length_reward],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        credit_estimator="shape_grpo",
        credit_options={"normalize": "none"},
    )
    model.generate = layout_free_generate(tokenizer, trainer.accelerator.process_index)
    generated: list[dict[str, Any]] = []
    loss_inputs: list[dict[str, Any]] = []
    generate, compute_loss = trainer._generate_and_score_completions, trainer._compute_loss

    def record_generate(inputs: Any) -> dict[str, Any]:
        output = generate(inputs)
        generated.append({k: v.detach().cpu().clone() for k, v in output.items() if torch.is_tensor(v)})
        return output

    def record_loss(model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        loss_inputs.append({k: v.detach().cpu().clone() for k, v in inputs.items() if torch.is_tensor(v)})
        return compute_loss(model, inputs)

    trainer._generate_and_score_completions = record_generate
    trainer._compute_loss = record_loss
    trainer.train()
    rank = trainer.accelerator.process_index
    torch.save(
        {
            "rank": rank,
            "world": trainer.accelerator.num_processes,
            "steps": trainer.state.global_step,
            "generated": generated,
            "loss_inputs": loss_inputs,
        },
        os.path.join(out_dir, f"rank{rank}.pt"),
    )


if __name__ == "__main__":
    main(sys.argv[1])
