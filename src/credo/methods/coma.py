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

This module also holds two demonstrations:

* a one-step cooperative game of N agents (the critic is the exact Q table, ``Q(u) = R(u)``), trained
  with tabular softmax policies by COMA and by REINFORCE on the shared team reward with a mean
  baseline (:func:`train_matrix_game`);
* a multi-step one, :class:`RelayGame` (T steps, the team reward paid only at the end), where COMA
  uses a learned :class:`CentralCritic` trained on TD(lambda) targets
  (:func:`coma_critic_targets`, built on :func:`credo.credit.returns.lambda_returns`) with a target
  network, as pymarl's ``COMALearner`` (:func:`train_relay_game`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from credo.credit.returns import lambda_returns

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


# ------------------------------------------------------------------ the learned centralised critic


class CentralCritic(nn.Module):
    """COMA's centralised critic in pymarl's layout: ``Q`` of every action of one agent in one pass.

    The input of agent ``a`` is ``[state, one-hot actions of the other agents (agent a's own slot
    zeroed), one-hot agent id]``; the output is ``Q(s, (u_-a, u))`` for every ``u``. One forward pass
    over all agents gives the ``[B, N, A]`` counterfactual table of :func:`coma_advantages`, and agent
    ``a``'s own action never enters its row.

    Args:
        state_dim: size of the global state vector.
        n_agents, n_actions: N and A.
        hidden: width of the two hidden layers.
    """

    def __init__(self, state_dim: int, n_agents: int, n_actions: int, hidden: int = 64) -> None:
        super().__init__()
        if state_dim < 0 or n_agents < 1 or n_actions < 2:
            raise ValueError(
                f"need state_dim >= 0, n_agents >= 1, n_actions >= 2, got {state_dim}, {n_agents}, {n_actions}"
            )
        self.n_agents, self.n_actions = n_agents, n_actions
        width = state_dim + n_agents * n_actions + n_agents
        self.net = nn.Sequential(
            nn.Linear(width, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_actions),
        )

    def inputs(self, state: Tensor, actions: Tensor) -> Tensor:
        """``[B, N, state_dim + N*A + N]`` inputs from ``state [B, state_dim]`` and ``actions [B, N]``."""
        batch, n, n_actions = actions.shape[0], self.n_agents, self.n_actions
        if state.ndim != 2 or actions.shape != (state.shape[0], n):
            raise ValueError(
                f"need state [B, S] and actions [B, {n}], got {tuple(state.shape)}, {tuple(actions.shape)}"
            )
        onehot = nn.functional.one_hot(actions.long(), n_actions).to(state.dtype)  # [B, N, A]
        others = 1.0 - torch.eye(n, dtype=state.dtype, device=state.device)  # [agent, other]
        joint = (onehot[:, None] * others[None, :, :, None]).reshape(batch, n, n * n_actions)
        ids = torch.eye(n, dtype=state.dtype, device=state.device).expand(batch, n, n)
        return torch.cat([state[:, None].expand(batch, n, state.shape[1]), joint, ids], dim=-1)

    def forward(self, state: Tensor, actions: Tensor) -> Tensor:
        """``[B, N, A]``: ``q[b, a, u] = Q(state_b, (actions_b with u_a := u))``."""
        return self.net(self.inputs(state, actions))


def coma_critic_targets(rewards: Tensor, q_taken: Tensor, gamma: float, lam: float) -> Tensor:
    """TD(lambda) targets of the critic over whole episodes (pymarl's ``build_td_lambda_targets``).

    ``G_t = r_t + gamma [(1 - lam) Q(s_{t+1}, u_{t+1}) + lam G_{t+1}]``, ``G_{T-1} = r_{T-1}`` (the
    episode terminates after its last step), computed by :func:`credo.credit.returns.lambda_returns`
    with ``values[t] = Q(s_t, u_t)`` and ``next_values[t] = Q(s_{t+1}, u_{t+1})``.

    Args:
        rewards: ``[B, T]`` team rewards of ``B`` episodes of ``T`` steps.
        q_taken: ``[B, N, T]`` (target) critic's value of the joint action taken, per agent's row.
        gamma, lam: discount and lambda in [0, 1].

    Returns:
        ``[B, N, T]`` targets.
    """
    if rewards.ndim != 2 or q_taken.ndim != 3 or q_taken.shape[::2] != rewards.shape:
        raise ValueError(
            f"need rewards [B, T] and q_taken [B, N, T], got {tuple(rewards.shape)}, {tuple(q_taken.shape)}"
        )
    values = q_taken.detach()
    next_values = torch.cat([values[..., 1:], torch.zeros_like(values[..., :1])], dim=-1)
    last = torch.zeros(values.shape, dtype=torch.bool, device=values.device)
    last[..., -1] = True
    expanded = rewards[:, None].expand_as(values).to(values.dtype)
    return lambda_returns(expanded, values, next_values, last, last, gamma, lam)


# --------------------------------------------------------------------- the multi-step demonstration


