"""The Triton kernels: max-game Shapley values (``shapley_max(method="triton")``) and the fused GAE.

* CPU, always: what ``method="auto"`` picks and the errors of ``method="triton"`` (no Triton needed).
* CPU with Triton installed: the kernels under Triton's interpreter, in a subprocess (the interpreter
  is chosen when a kernel is decorated, so ``TRITON_INTERPRET=1`` must be set before the kernel
  modules are imported), against the sort form, ``shapley_exact`` and the CPU GAE, both Shapley
  algorithms (pairs, sorting network). The dev extras install Triton; skipped without it. Small
  sizes: the interpreter is slow.
* CUDA (``-m cuda``): the compiled kernels against the sort form and the CPU GAE.

Run the interpreter checks alone: ``TRITON_INTERPRET=1 python tests/credit/test_shapley_triton.py``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import credo.credit.shapley as shapley_module
from credo.credit import _triton_scan, _triton_shapley, gae
from credo.credit.scan import _blocked_scan
from credo.credit.set_utilities import max_utility
from credo.credit.shapley import shapley_exact, shapley_max

HAS_TRITON = importlib.util.find_spec("triton") is not None
TRITON_K = [*range(1, 17), 32]


def _case(K: int, lead: tuple[int, ...], dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores with ties, zeros and negatives (halves in [-3, 3]) and a random present mask in which
    the first set has no present player."""
    g = torch.Generator().manual_seed(seed)
    halves = (torch.randn((*lead, K), generator=g, dtype=torch.float64) * 2).round().clamp(-6, 6) / 2
    scores = halves.to(dtype)
    present = torch.rand((*lead, K), generator=g) < 0.7
    present.view(-1, K)[0] = False
    return scores, present


def _check_against_sort(got: torch.Tensor, scores: torch.Tensor, present: torch.Tensor | None) -> None:
    """Same values as the sort form up to rounding; ties bit-identical; absent players exactly 0."""
    want = shapley_max(scores, present, method="sort")
    assert got.dtype == want.dtype and got.shape == scores.shape and got.device == scores.device
    atol = 1e-12 if got.dtype == torch.float64 else 1e-5
    error = float((got.cpu() - want.cpu()).abs().max())
    assert error <= atol, f"K={scores.shape[-1]} {got.dtype}: max |triton - sort| = {error:.2e}"
    mask = torch.ones_like(scores, dtype=torch.bool) if present is None else present
    tied = (scores[..., :, None] == scores[..., None, :]) & mask[..., :, None] & mask[..., None, :]
    same = got[..., :, None] == got[..., None, :]
    assert bool((same | ~tied).all()), "tied players got different values"
    assert bool((got[~mask] == 0).all()), "an absent player got a value"


# --------------------------------------------------------------------------------------------------
# CPU: routing and errors (no Triton needed)


def test_auto_rule_picks_triton_on_cuda_up_to_32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_triton_shapley, "AVAILABLE", True)
    assert shapley_module._auto_triton(torch.device("cuda"), 1)
    assert shapley_module._auto_triton(torch.device("cuda", 0), 32)
    assert not shapley_module._auto_triton(torch.device("cuda"), 33)
    assert not shapley_module._auto_triton(torch.device("cpu"), 8)
    monkeypatch.setattr(_triton_shapley, "AVAILABLE", False)
    assert not shapley_module._auto_triton(torch.device("cuda"), 8)  # then dense (K <= 16) or sort


