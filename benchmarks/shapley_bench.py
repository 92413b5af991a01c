"""Shapley credit for candidate sets: the closed form against exact enumeration, the paper's O(K^2)
per-set loop, a dense O(K^2) tensor form and shapiq (when installed), side by side in one run.

Sections (timings are the best of a few repeats after a warm-up; CUDA timings synchronise):

0. ``shapley_max`` by sort + cumsum (``method="sort"``) beside the sort-free dense form
   (``method="dense"``, :func:`credo.credit.shapley.shapley_max_dense`) and the same formula fused in
   one Triton kernel (``method="triton"``, on CUDA with Triton installed, K <= 32; "n/a" elsewhere),
   all ``validate=False``, on ``--sets`` sets for each K of ``--sweep-K``, against the bandwidth
   bound: bytes moved (read the scores, write the values) / ``--peak-gbs`` (4800 for an H200's
   HBM3e), as a ratio; also ``method="auto"`` validated, and the dense form under ``torch.compile``
   with ``--compile``.
1. ``shapley_max`` on ``--sets`` sets of K=8 (closed form, sort + cumsum) against
   * the triangular-matmul O(K^2) tensor form (sort, then a matmul instead of a cumsum), the
     sort-free dense form and (CUDA) the Triton kernel on the same sets,
   * ``shapley_exact`` (2^K coalitions, all subset games in one enumeration) on ``--exact-subset``
     sets, extrapolated per set,
   * the per-set Python loop the paper describes (sort, then each candidate sums the increments up to
     its rank: O(K^2)) on ``--loop-subset`` sets, extrapolated per set,
   * shapiq's ``ExactComputer`` (one game at a time, numpy game function) on ``--shapiq-subset``
     sets, extrapolated per set;
   with the largest difference of each method's values from the closed form.
2. ``shapley_exact`` at K=12 (4096 coalitions): one game, and ``--games`` games in one enumeration;
   shapiq on the same games.
3. ``shapley_permutation`` accuracy against budget on a utility without closed form (best relevance
   plus a determinantal diversity bonus, K=12): mean absolute error against ``shapley_exact`` as a
   function of coalitions evaluated, antithetic and plain, and shapiq's ``PermutationSamplingSV`` at
   the same budgets. A table and a PNG.

    python benchmarks/shapley_bench.py                                   # CPU, 1,000,000 sets
    python benchmarks/shapley_bench.py --device cuda --sets 10000000 --peak-gbs 4800   # GPU figure
    python benchmarks/shapley_bench.py --sets 2000 --exact-subset 50 --loop-subset 50 \
        --shapiq-subset 5 --games 5 --perm-games 2 --perm-repeats 1 --repeats 1 --peak-gbs 20  # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from credo.credit import _triton_shapley
from credo.credit.set_utilities import max_utility, relevance_diversity_utility
from credo.credit.shapley import (
    TRITON_MAX_PLAYERS,
    shapley_exact,
    shapley_max,
    shapley_max_dense,
    shapley_permutation,
)

try:  # an optional peer
    import shapiq
except ImportError:  # pragma: no cover - depends on the environment
    shapiq = None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> tuple[float, Any]:
    """Best (minimum) seconds of ``repeats`` calls after one warm-up call, and the last output.

    The minimum, not the median: on a shared machine other processes only ever add time."""
    out = fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times), out


def shapley_max_triangular(scores: torch.Tensor) -> torch.Tensor:
    """O(K^2) tensor form: the prefix sum written as a product with an upper-triangular ones matrix."""
    K = scores.shape[-1]
    sorted_values, order = scores.sort(dim=-1)
    previous = torch.nn.functional.pad(sorted_values[..., :-1], (1, 0))
    weights = 1.0 / torch.arange(K, 0, -1, dtype=scores.dtype, device=scores.device)
    upper = torch.triu(torch.ones(K, K, dtype=scores.dtype, device=scores.device))
    phi_sorted = ((sorted_values - previous) * weights) @ upper
    return torch.empty_like(phi_sorted).scatter_(-1, order, phi_sorted)


def shapley_max_paper_loop(scores: list[float]) -> list[float]:
    """The per-set O(K^2) loop: sort, then candidate of rank m sums (r_(j) - r_(j-1)) / (K - j + 1)."""
    K = len(scores)
    order = sorted(range(K), key=lambda k: scores[k])
    ranked = [0.0] + [scores[k] for k in order]
    phi = [0.0] * K
    for m, player in enumerate(order, start=1):
        total = 0.0
        for j in range(1, m + 1):
            total += (ranked[j] - ranked[j - 1]) / (K - j + 1)
        phi[player] = total
    return phi


def numpy_max_game(scores: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    def game(coalitions: np.ndarray) -> np.ndarray:
        c = np.asarray(coalitions, dtype=bool)
        best = np.where(c, scores[None, :], -np.inf).max(axis=1)
        return np.where(c.any(axis=1), best, 0.0)

    return game


def shapiq_values(values: Any, K: int) -> np.ndarray:
    lookup = values.interaction_lookup
    return np.array([values.values[lookup[(k,)]] for k in range(K)])


def make_scores(n: int, K: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """Scores in [0, 1] rounded to tenths (so ties occur, as with graded relevance), some zeros."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((n, K), generator=g) * 10).floor().div(10).to(device)