@dataclass(frozen=True)
class RelayGame:
    """A cooperative T-step game of N agents whose team reward is paid only at the end.

    At step ``t`` every agent should play action ``t % n_actions``; the team is paid
    ``sum_t mean_a [u_{a,t} correct]`` after the last step and 0 before (the optimum, every agent right
    at every step, pays ``horizon``). The global state is ``[one-hot t, score so far / horizon]``, so
    the value of an early action reaches the critic only through bootstrapping: this is where its
    TD(lambda) targets matter. Agents act on ``t`` alone (tabular softmax policies).
    """

    n_agents: int
    n_actions: int = 3
    horizon: int = 5

    @property
    def state_dim(self) -> int:
        return self.horizon + 1

    def correct(self) -> IntArray:
        """``[T]`` the right action at each step."""
        return np.arange(self.horizon) % self.n_actions

    def states(self, score: FloatArray) -> FloatArray:
        """``[B, T, state_dim]`` states from the scores before each step ``score [B, T]``."""
        batch = score.shape[0]
        steps = np.broadcast_to(np.eye(self.horizon), (batch, self.horizon, self.horizon))
        return np.concatenate([steps, score[..., None] / self.horizon], axis=-1)

    def sample(
        self, pi: FloatArray, batch: int, rng: np.random.Generator
    ) -> tuple[FloatArray, IntArray, FloatArray]:
        """``batch`` episodes of policies ``pi [N, T, A]``: states ``[B, T, S]``, actions ``[B, T, N]``,
        rewards ``[B, T]``."""
        draws = rng.random((batch, self.horizon, self.n_agents, 1))
        cumulative = pi.transpose(1, 0, 2).cumsum(axis=-1)  # [T, N, A]
        actions = np.minimum((draws > cumulative[None]).sum(-1), self.n_actions - 1)
        step_score = (actions == self.correct()[None, :, None]).mean(axis=-1)  # [B, T]
        before = np.cumsum(step_score, axis=1) - step_score
        rewards = np.zeros((batch, self.horizon))
        rewards[:, -1] = step_score.sum(axis=1)
        return self.states(before), actions, rewards

    def exact_q(self, states: FloatArray, actions: IntArray, pi: FloatArray) -> FloatArray:
        """``[B, T, N, A]`` exact counterfactual Q under policies ``pi [N, T, A]`` (gamma = 1)."""
        right = (actions == self.correct()[None, :, None]).astype(np.float64)  # [B, T, N]
        p_right = pi[:, np.arange(self.horizon), self.correct()].mean(axis=0)  # [T]
        future = np.cumsum(p_right[::-1])[::-1] - p_right  # expected score of the later steps
        base = states[..., -1] * self.horizon + future[None] + (right.sum(-1) / self.n_agents)  # [B, T]
        own = np.eye(self.n_actions)[self.correct()][None, :, None, :]  # [1, T, 1, A]: u correct?
        return (base[..., None, None] + (own - right[..., None]) / self.n_agents).astype(np.float64)


@dataclass
class RelayRun:
    """One training run on :class:`RelayGame`.

    Attributes:
        method: ``"coma"`` or ``"reinforce"``; critic: ``"learned"``, ``"exact"`` or ``"none"``.
        optimal_probability: ``[updates + 1]`` probability of the optimal joint plan after each update.
        critic_error: ``[updates]`` mean absolute error of the critic's Q table against the exact one
            (NaN without a learned critic).
        policies: ``[N, T, A]`` final policies.
    """

    method: str
    critic: str
    optimal_probability: FloatArray
    critic_error: FloatArray
    policies: FloatArray


@dataclass(frozen=True)
class CriticConfig:
    """Training of the learned critic: TD(lambda) targets from a hard-updated target network.

    ``steps`` Adam steps of MSE on the taken action per batch of episodes; ``target_every``: copy the
    critic into the target network every this many batches; ``warmup``: batches of critic-only
    training before the policies move.
    """

    lr: float = 3e-3
    steps: int = 4
    gamma: float = 1.0
    lam: float = 0.8
    target_every: int = 5
    warmup: int = 30
    hidden: int = 64


def _policy_step(
    logits: FloatArray, pi: FloatArray, actions: IntArray, advantages: FloatArray, lr: float
) -> None:
    """``logits[a, t] += lr * mean_b adv[b, t, a] * (onehot(u) - pi[a, t])`` in place."""
    onehot = np.eye(pi.shape[-1])[actions]  # [B, T, N, A]
    step = (advantages[..., None] * (onehot - pi.transpose(1, 0, 2)[None])).mean(axis=0)  # [T, N, A]
    logits += lr * step.transpose(1, 0, 2)


