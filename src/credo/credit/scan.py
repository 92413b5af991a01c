"""The one recurrence behind returns, TD(lambda) and GAE: a reverse-time linear scan.

    y_t = x_t + c_t * y_{t+1},    y_T = init        (over the last dimension, t = T-1 .. 0)

Discounted returns (x = r, c = gamma * (1 - done)), GAE (x = delta, c = gamma * lam * (1 - done)) and
lambda-returns are all this scan. The usual implementation is a Python loop over T issuing a few tensor
ops per step; it is bound by per-op overhead (kernel launches on a GPU), not by the bytes involved.
credo evaluates it in one of two ways, chosen by device:

* CUDA with Triton available: one fused kernel, a program per row, walking the row backwards in
  chunks with ``tl.associative_scan`` over the affine maps ``z -> x_t + c_t z`` (composition is
  associative: ``(c1, x1) then (c2, x2) = (c1 c2, x2 + c2 x1)``). One read of the inputs, one write.
* Elsewhere (CPU): a blocked two-level scan. The row is cut into chunks of length L ~ sqrt(T); a loop
  of L steps scans every chunk at once (batched over rows x chunks), the chunk-to-chunk carries obey
  the same recurrence over T/L chunk starts and are solved recursively, and a final fused multiply-add
  ``y = local + (prod of c to the chunk end) * carry`` stitches them. About 2*sqrt(T) small ops
  instead of T, with products of at most L coefficients (no division, no logs: exact for c = 0).

No gradients flow through the Triton path; credit is a target, computed under ``torch.no_grad()``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from credo.credit._checks import check_same_shape, check_tensor, float_dtype

try:  # Triton is an optional accelerator (present with CUDA builds of torch).
    from credo.credit import _triton_scan
except ImportError:  # pragma: no cover - depends on the installation
    _triton_scan = None  # type: ignore[assignment]


def triton_available(device: torch.device) -> bool:
    """Whether the fused Triton kernels can run on ``device``."""
    return _triton_scan is not None and device.type == "cuda" and _triton_scan.AVAILABLE


def reverse_linear_scan(x: Tensor, coef: Tensor, init: Tensor | None = None) -> Tensor:
    """Solve ``y_t = x_t + coef_t * y_{t+1}`` backwards in time, with ``y_T = init``.

    Args:
        x: ``[..., T]`` inputs.
        coef: ``[..., T]`` multipliers of the next value (for example ``gamma * (1 - done)``).
        init: ``[...]`` value after the last step (a bootstrap); 0 when None.

    Returns:
        ``[..., T]`` in float32 (float64 if an input is float64), on the inputs' device.
    """
    check_tensor("x", x)
    check_tensor("coef", coef)
    check_same_shape("x", x, coef=coef)
    if x.dim() == 0:
        raise ValueError("x must have a time dimension (last), got a scalar")
    dtype = float_dtype(x, coef)
    lead, T = x.shape[:-1], x.shape[-1]
    if init is not None and init.shape != lead:
        raise ValueError(
            f"init must have shape {tuple(lead)} (x without its time dim), got {tuple(init.shape)}"
        )
    if T == 0:
        return torch.zeros(x.shape, dtype=dtype, device=x.device)
    rows = x.reshape(-1, T).to(dtype)
    coefs = coef.reshape(-1, T).to(dtype)
    start = (
        torch.zeros(rows.shape[0], dtype=dtype, device=x.device)
        if init is None
        else init.reshape(-1).to(dtype)
    )
    if dtype == torch.float32 and triton_available(x.device):
        out = _triton_scan.reverse_scan(rows, coefs, start)
    else:
        out = _blocked_scan(rows, coefs, start)
    return out.reshape(x.shape)


def _sequential_scan(x: Tensor, coef: Tensor, init: Tensor) -> Tensor:
    """The plain loop over time, on ``[M, T]`` rows laid out time-major for contiguous steps."""
    M, T = x.shape
    xt, ct = x.t().contiguous(), coef.t().contiguous()
    y = torch.empty((T + 1, M), dtype=x.dtype, device=x.device)
    y[T] = init
    for t in range(T - 1, -1, -1):
        torch.addcmul(xt[t], ct[t], y[t + 1], out=y[t])
    return y[:T].t()


def _block_length(T: int) -> int:
    """Chunk length near sqrt(T) (about 2 sqrt(T) loop steps in all), a divisor of T when one is
    close, so that no padding copy is needed."""
    root = max(8, math.isqrt(T - 1) + 1)
    for length in range(root, min(2 * root, T) + 1):
        if T % length == 0:
            return length
    return root


def _blocked_scan(x: Tensor, coef: Tensor, init: Tensor, block: int | None = None) -> Tensor:
    """Two-level scan of ``[M, T]`` rows (see the module docstring).

    The chunks are scanned in place as strided columns of a ``[M * n_chunks, block]`` view: no
    transposes, whose power-of-two strides thrash the CPU caches at the sizes RL uses.
    """
    M, T = x.shape
    block = block or _block_length(T)
    if T <= block:
        return _sequential_scan(x, coef, init)
    n_chunks = -(-T // block)
    pad = n_chunks * block - T
    if pad:  # identity steps after the end: x = 0, c = 1 carry ``init`` through unchanged
        x = torch.nn.functional.pad(x, (0, pad), value=0.0)
        coef = torch.nn.functional.pad(coef, (0, pad), value=1.0)
    xs = x.reshape(M * n_chunks, block)
    cs = coef.reshape(M * n_chunks, block)
    local = torch.empty((M * n_chunks, block + 1), dtype=x.dtype, device=x.device)  # chunk scan from 0
    local[:, block] = 0.0
    for j in range(block - 1, -1, -1):
        torch.addcmul(xs[:, j], cs[:, j], local[:, j + 1], out=local[:, j])
    to_end = cs.flip(1).cumprod(1).flip(1)  # to_end[:, j] = prod_{u=j}^{end of chunk} c_u
    # y at the start of chunk k obeys the same recurrence over chunks; solve it for k = 1 .. n-1.
    first_local = local[:, 0].reshape(M, n_chunks)
    first_to_end = to_end[:, 0].reshape(M, n_chunks)
    starts = _blocked_scan(first_local[:, 1:], first_to_end[:, 1:], init, block)
    carry_in = torch.cat([starts, init[:, None]], dim=1).reshape(M * n_chunks, 1)  # value after each chunk
    y = torch.addcmul(local[:, :block], to_end, carry_in)
    return y.reshape(M, n_chunks * block)[:, :T]
