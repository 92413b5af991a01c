"""One training step (rollout + scoring + update) of credo's trainer against TRL, side by side.

Measures completion tokens per second (from the median step time) and peak memory for:

* ``trl_grpo`` / ``trl_rloo``: TRL's GRPOTrainer / RLOOTrainer (the setup of
  ``/work/shared/peers/trl_anchor.py``: same model, prompts, reward, G, lengths, lr, and the KL
  coefficient set explicitly, since TRL's default beta=0 skips the reference model);
* ``credo_grpo`` / ``credo_rloo``: credo's trainer on the same model, batch, lengths and beta (GRPO:
  k3 KL in the loss; RLOO: k1 KL in the reward, as TRL does), sampling with transformers ``generate``
  (static KV cache, compiled, on CUDA);
* ``credo_grpo_graph`` / ``credo_rloo_graph``: the same with ``rollout.backend: graph``, credo's own
  decode loop (static KV cache, one CUDA graph replayed per token, no host sync inside the loop);
* ``credo_grpo_compiled``: ``credo_grpo_graph`` with ``rollout.compile_decode: true`` (the decode
  step's forward through ``torch.compile`` before capture: fused kernels);
* ``credo_grpo_compiled_layers``: ``credo_grpo_compiled`` with ``compile_layers: true`` (every decoder
  layer compiled for the update too, its activation checkpoint inside the compiled region);
* ``credo_ppo``: PPO with a critic (GAE, separate value model, clipped surrogate, KL in the reward),
  same model and batch, to test seed 003's claim that RLOO/GRPO need much less memory and time
  than PPO with a critic.

Each variant runs in its own process (clean peak-memory accounting: ``torch.cuda.max_memory_allocated``
on CUDA, the process's peak RSS on CPU), ``--warmup`` steps first (compilation, allocator), then
``--steps`` timed steps; with ``--rounds N`` the variants run N times in turn and each keeps its best
run (a shared CPU's load bursts then do not land on one side only). Throughput counts nominal
completion tokens ``N x G x max_new_tokens`` (the anchor's definition) and, where known, the tokens
actually generated (completions stop at EOS; ``--full-length`` makes EOS unreachable, so every
variant does exactly the same work).

CPU (default; a 3M-parameter Qwen2, 8 completions of 32 tokens)::

    .venv/bin/python benchmarks/trainer_bench.py

CUDA (Qwen2.5-0.5B shape with a byte vocabulary, 358M parameters, 8 prompts x 8 completions x 256
new tokens, bf16)::

    .venv/bin/python benchmarks/trainer_bench.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

VARIANTS = (
    "trl_grpo",
    "credo_grpo",
    "credo_grpo_graph",
    "credo_grpo_compiled",
    "credo_grpo_compiled_layers",
    "trl_rloo",
    "credo_rloo",
    "credo_rloo_graph",
    "credo_ppo",
)
# credo variant -> (estimator, rollout backend); "graph" is credo's own decode loop (static KV cache,
# one CUDA graph per token: credo.llm.graph_decode), "hf" is transformers generate
CREDO_VARIANTS = {
    "credo_grpo": ("grpo", "hf"),
    "credo_grpo_graph": ("grpo", "graph"),
    "credo_grpo_compiled": ("grpo", "graph+compile"),
    "credo_grpo_compiled_layers": ("grpo", "graph+compile+layers"),
    "credo_rloo": ("rloo", "hf"),
    "credo_rloo_graph": ("rloo", "graph"),
    "credo_ppo": ("gae", "hf"),
}


def byte_tokenizer(unreachable_eos: bool = False) -> Any:
    """The anchor's tokenizer: <pad> <s> </s> <unk>, then printable ASCII, one token per char.

    ``unreachable_eos``: EOS gets the last id instead, one the model (whose vocabulary stops before it)
    can never sample, so every completion runs to ``max_new_tokens`` for credo and TRL alike.
    """
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1} if unreachable_eos else {"<pad>": 0, "<s>": 1, "</s>": 2}
    vocab["<unk>"] = len(vocab)
    for i in range(32, 127):
        vocab[chr(i)] = len(vocab)
    if unreachable_eos:
        vocab["</s>"] = len(vocab)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tk.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


MODEL_SIZES: dict[str, dict[str, int]] = {
    # ~3M parameters: the CPU default
    "tiny": {
        "hidden_size": 256,
        "intermediate_size": 688,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    },
    # ~25M parameters: big enough on a CPU for model state to dominate the process's memory
    "medium": {
        "hidden_size": 512,
        "intermediate_size": 1536,
        "num_hidden_layers": 8,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
    },
    # Qwen2.5-0.5B shape with a byte vocabulary (358M): the CUDA default, as in the TRL anchor
    "anchor": {
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
    },
}


def qwen2_config(shape: dict[str, int], tok: Any, unreachable_eos: bool = False) -> Any:
    """A Qwen2 config of ``shape`` (hidden, intermediate, layers, heads, key-value heads) over the byte
    tokenizer ``tok`` (without its EOS when ``unreachable_eos``: the model cannot sample it)."""
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=len(tok) - 1 if unreachable_eos else len(tok),
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=tok.eos_token_id,
        pad_token_id=0,
        **shape,
    )


def build_model_dir(path: Path, size: str, dtype_name: str, unreachable_eos: bool = False) -> int:
    """Save the benchmark model and tokenizer to ``path``; returns the parameter count."""
    import torch
    from transformers import AutoModelForCausalLM

    from credo.llm.tiny import save_tokenizer

    tok = byte_tokenizer(unreachable_eos)
    cfg = qwen2_config(MODEL_SIZES[size], tok, unreachable_eos)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=getattr(torch, dtype_name))
    model.save_pretrained(path)
    save_tokenizer(tok, path)
    return sum(p.numel() for p in model.parameters())


def prompts(n: int) -> list[str]:
    return [f"Recommend movies for user {i}: " for i in range(n)]


def count_a_reward(completions: list[str], **kwargs: Any) -> list[float]:
    return [float(c.count("a")) for c in completions]


def credo_reward(prompts: list[str], completions: list[str], **meta: Any) -> list[float]:
    return count_a_reward(completions)


def sync(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.synchronize()


def credo_config(variant: str, args: argparse.Namespace, model_dir: Path) -> Any:
    """The trainer config of a credo variant at the benchmark's settings (also used by
    ``benchmarks/trainer_profile.py``)."""
    from credo.llm.config import config_from_dict

    cuda = args.device == "cuda"
    estimator, backend = CREDO_VARIANTS[variant]
    backend, *compiled = backend.split("+")
    loss: dict[str, Any] = {"aggregation": "token_mean", "kl_beta": args.beta}
    if estimator == "grpo":
        loss.update(kl_mode="loss", kl_kind="k3")
    else:
        loss.update(kl_mode="reward", kl_kind="k1")
    if estimator == "gae":
        loss.update(policy_loss="ppo_clip", epochs=1)
    B = args.prompts * args.group_size
    return config_from_dict(
        {
            "model": {"model_path": str(model_dir)},
            "rollout": {
                "backend": backend,
                "group_size": args.group_size,
                "prompts_per_step": args.prompts,
                "max_new_tokens": args.new_tokens,
                "static_cache": backend == "hf" and cuda and not args.no_compile,
                "compile_decode": "compile" in compiled and not args.no_compile,
                "pad_to_multiple_of": 16 if cuda else None,
            },
            "credit": {
                "estimator": estimator,
                "options": {"gamma": 1.0, "lam": 0.95} if estimator == "gae" else {},
            },
            "loss": loss,
            "critic": {"mode": "separate"},
            "optim": {"lr": 1e-6, "micro_batch_size": min(args.micro_batch, B), "max_grad_norm": 1.0},
            "precision": "bf16" if cuda else "fp32",
            "gradient_checkpointing": args.grad_ckpt == "on",
            "compile_layers": "layers" in compiled and not args.no_compile,
            "device": args.device,
            "steps": args.warmup + args.steps,
            "seed": 0,
            "progress": False,
        }
    )


def run_credo(variant: str, args: argparse.Namespace, model_dir: Path) -> dict[str, Any]:
    import torch

    from credo.llm.trainer import Trainer

    cuda = args.device == "cuda"
    config = credo_config(variant, args, model_dir)
    trainer = Trainer(config, reward_functions=credo_reward, prompts=prompts(args.prompts * 10))
    times, lengths, phases = [], [], []
    for i in range(args.warmup + args.steps):
        if i == args.warmup and cuda:
            torch.cuda.reset_peak_memory_stats()
        sync(cuda)
        start = time.perf_counter()
        metrics = trainer.step()
        sync(cuda)
        times.append(time.perf_counter() - start)
        lengths.append(metrics["completion/length"])
        if i >= args.warmup:  # the trainer's own phase clock: rollout, score, update (host time)
            phases.append(
                {k[5:-2]: v for k, v in metrics.items() if k.startswith("time/") and k != "time/step_s"}
            )
    timed, timed_lengths = times[args.warmup :], lengths[args.warmup :]
    return {
        "step_s": timed,
        "mean_completion_length": sum(timed_lengths) / len(timed_lengths),
        "phases_s": {k: sum(p[k] for p in phases) / len(phases) for k in phases[0]},
    }


def run_trl(variant: str, args: argparse.Namespace, model_dir: Path) -> dict[str, Any]:
    import datasets
    import pyarrow
    import torch
    import trl
    from transformers import TrainerCallback

    cuda = args.device == "cuda"
    os.environ.setdefault("WANDB_DISABLED", "true")

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.start = 0.0

        def on_step_begin(self, *a: Any, **k: Any) -> None:
            if len(self.times) == args.warmup and cuda:
                torch.cuda.reset_peak_memory_stats()
            sync(cuda)
            self.start = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            sync(cuda)
            self.times.append(time.perf_counter() - self.start)

    from credo.llm.tiny import load_tokenizer

    tok = load_tokenizer(model_dir)
    # an explicit fingerprint: without one, datasets hashes the table with dill, which pickles the
    # pyarrow module by value (and fails on pyarrow.MonthDayNano) when pyarrow lies outside
    # site-packages and sys.prefix, e.g. after ``pip install --target``
    n = args.prompts * 10
    ds = datasets.Dataset(pyarrow.table({"prompt": prompts(n)}), fingerprint=f"trainer_bench_prompts_{n}")
    common = dict(
        output_dir=tempfile.mkdtemp(prefix=f"{variant}_"),
        max_steps=args.warmup + args.steps,
        per_device_train_batch_size=args.group_size * args.prompts,
        num_generations=args.group_size,
        max_completion_length=args.new_tokens,
        learning_rate=1e-6,
        beta=args.beta,
        bf16=cuda,
        use_cpu=not cuda,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        gradient_accumulation_steps=1,
        model_init_kwargs={"dtype": "bfloat16" if cuda else "float32"},
        seed=0,
    )
    if variant == "trl_grpo":
        trainer = trl.GRPOTrainer(
            model=str(model_dir),
            reward_funcs=count_a_reward,
            args=trl.GRPOConfig(**common),
            train_dataset=ds,
            processing_class=tok,
        )
    else:
        trainer = trl.RLOOTrainer(
            model=str(model_dir),
            reward_funcs=count_a_reward,
            args=trl.RLOOConfig(**common),
            train_dataset=ds,
            processing_class=tok,
        )
    timer = Timer()
    trainer.add_callback(timer)
    trainer.train()
    lengths = [
        h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h
    ]
    timed_lengths = lengths[args.warmup :] or lengths
    return {
        "step_s": timer.times[args.warmup :],
        "mean_completion_length": sum(timed_lengths) / len(timed_lengths) if timed_lengths else None,
    }


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads) if args.threads else None
    model_dir = Path(args.model_dir)
    runner = run_trl if args.variant.startswith("trl") else run_credo
    result = runner(args.variant, args, model_dir)
    steps = sorted(result["step_s"])
    mean_step = sum(steps) / len(steps)
    # the median step: robust to a step slowed by another process on a shared machine
    median_step = (steps[(len(steps) - 1) // 2] + steps[len(steps) // 2]) / 2
    nominal = args.prompts * args.group_size * args.new_tokens
    result.update(
        variant=args.variant,
        mean_step_s=mean_step,
        median_step_s=median_step,
        completion_tokens_per_s=nominal / median_step,
        generated_tokens_per_s=(
            None
            if result["mean_completion_length"] is None
            else result["mean_completion_length"] * args.prompts * args.group_size / median_step
        ),
        peak_mem_GiB=(
            torch.cuda.max_memory_allocated() / 2**30
            if args.device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        ),
        peak_mem_kind="cuda max_memory_allocated" if args.device == "cuda" else "process peak RSS",
    )
    Path(args.json_out).write_text(json.dumps(result))


def run_child(cmd: list[str], timeout: float | None) -> str | None:
    """Run one variant's process; None on success, else the reason it failed."""
    try:
        proc = subprocess.run(cmd, text=True, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout} s"
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"
    return None


