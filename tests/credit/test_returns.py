from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from credo.credit import discounted_returns, gae, lambda_returns, reverse_linear_scan, reward_to_go, td_errors
from credo.credit.scan import _blocked_scan, _sequential_scan

from .reference import gae_loop, lambda_return_recursive, returns_loop


def _episodes(B: int, T: int, seed: int, p_done: float = 0.15):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(B, T, generator=g)
    values = torch.randn(B, T, generator=g)
    next_values = torch.randn(B, T, generator=g)
    dones = torch.rand(B, T, generator=g) < p_done
    terminated = dones & (torch.rand(B, T, generator=g) < 0.5)  # the other dones are truncations
    return rewards, values, next_values, dones, terminated


@pytest.mark.parametrize("T", [1, 2, 7, 64, 65, 300, 1031])
def test_scan_blocked_equals_sequential(T: int) -> None:
    g = torch.Generator().manual_seed(T)
    x = torch.randn(5, T, generator=g, dtype=torch.float64)
    c = torch.rand(5, T, generator=g, dtype=torch.float64) * (torch.rand(5, T, generator=g) > 0.2)
    init = torch.randn(5, generator=g, dtype=torch.float64)
    expected = _sequential_scan(x, c, init)
    torch.testing.assert_close(_blocked_scan(x, c, init), expected)
    torch.testing.assert_close(_blocked_scan(x, c, init, block=3), expected)


def test_scan_on_device_matches_loop(device: torch.device) -> None:
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(3, 4, 2500, generator=g), torch.rand(3, 4, 2500, generator=g)
    init = torch.randn(3, 4, generator=g)
    out = reverse_linear_scan(x.to(device), c.to(device), init.to(device)).cpu()
    expected = _sequential_scan(
        x.reshape(12, -1).double(), c.reshape(12, -1).double(), init.reshape(12).double()
    )
    torch.testing.assert_close(out.double(), expected.reshape(3, 4, -1), rtol=1e-4, atol=1e-4)


def test_discounted_returns_against_loop(device: torch.device) -> None:
    rewards, values, _, dones, _ = _episodes(6, 40, seed=1)
    bootstrap = values[:, 0]
    mask = torch.rand(6, 40, generator=torch.Generator().manual_seed(2)) > 0.2
    for gamma in (0.0, 0.9, 1.0):
        for m in (None, mask):
            out = discounted_returns(
                rewards.to(device),
                dones.to(device),
                gamma,
                bootstrap.to(device),
                None if m is None else m.to(device),
            )
            torch.testing.assert_close(
                out.cpu().double(), returns_loop(rewards, dones, gamma, bootstrap, m), atol=1e-5, rtol=1e-5
            )


def test_reward_to_go_is_undiscounted_suffix_sum() -> None:
    rewards = torch.tensor([[1.0, 2.0, 3.0, 0.0], [0.0, 5.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, False], [False, True, True, False]])
    torch.testing.assert_close(
        reward_to_go(rewards, mask), torch.tensor([[6.0, 5.0, 3.0, 0.0], [0.0, 5.0, 0.0, 0.0]])
    )
    # A discounted reward-to-go skips padding: the hole at t=1 neither adds nor discounts.
    holes = torch.tensor([[True, False, True, True]])
    out = reward_to_go(torch.tensor([[1.0, 100.0, 1.0, 1.0]]), holes, gamma=0.5)
    torch.testing.assert_close(out, torch.tensor([[1.75, 0.0, 1.5, 1.0]]))


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (1.0, 1.0), (0.9, 0.0), (0.5, 0.7)])
def test_gae_against_loop_with_truncation_and_padding(device: torch.device, gamma: float, lam: float) -> None:
    rewards, values, next_values, dones, terminated = _episodes(5, 97, seed=3)
    mask = torch.rand(5, 97, generator=torch.Generator().manual_seed(4)) > 0.1
    for m in (None, mask):
        args = [t.to(device) for t in (rewards, values, next_values, dones, terminated)]
        out = gae(*args, gamma, lam, mask=None if m is None else m.to(device))
        expected = gae_loop(rewards, values, next_values, dones, terminated, gamma, lam, m)
        torch.testing.assert_close(out.cpu().double(), expected, atol=1e-4, rtol=1e-4)


def test_truncation_bootstraps_and_termination_does_not() -> None:
    rewards = torch.tensor([[1.0, 1.0]])
    values = torch.zeros(1, 2)
    next_values = torch.tensor([[0.0, 10.0]])
    done = torch.tensor([[False, True]])
    truncated = gae(rewards, values, next_values, done, torch.tensor([[False, False]]), 1.0, 1.0)
    terminated = gae(rewards, values, next_values, done, done, 1.0, 1.0)
    torch.testing.assert_close(truncated, torch.tensor([[12.0, 11.0]]))
    torch.testing.assert_close(terminated, torch.tensor([[2.0, 1.0]]))


def test_lambda_returns_equal_recursive_definition() -> None:
    rewards, values, _, dones, terminated = _episodes(4, 50, seed=5)
    next_values = torch.zeros_like(values)
    next_values[:, :-1] = values[:, 1:]
    dones[:, -1] = True
    out = lambda_returns(rewards, values, next_values, dones, terminated, 0.9, 0.8)
    torch.testing.assert_close(
        out.double(),
        lambda_return_recursive(rewards, values, dones, terminated, 0.9, 0.8),
        atol=1e-5,
        rtol=1e-5,
    )


