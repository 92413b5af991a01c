"""GAE and lambda-returns: credo against the per-timestep loop that verl and OpenRLHF use.

The loop issues a few tensor ops per time step (its cost is per-op overhead: kernel launches on a
GPU); credo runs a blocked scan on the CPU and one fused Triton kernel on CUDA. Both compute the same
thing (episode boundaries, termination vs truncation), side by side in one run; the table reports
the time of each, their ratio, the bandwidth credo achieves on the bytes it must move, and the largest
difference between the two outputs.

    python benchmarks/credit_bench.py                      # CPU: B=256, T=2048 (and a smaller case)
    python benchmarks/credit_bench.py --device cuda --peak-gbs 4800   # GPU: B=1024, T=8192 and B=256, T=2048
    python benchmarks/credit_bench.py --cases 8x64 --repeats 2 --peak-gbs 20   # CPU smoke run

With ``--peak-gbs`` (the memory bandwidth, 4800 GB/s for an H200) each row also gives the bandwidth
bound (bytes moved / peak) and credo's time as a multiple of it. ``credo_gae_queued_us`` is the time
per call of ``--queued`` back-to-back calls with one synchronisation at the end: on a GPU, the cost a
training loop pays when nothing in the call waits for the device (no host syncs); ``fused_kernel_queued_us``
the same for the bare fused kernel (its output allocation and the launch, without gae's argument
checks and finiteness assert).

``--shapley-K`` adds rows for ``shapley_max`` on ``--shapley-sets`` sets: the sort form beside the
sort-free dense form and the same formula fused in one Triton kernel (on CUDA with Triton installed,
K <= 32; None elsewhere), with the same bound (read the scores, write the values): each Triton
algorithm (``auto`` is what ``shapley_max(method="triton")`` runs), and with ``--shapley-warps 1,2,4,8``
each of them launched with each number of warps.

    python benchmarks/credit_bench.py --device cuda --peak-gbs 4800 --cases 256x2048 --shapley-K 4,8,16,32
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from credo.credit import _triton_scan, _triton_shapley, gae, lambda_returns
from credo.credit.scan import triton_available
from credo.credit.shapley import DENSE_MAX_PLAYERS, TRITON_MAX_PLAYERS, shapley_max


def gae_loop(rewards, values, next_values, dones, terminated, gamma: float, lam: float) -> torch.Tensor:
    """The usual implementation: a Python loop over T, a few tensor ops per step (as in verl's
    ``compute_gae_advantage_return``), extended with done/terminated flags."""
    T = rewards.shape[-1]
    not_done = 1.0 - dones.float()
    not_term = 1.0 - terminated.float()
    last = torch.zeros_like(rewards[:, 0])
    reversed_adv = []
    for t in reversed(range(T)):
        delta = rewards[:, t] + gamma * not_term[:, t] * next_values[:, t] - values[:, t]
        last = delta + gamma * lam * not_done[:, t] * last
        reversed_adv.append(last)
    return torch.stack(reversed_adv[::-1], dim=1)


def timed(fn: Callable[[], torch.Tensor], device: torch.device, repeats: int) -> tuple[float, torch.Tensor]:
    out = fn()  # warm-up (and Triton compilation)
    if device.type == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3, out


def make_inputs(B: int, T: int, device: torch.device, seed: int = 0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    rewards = torch.randn(B, T, generator=g)
    values = torch.randn(B, T, generator=g)
    next_values = torch.roll(values, -1, dims=1)
    dones = torch.rand(B, T, generator=g) < 1.0 / 512
    dones[:, -1] = True
    terminated = dones & (torch.rand(B, T, generator=g) < 0.5)
    return [t.to(device) for t in (rewards, values, next_values, dones, terminated)]


def queued(fn: Callable[[], torch.Tensor], device: torch.device, calls: int) -> float:
    """Microseconds per call of ``calls`` back-to-back calls, synchronising once at the end."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / calls * 1e6


def bound_columns(bytes_moved: int, ms: float, peak_gbs: float | None) -> dict[str, object]:
    if not peak_gbs:
        return {}
    bound_ms = bytes_moved / (peak_gbs * 1e9) * 1e3
    return {"bound_ms": round(bound_ms, 4), "x_bound": round(ms / bound_ms, 1)}


