"""Triton kernels for the reverse linear scan and fused GAE (CUDA only; imported lazily by scan.py).

One program per row walks the row backwards in chunks of ``BLOCK`` steps. Inside a chunk, the affine
maps ``z -> x_t + c_t z`` are composed with ``tl.associative_scan`` (in reversed time order), and the
value carried in from the later chunk is applied at the end: ``y = D + C * carry``.

The fused GAE reads its inputs as they are (any float dtype, bool flags, or no flag tensor at all for
``None``) and converts in registers, and it clears a per-device "all finite" flag on a NaN/inf
advantage, so that the caller's finiteness check is an asynchronous assert on that flag instead of a
second pass over the result: the host work per call is one ``torch.empty``, one launch and the assert.
"""

from __future__ import annotations

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl

    AVAILABLE = True
except ImportError:  # pragma: no cover - CPU-only installs
    AVAILABLE = False

if AVAILABLE:

    @triton.jit
    def _compose(c_first, x_first, c_then, x_then):
        # apply (c_first, x_first), then (c_then, x_then): z -> x_then + c_then * (x_first + c_first z)
        return c_first * c_then, x_then + c_then * x_first

    @triton.jit
    def _scan_kernel(
        x_ptr,  # [M, T] float32
        c_ptr,  # [M, T] float32 coef
        init_ptr,  # [M] float32
        y_ptr,  # [M, T] float32 output
        T,
        BLOCK: tl.constexpr,
    ):
        row = tl.program_id(0).to(tl.int64)
        base = row * T
        carry = tl.load(init_ptr + row)
        lanes = tl.arange(0, BLOCK)
        n_chunks = tl.cdiv(T, BLOCK)
        for i in range(n_chunks):
            t = T - 1 - i * BLOCK - lanes  # reversed time inside the chunk
            valid = t >= 0
            x = tl.load(x_ptr + base + t, mask=valid, other=0.0)
            c = tl.load(c_ptr + base + t, mask=valid, other=1.0)
            c_acc, x_acc = tl.associative_scan((c, x), 0, _compose)
            y = x_acc + c_acc * carry
            tl.store(y_ptr + base + t, y, mask=valid)
            carry = tl.sum(tl.where(lanes == BLOCK - 1, y, 0.0), axis=0)

    @triton.jit
    def _gae_kernel(
        r_ptr,  # [M, T] rewards, any real dtype
        v_ptr,  # [M, T] values, any real dtype
        nv_ptr,  # [M, T] next values, any real dtype
        done_ptr,  # [M, T] bool dones (unused unless HAS_DONE)
        term_ptr,  # [M, T] bool terminated (unused unless HAS_TERM)
        y_ptr,  # [M, T] float32 advantages
        ok_ptr,  # [1] bool, set to False where an advantage is NaN/inf (never set back to True)
        T,
        gamma,
        gamma_lam,
        HAS_DONE: tl.constexpr,
        HAS_TERM: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        # the scan above with x = delta_t = r + gamma (1 - term) nv - v and c = gamma lam (1 - done),
        # formed in registers; A_T = 0
        row = tl.program_id(0).to(tl.int64)
        base = row * T
        carry = 0.0
        lanes = tl.arange(0, BLOCK)
        bad = lanes < 0  # lanes that met a NaN/inf advantage
        n_chunks = tl.cdiv(T, BLOCK)
        for i in range(n_chunks):
            t = T - 1 - i * BLOCK - lanes  # reversed time inside the chunk
            valid = t >= 0
            r = tl.load(r_ptr + base + t, mask=valid, other=0.0).to(tl.float32)
            v = tl.load(v_ptr + base + t, mask=valid, other=0.0).to(tl.float32)
            nv = tl.load(nv_ptr + base + t, mask=valid, other=0.0).to(tl.float32)
            if HAS_TERM:
                term = tl.load(term_ptr + base + t, mask=valid, other=0).to(tl.float32)
                x = r + gamma * (1.0 - term) * nv - v
            else:
                x = r + gamma * nv - v
            if HAS_DONE:
                done = tl.load(done_ptr + base + t, mask=valid, other=0).to(tl.float32)
                c = tl.where(valid, gamma_lam * (1.0 - done), 1.0)
            else:
                c = tl.where(valid, gamma_lam, 1.0)
            c_acc, x_acc = tl.associative_scan((c, x), 0, _compose)
            y = x_acc + c_acc * carry
            tl.store(y_ptr + base + t, y, mask=valid)
            bad = bad | (valid & ~(tl.abs(y) < float("inf")))
            carry = tl.sum(tl.where(lanes == BLOCK - 1, y, 0.0), axis=0)
        tl.store(ok_ptr, False, mask=tl.max(bad.to(tl.int32), axis=0) != 0)

    def _block(T: int) -> int:
        return 1024 if T >= 1024 else max(16, triton.next_power_of_2(T))


# dtypes the fused GAE kernel loads as they are (converted to float32 in registers)
_LOADABLE = (
    torch.float16, torch.bfloat16, torch.float32, torch.int8, torch.uint8, torch.int16, torch.int32,
    torch.int64, torch.bool,
)  # fmt: skip


def _row_major(t: Tensor) -> Tensor:
    """``t`` itself when the kernel can read it as is (the usual case: no op at all), else a copy."""
    if t.dtype not in _LOADABLE:
        t = t.to(torch.float32)
    return t.contiguous()  # the tensor itself when already contiguous


_ALL_FINITE: dict[torch.device, Tensor] = {}


def all_finite_flag(device: torch.device) -> Tensor:
    """The per-device ``[1]`` bool flag that :func:`fused_gae` clears on a NaN/inf advantage.

    It starts True and is never set back: the caller asserts it with ``torch._assert_async``, and a
    failed device-side assert ends the process's CUDA context, so a cleared flag is never seen by a
    later call. One flag for every call saves allocating, and reducing, per-call flags.
    """
    flag = _ALL_FINITE.get(device)
    if flag is None:
        flag = _ALL_FINITE[device] = torch.ones(1, dtype=torch.bool, device=device)
    return flag


def reverse_scan(x: Tensor, coef: Tensor, init: Tensor) -> Tensor:
    """``[M, T]`` float32 rows on CUDA -> ``y_t = x_t + coef_t y_{t+1}``, ``y_T = init``."""
    M, T = x.shape
    x, coef, init = x.contiguous(), coef.contiguous(), init.contiguous()
    y = torch.empty((M, T), dtype=torch.float32, device=x.device)
    if M == 0:
        return y
    _scan_kernel[(M,)](x, coef, init, y, T, BLOCK=_block(T), num_warps=4)
    return y


def fused_gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    dones: Tensor | None,
    terminated: Tensor | None,
    gamma: float,
    lam: float,
    all_finite: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """GAE in one kernel launch, the TD errors formed while scanning, the result checked for NaN/inf.

    Args:
        rewards, values, next_values: ``[..., T]`` (T >= 1), on CUDA (or the CPU under
            ``TRITON_INTERPRET=1``); any float (or integer) dtype, read as is and computed in float32.
        dones, terminated: ``[..., T]`` bool, or None (no boundaries / never terminated).
        gamma, lam: discount and GAE lambda.
        all_finite: a ``[1]`` bool flag that the kernel sets to False if an advantage is NaN/inf (and
            leaves alone otherwise); default the device's :func:`all_finite_flag`.

    Returns:
        ``(advantages, all_finite)``: ``[..., T]`` float32, and the flag. Contiguous inputs of a
        loadable dtype are read in place: the host work is one allocation and one launch.
    """
    T = rewards.shape[-1]
    y = torch.empty(rewards.shape, dtype=torch.float32, device=rewards.device)
    ok = all_finite_flag(rewards.device) if all_finite is None else all_finite
    M = y.numel() // T
    if M == 0:
        return y, ok
    r, v, nv = _row_major(rewards), _row_major(values), _row_major(next_values)
    done = r if dones is None else dones.contiguous()
    term = r if terminated is None else terminated.contiguous()
    _gae_kernel[(M,)](
        r, v, nv, done, term, y, ok, T, float(gamma), float(gamma * lam),
        HAS_DONE=dones is not None, HAS_TERM=terminated is not None, BLOCK=_block(T), num_warps=4,
    )  # fmt: skip
    return y, ok