def build_parser() -> argparse.ArgumentParser:
    """The command line (``--variant``, ``--model-dir`` and ``--json-out`` are for child processes)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {VARIANTS}"
    )
    parser.add_argument("--prompts", type=int, default=None, help="prompts per step (cpu 1, cuda 8)")
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=None, help="max new tokens (cpu 32, cuda 256)")
    parser.add_argument("--beta", type=float, default=0.04, help="KL coefficient, the same for every variant")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (cpu 5, cuda 4)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed first steps (cpu 1, cuda 2)")
    parser.add_argument(
        "--micro-batch", type=int, default=None, help="credo micro-batch size (cpu 8, cuda 32)"
    )
    parser.add_argument(
        "--grad-ckpt",
        choices=("on", "off"),
        default=None,
        help="credo: gradient checkpointing (default on: TRL's default for GRPO/RLOO)",
    )
    parser.add_argument(
        "--no-compile", action="store_true", help="credo on CUDA: no static cache / CUDA graphs"
    )
    parser.add_argument(
        "--model",
        choices=tuple(MODEL_SIZES),
        default=None,
        help="model size (default: tiny on cpu, anchor on cuda)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads on CPU")
    parser.add_argument(
        "--full-length",
        action="store_true",
        help="an EOS the model cannot sample: every completion has max_new_tokens tokens "
        "(the same work for every variant; the anchor lets EOS end completions)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="run every variant this many times in turn, keep each one's best (cpu 2, cuda 1)",
    )
    parser.add_argument("--out", default=None, help="write the JSON summary here")
    parser.add_argument(
        "--peak-gbs", type=float, default=4800.0, help="memory bandwidth for the bound (H200: 4800 GB/s)"
    )
    parser.add_argument(
        "--peak-tflops", type=float, default=989.0, help="bf16 dense TFLOP/s for the bound (H200: 989)"
    )
    parser.add_argument(
        "--child-timeout",
        type=float,
        default=None,
        help="seconds one variant may take (default: none on cpu, 280 on cuda)",
    )
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--json-out", help=argparse.SUPPRESS)
    return parser


def apply_device_defaults(args: argparse.Namespace) -> None:
    """Fill in the options left unset with their CPU or CUDA defaults (``--model`` aside: only the
    parent process resolves it)."""
    cuda = args.device == "cuda"
    args.prompts = args.prompts or (8 if cuda else 1)
    args.new_tokens = args.new_tokens or (256 if cuda else 32)
    args.steps = args.steps or (4 if cuda else 5)
    args.warmup = args.warmup if args.warmup is not None else (2 if cuda else 1)
    args.micro_batch = args.micro_batch or (32 if cuda else 8)
    args.grad_ckpt = args.grad_ckpt or "on"  # TRL's GRPO/RLOO default, so both recompute activations
    args.rounds = args.rounds or (1 if cuda else 2)
    if args.child_timeout is None and cuda:
        args.child_timeout = 280.0


def child_argv(argv: list[str], out: str | None) -> list[str]:
    """The parent's command-line arguments without ``--out PATH`` (children write no summary)."""
    passthrough = [a for a in argv if a not in ("--out",)]
    if out:  # drop "--out PATH" from what children get
        i = passthrough.index(out) if out in passthrough else -1
        passthrough = [a for j, a in enumerate(passthrough) if j != i]
    return passthrough


