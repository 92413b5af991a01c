"""Decoding alone: credo's graph decode loop per token, eager / captured / compiled + captured, by batch.

The rollout is most of a training step at the anchor (``benchmarks/trainer_profile.py``), so this
times :func:`credo.llm.graph_decode.sample_completions_graph` on its own, on the speed benchmark's
model (``benchmarks/trainer_bench.py``: a Qwen2.5-0.5B shape with a byte vocabulary, bf16), with an
EOS the model cannot sample so every row decodes all ``--new-tokens`` tokens. Variants:

* ``eager``: the decode step run eagerly (one Python forward per token: launch-bound);
* ``graph``: the step captured once as a CUDA graph and replayed per token (``rollout.backend: graph``);
* ``compiled``: the step's forward through ``torch.compile`` first, then captured
  (``rollout.compile_decode: true``);
* ``hf``: transformers ``generate`` (dynamic cache), the default ``hf`` backend, for scale.

Each is timed per token and per batch size against a lower bound: every bf16 weight and the KV cache
read once per token at ``--peak-gbs``. With ``--kernels`` one rollout per variant runs under
``torch.profiler`` and the kernels launched per token and the top kernels are printed.

    python benchmarks/decode_bench.py --device cuda --batches 64,128,256 --kernels --out runs/decode
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from trainer_bench import MODEL_SIZES, build_model_dir, prompts  # one benchmark model for all scripts
from trainer_profile import profile_kernels

VARIANTS = ("eager", "graph", "compiled", "hf")


def load(model_dir: Path, device: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="sdpa")
    return model.to(device).eval(), AutoTokenizer.from_pretrained(model_dir)


def sampler(variant: str, model: Any, tok: Any, batch: int, group: int, new_tokens: int) -> Any:
    """A no-argument function decoding ``batch`` rows (``batch / group`` prompts) with ``variant``."""
    from credo.llm.graph_decode import GraphDecoder, sample_completions_graph
    from credo.llm.rollout import sample_completions

    texts = prompts(batch // group)
    if variant == "hf":
        return lambda: sample_completions(model, tok, texts, group, new_tokens, pad_to_multiple_of=16)
    decoder = GraphDecoder(compile=variant == "compiled")
    use_graph = variant != "eager" and next(model.parameters()).is_cuda
    return lambda: sample_completions_graph(
        model, tok, texts, group, new_tokens, use_cuda_graph=use_graph, decoder=decoder,
        check_every=None, pad_to_multiple_of=16,
    )  # fmt: skip


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def kernels_per_token(run: Any, new_tokens: int) -> dict[str, Any]:
    """One rollout under ``torch.profiler``: kernels per token, GPU busy share, top kernels."""
    prof = profile_kernels(run, top=10)
    return {
        "kernels_per_token": prof["kernel_launches"] / new_tokens,
        "gpu_busy_share": prof["gpu_busy_share"],
        "top": [
            {
                "name": t["name"],
                "us_per_token": 1e3 * t["ms"] / new_tokens,
                "calls_per_token": t["calls"] / new_tokens,
            }
            for t in prof["top_kernels"]
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--model", choices=tuple(MODEL_SIZES), default=None, help="default: anchor (cuda), tiny"
    )
    parser.add_argument("--variants", default="eager,graph,compiled", help=f"comma-separated, of {VARIANTS}")
    parser.add_argument("--batches", default="64,128,256", help="rows per rollout (multiples of --group)")
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=None, help="default 256 (cuda), 16")
    parser.add_argument("--repeats", type=int, default=3, help="timed rollouts per point (the best is kept)")
    parser.add_argument(
        "--kernels", action="store_true", help="profile one rollout per variant (first batch)"
    )
    parser.add_argument("--peak-gbs", type=float, default=4800.0, help="memory bandwidth (H200: 4800 GB/s)")
    parser.add_argument("--out", default=None, help="write decode.json and decode.md here")
    args = parser.parse_args()
    cuda = args.device == "cuda"
    args.model = args.model or ("anchor" if cuda else "tiny")
    new_tokens = args.new_tokens or (256 if cuda else 16)
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            parser.error(f"--variants: unknown variant {v!r}, expected some of {VARIANTS}")
    batches = [int(b) for b in args.batches.split(",")]
    if any(b % args.group for b in batches):
        parser.error(f"--batches: every batch must be a multiple of --group {args.group}, got {batches}")

    model_dir = Path(tempfile.mkdtemp(prefix="decode_bench_")) / "model"
    params = build_model_dir(model_dir, args.model, "bfloat16" if cuda else "float32", unreachable_eos=True)
    model, tok = load(model_dir, args.device)
    cfg = model.config
    bytes_per = 2 if cuda else 4
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    print(f"model {args.model}: {params / 1e6:.0f}M parameters, {new_tokens} new tokens per row", flush=True)

    rows: list[dict[str, Any]] = []
    for variant in variants:
        for batch in batches:
            run = sampler(variant, model, tok, batch, args.group, new_tokens)
            start = time.perf_counter()
            run()  # warm-up: builds the cache, captures (and compiles) the step
            sync(args.device)
            first = time.perf_counter() - start
            best = float("inf")
            for _ in range(args.repeats):
                sync(args.device)
                start = time.perf_counter()
                out = run()
                sync(args.device)
                best = min(best, time.perf_counter() - start)
            assert out.completion_ids.shape == (batch, new_tokens), out.completion_ids.shape
            # bound: weights once per token, plus the KV cache (mean length) read once per token
            context = out.prompt_ids.shape[1] + new_tokens / 2
            kv_bytes = (
                2 * cfg.num_hidden_layers * batch * context * cfg.num_key_value_heads * head_dim * bytes_per
            )
            bound = (params * bytes_per + kv_bytes) / (args.peak_gbs * 1e9)
            row = {"variant": variant, "batch": batch, "rollout_s": best, "first_call_s": first,
                   "ms_per_token": 1e3 * best / new_tokens, "tokens_per_s": batch * new_tokens / best,
                   "bound_ms_per_token": 1e3 * bound, "x_bound": best / new_tokens / bound}  # fmt: skip
            if args.kernels and cuda and batch == batches[0]:
                row["kernels"] = kernels_per_token(run, new_tokens)
            rows.append(row)
            print(
                f"  {variant:>8} B={batch:<4} {row['ms_per_token']:.3f} ms/token  "
                f"{row['tokens_per_s']:,.0f} tok/s  {row['x_bound']:.1f}x bound "
                f"({row['bound_ms_per_token']:.3f} ms)  first call {first:.1f} s",
                flush=True,
            )

    lines = [
        "| variant | rows | ms / token | tokens / s | x bound | first call (s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['batch']} | {r['ms_per_token']:.3f} | {r['tokens_per_s']:,.0f} | "
            f"{r['x_bound']:.1f} | {r['first_call_s']:.1f} |"
        )
    for r in rows:
        if "kernels" in r:
            k = r["kernels"]
            lines.append(
                f"\n{r['variant']} B={r['batch']}: {k['kernels_per_token']:.0f} kernels per token, "
                f"GPU busy {100 * k['gpu_busy_share']:.0f}% of the rollout"
            )
            lines += [
                f"- {t['name']}: {t['us_per_token']:.1f} us/token in {t['calls_per_token']:.0f} calls"
                for t in k["top"]
            ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "decode.json").write_text(json.dumps({"params": params, "rows": rows}, indent=1))
        (out / "decode.md").write_text(f"# Decoding, {params / 1e6:.0f}M, {new_tokens} tokens\n\n{text}")


if __name__ == "__main__":
    main()
