"""``credo generate MODEL --prompt TEXT [--prompt TEXT ...]``: sample completions from a trained model.

``MODEL`` is a Hugging Face model directory: the ``model/`` folder ``credo train`` leaves in its
``output_dir`` (credo's tiny model with its char tokenizer), or any causal LM saved with
``save_pretrained``. Each prompt gets ``--n`` completions, sampled as the trainer samples them
(:func:`credo.llm.rollout.sample_completions`), with a fixed ``--seed``.

``--rerank RM_DIR``: best-of-N with an outcome reward model saved by ``credo rm train``: the ``--n``
completions of each prompt are scored by the reward model and listed best first (N generator calls
and N reward-model calls per prompt).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from credo.cli.errors import UsageError
from credo.llm.config import resolve_device
from credo.llm.reward_model import load_reward_function
from credo.llm.rollout import sample_completions
from credo.llm.tiny import load_tokenizer


def pick_device(requested: str) -> torch.device:
    """``auto`` (CUDA when there is one), ``cpu``, ``cuda`` or ``cuda:N``; a UsageError naming a
    device this machine does not have (:func:`credo.llm.config.resolve_device`)."""
    try:
        return resolve_device(requested, key="--device")
    except ValueError as error:
        raise UsageError(str(error)) from None


def load_model_dir(path: str | Path, device: str = "auto") -> tuple[Any, Any]:
    """The causal LM and tokenizer saved in directory ``path`` (in eval mode, on ``device``); a
    UsageError when ``path`` is not a model directory."""
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not (path / "config.json").is_file():
        raise UsageError(
            f"{path}: not a model directory (no config.json; give OUTPUT_DIR/model of a credo train run)"
        )
    torch_device = pick_device(device)
    try:
        tokenizer = load_tokenizer(path)
        model = AutoModelForCausalLM.from_pretrained(str(path))
    except (OSError, ValueError) as error:
        raise UsageError(f"{path}: {' '.join(str(error).split())}") from None
    model.to(torch_device).eval()
    return model, tokenizer


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "generate",
        help="sample completions of prompts from a trained model directory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="a model directory (OUTPUT_DIR/model of a credo train run)")
    parser.add_argument("--prompt", action="append", required=True, help="a prompt (repeat for several)")
    parser.add_argument("--n", type=int, default=4, help="completions per prompt (default 4)")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="tokens per completion (default 48)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the sampling (default 0)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument(
        "--rerank", metavar="RM_DIR", help="rank each prompt's completions by this reward model (best-of-N)"
    )
    parser.set_defaults(func=run)


def check_sampling(n: int, max_new_tokens: int, temperature: float) -> None:
    """A UsageError naming the flag when a sampling setting is out of range."""
    if n < 1:
        raise UsageError(f"--n must be >= 1, got {n}")
    if max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens must be >= 1, got {max_new_tokens}")
    if not temperature > 0:
        raise UsageError(f"--temperature must be > 0, got {temperature}")


def run(args: argparse.Namespace) -> int:
    check_sampling(args.n, args.max_new_tokens, args.temperature)
    model, tokenizer = load_model_dir(args.model, args.device)
    torch.manual_seed(args.seed)
    with torch.no_grad():
        batch = sample_completions(
            model, tokenizer, args.prompt, args.n, args.max_new_tokens, args.temperature
        )
    scores = rerank_scores(args.rerank, args.prompt, batch.completions, args.n)
    for i, prompt in enumerate(args.prompt):
        print(f"prompt: {prompt!r}")
        rows = list(range(i * args.n, (i + 1) * args.n))
        if scores is not None:  # best first
            rows.sort(key=lambda r: -scores[r])
        for rank, row in enumerate(rows):
            score = (
                "" if scores is None else f"  reward {scores[row]:+.4f}" + ("  <- best" if rank == 0 else "")
            )
            print(f"  [{rank + 1}] {batch.completions[row]!r}{score}")
    return 0


def rerank_scores(
    rm_dir: str | None, prompts: list[str], completions: list[str], n: int
) -> list[float] | None:
    """The reward model's score of every completion (rows prompt-major), or None without ``--rerank``."""
    if rm_dir is None:
        return None
    if not Path(rm_dir).is_dir():
        raise UsageError(f"--rerank {rm_dir!r}: not a reward-model directory (credo rm train's output)")
    try:
        reward = load_reward_function(rm_dir)
    except (OSError, ValueError, KeyError) as error:
        raise UsageError(f"--rerank {rm_dir!r}: {' '.join(str(error).split())}") from None
    return [float(x) for x in reward([p for p in prompts for _ in range(n)], list(completions))]