def run_variant_round(
    variant: str,
    round_index: int,
    args: argparse.Namespace,
    passthrough: list[str],
    work: Path,
    model_dir: Path,
    results: dict[str, Any],
) -> None:
    """Run ``variant`` once in its own process and keep its best (lowest median step) run in
    ``results[variant]``, or ``{"error": reason}`` when it fails (a credo variant on CUDA whose
    compiled decoding fails is retried once with ``--no-compile``)."""
    cuda = args.device == "cuda"
    out = work / f"{variant}_{round_index}.json"
    cmd = [sys.executable, __file__, *passthrough, "--variant", variant, "--model-dir", str(model_dir),
           "--json-out", str(out)]  # fmt: skip
    print(f"running {variant} (round {round_index + 1}/{args.rounds}) ...", flush=True)
    error = run_child(cmd, args.child_timeout)
    if error and cuda and variant.startswith("credo") and not args.no_compile:
        # compiled static-cache decoding failed here: measure the eager path instead, and say so
        print(f"  {variant}: compiled decoding failed ({error}); retrying with --no-compile", flush=True)
        cmd = [*cmd, "--no-compile"]
        error = run_child(cmd, args.child_timeout)
    if error:
        results[variant] = {"error": error}
        return
    r = json.loads(out.read_text())
    r["no_compile"] = args.no_compile or "--no-compile" in cmd
    print(
        f"  {variant:16s} {r['median_step_s']:.3f} s/step (median)  {r['completion_tokens_per_s']:9.1f} "
        f"completion tok/s  peak {r['peak_mem_GiB']:.2f} GiB ({r['peak_mem_kind']})  "
        f"mean length {r['mean_completion_length']}",
        flush=True,
    )
    if "phases_s" in r:
        print("    phases: " + ", ".join(f"{k} {v:.3f} s" for k, v in r["phases_s"].items()), flush=True)
    best = results.get(variant)
    if best is None or r["median_step_s"] < best["median_step_s"]:
        results[variant] = r