@settings(max_examples=40, deadline=None)
@given(
    B=st.integers(1, 4),
    T=st.integers(1, 40),
    gamma=st.floats(0.0, 1.0),
    seed=st.integers(0, 10_000),
)
def test_gae_lam1_is_returns_minus_values_and_lam0_is_td(B: int, T: int, gamma: float, seed: int) -> None:
    rewards, values, _, dones, terminated = _episodes(B, T, seed, p_done=0.2)
    dones = terminated.clone()  # only terminations: then MC returns are well defined inside the row
    dones[:, -1] = True
    terminated = dones
    next_values = torch.zeros_like(values)
    next_values[:, :-1] = values[:, 1:]
    r64, v64, nv64 = rewards.double(), values.double(), next_values.double()
    lam1 = gae(r64, v64, nv64, dones, terminated, gamma, 1.0)
    torch.testing.assert_close(lam1, discounted_returns(r64, dones, gamma) - v64)
    lam0 = gae(r64, v64, nv64, dones, terminated, gamma, 0.0)
    torch.testing.assert_close(lam0, td_errors(r64, v64, nv64, terminated, gamma))


@settings(max_examples=30, deadline=None)
@given(
    T=st.integers(1, 30), pad_left=st.integers(0, 5), pad_right=st.integers(0, 5), seed=st.integers(0, 1000)
)
def test_padding_never_changes_gae(T: int, pad_left: int, pad_right: int, seed: int) -> None:
    rewards, values, next_values, dones, terminated = _episodes(1, T, seed)
    padded = []
    for t in (rewards, values, next_values):
        padded.append(torch.cat([torch.full((1, pad_left), 7.0), t, torch.full((1, pad_right), -3.0)], dim=1))
    flags = [torch.cat([torch.ones(1, pad_left, dtype=torch.bool), t, torch.ones(1, pad_right, dtype=torch.bool)], 1)
             for t in (dones, terminated)]  # fmt: skip
    mask = torch.zeros(1, T + pad_left + pad_right, dtype=torch.bool)
    mask[:, pad_left : pad_left + T] = True
    plain = gae(rewards, values, next_values, dones, terminated, 0.97, 0.9)
    out = gae(*padded, *flags, 0.97, 0.9, mask=mask)
    torch.testing.assert_close(out[:, pad_left : pad_left + T], plain)
    assert bool((out[~mask] == 0).all())


def test_bad_inputs_name_the_argument() -> None:
    r = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="gamma"):
        discounted_returns(r, None, 1.5)
    with pytest.raises(ValueError, match="lam"):
        gae(r, r, r, None, None, 0.9, -0.1)
    with pytest.raises(ValueError, match="rewards"):
        discounted_returns(torch.tensor([[0.0, float("nan")]]), None, 0.9)
    with pytest.raises(ValueError, match="values"):
        gae(r, torch.zeros(2, 4), r, None, None, 0.9, 0.9)
    with pytest.raises(ValueError, match="dones"):
        discounted_returns(r, torch.full((2, 3), 2.0), 0.9)
    with pytest.raises(TypeError, match="rewards"):
        discounted_returns([[1.0]], None, 0.9)  # type: ignore[arg-type]


def test_gae_finiteness_check_is_a_device_assert_where_async(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unmasked GAE checks its result with ``torch._assert_async`` (no host sync) on a device where the
    check is asynchronous (CUDA), and keeps the host check with its precise error elsewhere."""
    import credo.credit._checks as checks

    rewards, values, next_values, dones, terminated = _episodes(3, 16, seed=5)
    rewards[1, 4] = float("nan")
    with pytest.raises(ValueError, match="rewards holds 1 NaN/inf"):  # CPU: the host check, as before
        gae(rewards, values, next_values, dones, terminated, 0.9, 0.8)
    assert not checks._asserts_on_device(rewards)

    asserted: list[tuple[torch.Tensor, str]] = []
    monkeypatch.setattr(checks, "_asserts_on_device", lambda value: True)
    monkeypatch.setattr(torch, "_assert_async", lambda ok, msg: asserted.append((ok, msg)))
    out = gae(rewards, values, next_values, dones, terminated, 0.9, 0.8)  # no ValueError: deferred
    assert len(asserted) == 1
    ok, msg = asserted[0]
    assert ok.shape == () and ok.dtype == torch.bool and not bool(ok)
    assert "NaN/inf" in msg and "gae" in msg
    assert bool(torch.isnan(out).any())
    asserted.clear()
    clean = _episodes(3, 16, seed=6)
    gae(*clean, 0.9, 0.8)
    assert len(asserted) == 1 and bool(asserted[0][0])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
def test_gae_on_cuda_does_not_sync() -> None:
    inputs = [t.cuda() for t in _episodes(4, 64, seed=9)]
    gae(*inputs, 0.99, 0.95)  # warm-up (Triton compilation)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = gae(*inputs, 0.99, 0.95)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    expected = gae(*[t.cpu() for t in inputs], 0.99, 0.95)
    assert torch.allclose(out.cpu(), expected, atol=1e-5)