# --------------------------------------------------------------------------------------------------


def bound_s(scores: torch.Tensor, peak_gbs: float | None) -> float | None:
    """Seconds to read the scores and write the values (same dtype) at ``peak_gbs`` GB/s."""
    if not peak_gbs:
        return None
    return 2 * scores.numel() * scores.element_size() / (peak_gbs * 1e9)


def triton_runs(device: torch.device, K: int) -> bool:
    """Whether ``method="triton"`` is timed: CUDA, Triton installed, K <= 32."""
    return device.type == "cuda" and _triton_shapley.AVAILABLE and K <= TRITON_MAX_PLAYERS


def triton_columns(
    scores: torch.Tensor, phi_sort: torch.Tensor, device: torch.device, args: argparse.Namespace
) -> dict[str, Any]:
    """The Triton kernel's time, x bound, GB/s and difference from the sort form (None where not run)."""
    K = scores.shape[-1]
    if not triton_runs(device, K):
        return dict.fromkeys(
            [
                "triton_s",
                "triton_x_bound",
                "triton_GB_per_s",
                "triton_max_diff_vs_sort",
                "triton_max_diff_vs_sort_float64",
            ]
        )
    triton_s, phi = timed(partial(shapley_max, scores, validate=False, method="triton"), device, args.repeats)
    bound = bound_s(scores, args.peak_gbs)
    sub = scores[: min(args.sets, 100_000)].double()
    return {
        "triton_s": triton_s,
        "triton_x_bound": None if bound is None else triton_s / bound,
        "triton_GB_per_s": 2 * scores.numel() * scores.element_size() / triton_s / 1e9,
        "triton_max_diff_vs_sort": float((phi - phi_sort).abs().max()),
        "triton_max_diff_vs_sort_float64": float(
            (shapley_max(sub, method="triton") - shapley_max(sub, method="sort")).abs().max()
        ),
    }