def report_ratios(results: dict[str, Any]) -> None:
    """Print and add to ``results`` credo's ratios to TRL (tokens/s, peak memory) and RLOO's and
    GRPO's to PPO with a critic (speed-up, memory saving), for the pairs that both ran."""

    def ok(name: str) -> bool:
        return name in results and "error" not in results[name]

    print("\nratios (credo / peer):")
    pairs = (
        ("credo_grpo", "trl_grpo"),
        ("credo_grpo_graph", "trl_grpo"),
        ("credo_grpo_graph", "credo_grpo"),
        ("credo_grpo_compiled", "trl_grpo"),
        ("credo_grpo_compiled", "credo_grpo_graph"),
        ("credo_grpo_compiled_layers", "trl_grpo"),
        ("credo_grpo_compiled_layers", "credo_grpo_compiled"),
        ("credo_rloo", "trl_rloo"),
        ("credo_rloo_graph", "trl_rloo"),
        ("credo_rloo_graph", "credo_rloo"),
    )
    for ours, peer in pairs:
        if ok(ours) and ok(peer):
            a, b = results[ours], results[peer]
            speed = a["completion_tokens_per_s"] / b["completion_tokens_per_s"]
            mem = a["peak_mem_GiB"] / b["peak_mem_GiB"]
            results[f"{ours}_vs_{peer}"] = {"tokens_per_s_ratio": speed, "peak_mem_ratio": mem}
            print(f"  {ours} vs {peer}: {speed:.2f}x tokens/s, {mem:.2f}x peak memory")
    for ours in ("credo_rloo", "credo_grpo"):
        if ok(ours) and ok("credo_ppo"):
            a, b = results[ours], results["credo_ppo"]
            speed = b["median_step_s"] / a["median_step_s"]
            saving = 1 - a["peak_mem_GiB"] / b["peak_mem_GiB"]
            results[f"{ours}_vs_credo_ppo"] = {"speedup": speed, "memory_saving": saving}
            print(
                f"  {ours} vs PPO+critic: {speed:.2f}x faster per step, {100 * saving:.0f}% less peak memory"
            )