def test_auto_routes_to_the_triton_kernel_where_the_rule_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def spy(scores: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
        calls.append(scores.shape[-1])
        return shapley_max(scores, present, method="sort")

    monkeypatch.setattr(shapley_module, "_shapley_max_triton", spy)
    scores, present = _case(8, (5,), torch.float64, seed=1)
    shapley_max(scores, present)
    assert calls == []  # the CPU: sort
    monkeypatch.setattr(shapley_module, "_auto_triton", lambda device, K: K <= 32)
    shapley_max(scores, present)
    shapley_max(scores, method="sort")
    shapley_max(scores, method="dense")
    shapley_max(scores, method="triton")
    assert calls == [8, 8]  # auto (the rule says triton) and method="triton" only


def test_method_triton_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    scores = torch.rand(4, 8)
    with pytest.raises(ValueError, match="'triton'"):
        shapley_max(scores, method="kernel")  # type: ignore[arg-type]
    monkeypatch.setattr(_triton_shapley, "AVAILABLE", False)
    with pytest.raises(RuntimeError, match="needs Triton"):
        shapley_max(scores, method="triton")
    monkeypatch.setattr(_triton_shapley, "AVAILABLE", True)
    with pytest.raises(ValueError, match="K <= 32"):
        shapley_max(torch.rand(4, 33), method="triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="CUDA"):
        shapley_max(scores, method="triton")


# --------------------------------------------------------------------------------------------------
# CPU: the kernels under Triton's interpreter (a subprocess running this file)


def _interpreter_shapley_checks() -> None:
    for K in TRITON_K:
        for dtype in (torch.float32, torch.float64):
            scores, present = _case(K, (7, 5), dtype, seed=K)
            for mask in (None, present):
                _check_against_sort(shapley_max(scores, mask, method="triton"), scores, mask)
                for algorithm in ("pairs", "network", "network_tile"):  # every kernel, whichever auto picks
                    got = _triton_shapley.shapley_max(scores, mask, dtype, algorithm=algorithm)
                    _check_against_sort(got, scores, mask)
        if K <= 10:  # all 2^K coalitions, float64
            scores, _ = _case(K, (3,), torch.float64, seed=100 + K)
            exact = shapley_exact(max_utility(scores), K)
            assert torch.allclose(shapley_max(scores, method="triton"), exact, rtol=0, atol=1e-12), K
    scores, present = _case(6, (2, 3, 4), torch.float64, seed=7)  # leading dims, not contiguous
    for s, p in ((scores, present), (scores.transpose(0, 1), present.transpose(0, 1))):
        _check_against_sort(shapley_max(s, p, method="triton"), s, p)
    ints = torch.randint(-3, 4, (9, 5))  # integer and half scores: computed in float32
    _check_against_sort(shapley_max(ints, method="triton"), ints, None)
    halves = scores[0].to(torch.float16)
    _check_against_sort(shapley_max(halves, method="triton"), halves, None)
    for shape in ((0, 4), (3, 0, 4), (5, 0)):  # no sets; K = 0
        for dtype in (torch.float32, torch.float64):
            out = shapley_max(torch.zeros(shape, dtype=dtype), method="triton")
            assert out.shape == shape and out.dtype == dtype
    with pytest.raises(ValueError, match="K <= 32"):
        shapley_max(torch.zeros(2, 33), method="triton")


def _gae_inputs(lead: tuple[int, ...], T: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn((*lead, T), generator=g)
    values = torch.randn((*lead, T), generator=g)
    next_values = torch.roll(values, -1, dims=-1)
    dones = torch.rand((*lead, T), generator=g) < 0.05
    terminated = dones & (torch.rand((*lead, T), generator=g) < 0.5)
    return [rewards, values, next_values, dones, terminated]


def _interpreter_gae_checks() -> None:
    gamma, lam = 0.97, 0.9
    for lead, T in (((3,), 1), ((2, 3), 37), ((2,), 1100)):  # 1100: two chunks of 1024
        r, v, nv, d, term = _gae_inputs(lead, T, seed=T)
        cases = [
            (r, v, nv, d, term),
            (r, v, nv, None, None),
            (r.half(), v.t().contiguous().t() if v.dim() == 2 else v, nv, d, None),
        ]
        for inputs in cases:
            got, ok = _triton_scan.fused_gae(*inputs, gamma, lam)
            want = gae(*inputs, gamma, lam)  # the CPU path
            assert got.shape == want.shape and got.dtype == torch.float32
            assert torch.allclose(got, want, rtol=1e-5, atol=1e-5), (lead, T)
            assert ok is _triton_scan.all_finite_flag(r.device) and ok.shape == (1,) and bool(ok)
        bad = r.clone()
        bad.view(-1, T)[-1, T // 2] = float("nan")
        flag = torch.ones(1, dtype=torch.bool)
        _, ok = _triton_scan.fused_gae(bad, v, nv, d, term, gamma, lam, all_finite=flag)
        assert ok is flag and not bool(flag)
        assert bool(_triton_scan.all_finite_flag(r.device))  # the shared flag is untouched
        init = torch.randn(r.numel() // T)
        x, c = r.reshape(-1, T), torch.rand(r.numel() // T, T)
        assert torch.allclose(_triton_scan.reverse_scan(x, c, init), _blocked_scan(x, c, init), atol=1e-5)


def _interpreter_checks() -> None:
    assert _triton_shapley.interpreting() and _triton_shapley.AVAILABLE
    _interpreter_shapley_checks()
    _interpreter_gae_checks()
    print("interpreter checks passed")


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
def test_triton_kernels_under_the_interpreter() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve())], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "interpreter checks passed" in result.stdout


# --------------------------------------------------------------------------------------------------
# CUDA: the compiled kernels

needs_cuda_and_triton = pytest.mark.skipif(
    not (torch.cuda.is_available() and _triton_shapley.AVAILABLE), reason="needs CUDA and Triton"
)


@pytest.mark.cuda
@needs_cuda_and_triton
@pytest.mark.parametrize("K", [1, 2, 3, 5, 8, 13, 16, 17, 32])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapley_max_triton_on_cuda(K: int, dtype: torch.dtype) -> None:
    scores, present = _case(K, (1000, 3), dtype, seed=K)
    scores, present = scores.cuda(), present.cuda()
    for mask in (None, present):
        got = shapley_max(scores, mask, method="triton")
        _check_against_sort(got, scores, mask)
        assert torch.equal(shapley_max(scores, mask), got)  # auto picks it on CUDA
        for algorithm in ("pairs", "network", "network_tile") if K <= 17 else ("network", "network_tile"):
            _check_against_sort(
                _triton_shapley.shapley_max(scores, mask, dtype, algorithm=algorithm), scores, mask
            )
    assert shapley_max(scores[:0], method="triton").shape == (0, 3, K)


@pytest.mark.cuda
@needs_cuda_and_triton
def test_fused_gae_on_cuda_reads_inputs_as_they_are() -> None:
    r, v, nv, d, term = (t.cuda() for t in _gae_inputs((4, 3), 1500, seed=3))
    strided = v.transpose(0, 1).contiguous().transpose(0, 1)
    for inputs in ((r, v, nv, d, term), (r, v, nv, None, None), (r.half(), strided, nv, d, None)):
        out = gae(*inputs, 0.99, 0.95)
        want = gae(*[None if t is None else t.cpu() for t in inputs], 0.99, 0.95)
        assert torch.allclose(out.cpu(), want, rtol=1e-5, atol=1e-5)
    assert bool(_triton_scan.all_finite_flag(r.device))
    bad = r.clone()
    bad[2, 1, 7] = float("inf")
    flag = torch.ones(1, dtype=torch.bool, device="cuda")
    _triton_scan.fused_gae(bad, v, nv, d, term, 0.99, 0.95, all_finite=flag)
    assert not bool(flag) and bool(_triton_scan.all_finite_flag(r.device))


if __name__ == "__main__":
    _interpreter_checks()
