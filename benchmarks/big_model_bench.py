"""How big a model credo's GRPO trainer fits on one GPU: Qwen2 shapes built from configs (random
weights, nothing downloaded), full fine-tuning and LoRA, one process per shape.

Each shape runs GRPO at the speed benchmark's anchor batch (8 prompts x 8 completions x 256 new
tokens, bf16, k3 KL with beta 0.04, gradient checkpointing, micro-batches of 16) for ``--warmup``
then ``--steps`` steps, and reports completion tokens/s and peak GPU memory, or "OOM". Full
fine-tuning holds the policy, its gradients, AdamW's two moments (all bf16, the weights' dtype) and
a frozen bf16 reference: about 10 bytes per parameter before activations, so about 14B parameters is
the ceiling of a 141 GB H200. LoRA (``--lora R``, through peft) trains rank-R adapters on every
linear layer; the reference is the same network with its adapters disabled (no second copy).

The vocabulary is the benchmark's byte vocabulary (about 100 tokens), so the parameter counts below
are the transformer's alone: a real Qwen2.5-7B adds 1.1B embedding parameters (152k x 3584, tied).

    python benchmarks/big_model_bench.py --shapes 1.5B,7B,14B
    python benchmarks/big_model_bench.py --shapes 7B,14B,32B --lora 16
    python benchmarks/big_model_bench.py --shapes 7B --peer-trl     # TRL's GRPOTrainer on the same shape

``--peer-trl`` saves the shape to disk and runs TRL 1.16's GRPOTrainer on it with the same settings
(``benchmarks/trainer_bench.py``'s setup) in its own process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from trainer_bench import byte_tokenizer, credo_reward, prompts, qwen2_config, run_trl  # the anchor's pieces


def _shape(hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int) -> dict[str, int]:
    return {
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
    }


# Qwen2 / Qwen2.5 shapes (trainer_bench.qwen2_config builds them over the byte vocabulary)
SHAPES: dict[str, dict[str, int]] = {
    "0.5B": _shape(896, 4864, 24, 14, 2),  # trainer_bench.py's anchor
    "1.5B": _shape(1536, 8960, 28, 12, 2),
    "3B": _shape(2048, 11008, 36, 16, 2),
    "7B": _shape(3584, 18944, 28, 28, 4),
    "10B": _shape(4096, 14336, 44, 32, 8),
    "14B": _shape(5120, 13824, 48, 40, 8),
    "32B": _shape(5120, 27648, 64, 40, 8),
}


def build_on_gpu(shape: str) -> tuple[Any, Any]:
    """The shape's model with random weights, created directly on the GPU in bf16, and the tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    tok = byte_tokenizer()
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(qwen2_config(SHAPES[shape], tok), dtype=torch.bfloat16)
    return model, tok


def trainer_config(args: argparse.Namespace) -> Any:
    from credo.llm.config import config_from_dict

    model: dict[str, Any] = {}
    if args.lora:
        model["lora"] = {"r": args.lora, "alpha": 2 * args.lora}
    return config_from_dict(
        {
            "model": model,
            "rollout": {
                "backend": args.backend,
                "group_size": args.group_size,
                "prompts_per_step": args.prompts,
                "max_new_tokens": args.new_tokens,
                "static_cache": args.backend == "hf",
                "compile_decode": args.compile_decode,
                "pad_to_multiple_of": 16,
            },
            "credit": {"estimator": "grpo"},
            "loss": {"aggregation": "token_mean", "kl_beta": args.beta, "kl_mode": "loss", "kl_kind": "k3"},
            "optim": {"lr": 1e-6, "micro_batch_size": args.micro_batch, "max_grad_norm": 1.0},
            "precision": "bf16",
            "gradient_checkpointing": True,
            "compile_layers": args.compile_layers,
            "device": "cuda",
            "steps": args.warmup + args.steps,
            "seed": 0,
            "progress": False,
        }
    )


