"""Triton kernels for the Shapley values of the max game (imported by shapley.py).

Runs on CUDA, or on the CPU under Triton's interpreter (``TRITON_INTERPRET=1`` set before this module
is imported; slow, for tests). The formula is :func:`credo.credit.shapley.shapley_max_dense`'s:

    phi_i = sum_{j present, r_j <= r_i} (r_j - prev(r_j)) / (n_ge(r_j) * c(r_j))

with n_ge(t) the number of present players scoring >= t, c(t) the number scoring exactly t and
prev(t) the largest present score below t (0 = v(empty) when there is none).

Both kernels take one set per lane: a program takes ``BLOCK = 32 * num_warps`` sets and each lane
holds its set's K scores in K registers (K is a compile-time constant, every loop is unrolled).

* ``algorithm="pairs"`` (``_shapley_max_kernel``), sort-free: n_ge, c and prev per player from the
  K^2 pairs, then phi; about 10 K^2 instructions per set. (A first version that broadcast
  ``[BLOCK, KP, KP]`` comparison tiles was 4-8x slower: reductions across lanes and layout changes
  through shared memory.)
* ``algorithm="network"`` (``_shapley_max_network_kernel``): sorts each lane's (score, player) pairs
  with a bitonic network over ``KP = 2^ceil(log2 K)`` registers (KP/2 log KP (log KP + 1)/2
  compare-exchanges: 80 at K=16, 240 at K=32), then accumulates the sorted closed form
  ``phi_(m) = sum_{j >= m} (s_j - s_{j+1}) / j`` (``s_{n+1} = 0``; ties get equal values, as the terms
  between tied scores vanish) and stores each value at its player's column: no pass to undo the sort.
  It reads a set as K strided loads per lane; ``"network_tile"`` is the same kernel reading and
  writing ``[BLOCK, KP]`` tiles (coalesced; the tile is split into per-lane registers through shared
  memory, player ids alongside, so the columns' order does not matter).

Measured on an H200, 10M float32 sets, against the bandwidth bound (8 K bytes per set at 4.8 TB/s;
``benchmarks/credit_bench.py --device cuda --peak-gbs 4800 --shapley-K 4,8,16,32``, raw in
``docs/results/speed_h200/credit_*.json``):

| K | pairs (4 warps) | network, 4 warps | network, 1 warp | tile, 1 warp | auto | bound |
|---|---|---|---|---|---|---|
| 4 | 0.16-0.19 ms | 0.12-0.14 ms | 0.22 ms | 0.26 ms | 0.14 ms (2.1x) | 0.067 ms |
| 8 | 0.52-0.58 ms | 0.42-0.50 ms | 0.20-0.25 ms | 0.29-0.35 ms | 0.25 ms (1.9x) | 0.133 ms |
| 16 | 2.32-2.35 ms | 1.76-1.90 ms | 1.77-1.82 ms | **0.98-1.01 ms** | 1.07 ms (4.0x) | 0.267 ms |
| 32 | (not timed) | 4.97 ms | 4.93-5.04 ms | 6.5-6.6 ms | 4.93 ms (9.2x) | 0.533 ms |

(Ranges: the same launch in different runs of this session: ``credit_tile_io_4warps.json``,
``credit_1warp_everywhere.json``, ``credit_warps_sweep.txt``, ``credit_auto.json``.)

So ``"auto"`` runs the network kernel, with tile loads for 9 <= K <= 16, with one warp per program
above K=4 and four up to K=4. What we learnt on the way: the strided loads alone were not the cost
(tile loads at 4 warps: 1.85 ms against 1.90 at K=16); the tile kernel needs 96-128 registers per
thread at K=16, and only with one warp per program (many small programs) did the tiles pay. Why one
warp wins is not profiled. The tile loads were measured before ``_load_lanes`` was split out of the
kernel (same computation; its PTX differs by 29 lines of 4,314).

Absent players: the pairs kernel loads them as NaN (every comparison with a NaN is false, so they
drop out of every count, max and sum without a mask of their own, and get exactly 0); the network
kernel loads them as -inf, which sorts them after every present player, and writes 0 for them. (A
NaN score passed with ``validate=False`` is thereby treated as absent by both, as the torch dense
form does too.)
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
# algorithm="auto" (the module docstring's table): the network kernel with tile loads for 9 <= K <= 16,
# with strided loads otherwise; one warp per program above K=4, four up to K=4
TILE_PLAYERS = range(9, 17)
ALGORITHMS = ("auto", "pairs", "network", "network_tile")
# warps per program (one set per lane: 32 sets per warp) when not given: K=16 tile loads take 0.98 ms
# with 1 warp against 1.75-1.80 ms with 2-8 warps; K=8 strided 0.20 ms with 1 against 0.42 with 4;
# K=4 0.116 ms with 4 against 0.22 with 1
NUM_WARPS = 4

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
    def _split_columns(tile, id_tile, BLOCK: tl.constexpr, KP: tl.constexpr, LOG_KP: tl.constexpr):
        # [BLOCK, KP] tiles -> two tuples of KP [BLOCK] tensors (halving the last dim LOG_KP times; the
        # columns come out in bit-reversed order, the same order for both tiles)
        xs = (tile,)
        ids = (id_tile,)
        for level in tl.static_range(LOG_KP):
            new_xs = ()
            new_ids = ()
            for t in tl.static_range(1 << level):
                even, odd = tl.split(tl.reshape(xs[t], [BLOCK, KP >> (level + 1), 2]))
                new_xs = new_xs + (even, odd)  # noqa: RUF005
                even, odd = tl.split(tl.reshape(ids[t], [BLOCK, KP >> (level + 1), 2]))
                new_ids = new_ids + (even, odd)  # noqa: RUF005
            xs = new_xs
            ids = new_ids
        flat_xs = ()
        flat_ids = ()
        for t in tl.static_range(KP):
            flat_xs = flat_xs + (tl.reshape(xs[t], [BLOCK]),)  # noqa: RUF005
            flat_ids = flat_ids + (tl.reshape(ids[t], [BLOCK]),)  # noqa: RUF005
        return flat_xs, flat_ids

    @triton.jit
    def _join_columns(xs, ids, BLOCK: tl.constexpr, KP: tl.constexpr, LOG_KP: tl.constexpr):
        # the inverse shape change of _split_columns: two tuples of KP [BLOCK] tensors -> two
        # [BLOCK, KP] tiles (some column order, the same for both)
        level_xs = ()
        level_ids = ()
        for t in tl.static_range(KP):
            level_xs = level_xs + (tl.reshape(xs[t], [BLOCK, 1]),)  # noqa: RUF005
            level_ids = level_ids + (tl.reshape(ids[t], [BLOCK, 1]),)  # noqa: RUF005
        for level in tl.static_range(LOG_KP):
            new_xs = ()
            new_ids = ()
            for t in tl.static_range(KP >> (level + 1)):
                joined = tl.join(level_xs[2 * t], level_xs[2 * t + 1])
                new_xs = new_xs + (tl.reshape(joined, [BLOCK, 2 << level]),)  # noqa: RUF005
                joined = tl.join(level_ids[2 * t], level_ids[2 * t + 1])
                new_ids = new_ids + (tl.reshape(joined, [BLOCK, 2 << level]),)  # noqa: RUF005
            level_xs = new_xs
            level_ids = new_ids
        return level_xs[0], level_ids[0]

    @triton.jit
    def _load_lanes(
        scores_ptr,
        present_ptr,
        phi_ptr,
        base,
        row_in,
        K: tl.constexpr,
        KP: tl.constexpr,
        LOG_KP: tl.constexpr,
        HAS_PRESENT: tl.constexpr,
        BLOCK: tl.constexpr,
        TILE_IO: tl.constexpr,
    ):
        # each lane's KP (score, player) registers, absent players and padding as -inf, and the number
        # of present players: K strided loads per lane, or (TILE_IO) one [BLOCK, KP] tile
        dtype = phi_ptr.dtype.element_ty
        xs = ()
        ids = ()
        n_present = tl.zeros([BLOCK], dtype=tl.int32)
        if TILE_IO:
            # the [BLOCK, KP] tile in one coalesced load, then split into KP per-lane registers (the
            # layout change goes through shared memory); the columns come out permuted, so the player
            # ids are split alongside: the sort below takes (value, player) pairs in any order
            columns = tl.arange(0, KP)[None, :]
            if K == KP:  # a mask constant along the row lets the load be vectorised
                in_tile = row_in[:, None] & (columns >= 0)
            else:
                in_tile = row_in[:, None] & (columns < K)
            tile = tl.load(scores_ptr + base[:, None] + columns, mask=in_tile, other=0).to(dtype)
            keep = in_tile & (tile == tile)  # a NaN score counts as absent
            if HAS_PRESENT:
                keep = keep & (tl.load(present_ptr + base[:, None] + columns, mask=in_tile, other=0) != 0)
            n_present = tl.sum(keep.to(tl.int32), axis=1)
            id_tile = columns + tl.zeros([BLOCK, KP], tl.int32)
            xs, ids = _split_columns(tl.where(keep, tile, float("-inf")), id_tile, BLOCK, KP, LOG_KP)
        else:
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
        return xs, ids, n_present

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
        TILE_IO: tl.constexpr,  # load and store [BLOCK, KP] tiles (coalesced) instead of K strided accesses
    ):
        # One set per lane, as above, but sorted in registers by a bitonic network (value, player)
        # pairs, descending, absent players as -inf at the end), then the sorted closed form
        #     phi_(m) = sum_{j >= m, j < n} (s_j - s_{j+1}) / (j + 1),   s_n = 0 = v(empty),
        # accumulated from the last present position up, each value stored at its player's column.
        rows = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        row_in = rows < N
        base = rows * K
        dtype = phi_ptr.dtype.element_ty
        xs, ids, n_present = _load_lanes(
            scores_ptr, present_ptr, phi_ptr, base, row_in, K, KP, LOG_KP, HAS_PRESENT, BLOCK, TILE_IO
        )
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
        phis = ()
        for back in tl.static_range(KP):
            if back > 0:  # the next lower value, or v(empty) = 0 below the last present player
                following = tl.where(KP - back < n_present, xs[KP - back], 0.0)
            else:
                following = tl.zeros([BLOCK], dtype=dtype)
            present_here = KP - 1 - back < n_present
            acc += tl.where(present_here, (xs[KP - 1 - back] - following) / (KP - back), 0.0)
            column = ids[KP - 1 - back]
            if TILE_IO:
                phis = (tl.where(present_here, acc, 0.0),) + phis  # noqa: RUF005 (sorted order)
            else:
                tl.store(
                    phi_ptr + base + column, tl.where(present_here, acc, 0.0), mask=row_in & (column < K)
                )
        if TILE_IO:  # back into one [BLOCK, KP] tile (columns permuted), scattered within each row
            phi_tile, column_tile = _join_columns(phis, ids, BLOCK, KP, LOG_KP)
            tl.store(
                phi_ptr + base[:, None] + column_tile, phi_tile, mask=row_in[:, None] & (column_tile < K)
            )


def interpreting() -> bool:
    """Whether Triton runs kernels in its interpreter (on CPU tensors), ``TRITON_INTERPRET=1``."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def shapley_max(
    scores: Tensor,
    present: Tensor | None,
    dtype: torch.dtype,
    block: int | None = None,
    num_warps: int | None = None,
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
            scores count as absent), ``"network_tile"``, the same with coalesced tile loads and
            stores, or ``"auto"``: network_tile for K in ``TILE_PLAYERS``, network otherwise (the
            module docstring has the measurements behind the choice and the default ``num_warps``).

    Returns:
        phi: ``[..., K]`` in ``dtype``.
    """
    if not AVAILABLE:
        raise RuntimeError("shapley_max(method='triton') needs Triton, which is not installed")
    K = scores.shape[-1]
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
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
    if algorithm == "auto":
        algorithm = "network_tile" if K in TILE_PLAYERS else "network"
    if num_warps is None:
        num_warps = 1 if algorithm != "pairs" and K > 4 else NUM_WARPS
    rows = block or 32 * num_warps
    grid = (triton.cdiv(N, rows),)
    mask = scores if present is None else present
    if algorithm in ("network", "network_tile"):
        log_kp = max(K - 1, 0).bit_length()
        _shapley_max_network_kernel[grid](
            scores, mask, phi, N, K=K, KP=1 << log_kp, LOG_KP=log_kp, HAS_PRESENT=present is not None,
            BLOCK=rows, TILE_IO=algorithm == "network_tile", num_warps=num_warps,
        )  # fmt: skip
    else:
        _shapley_max_kernel[grid](
            scores, mask, phi, N, K=K, HAS_PRESENT=present is not None, BLOCK=rows, num_warps=num_warps
        )
    return phi
