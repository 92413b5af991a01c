"""Triton kernels for the reverse linear scan and fused GAE (CUDA only; imported lazily by scan.py).

One program per row walks the row backwards in chunks of ``BLOCK`` steps. Inside a chunk, the affine
maps ``z -> x_t + c_t z`` are composed with ``tl.associative_scan`` (in reversed time order), and the
value carried in from the later chunk is applied at the end: ``y = D + C * carry``.
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
        x_ptr,  # [M, T] float32: x (or rewards when FUSED_GAE)
        c_ptr,  # [M, T] float32: coef (unused when FUSED_GAE)
        v_ptr,  # [M, T] float32 values (FUSED_GAE)
        nv_ptr,  # [M, T] float32 next values (FUSED_GAE)
        done_ptr,  # [M, T] uint8 dones (FUSED_GAE)
        term_ptr,  # [M, T] uint8 terminated (FUSED_GAE)
        init_ptr,  # [M] float32
        y_ptr,  # [M, T] float32 output
        T,
        gamma,
        gamma_lam,
        FUSED_GAE: tl.constexpr,
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
            if FUSED_GAE:
                r = tl.load(x_ptr + base + t, mask=valid, other=0.0)
                v = tl.load(v_ptr + base + t, mask=valid, other=0.0)
                nv = tl.load(nv_ptr + base + t, mask=valid, other=0.0)
                done = tl.load(done_ptr + base + t, mask=valid, other=0).to(tl.float32)
                term = tl.load(term_ptr + base + t, mask=valid, other=0).to(tl.float32)
                x = r + gamma * (1.0 - term) * nv - v
                c = tl.where(valid, gamma_lam * (1.0 - done), 1.0)
            else:
                x = tl.load(x_ptr + base + t, mask=valid, other=0.0)
                c = tl.load(c_ptr + base + t, mask=valid, other=1.0)
            c_acc, x_acc = tl.associative_scan((c, x), 0, _compose)
            y = x_acc + c_acc * carry
            tl.store(y_ptr + base + t, y, mask=valid)
            carry = tl.sum(tl.where(lanes == BLOCK - 1, y, 0.0), axis=0)

    def _launch(M: int, T: int, device: torch.device, **tensors_and_flags) -> Tensor:
        y = torch.empty((M, T), dtype=torch.float32, device=device)
        block = 1024 if T >= 1024 else max(16, triton.next_power_of_2(T))
        _scan_kernel[(M,)](y_ptr=y, T=T, BLOCK=block, num_warps=4, **tensors_and_flags)
        return y


def reverse_scan(x: Tensor, coef: Tensor, init: Tensor) -> Tensor:
    """``[M, T]`` float32 rows on CUDA -> ``y_t = x_t + coef_t y_{t+1}``, ``y_T = init``."""
    M, T = x.shape
    x, coef, init = x.contiguous(), coef.contiguous(), init.contiguous()
    return _launch(
        M, T, x.device, x_ptr=x, c_ptr=coef, v_ptr=x, nv_ptr=x, done_ptr=x, term_ptr=x,
        init_ptr=init, gamma=0.0, gamma_lam=0.0, FUSED_GAE=False,
    )  # fmt: skip


def fused_gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    dones: Tensor,
    terminated: Tensor,
    gamma: float,
    lam: float,
) -> Tensor:
    """GAE in one kernel: the TD errors are formed while scanning. ``[M, T]`` rows on CUDA."""
    M, T = rewards.shape
    f32 = [t.to(torch.float32).contiguous() for t in (rewards, values, next_values)]
    flags = [t.to(torch.uint8).contiguous() for t in (dones, terminated)]
    init = torch.zeros(M, dtype=torch.float32, device=rewards.device)
    return _launch(
        M, T, rewards.device, x_ptr=f32[0], c_ptr=f32[0], v_ptr=f32[1], nv_ptr=f32[2],
        done_ptr=flags[0], term_ptr=flags[1], init_ptr=init, gamma=float(gamma),
        gamma_lam=float(gamma * lam), FUSED_GAE=True,
    )  # fmt: skip