def section_sweep(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Sort against dense and the Triton kernel for each K, beside the bandwidth bound."""
    rows = []
    compiled = None
    if args.compile:
        compiled = torch.compile(lambda x: shapley_max(x, validate=False, method="dense"), dynamic=False)
    for K in args.sweep_K:
        scores = make_scores(args.sets, K, device, seed=K)
        sort_s, phi_sort = timed(
            partial(shapley_max, scores, validate=False, method="sort"), device, args.repeats
        )
        dense_s, phi_dense = timed(
            partial(shapley_max, scores, validate=False, method="dense"), device, args.repeats
        )
        auto_s, _ = timed(partial(shapley_max, scores), device, args.repeats)
        bound = bound_s(scores, args.peak_gbs)
        row: dict[str, Any] = {
            "K": K,
            "sets": args.sets,
            "bytes": 2 * scores.numel() * scores.element_size(),
            "sort_s": sort_s,
            "dense_s": dense_s,
            "auto_validated_s": auto_s,
            "dense_max_diff_vs_sort": float((phi_dense - phi_sort).abs().max()),
            "bound_s": bound,
            "sort_x_bound": None if bound is None else sort_s / bound,
            "dense_x_bound": None if bound is None else dense_s / bound,
            "dense_GB_per_s": 2 * scores.numel() * scores.element_size() / dense_s / 1e9,
            **triton_columns(scores, phi_sort, device, args),
        }
        if compiled is not None:
            row["dense_compiled_s"], phi_c = timed(partial(compiled, scores), device, args.repeats)
            row["dense_compiled_x_bound"] = None if bound is None else row["dense_compiled_s"] / bound
            row["dense_compiled_max_diff_vs_sort"] = float((phi_c - phi_sort).abs().max())
        # exact agreement in float64 on a slice (the timed runs are float32, as a trainer's scores)
        sub = scores[: min(args.sets, 100_000)].double()
        row["dense_max_diff_vs_sort_float64"] = float(
            (shapley_max_dense(sub) - shapley_max(sub, method="sort")).abs().max()
        )
        rows.append(row)
        del scores, phi_sort, phi_dense
    return {"device": device.type, "peak_gbs": args.peak_gbs, "table": rows}


def section_closed_form(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    K, N = args.K, args.sets
    scores = make_scores(N, K, device)
    result: dict[str, Any] = {"K": K, "sets": N, "device": device.type}
    closed_s, phi = timed(lambda: shapley_max(scores), device, args.repeats)
    unchecked_s, _ = timed(lambda: shapley_max(scores, validate=False), device, args.repeats)
    dense_s, phi_dense = timed(lambda: shapley_max_triangular(scores), device, args.repeats)
    sortfree_s, phi_sortfree = timed(
        lambda: shapley_max(scores, validate=False, method="dense"), device, args.repeats
    )
    if triton_runs(device, K):
        result["closed_form_method"] = "triton"
        result["triton_s"], phi_triton = timed(
            lambda: shapley_max(scores, validate=False, method="triton"), device, args.repeats
        )
        result["triton_max_diff"] = float((phi_triton - phi).abs().max())
    else:
        result["closed_form_method"] = "dense" if device.type == "cuda" and K <= 16 else "sort"
    result["closed_form_s"] = closed_s
    result["closed_form_unvalidated_s"] = unchecked_s
    result["closed_form_sets_per_s"] = N / closed_s
    result["dense_k2_s"] = dense_s
    result["dense_k2_max_diff"] = float((phi_dense - phi).abs().max())
    result["sort_free_dense_s"] = sortfree_s
    result["sort_free_dense_max_diff"] = float((phi_sortfree - phi).abs().max())
    result["bound_s"] = bound_s(scores, args.peak_gbs)

    n = min(args.exact_subset, N)
    exact_s, phi_exact = timed(lambda: shapley_exact(max_utility(scores[:n]), K, device=device), device, 1)
    result["exact_subset"] = n
    result["exact_extrapolated_s"] = exact_s / n * N
    result["exact_max_diff"] = float((phi_exact - phi[:n]).abs().max())

    n = min(args.loop_subset, N)
    rows = scores[:n].double().cpu().tolist()
    start = time.perf_counter()
    loop_phi = [shapley_max_paper_loop(r) for r in tqdm(rows, desc="paper O(K^2) loop", leave=False)]
    loop_s = time.perf_counter() - start
    result["paper_loop_subset"] = n
    result["paper_loop_extrapolated_s"] = loop_s / n * N
    result["paper_loop_max_diff"] = float((torch.tensor(loop_phi) - phi[:n].double().cpu()).abs().max())

    if shapiq is not None:
        n = min(args.shapiq_subset, N)
        rows_np = scores[:n].double().cpu().numpy()
        start = time.perf_counter()
        values = []
        for r in tqdm(rows_np, desc="shapiq ExactComputer", leave=False):
            values.append(shapiq_values(shapiq.ExactComputer(numpy_max_game(r), n_players=K)("SV"), K))
        shapiq_s = time.perf_counter() - start
        result["shapiq_subset"] = n
        result["shapiq_extrapolated_s"] = shapiq_s / n * N
        result["shapiq_max_diff"] = float(np.abs(np.stack(values) - phi[:n].double().cpu().numpy()).max())
    return result


def section_exact(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    K = args.exact_K
    scores = make_scores(args.games, K, device, seed=1).double()
    one_s, phi_one = timed(
        lambda: shapley_exact(max_utility(scores[0]), K, device=device), device, args.repeats
    )
    many_s, phi_many = timed(
        lambda: shapley_exact(max_utility(scores), K, device=device), device, args.repeats
    )
    closed = shapley_max(scores)
    result: dict[str, Any] = {
        "K": K,
        "games": args.games,
        "exact_one_game_s": one_s,
        "exact_batched_s": many_s,
        "exact_batched_per_game_s": many_s / args.games,
        "exact_max_diff_vs_closed_form": float((phi_many - closed).abs().max()),
    }
    big = make_scores(1, 20, device, seed=3).double()[0]
    result["exact_one_game_K20_s"], phi_big = timed(
        lambda: shapley_exact(max_utility(big), 20, device=device), device, 2
    )
    result["exact_K20_max_diff"] = float((phi_big - shapley_max(big)).abs().max())
    if shapiq is not None:
        n = min(args.games, args.shapiq_games)
        rows = scores[:n].cpu().numpy()
        start = time.perf_counter()
        values = [
            shapiq_values(shapiq.ExactComputer(numpy_max_game(r), n_players=K)("SV"), K)
            for r in tqdm(rows, desc=f"shapiq exact K={K}", leave=False)
        ]
        shapiq_s = (time.perf_counter() - start) / n
        result["shapiq_per_game_s"] = shapiq_s
        result["shapiq_games"] = n
        result["shapiq_max_diff"] = float(np.abs(np.stack(values) - closed[:n].cpu().numpy()).max())
    del phi_one
    return result


def section_permutation(args: argparse.Namespace, device: torch.device, out_dir: Path) -> dict[str, Any]:
    K, games = args.exact_K, args.perm_games
    g = torch.Generator().manual_seed(2)
    relevance = torch.rand((games, K), generator=g, dtype=torch.float64).to(device)
    embeddings = torch.randn((games, K, 4), generator=g, dtype=torch.float64).to(device)
    utility = relevance_diversity_utility(relevance, embeddings, diversity_weight=0.3)
    exact = shapley_exact(utility, K, device=device)
    budgets = [2, 8, 32, 128, 512, 2048]
    rows = []
    for n_perm in tqdm(budgets, desc="permutation budgets", leave=False):
        row: dict[str, Any] = {"permutations": n_perm, "coalitions": n_perm * (K - 1) + 2}
        for antithetic in (True, False):
            errors, stderrs = [], []
            for rep in range(args.perm_repeats):
                gen = torch.Generator(device=device).manual_seed(1000 * rep + n_perm)
                phi, se = shapley_permutation(utility, K, n_perm, antithetic=antithetic, generator=gen)
                errors.append(float((phi - exact).abs().mean()))
                stderrs.append(float(se.nanmean()))
            key = "antithetic" if antithetic else "plain"
            row[f"{key}_mae"] = statistics.mean(errors)
            row[f"{key}_mean_se"] = statistics.mean(stderrs)
        if shapiq is not None:
            n_games = min(games, args.shapiq_games)
            rel_np, emb_np = relevance[:n_games].cpu(), embeddings[:n_games].cpu()
            errors = []
            for i in range(n_games):
                single = relevance_diversity_utility(rel_np[i], emb_np[i], diversity_weight=0.3)

                def game(c: np.ndarray, single=single) -> np.ndarray:
                    return single(torch.from_numpy(np.atleast_2d(np.asarray(c, dtype=bool)))).numpy()

                approx = shapiq.PermutationSamplingSV(n=K, random_state=n_perm + i)
                values = approx.approximate(row["coalitions"], game)
                errors.append(np.abs(shapiq_values(values, K) - exact[i].cpu().numpy()).mean())
            row["shapiq_permutation_mae"] = float(np.mean(errors))
        rows.append(row)
    result = {"K": K, "games": games, "repeats": args.perm_repeats, "table": rows}
    plot_permutation(rows, out_dir / "shapley_permutation_budget.png", K)
    result["png"] = str(out_dir / "shapley_permutation_budget.png")
    return result


def plot_permutation(rows: list[dict[str, Any]], path: Path, K: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["coalitions"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog(x, [r["antithetic_mae"] for r in rows], "o-", label="credo, antithetic pairs")
    ax.loglog(x, [r["plain_mae"] for r in rows], "s-", label="credo, independent orders")
    if "shapiq_permutation_mae" in rows[0]:
        ax.loglog(x, [r["shapiq_permutation_mae"] for r in rows], "^--", label="shapiq PermutationSamplingSV")
    ref = rows[0]["plain_mae"]
    ax.loglog(x, [ref * (x[0] / xi) ** 0.5 for xi in x], ":", color="grey", label="1/sqrt(budget)")
    ax.set_xlabel("coalitions evaluated (utility calls)")
    ax.set_ylabel("mean |phi_hat - phi|")
    ax.set_title(f"Permutation sampling, relevance + DPP diversity, K={K}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 1e3:.4f}"


def _ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}x"


def _diff(x: float | None, width: int) -> str:
    return f"{'n/a':>{width}s}" if x is None else f"{x:{width}.1e}"


def _gbs(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0f}"


def print_sweep(sw: dict[str, Any]) -> None:
    """Section 0: one row per K, times beside the bound ("n/a" where a method was not run)."""
    print(f"\n== shapley_max, sort against sort-free dense and Triton, {sw['table'][0]['sets']:,} sets on {sw['device']}"
          f" (validate=False; bound = bytes / {sw['peak_gbs']} GB/s) ==")  # fmt: skip
    head = (f"{'K':>3s} {'sort ms':>10s} {'dense ms':>10s} {'triton ms':>10s} {'auto+valid ms':>14s} {'bound ms':>9s} "
            f"{'sort/bound':>11s} {'dense/bound':>12s} {'triton/bound':>13s} {'triton GB/s':>12s}")  # fmt: skip
    has_compiled = "dense_compiled_s" in sw["table"][0]
    print(
        head
        + (f" {'compiled ms':>12s} {'comp/bound':>11s}" if has_compiled else "")
        + f" {'max|diff| f32':>14s} {'f64':>8s} {'triton f32':>11s} {'f64':>8s}"
    )
    ms, ratio, diff, gbs = _ms, _ratio, _diff, _gbs
    for r in sw["table"]:
        text = (f"{r['K']:3d} {ms(r['sort_s']):>10s} {ms(r['dense_s']):>10s} {ms(r['triton_s']):>10s} "
                f"{ms(r['auto_validated_s']):>14s} {ms(r['bound_s']):>9s} {ratio(r['sort_x_bound']):>11s} "
                f"{ratio(r['dense_x_bound']):>12s} {ratio(r['triton_x_bound']):>13s} {gbs(r['triton_GB_per_s']):>12s}")  # fmt: skip
        if has_compiled:
            text += f" {ms(r['dense_compiled_s']):>12s} {ratio(r['dense_compiled_x_bound']):>11s}"
        text += f" {r['dense_max_diff_vs_sort']:14.1e} {r['dense_max_diff_vs_sort_float64']:8.1e}"
        text += f" {diff(r['triton_max_diff_vs_sort'], 11)} {diff(r['triton_max_diff_vs_sort_float64'], 8)}"
        print(text)


def print_report(report: dict[str, Any]) -> None:
    print_sweep(report["sweep"])
    cf = report["closed_form"]
    N = cf["sets"]
    print(f"\n== shapley_max: {N:,} sets of K={cf['K']} on {cf['device']} ==")
    print(f"{'method':44s} {'seconds (for all sets)':>24s} {'x closed form':>14s} {'max |diff|':>11s}")

    def line(name: str, seconds: float, diff: float | None) -> None:
        ratio = seconds / cf["closed_form_s"]
        d = "" if diff is None else f"{diff:.1e}"
        print(f"{name:44s} {seconds:24.4f} {ratio:14.1f} {d:>11s}")

    line(f"closed form (auto: {cf['closed_form_method']}), validated", cf["closed_form_s"], 0.0)
    line("closed form, validate=False", cf["closed_form_unvalidated_s"], None)
    line("sort + triangular matmul O(K^2) form", cf["dense_k2_s"], cf["dense_k2_max_diff"])
    line("sort-free dense O(K^2), validate=False", cf["sort_free_dense_s"], cf["sort_free_dense_max_diff"])
    if "triton_s" in cf:
        line("sort-free Triton kernel, validate=False", cf["triton_s"], cf["triton_max_diff"])
    if cf["bound_s"] is not None:
        line("bandwidth bound (bytes / --peak-gbs)", cf["bound_s"], None)
    line(
        f"shapley_exact, 2^K (from {cf['exact_subset']:,}, extrap.)",
        cf["exact_extrapolated_s"],
        cf["exact_max_diff"],
    )
    line(
        f"paper O(K^2) Python loop (from {cf['paper_loop_subset']:,}, extrap.)",
        cf["paper_loop_extrapolated_s"],
        cf["paper_loop_max_diff"],
    )
    if "shapiq_extrapolated_s" in cf:
        line(
            f"shapiq ExactComputer (from {cf['shapiq_subset']:,}, extrap.)",
            cf["shapiq_extrapolated_s"],
            cf["shapiq_max_diff"],
        )
    print(f"closed form throughput: {cf['closed_form_sets_per_s']:.3e} sets/s "
          f"(torch threads {report['threads']}, load average at start {report['load_average_at_start'][0]:.2f})")  # fmt: skip

    ex = report["exact"]
    print(f"\n== shapley_exact at K={ex['K']} (2^{ex['K']} coalitions, max game) ==")
    print(f"one game: {ex['exact_one_game_s'] * 1e3:.2f} ms; {ex['games']} games in one enumeration: "
          f"{ex['exact_batched_s'] * 1e3:.2f} ms ({ex['exact_batched_per_game_s'] * 1e3:.3f} ms/game); "
          f"max |diff| vs closed form {ex['exact_max_diff_vs_closed_form']:.1e}")  # fmt: skip
    print(f"one game at K=20 (2^20 coalitions): {ex['exact_one_game_K20_s']:.3f} s, "
          f"max |diff| vs closed form {ex['exact_K20_max_diff']:.1e}")  # fmt: skip
    if "shapiq_per_game_s" in ex:
        print(f"shapiq ExactComputer: {ex['shapiq_per_game_s'] * 1e3:.2f} ms/game "
              f"({ex['shapiq_per_game_s'] / ex['exact_one_game_s']:.1f}x credo one game, "
              f"{ex['shapiq_per_game_s'] / ex['exact_batched_per_game_s']:.1f}x credo batched), "
              f"max |diff| {ex['shapiq_max_diff']:.1e}")  # fmt: skip

    pm = report["permutation"]
    print(
        f"\n== shapley_permutation: MAE vs budget (K={pm['K']}, {pm['games']} games, {pm['repeats']} repeats) =="
    )
    header = f"{'orders':>7s} {'coalitions':>11s} {'antithetic MAE':>15s} {'(mean SE)':>10s} {'plain MAE':>10s} {'(mean SE)':>10s}"
    has_shapiq = "shapiq_permutation_mae" in pm["table"][0]
    print(header + (f" {'shapiq MAE':>11s}" if has_shapiq else ""))
    for r in pm["table"]:
        text = (f"{r['permutations']:7d} {r['coalitions']:11d} {r['antithetic_mae']:15.5f} {r['antithetic_mean_se']:10.5f} "
                f"{r['plain_mae']:10.5f} {r['plain_mean_se']:10.5f}")  # fmt: skip
        if has_shapiq:
            text += f" {r['shapiq_permutation_mae']:11.5f}"
        print(text)
    print(f"plot: {pm['png']}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sets", type=int, default=1_000_000)
    parser.add_argument("--K", type=int, default=8)
    parser.add_argument("--exact-subset", type=int, default=20_000)
    parser.add_argument("--loop-subset", type=int, default=20_000)
    parser.add_argument("--shapiq-subset", type=int, default=500)
    parser.add_argument("--exact-K", type=int, default=12)
    parser.add_argument("--games", type=int, default=1000)
    parser.add_argument("--shapiq-games", type=int, default=20)
    parser.add_argument("--perm-games", type=int, default=20)
    parser.add_argument("--perm-repeats", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out-dir", default="runs/shapley_bench")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--peak-gbs",
        type=float,
        default=None,
        help="peak memory bandwidth in GB/s for the bound (H200: 4800)",
    )
    parser.add_argument(
        "--sweep-K",
        type=lambda text: [int(k) for k in text.split(",")],
        default=[2, 4, 8, 12, 16],
        help="comma-separated K for the sort/dense/bound table",
    )
    parser.add_argument("--compile", action="store_true", help="also time the dense form under torch.compile")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but CUDA is not available")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    report = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average_at_start": list(os.getloadavg()),
        "shapiq": getattr(shapiq, "__version__", "installed") if shapiq is not None else None,
        "sweep": section_sweep(args, device),
        "closed_form": section_closed_form(args, device),
        "exact": section_exact(args, device),
        "permutation": section_permutation(args, device, out_dir),
    }
    print_report(report)
    (out_dir / f"shapley_bench_{device.type}.json").write_text(json.dumps(report, indent=2))
    print(f"json: {out_dir / f'shapley_bench_{device.type}.json'}")


if __name__ == "__main__":
    main()