def step_lower_bound(params: int, args: argparse.Namespace, prompt_tokens: int = 30) -> dict[str, float]:
    """A lower bound on one step's time on this hardware: decoding reads every bf16 weight once per
    new token (``2 * params * new_tokens`` bytes at ``--peak-gbs``), and the update's forward and
    backward plus the reference's forward are about ``8 * params * tokens`` FLOPs (6 for training, 2
    for the reference; gradient checkpointing's recompute not counted) at ``--peak-tflops``."""
    rows = args.prompts * args.group_size
    decode_s = 2 * params * args.new_tokens / (args.peak_gbs * 1e9)
    flop_s = 8 * params * rows * (prompt_tokens + args.new_tokens) / (args.peak_tflops * 1e12)
    return {"decode_s": decode_s, "update_s": flop_s, "step_s": decode_s + flop_s}


def report_bound(results: dict[str, Any], args: argparse.Namespace) -> None:
    """Print and add each variant's ratio to :func:`step_lower_bound`."""
    bound = step_lower_bound(results["params"], args)
    results["lower_bound"] = bound
    print(
        f"\nlower bound per step: {bound['step_s'] * 1e3:.1f} ms (decode {bound['decode_s'] * 1e3:.1f} ms at "
        f"{args.peak_gbs:.0f} GB/s, update {bound['update_s'] * 1e3:.1f} ms at {args.peak_tflops:.0f} TFLOP/s)"
    )
    for name, r in results.items():
        if isinstance(r, dict) and "median_step_s" in r:
            r["x_bound"] = r["median_step_s"] / bound["step_s"]
            print(f"  {name}: {r['x_bound']:.1f}x the bound")


