"""COMA: counterfactual multi-agent policy gradients (Foerster et al. 2018, AAAI).

With one team reward, every agent's REINFORCE gradient carries the noise of all the other agents'
choices. COMA gives each agent its own credit: a centralised critic ``Q(s, u)`` of the joint action
``u``, queried with agent ``a``'s action swapped while the others stay as taken, gives the
counterfactual baseline

    b_a(s, u_-a) = sum_u' pi_a(u' | s) Q(s, (u_-a, u')),
    A_a(s, u)    = Q(s, u) - b_a(s, u_-a).

The baseline does not depend on agent ``a``'s own action, so the policy gradient stays unbiased
(``sum_u pi_a(u) A_a(u) = 0``), while the other agents' part of the reward cancels out.

The critic outputs Q for every action of one agent given the others' actions (as pymarl's
``COMALearner``), so ``q[b, a, u]`` holds all the counterfactuals of one forward pass.

This module also holds a small demonstration: a one-step cooperative game of N agents (the critic is
the exact Q table, ``Q(u) = R(u)``), trained with tabular softmax policies by COMA and by REINFORCE on
the shared team reward with a mean baseline (:func:`train_matrix_game`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def _check_inputs(q: Tensor, pi: Tensor, actions: Tensor) -> None:
    for name, value in (("q", q), ("pi", pi), ("actions", actions)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if q.ndim != 3:
        raise ValueError(f"q must be 3-D [B, N, A], got shape {tuple(q.shape)}")
    if pi.shape != q.shape:
        raise ValueError(f"pi must have the shape of q {tuple(q.shape)}, got {tuple(pi.shape)}")
    if actions.shape != q.shape[:2]:
        raise ValueError(f"actions must have shape [B, N] = {tuple(q.shape[:2])}, got {tuple(actions.shape)}")
    if not q.is_floating_point() or not pi.is_floating_point():
        raise TypeError("q and pi must be floating-point tensors")
    if actions.is_floating_point() or actions.dtype == torch.bool:
        raise TypeError(f"actions must be an integer tensor, got dtype {actions.dtype}")
    if not bool(torch.isfinite(q).all()):
        raise ValueError("q holds NaN/inf values")
    if not bool(torch.isfinite(pi).all()) or bool((pi < 0).any()):
        raise ValueError("pi must hold finite, non-negative probabilities")
    sums = pi.sum(dim=-1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
        raise ValueError("pi must sum to 1 over its last dimension (the actions)")
    if actions.numel() and (int(actions.min()) < 0 or int(actions.max()) >= q.shape[-1]):
        raise ValueError(f"actions must lie in [0, {q.shape[-1]}), got values outside")


def coma_advantages(q: Tensor, pi: Tensor, actions: Tensor) -> Tensor:
    """COMA's counterfactual advantage of every agent (Foerster et al. 2018, eq. 4).

    ``A[b, a] = q[b, a, actions[b, a]] - sum_u pi[b, a, u] * q[b, a, u]``

    Args:
        q: ``[B, N, A]`` centralised critic: ``q[b, a, u]`` is ``Q(s_b, (u_-a, u))``, the value of
            agent ``a`` taking action ``u`` with the other agents' actions fixed as taken.
        pi: ``[B, N, A]`` agent ``a``'s policy ``pi_a(u | s_b)`` (rows sum to 1).
        actions: ``[B, N]`` int, the action each agent took.

    Returns:
        ``[B, N]`` advantages, in the dtype of ``q`` and ``pi`` promoted.
    """
    _check_inputs(q, pi, actions)
    dtype = torch.promote_types(q.dtype, pi.dtype)
    q, pi = q.to(dtype), pi.to(dtype)
    taken = q.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    baseline = (pi * q).sum(dim=-1)
    return taken - baseline


# ---------------------------------------------------------------------- the demonstration game

# The climbing game (Claus & Boutilier 1998): the optimum (0, 0) pays 11 but lies next to -30 penalties.
CLIMBING_GAME: FloatArray = np.array([[11.0, -30.0, 0.0], [-30.0, 7.0, 6.0], [0.0, 0.0, 5.0]])


def coordination_reward(
    n_agents: int, n_actions: int = 3, bonus: float = 1.0
) -> Callable[[IntArray], FloatArray]:
    """A cooperative one-step game of ``n_agents``: ``R(u) = mean_a [u_a == 0] + bonus * [all u_a == 0]``.

    Action 0 is every agent's part of the unique optimal joint action ``(0, ..., 0)``; the team reward
    only says how many got it right, not who. Returns ``reward(actions [B, N]) -> [B]``.
    """
    if n_agents < 1 or n_actions < 2:
        raise ValueError(f"need n_agents >= 1 and n_actions >= 2, got {n_agents}, {n_actions}")

    def reward(actions: IntArray) -> FloatArray:
        right = np.asarray(actions) == 0
        return right.mean(axis=-1) + bonus * right.all(axis=-1)

    return reward


def counterfactual_q(
    reward: Callable[[IntArray], FloatArray], actions: IntArray, n_actions: int
) -> FloatArray:
    """``[B, N, A]`` exact critic of a one-step game: ``q[b, a, u] = R(actions[b] with u_a := u)``."""
    batch, n_agents = actions.shape
    swapped = np.repeat(actions[:, None, None, :], n_agents, axis=1).repeat(n_actions, axis=2)
    agent = np.arange(n_agents)
    swapped[:, agent, :, agent] = np.arange(n_actions)
    return reward(swapped.reshape(-1, n_agents)).reshape(batch, n_agents, n_actions)


@dataclass
class GameRun:
    """One training run on a one-step game.

    Attributes:
        method: ``"coma"`` or ``"reinforce"``.
        optimal_probability: ``[updates + 1]`` probability of the optimal joint action after each update.
        policies: ``[N, A]`` final policies.
    """

    method: str
    optimal_probability: FloatArray
    policies: FloatArray


def _softmax(logits: FloatArray) -> FloatArray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def train_matrix_game(
    method: str,
    reward: Callable[[IntArray], FloatArray],
    n_agents: int,
    n_actions: int,
    *,
    updates: int = 300,
    batch: int = 4,
    lr: float = 0.5,
    seed: int = 0,
    optimal: tuple[int, ...] | None = None,
    baseline_rate: float = 0.1,
) -> GameRun:
    """Independent tabular softmax policies trained on a one-step team game.

    Each update samples ``batch`` joint actions and takes the step ``logits_a += lr * mean_b
    adv[b, a] * (onehot(u_a) - pi_a)`` (the softmax policy gradient), where ``adv`` is COMA's
    :func:`coma_advantages` with the exact critic (``method="coma"``), or the shared reward minus a
    running-mean baseline (an exponential average of past rewards, rate ``baseline_rate``), the same
    for every agent (``method="reinforce"``).

    Args:
        optimal: the joint action whose probability is tracked (default all zeros).
    """
    if method not in ("coma", "reinforce"):
        raise ValueError(f"method must be 'coma' or 'reinforce', got {method!r}")
    rng = np.random.default_rng(seed)
    logits = np.zeros((n_agents, n_actions))
    target = np.asarray(optimal if optimal is not None else (0,) * n_agents)
    agents = np.arange(n_agents)
    history = [float(_softmax(logits)[agents, target].prod())]
    running = 0.0
    for _ in range(updates):
        pi = _softmax(logits)
        cumulative = pi.cumsum(axis=-1)
        draws = rng.random((batch, n_agents, 1))
        actions = np.minimum((draws > cumulative[None]).sum(-1), n_actions - 1)
        if method == "coma":
            q = counterfactual_q(reward, actions, n_actions)
            pis = np.broadcast_to(pi, q.shape)
            adv = coma_advantages(
                torch.from_numpy(q), torch.from_numpy(pis.copy()), torch.from_numpy(actions)
            )
            advantages = adv.numpy()
        else:
            team = reward(actions)
            advantages = np.repeat((team - running)[:, None], n_agents, axis=1)
            running += baseline_rate * (float(team.mean()) - running)
        onehot = np.eye(n_actions)[actions]
        logits += lr * (advantages[..., None] * (onehot - pi[None])).mean(axis=0)
        history.append(float(_softmax(logits)[agents, target].prod()))
    return GameRun(method, np.asarray(history), _softmax(logits))