def bench_case(
    B: int, T: int, device: torch.device, repeats: int, peak_gbs: float | None = None, calls: int = 100
) -> dict[str, object]:
    inputs = make_inputs(B, T, device)
    gamma, lam = 0.99, 0.95
    loop_ms, loop_out = timed(lambda: gae_loop(*inputs, gamma, lam), device, max(1, repeats // 4))
    credo_ms, credo_out = timed(lambda: gae(*inputs, gamma, lam), device, repeats)
    lr_ms, lr_out = timed(lambda: lambda_returns(*inputs, gamma, lam), device, repeats)
    # Bytes credo must move: rewards, values, next_values (fp32), dones, terminated (bool), output (fp32).
    bytes_moved = B * T * (3 * 4 + 2 * 1 + 4)
    return {
        "device": device.type,
        "B": B,
        "T": T,
        "path": "triton" if triton_available(device) else "blocked scan",
        "loop_ms": round(loop_ms, 3),
        "credo_gae_ms": round(credo_ms, 3),
        "credo_lambda_returns_ms": round(lr_ms, 3),
        "speedup_vs_loop": round(loop_ms / credo_ms, 1),
        "credo_gae_queued_us": round(queued(lambda: gae(*inputs, gamma, lam), device, calls), 1),
        # the same without gae's checks and assert: the output allocation and the launch
        "fused_kernel_queued_us": (
            round(queued(lambda: _triton_scan.fused_gae(*inputs, gamma, lam)[0], device, calls), 1)
            if triton_available(device)
            else None
        ),
        "credo_GB_per_s": round(bytes_moved / (credo_ms * 1e-3) / 1e9, 1),
        **bound_columns(bytes_moved, credo_ms, peak_gbs),
        "max_abs_diff_vs_loop": float((credo_out - loop_out).abs().max()),
        "lambda_returns_minus_values_diff": float((lr_out - inputs[1] - credo_out).abs().max()),
    }


def bench_shapley(
    K: int, sets: int, device: torch.device, repeats: int, peak_gbs: float | None, warps: tuple[int, ...] = ()
) -> dict[str, object]:
    """One row: each method on ``sets`` sets of K players, its time, GB/s and ratio to the bound; the
    Triton algorithms with their default launch and, as ``triton_<algorithm>_w<n>``, with each
    number of warps in ``warps``."""
    g = torch.Generator(device="cpu").manual_seed(K)
    scores = (torch.rand(sets, K, generator=g) * 10).floor().div(10).to(device)  # ties, zeros
    bytes_moved = 2 * scores.numel() * scores.element_size()
    times: dict[str, float | None] = {}
    row: dict[str, object] = {"device": device.type, "K": K, "sets": sets}
    sort_ms, phi_sort = timed(lambda: shapley_max(scores, validate=False, method="sort"), device, repeats)
    times["sort"] = sort_ms
    # the torch dense form materialises [sets, K, K] tensors (int64 counts: 80 GB at 10M sets of
    # K=32), so it runs only where shapley_max would ever pick it
    phi_dense = None
    times["dense"] = None
    if K <= DENSE_MAX_PLAYERS:
        times["dense"], phi_dense = timed(
            lambda: shapley_max(scores, validate=False, method="dense"), device, repeats
        )
    triton_runs = device.type == "cuda" and _triton_shapley.AVAILABLE and K <= TRITON_MAX_PLAYERS
    phi_triton: dict[str, torch.Tensor] = {}
    for algorithm in _triton_shapley.ALGORITHMS:  # "auto": what shapley_max(method="triton") runs
        for num_warps in (None, *warps) if algorithm != "auto" else (None,):
            name = f"triton_{algorithm}" if num_warps is None else f"triton_{algorithm}_w{num_warps}"
            times[name] = None
            # the pairs kernel unrolls K^2 comparisons (minutes to compile at K=32): only up to K=16
            if triton_runs and (algorithm != "pairs" or K <= 16):

                def run(algorithm: str = algorithm, num_warps: int | None = num_warps) -> torch.Tensor:
                    return _triton_shapley.shapley_max(
                        scores, None, torch.float32, num_warps=num_warps, algorithm=algorithm
                    )

                times[name], phi_triton[name] = timed(run, device, repeats)
    for method, ms in times.items():
        row[f"{method}_ms"] = None if ms is None else round(ms, 4)
    for method, ms in times.items():
        if method != "sort":
            row[f"{method}_GB_per_s"] = None if ms is None else round(bytes_moved / (ms * 1e-3) / 1e9, 1)
    row["max_abs_diff_dense_vs_sort"] = (
        None if phi_dense is None else float((phi_dense - phi_sort).abs().max())
    )
    for name, phi in phi_triton.items():
        row[f"max_abs_diff_{name}_vs_sort"] = float((phi - phi_sort).abs().max())
    if peak_gbs:
        bound_ms = bytes_moved / (peak_gbs * 1e9) * 1e3
        row["bound_ms"] = round(bound_ms, 4)
        for method, ms in times.items():
            row[f"{method}_x_bound"] = None if ms is None else round(ms / bound_ms, 1)
    return row


def print_rows(rows: list[dict[str, object]]) -> None:
    header = list(rows[0])
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(str(row.get(h)) for h in header))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--peak-gbs", type=float, default=None, help="memory bandwidth, GB/s (H200: 4800)")
    parser.add_argument("--cases", default=None, help="comma-separated BxT GAE cases, e.g. 256x2048,64x512")
    parser.add_argument("--queued", type=int, default=100, help="back-to-back GAE calls per queued timing")
    parser.add_argument(
        "--shapley-K", default="", help="comma-separated K for shapley_max rows (e.g. 4,8,16)"
    )
    parser.add_argument("--shapley-sets", type=int, default=10_000_000)
    parser.add_argument(
        "--shapley-warps",
        default="",
        help="comma-separated num_warps to sweep for each Triton algorithm (e.g. 1,2,4,8)",
    )
    args = parser.parse_args()
    warps = tuple(int(n) for n in args.shapley_warps.split(",") if n)
    device = torch.device(args.device)
    if args.cases:
        cases = [tuple(int(n) for n in case.split("x")) for case in args.cases.split(",")]
    else:
        cases = [(1024, 8192), (256, 2048)] if device.type == "cuda" else [(256, 2048), (64, 512)]
    rows = [bench_case(B, T, device, args.repeats, args.peak_gbs, args.queued) for B, T in cases]
    print_rows(rows)
    shapley_rows = [
        bench_shapley(int(K), args.shapley_sets, device, args.repeats, args.peak_gbs, warps)
        for K in args.shapley_K.split(",")
        if K
    ]
    if shapley_rows:
        print()
        print_rows(shapley_rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gae": rows, "shapley_max": shapley_rows}, f, indent=2)


if __name__ == "__main__":
    main()