def main() -> None:
    args = build_parser().parse_args()
    apply_device_defaults(args)
    if args.variant:
        child(args)
        return

    cuda = args.device == "cuda"
    work = Path(tempfile.mkdtemp(prefix="trainer_bench_"))
    model_dir = work / "model"
    args.model = args.model or ("anchor" if cuda else "tiny")
    params = build_model_dir(model_dir, args.model, "bfloat16" if cuda else "float32", args.full_length)
    print(
        f"model: Qwen2, {params / 1e6:.1f}M parameters; {args.prompts} prompts x {args.group_size} completions x "
        f"{args.new_tokens} new tokens; beta={args.beta}; device={args.device}",
        flush=True,
    )
    results: dict[str, Any] = {
        "params": params,
        "setup": {k: v for k, v in vars(args).items() if k not in ("variant", "model_dir", "json_out")},
    }
    passthrough = child_argv(sys.argv[1:], args.out)
    variants = args.variants.split(",")
    for variant in variants:
        if variant not in VARIANTS:
            raise SystemExit(f"unknown variant {variant!r}; choose from {VARIANTS}")
    # rounds: every variant runs once per round, in turn, and keeps its best (lowest median) run, so a
    # burst of load from another process on a shared machine does not land on one side only
    for round_index in range(args.rounds):
        for variant in variants:
            if "error" in results.get(variant, {}):
                continue
            run_variant_round(variant, round_index, args, passthrough, work, model_dir, results)
    report_ratios(results)
    if cuda:
        report_bound(results, args)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    print(json.dumps({k: v for k, v in results.items() if k != "setup"}, default=str)[:4000])


if __name__ == "__main__":
    main()
