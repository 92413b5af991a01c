"""Triton kernel for the Shapley values of the max game, sort-free (imported by shapley.py).

Runs on CUDA, or on the CPU under Triton's interpreter (``TRITON_INTERPRET=1`` set before this module
is imported; slow, for tests). The formula is :func:`credo.credit.shapley.shapley_max_dense`'s:

    phi_i = sum_{j present, r_j <= r_i} (r_j - prev(r_j)) / (n_ge(r_j) * c(r_j))

with n_ge(t) the number of present players scoring >= t, c(t) the number scoring exactly t and
prev(t) the largest present score below t (0 = v(empty) when there is none).

One set per lane: a program takes ``BLOCK = 32 * num_warps`` sets, each lane loads its set's K scores
into K registers (K is a compile-time constant, the K^2 pairs are unrolled), computes n_ge, c and
prev per player and then phi, and writes the K values: one read of the scores (and of ``present``),
one write of phi, no shuffles, no shared memory. Per set about 10 K^2 instructions.

Measured on an H200, 10M float32 sets, against the bandwidth bound (8 K bytes per set at 4.8 TB/s):
K=4 0.13 ms (1.9x the bound), K=8 0.49 ms (3.7x), K=16 2.3 ms (8.6x: compute-bound). A first version
that broadcast ``[BLOCK, KP, KP]`` comparison tiles (KP = next power of two >= K) took 0.48, 5.3 and
18.6 ms: its reductions across lanes and layout conversions through shared memory dominated.

A second kernel (``algorithm="network"``, the default above K = 8) sorts each lane's (score, player)
pairs with a bitonic network unrolled over ``KP = 2^ceil(log2 K)`` registers (KP/2 log KP (log KP + 1)/2
compare-exchanges: 80 at K=16, 240 at K=32), then accumulates the sorted closed form
``phi_(m) = sum_{j >= m} (s_j - s_{j+1}) / j`` (``s_{n+1} = 0``; ties get equal values, as the terms
between tied scores vanish) and stores each value at its player's column: no second pass to undo the
sort. Its PTX for sm_90 (compiled on the CPU: ``triton.compile`` with a ``GPUTarget``) has 1,847 lines
at K=16 (114 compares, 398 selects, 16 loads, 16 stores) against the pairs kernel's 4,975, and 4,343
at K=32 against 20,905 (which takes 92 s to compile on this project's CPU, against 17 s). Measured on
an H200 (``benchmarks/credit_bench.py --device cuda --peak-gbs 4800 --shapley-K 8,16``, 10M float32
sets): K=8 0.52 ms against the pairs kernel's 0.53 ms (3.9x the bound), K=16 **1.81 ms against 2.35 ms**
(6.8x the bound against 8.8x). Far less than the instruction counts promise; our guess, not yet
profiled: both kernels read and write a set as K strided 4-byte accesses per lane (32 sectors per warp
instruction), and those memory instructions now bound them. K=32 is not timed yet.

Absent players are loaded as NaN: every comparison with a NaN is false, so they drop out of every
count, max and sum without a mask of their own, and get exactly 0. (A NaN score passed with
``validate=False`` is thereby treated as absent, as the torch dense form does too.)
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl

    AVAILABLE = True
except ImportError:  # pragma: no cover - CPU-only installs
    AVAILABLE = False

MAX_PLAYERS = 32  # a set's K scores live in registers of one lane; beyond 32 use the sort form
PAIRS_MAX_PLAYERS = 8  # algorithm="auto": the K^2 pairs kernel up to here, the sorting network above
NUM_WARPS = 4  # with one set per lane: 128 sets per program (measured faster than 256 at K=8, 16)

# dtypes the kernel loads as they are (converted to the compute dtype in registers); others are
# converted on the host first
_LOADABLE = (
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.int8,
    torch.uint8,
    torch.int16,
    torch.int32,
    torch.int64,
)

if AVAILABLE:

    @triton.jit
    def _shapley_max_kernel(
        scores_ptr,  # [N, K] any real dtype (contiguous)
        present_ptr,  # [N, K] bool (contiguous; unused unless HAS_PRESENT)
        phi_ptr,  # [N, K] float32 or float64 output: the compute dtype
        N,
        K: tl.constexpr,
        HAS_PRESENT: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        # One set per lane: the K scores of a set are K registers of one thread, every comparison is
        # a plain instruction (no shuffles, no shared memory), unrolled over K^2 pairs.
        rows = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        row_in = rows < N
        base = rows * K
        dtype = phi_ptr.dtype.element_ty
        xs = ()
        n_present = tl.zeros([BLOCK], dtype=tl.int32)
        for k in tl.static_range(K):
            x = tl.load(scores_ptr + base + k, mask=row_in, other=0).to(dtype)
            if HAS_PRESENT:
                x = tl.where(tl.load(present_ptr + base + k, mask=row_in, other=0) != 0, x, float("nan"))
            n_present += (x == x).to(tl.int32)
            xs = xs + (x,)  # noqa: RUF005 (no starred unpacking in @triton.jit code)
        terms = ()
        for j in tl.static_range(K):
            n_ge = tl.zeros([BLOCK], dtype=tl.int32)
            count = tl.zeros([BLOCK], dtype=tl.int32)
            lower = tl.full([BLOCK], float("-inf"), dtype)
            for i in tl.static_range(K):
                n_ge += (xs[i] >= xs[j]).to(tl.int32)
                count += (xs[i] == xs[j]).to(tl.int32)
                lower = tl.maximum(lower, tl.where(xs[i] < xs[j], xs[i], float("-inf")))
            prev = tl.where(n_present - n_ge > 0, lower, 0.0)
            term = (xs[j] - prev) / tl.maximum(n_ge * count, 1).to(dtype)  # NaN for absent j, unused
            terms = terms + (term,)  # noqa: RUF005
        for i in tl.static_range(K):
            phi = tl.zeros([BLOCK], dtype=dtype)
            for j in tl.static_range(K):  # the same order for every i: ties get identical sums
                phi += tl.where(xs[j] <= xs[i], terms[j], 0.0)
            tl.store(phi_ptr + base + i, phi, mask=row_in)

    @triton.jit
    def _compare_exchange(xs, ids, i: tl.constexpr, j: tl.constexpr, DESCEND: tl.constexpr, KP: tl.constexpr):
        # one compare-exchange of registers i < j of a lane's (value, player) tuples: the larger value
        # first when DESCEND, the smaller first otherwise; returns the two new tuples
        if DESCEND:
            swap = xs[i] < xs[j]
        else:
            swap = xs[i] > xs[j]
        new_xs = ()
        new_ids = ()
        for t in tl.static_range(KP):
            if t == i:
                new_xs = new_xs + (tl.where(swap, xs[j], xs[i]),)  # noqa: RUF005
                new_ids = new_ids + (tl.where(swap, ids[j], ids[i]),)  # noqa: RUF005
            elif t == j:
                new_xs = new_xs + (tl.where(swap, xs[i], xs[j]),)  # noqa: RUF005
                new_ids = new_ids + (tl.where(swap, ids[i], ids[j]),)  # noqa: RUF005
            else:
                new_xs = new_xs + (xs[t],)  # noqa: RUF005
                new_ids = new_ids + (ids[t],)  # noqa: RUF005
        return new_xs, new_ids

    @triton.jit
    def _shapley_max_network_kernel(
        scores_ptr,  # [N, K] any real dtype (contiguous)
        present_ptr,  # [N, K] bool (contiguous; unused unless HAS_PRESENT)
        phi_ptr,  # [N, K] float32 or float64 output: the compute dtype
        N,
        K: tl.constexpr,
        KP: tl.constexpr,  # next power of two >= K: the sorting network's width
        LOG_KP: tl.constexpr,
        HAS_PRESENT: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        # One set per lane, as above, but sorted in registers by a bitonic network (value, player)
        # pairs, descending, absent players as -inf at the end), then the sorted closed form
        #     phi_(m) = sum_{j >= m, j < n} (s_j - s_{j+1}) / (j + 1),   s_n = 0 = v(empty),
        # accumulated from the last present position up, each value stored at its player's column.
        rows = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        row_in = rows < N
        base = rows * K
        dtype = phi_ptr.dtype.element_ty
        xs = ()
        ids = ()
        n_present = tl.zeros([BLOCK], dtype=tl.int32)
        for k in tl.static_range(KP):
            if k < K:
                x = tl.load(scores_ptr + base + k, mask=row_in, other=0).to(dtype)
                keep = x == x  # a NaN score counts as absent
                if HAS_PRESENT:
                    keep = keep & (tl.load(present_ptr + base + k, mask=row_in, other=0) != 0)
                x = tl.where(keep, x, float("-inf"))
                n_present += keep.to(tl.int32)
            else:
                x = tl.full([BLOCK], float("-inf"), dtype)
            xs = xs + (x,)  # noqa: RUF005 (no starred unpacking in @triton.jit code)
            ids = ids + (tl.full([BLOCK], k, tl.int32),)  # noqa: RUF005
        # bitonic sort, descending: merge stages of width 2, 4, .., KP, each in steps of halving strides;
        # lane i meets partner i ^ stride (indices written out where used: a constexpr assigned to a
        # name would be materialised as a tensor, and tuples take constexpr indices only)
        for p in tl.static_range(LOG_KP):
            for q in tl.static_range(p + 1):
                for i in tl.static_range(KP):
                    if (i ^ ((1 << p) >> q)) > i:
                        xs, ids = _compare_exchange(xs, ids, i, i ^ ((1 << p) >> q), (i & (2 << p)) == 0, KP)
        # the sorted closed form, from the last position up (position KP - 1 - back)
        acc = tl.zeros([BLOCK], dtype=dtype)
        for back in tl.static_range(KP):
            if back > 0:  # the next lower value, or v(empty) = 0 below the last present player
                following = tl.where(KP - back < n_present, xs[KP - back], 0.0)
            else:
                following = tl.zeros([BLOCK], dtype=dtype)
            present_here = KP - 1 - back < n_present
            acc += tl.where(present_here, (xs[KP - 1 - back] - following) / (KP - back), 0.0)
            column = ids[KP - 1 - back]
            tl.store(phi_ptr + base + column, tl.where(present_here, acc, 0.0), mask=row_in & (column < K))


def interpreting() -> bool:
    """Whether Triton runs kernels in its interpreter (on CPU tensors), ``TRITON_INTERPRET=1``."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def shapley_max(
    scores: Tensor,
    present: Tensor | None,
    dtype: torch.dtype,
    block: int | None = None,
    num_warps: int = NUM_WARPS,
    algorithm: str = "auto",
) -> Tensor:
    """Max-game Shapley values of ``scores: [..., K]`` (checked by the caller), in one kernel launch.

    Args:
        scores: ``[..., K]`` real scores, 1 <= K <= 32 (K = 0 gives an empty result), on CUDA (or the
            CPU under the interpreter). Any leading shape, N = 0 sets included.
        present: optional ``[..., K]`` bool, same shape.
        dtype: the compute and output dtype, float32 or float64.
        block, num_warps: launch tuning: sets per program (default one per lane, ``32 * num_warps``).
        algorithm: ``"pairs"``, the sort-free K^2 comparisons (``_shapley_max_kernel``, about 10 K^2
            instructions per set), ``"network"``, a bitonic sorting network in registers and the
            sorted closed form (``_shapley_max_network_kernel``, about 5 K log^2 K; NaN and -inf
            scores count as absent), or ``"auto"``: pairs for K <= ``PAIRS_MAX_PLAYERS``, network
            above (see the module docstring for what is measured and what is not).

    Returns:
        phi: ``[..., K]`` in ``dtype``.
    """
    if not AVAILABLE:
        raise RuntimeError("shapley_max(method='triton') needs Triton, which is not installed")
    K = scores.shape[-1]
    if algorithm not in ("auto", "pairs", "network"):
        raise ValueError(f"algorithm must be 'auto', 'pairs' or 'network', got {algorithm!r}")
    if K > MAX_PLAYERS:
        raise ValueError(f"the Triton kernel takes K <= {MAX_PLAYERS} players, got K={K}; use 'sort'")
    if scores.device.type != "cuda" and not interpreting():
        raise ValueError(
            f"the Triton kernel runs on CUDA tensors (or under TRITON_INTERPRET=1), got {scores.device}"
        )
    phi = torch.empty(scores.shape, dtype=dtype, device=scores.device)
    N = phi.numel() // K if K else 0
    if N == 0:
        return phi
    if scores.dtype not in _LOADABLE:
        scores = scores.to(dtype)
    scores = scores.contiguous()  # returns the tensor itself when it already is
    if present is not None:
        present = present.contiguous()
    rows = block or 32 * num_warps
    grid = (triton.cdiv(N, rows),)
    mask = scores if present is None else present
    if algorithm == "network" or (algorithm == "auto" and K > PAIRS_MAX_PLAYERS):
        log_kp = max(K - 1, 0).bit_length()
        _shapley_max_network_kernel[grid](
            scores, mask, phi, N, K=K, KP=1 << log_kp, LOG_KP=log_kp, HAS_PRESENT=present is not None,
            BLOCK=rows, num_warps=num_warps,
        )  # fmt: skip
    else:
        _shapley_max_kernel[grid](
            scores, mask, phi, N, K=K, HAS_PRESENT=present is not None, BLOCK=rows, num_warps=num_warps
        )
    return phi
