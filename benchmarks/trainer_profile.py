"""Where one training step's time goes: credo's trainer at the speed benchmark's anchor, phase by phase.

Runs credo's trainer (the configuration of ``benchmarks/trainer_bench.py``: a Qwen2.5-0.5B-shaped model
with a byte vocabulary, 8 prompts x 8 completions x 256 new tokens, bf16, GRPO with a k3 KL term) and
times each phase of ``Trainer.step`` with a device synchronisation before and after it, by wrapping
the collaborators the step calls (the step itself is unchanged):

* ``rollout``: ``trainer.sampler.sample`` (decoding, log pi_old recorded while sampling);
* ``reference``: the reference model's log-probs (``sequence_logprobs``);
* ``rewards`` and ``credit``: ``compute_rewards`` and ``compute_credit``;
* ``forward+loss``, ``backward``, ``clip+optimizer``: the update's micro-batches;
* ``other``: the rest of the step (metrics, logging; host time between phases).

The synchronisations add a little time of their own, so the phases sum to slightly more than an
unprofiled step. With ``--kernels`` it also runs one step under ``torch.profiler`` and reports the
share of the rollout's wall time the GPU spent in kernels (the rest is host overhead: Python, kernel
launches, synchronisations) and the top kernels.

    python benchmarks/trainer_profile.py --device cuda --backends hf,graph --kernels --out runs/profile

writes ``profile.json``, ``profile.md`` and ``profile.png`` (a stacked bar per backend).
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from trainer_bench import (  # the benchmark scripts share one model and config
    apply_device_defaults,
    build_model_dir,
    build_parser,
    credo_config,
    credo_reward,
    prompts,
    step_lower_bound,
)

PHASES = ("rollout", "reference", "rewards", "credit", "forward+loss", "backward", "clip+optimizer")


class PhaseTimer:
    """Wall time per phase, each call bracketed by device synchronisations."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.seconds: dict[str, float] = defaultdict(float)

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def wrap(self, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        from torch.profiler import record_function

        def timed(*args: Any, **kwargs: Any) -> Any:
            self.sync()
            start = time.perf_counter()
            with record_function(f"phase/{phase}"):  # under the profiler: the phase's kernels
                out = fn(*args, **kwargs)
            self.sync()
            self.seconds[phase] += time.perf_counter() - start
            return out

        return timed


def instrument(trainer: Any, timer: PhaseTimer) -> None:
    """Wrap the collaborators ``Trainer.step`` calls (module functions and the trainer's objects)."""
    import credo.llm.trainer as trainer_module

    for name, phase in (
        ("sequence_logprobs", "reference"),
        ("compute_rewards", "rewards"),
        ("compute_credit", "credit"),
        ("micro_batch_loss", "forward+loss"),
    ):
        setattr(trainer_module, name, timer.wrap(phase, getattr(trainer_module, name)))
    trainer.sampler.sample = timer.wrap("rollout", trainer.sampler.sample)
    trainer.dist.backward = timer.wrap("backward", trainer.dist.backward)
    trainer.dist.clip_grad_norm = timer.wrap("clip+optimizer", trainer.dist.clip_grad_norm)
    trainer.optimizer.step = timer.wrap("clip+optimizer", trainer.optimizer.step)


def profile_kernels(fn: Callable[[], Any], top: int = 12) -> dict[str, Any]:
    """``fn()`` once under ``torch.profiler``: its wall time, the GPU's kernel time and launches, the
    top kernels by GPU time and the top operators by host time (shared with ``decode_bench.py``)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    events = prof.key_averages()
    kernels = [e for e in events if e.device_type.name == "CUDA"]
    ops = [e for e in events if e.device_type.name == "CPU"]
    top_kernels = sorted(kernels, key=lambda e: e.self_device_time_total, reverse=True)[:top]
    top_ops = sorted(ops, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    kernel_s = sum(e.self_device_time_total for e in kernels) / 1e6
    phases = {
        e.key[len("phase/") :]: {
            "calls": e.count,
            "host_ms": e.cpu_time_total / 1e3,
            "gpu_ms": e.device_time_total / 1e3,
        }
        for e in events
        if e.key.startswith("phase/")
    }
    return {
        "wall_s": wall,
        "kernel_s": kernel_s,
        "phases": phases,  # per instrumented phase: its wall time on the host and its kernels' GPU time
        "gpu_busy_share": kernel_s / wall,
        "kernel_launches": sum(e.count for e in kernels),
        "top_kernels": [
            {"name": e.key[:90], "ms": e.self_device_time_total / 1e3, "calls": e.count} for e in top_kernels
        ],
        "top_host_ops": [
            {"name": e.key[:90], "ms": e.self_cpu_time_total / 1e3, "calls": e.count} for e in top_ops
        ],
    }


def kernel_share(trainer: Any) -> dict[str, Any]:
    """One rollout under ``torch.profiler``: the GPU's kernel time against the rollout's wall time."""
    texts = prompts(trainer.config.rollout.prompts_per_step)
    return profile_kernels(lambda: trainer.sampler.sample(texts), top=8)


def step_kernels(trainer: Any) -> dict[str, Any]:
    """One whole training step under ``torch.profiler``: the top kernels by GPU time and the top
    operators by host time (where a step that is not GPU-bound spends its time)."""
    return profile_kernels(trainer.step)


def memory_at_peak(trainer: Any, path: Path, top: int = 12) -> dict[str, Any]:
    """One step with the CUDA allocator's history recorded. The snapshot goes to ``path`` (drag it
    onto https://pytorch.org/memory_viz); returned: the bytes alive before the step and, at the
    step's peak, the allocations the step made that were still alive, grouped by where they were made
    (see :func:`peak_allocations`)."""
    import torch

    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.memory._record_memory_history(stacks="python", max_entries=2_000_000)
    try:
        trainer.step()
        torch.cuda.synchronize()
        snapshot = torch.cuda.memory._snapshot()
    finally:
        torch.cuda.memory._record_memory_history(enabled=None)
    path.write_bytes(pickle.dumps(snapshot))
    return peak_allocations(snapshot, before, top)


# frames skipped when attributing memory: torch itself (matched by its package path: a venv may sit
# under a directory named torch) and the files torch.compile generates
_GENERATED_OR_TORCH = ("site-packages/torch/", "inductor")


def _where(frames: list[dict[str, Any]]) -> str:
    """The first Python frame outside torch (the model's or credo's line that asked for the memory),
    and the first credo frame below it when that is another line. C++ frames, which a snapshot may
    interleave, and the files torch.compile generates are skipped."""
    kept = [
        frame
        for frame in frames
        if frame["filename"].endswith(".py")
        and not any(part in frame["filename"] for part in _GENERATED_OR_TORCH)
    ]
    if not kept:
        return "torch internals"
    places = [f"{Path(frame['filename']).name}:{frame['line']} {frame['name']}" for frame in kept]
    credo = next((place for frame, place in zip(kept, places) if "/credo/" in frame["filename"]), places[0])
    return places[0] if credo == places[0] else f"{places[0]} (from {credo})"


def peak_allocations(snapshot: dict[str, Any], before: int, top: int = 12) -> dict[str, Any]:
    """Replay the allocator trace of ``snapshot`` from ``before`` bytes alive: the peak, and the live
    allocations made during the trace at the peak, summed by :func:`_where` (largest first)."""
    live: dict[int, tuple[int, str]] = {}
    current = peak = before
    at_peak: dict[int, tuple[int, str]] = {}
    for trace in snapshot.get("device_traces", []):
        for event in trace:
            if event["action"] == "alloc":
                live[event["addr"]] = (event["size"], _where(event.get("frames", [])))
                current += event["size"]
            elif event["action"] == "free_completed":
                live.pop(event["addr"], None)
                current -= event["size"]
            if current > peak:
                peak, at_peak = current, dict(live)
    by_place: dict[str, int] = defaultdict(int)
    for size, place in at_peak.values():
        by_place[place] += size
    ranked = sorted(by_place.items(), key=lambda item: -item[1])[:top]
    return {
        "before_GiB": before / 2**30,
        "peak_GiB": peak / 2**30,
        "top_at_peak": [{"where": place, "GiB": size / 2**30} for place, size in ranked],
    }


def profile_backend(backend: str, args: argparse.Namespace, model_dir: Path) -> dict[str, Any]:
    from credo.llm.trainer import Trainer

    variant = {
        "hf": "credo_grpo",
        "graph": "credo_grpo_graph",
        "compiled": "credo_grpo_compiled",
        "compiled_layers": "credo_grpo_compiled_layers",
    }[backend]
    config = credo_config(variant, args, model_dir)
    trainer = Trainer(config, reward_functions=credo_reward, prompts=prompts(args.prompts * 10))
    timer = PhaseTimer(args.device == "cuda")
    for _ in range(args.warmup):
        trainer.step()
    instrument(trainer, timer)
    if args.device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
    step_times = []
    for _ in range(args.steps):
        timer.sync()
        start = time.perf_counter()
        trainer.step()
        timer.sync()
        step_times.append(time.perf_counter() - start)
    per_step = {phase: timer.seconds[phase] / args.steps for phase in PHASES}
    mean_step = sum(step_times) / len(step_times)
    per_step["other"] = mean_step - sum(per_step.values())
    out: dict[str, Any] = {"backend": backend, "step_s": mean_step, "phases_s": per_step}
    if args.device == "cuda":
        out["peak_GiB"] = torch.cuda.max_memory_allocated() / 2**30
    if args.kernels and args.device == "cuda":
        out["kernels"] = kernel_share(trainer)
    if args.profile_step and args.device == "cuda":
        out["step_kernels"] = step_kernels(trainer)
    if args.memory and args.device == "cuda":
        out["memory"] = memory_at_peak(
            trainer, Path(args.out or "runs/trainer_profile") / f"memory_{backend}.pickle"
        )
    return out


def markdown(results: list[dict[str, Any]], bound: dict[str, float] | None) -> str:
    names = [*PHASES, "other"]
    lines = [
        "| backend | step (s) | peak | " + " | ".join(names) + " |",
        "|---" * (len(names) + 3) + "|",
    ]
    for r in results:
        cells = [
            f"{r['phases_s'][n] * 1e3:.0f} ms ({100 * r['phases_s'][n] / r['step_s']:.0f}%)" for n in names
        ]
        peak = f"{r['peak_GiB']:.2f} GiB" if "peak_GiB" in r else "-"
        lines.append(f"| {r['backend']} | {r['step_s']:.3f} | {peak} | " + " | ".join(cells) + " |")
    for r in results:
        for key, what in (("kernels", "rollout"), ("step_kernels", "whole step")):
            if key in r:
                k = r[key]
                lines.append(
                    f"\n{r['backend']} {what} under the profiler: {k['wall_s']:.3f} s wall, "
                    f"{k['kernel_s']:.3f} s in {k['kernel_launches']} kernels (the GPU busy "
                    f"{100 * k['gpu_busy_share']:.0f}% of it); top kernels:"
                )
                lines += [f"- {t['name']}: {t['ms']:.1f} ms in {t['calls']} calls" for t in k["top_kernels"]]
        if "step_kernels" in r:
            k = r["step_kernels"]
            lines.append("phases under the profiler (GPU time of their kernels against their host time):")
            lines += [
                f"- {name}: {p['gpu_ms']:.1f} ms GPU in {p['host_ms']:.1f} ms ({p['calls']} calls)"
                for name, p in k["phases"].items()
            ]
            lines.append("top host operators (self time):")
            lines += [f"- {t['name']}: {t['ms']:.1f} ms in {t['calls']} calls" for t in k["top_host_ops"]]
    for r in results:
        if "memory" in r:
            m = r["memory"]
            lines.append(
                f"\n{r['backend']} memory: {m['before_GiB']:.2f} GiB alive before the step, peak "
                f"{m['peak_GiB']:.2f} GiB; at the peak, allocated during the step:"
            )
            lines += [f"- {t['where']}: {t['GiB']:.3f} GiB" for t in m["top_at_peak"]]
    if bound:
        lines.append(
            f"\nlower bound per step {bound['step_s'] * 1e3:.1f} ms (decode {bound['decode_s'] * 1e3:.1f} ms, "
            f"update {bound['update_s'] * 1e3:.1f} ms); "
            + ", ".join(f"{r['backend']} {r['step_s'] / bound['step_s']:.1f}x" for r in results)
        )
    return "\n".join(lines) + "\n"


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [*PHASES, "other"]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.6 * len(results)))
    for row, r in enumerate(results):
        left = 0.0
        for i, n in enumerate(names):
            width = max(r["phases_s"][n], 0.0)
            ax.barh(row, width, left=left, color=plt.cm.tab10(i), label=n if row == 0 else None)
            left += width
    ax.set_yticks(range(len(results)), [r["backend"] for r in results])
    ax.set_xlabel("seconds per training step")
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = build_parser()
    parser.description = __doc__
    parser.add_argument("--backends", default="hf,graph", help="comma-separated rollout backends")
    parser.add_argument("--kernels", action="store_true", help="also profile one rollout's kernels")
    parser.add_argument(
        "--profile-step", action="store_true", help="also profile one whole step (kernels and host operators)"
    )
    parser.add_argument(
        "--memory", action="store_true", help="also record one step's allocations: what is alive at the peak"
    )
    args = parser.parse_args()
    apply_device_defaults(args)
    args.model = args.model or ("anchor" if args.device == "cuda" else "tiny")
    out = Path(args.out or "runs/trainer_profile")
    out.mkdir(parents=True, exist_ok=True)
    model_dir = Path(tempfile.mkdtemp(prefix="trainer_profile_")) / "model"
    dtype = "bfloat16" if args.device == "cuda" else "float32"
    params = build_model_dir(model_dir, args.model, dtype, args.full_length)
    results = []
    for backend in args.backends.split(","):
        print(f"profiling rollout.backend={backend} ...", flush=True)
        results.append(profile_backend(backend, args, model_dir))
    bound = step_lower_bound(params, args) if args.device == "cuda" else None
    text = markdown(results, bound)
    print(text)
    (out / "profile.md").write_text(
        f"# One credo training step, phase by phase ({params / 1e6:.0f}M)\n\n{text}"
    )
    (out / "profile.json").write_text(
        json.dumps({"params": params, "results": results, "bound": bound}, indent=1)
    )
    plot(results, out / "profile.png")
    print(f"wrote {out}/profile.md, profile.json, profile.png")


if __name__ == "__main__":
    main()