def run_shape(shape: str, args: argparse.Namespace) -> dict[str, Any]:
    """One shape in this process: credo's GRPO steps, or OOM."""
    import torch

    from credo.llm.trainer import Trainer

    model, tok = build_on_gpu(shape)
    params = sum(p.numel() for p in model.parameters())
    try:
        trainer = Trainer(
            trainer_config(args),
            reward_functions=credo_reward,
            prompts=prompts(args.prompts * 10),
            model=model,
            tokenizer=tok,
        )
        del model
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        times = []
        for i in range(args.warmup + args.steps):
            if i == args.warmup:
                torch.cuda.reset_peak_memory_stats()
            torch.cuda.synchronize()
            start = time.perf_counter()
            trainer.step()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    except torch.cuda.OutOfMemoryError as error:
        return {"shape": shape, "params": params, "result": "OOM", "detail": str(error).splitlines()[0]}
    step = sorted(times[args.warmup :])[len(times[args.warmup :]) // 2]
    return {
        "shape": shape,
        "params": params,
        "trainable": trainable,
        "lora": args.lora,
        "step_s": step,
        "completion_tokens_per_s": args.prompts * args.group_size * args.new_tokens / step,
        "peak_mem_GiB": torch.cuda.max_memory_allocated() / 2**30,
        "result": "ok",
    }


def run_trl_shape(shape: str, args: argparse.Namespace) -> dict[str, Any]:
    """TRL's GRPOTrainer on the same shape (saved to disk first: TRL loads from a path)."""
    import torch

    from credo.llm.tiny import save_tokenizer

    model, tok = build_on_gpu(shape)
    path = Path(tempfile.mkdtemp(prefix=f"trl_{shape}_")) / "model"
    model.save_pretrained(path)
    save_tokenizer(tok, path)
    params = sum(p.numel() for p in model.parameters())
    del model
    torch.cuda.empty_cache()
    args.device = "cuda"
    try:
        result = run_trl("trl_grpo", args, path)
    except torch.cuda.OutOfMemoryError as error:
        return {"shape": shape, "params": params, "peer": "trl", "result": "OOM", "detail": str(error)[:200]}
    step = sorted(result["step_s"])[len(result["step_s"]) // 2]
    return {
        "shape": shape,
        "params": params,
        "peer": "trl",
        "step_s": step,
        "completion_tokens_per_s": args.prompts * args.group_size * args.new_tokens / step,
        "peak_mem_GiB": torch.cuda.max_memory_allocated() / 2**30,
        "result": "ok",
    }


def child_command(shape: str, out: Path, trl: bool) -> list[str]:
    argv = [a for a in sys.argv[1:]]
    return [sys.executable, __file__, *argv, "--child-shape", shape, "--child-out", str(out)] + (
        ["--child-trl"] if trl else []
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shapes", default="1.5B,7B,14B", help=f"comma-separated, from {list(SHAPES)}")
    parser.add_argument("--lora", type=int, default=0, help="LoRA rank (0: full fine-tuning)")
    parser.add_argument("--backend", default="graph", choices=("hf", "graph"), help="rollout backend")
    parser.add_argument("--peer-trl", action="store_true", help="also run TRL's GRPOTrainer per shape")
    parser.add_argument(
        "--compile-decode",
        action="store_true",
        help="rollout.compile_decode (graph backend: compiled decode step)",
    )
    parser.add_argument(
        "--compile-layers", action="store_true", help="compile_layers (compiled decoder layers)"
    )
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--beta", type=float, default=0.04)
    parser.add_argument("--micro-batch", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=400.0, help="seconds per shape")
    parser.add_argument("--out", default="runs/big_model_bench.json")
    parser.add_argument("--child-shape", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    parser.add_argument("--child-trl", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_shape:
        runner = run_trl_shape if args.child_trl else run_shape
        Path(args.child_out).write_text(json.dumps(runner(args.child_shape, args)))
        return
    for shape in args.shapes.split(","):
        if shape not in SHAPES:
            raise SystemExit(f"--shapes: unknown shape {shape!r}; choose from {list(SHAPES)}")
    work = Path(tempfile.mkdtemp(prefix="big_model_bench_"))
    results = []
    for shape in args.shapes.split(","):
        for trl in (False, True) if args.peer_trl else (False,):
            out = work / f"{shape}_{'trl' if trl else 'credo'}.json"
            lora = f" + LoRA r={args.lora}" if args.lora else ""
            who = "TRL GRPOTrainer" if trl else f"credo GRPO{lora}"
            print(f"{shape}: {who} ...", flush=True)
            try:
                proc = subprocess.run(
                    child_command(shape, out, trl), timeout=args.timeout, capture_output=True, text=True
                )
                r = (
                    json.loads(out.read_text())
                    if out.exists()
                    else {"shape": shape, "result": "failed", "detail": proc.stderr.strip().splitlines()[-1:]}
                )
            except subprocess.TimeoutExpired:
                r = {"shape": shape, "result": f"timed out after {args.timeout} s"}
            r.setdefault("peer", "trl" if trl else "credo")
            results.append(r)
            if r["result"] == "ok":
                print(
                    f"  {r['params'] / 1e9:.2f}B params: {r['step_s']:.2f} s/step, "
                    f"{r['completion_tokens_per_s']:.0f} completion tok/s, peak {r['peak_mem_GiB']:.1f} GiB",
                    flush=True,
                )
            else:
                print(f"  {r['result']} {r.get('detail', '')}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