class _LearnedCritic:
    """A :class:`CentralCritic`, its target network and its optimiser."""

    def __init__(self, game: RelayGame, config: CriticConfig) -> None:
        self.config = config
        self.net = CentralCritic(game.state_dim, game.n_agents, game.n_actions, config.hidden)
        self.target = CentralCritic(game.state_dim, game.n_agents, game.n_actions, config.hidden)
        self.target.load_state_dict(self.net.state_dict())
        self.optimiser = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.batches = 0

    def q(self, net: nn.Module, states: FloatArray, actions: IntArray) -> Tensor:
        batch, horizon = actions.shape[:2]
        flat_s = torch.as_tensor(states.reshape(batch * horizon, -1), dtype=torch.float32)
        flat_u = torch.as_tensor(actions.reshape(batch * horizon, -1))
        return net(flat_s, flat_u).reshape(batch, horizon, *actions.shape[2:], -1)  # [B, T, N, A]

    def train(self, states: FloatArray, actions: IntArray, rewards: FloatArray) -> Tensor:
        """Fit TD(lambda) targets on one batch of episodes; returns the critic's ``[B, T, N, A]``."""
        taken_u = torch.as_tensor(actions)[..., None]
        with torch.no_grad():
            target_taken = self.q(self.target, states, actions).gather(-1, taken_u).squeeze(-1)  # [B, T, N]
            targets = coma_critic_targets(
                torch.as_tensor(rewards, dtype=torch.float32),
                target_taken.transpose(1, 2),
                self.config.gamma,
                self.config.lam,
            ).transpose(1, 2)
        for _ in range(self.config.steps):
            taken = self.q(self.net, states, actions).gather(-1, taken_u).squeeze(-1)
            loss = (taken - targets).pow(2).mean()
            self.optimiser.zero_grad()
            loss.backward()
            self.optimiser.step()
        self.batches += 1
        if self.batches % self.config.target_every == 0:
            self.target.load_state_dict(self.net.state_dict())
        with torch.no_grad():
            return self.q(self.net, states, actions)


def _coma_advantages_np(q: FloatArray, pi: FloatArray, actions: IntArray) -> FloatArray:
    """``[B, T, N]`` COMA advantages from ``q [B, T, N, A]``, policies ``pi [N, T, A]``."""
    pis = np.broadcast_to(pi.transpose(1, 0, 2)[None], q.shape).reshape(-1, *q.shape[2:])
    adv = coma_advantages(
        torch.as_tensor(q.reshape(-1, *q.shape[2:]), dtype=torch.float64),
        torch.from_numpy(pis.copy()),
        torch.as_tensor(actions.reshape(-1, actions.shape[-1])),
    )
    return adv.numpy().reshape(actions.shape)


def train_relay_game(
    method: str,
    game: RelayGame,
    *,
    critic: str = "learned",
    updates: int = 200,
    batch: int = 8,
    lr: float = 4.0,
    seed: int = 0,
    config: CriticConfig | None = None,
    baseline_rate: float = 0.1,
) -> RelayRun:
    """Independent tabular softmax policies ``pi_a(u | t)`` trained on :class:`RelayGame`.

    Each update samples ``batch`` episodes and takes the softmax policy-gradient step of every agent
    and step. ``method="coma"``: the advantage is :func:`coma_advantages` of the critic's ``[N, A]``
    table at each step, the critic being a :class:`CentralCritic` trained on TD(lambda) targets with
    a target network (``critic="learned"``, :class:`CriticConfig`) or the exact Q table
    (``critic="exact"``, :meth:`RelayGame.exact_q`). ``method="reinforce"``: the team's episode
    return minus a running-mean baseline, the same for every agent and step.
    """
    if method not in ("coma", "reinforce"):
        raise ValueError(f"method must be 'coma' or 'reinforce', got {method!r}")
    if critic not in ("learned", "exact"):
        raise ValueError(f"critic must be 'learned' or 'exact', got {critic!r}")
    config = config or CriticConfig()
    rng = np.random.default_rng(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        learned = _LearnedCritic(game, config) if method == "coma" and critic == "learned" else None
    logits = np.zeros((game.n_agents, game.horizon, game.n_actions))
    plan = (np.arange(game.n_agents)[:, None], np.arange(game.horizon)[None], game.correct()[None])
    history, errors, running = [float(_softmax(logits)[plan].prod())], [], 0.0
    warmup = config.warmup if learned is not None else 0
    for i in range(warmup + updates):
        pi = _softmax(logits)
        states, actions, rewards = game.sample(pi, batch, rng)
        if method == "reinforce":
            team = rewards.sum(axis=1)
            advantages = np.broadcast_to((team - running)[:, None, None], actions.shape)
            running += baseline_rate * (float(team.mean()) - running)
        else:
            exact = game.exact_q(states, actions, pi)
            q = exact if learned is None else learned.train(states, actions, rewards).double().numpy()
            errors.append(float(np.abs(q - exact).mean()) if learned is not None else float("nan"))
            advantages = _coma_advantages_np(q, pi, actions)
        if i < warmup:
            continue
        _policy_step(logits, pi, actions, advantages, lr)
        history.append(float(_softmax(logits)[plan].prod()))
    name = "none" if method == "reinforce" else critic
    return RelayRun(
        method, name, np.asarray(history), np.asarray(errors[warmup:] or [np.nan] * updates), _softmax(logits)
    )
