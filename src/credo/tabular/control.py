"""Model-free control: learn ``Q`` and a policy from interaction (seed 001: MC, SARSA, Q-learning).

All learners act epsilon-greedily in their current ``Q`` (ties between greedy actions broken at
random) and differ in the target they move ``Q(S_t, A_t)`` toward:

* SARSA (on-policy TD; Rummery & Niranjan 1994):   ``R + gamma Q(S', A')``, ``A'`` the next action taken
* Expected SARSA (van Seijen et al. 2009):         ``R + gamma sum_a pi(a|S') Q(S', a)``
* Q-learning (off-policy TD; Watkins 1989):        ``R + gamma max_a Q(S', a)``
* on-policy Monte Carlo control (epsilon-soft):    the return ``G_t`` of the finished episode

Terminal states contribute 0; a truncated episode bootstraps from ``Q(S_T, .)`` (TD methods).

Reference: Sutton & Barto (2018) §5.4, §6.4-6.6.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from tqdm.auto import tqdm

from credo.tabular._checks import as_float_array, check_count, check_probability, check_step_size
from credo.tabular.episodes import (
    DiscreteEnv,
    Episode,
    FloatArray,
    LearningResult,
    UniformStream,
    env_sizes,
    make_rng,
    resolve_gamma,
)

Epsilon = float | Callable[[int], float]


def epsilon_greedy_action(q_row: FloatArray, epsilon: float, u_explore: float, u_pick: float) -> int:
    """An epsilon-greedy action from two uniforms: with probability ``epsilon`` a uniformly random
    action, otherwise a greedy one (uniformly among tied maxima)."""
    n_actions = q_row.shape[0]
    if u_explore < epsilon:
        return min(int(u_pick * n_actions), n_actions - 1)
    best = np.flatnonzero(q_row == q_row.max())
    if best.shape[0] == 1:
        return int(best[0])
    return int(best[min(int(u_pick * best.shape[0]), best.shape[0] - 1)])


def epsilon_greedy_probabilities(q_row: FloatArray, epsilon: float) -> FloatArray:
    """``[A]`` probabilities of :func:`epsilon_greedy_action`: ``epsilon/A`` each, plus
    ``(1 - epsilon)`` shared by the tied greedy actions."""
    n_actions = q_row.shape[0]
    is_best = q_row == q_row.max()
    return epsilon / n_actions + (1.0 - epsilon) * is_best / is_best.sum()


def _epsilon_schedule(epsilon: Epsilon) -> Callable[[int], float]:
    if callable(epsilon):
        return lambda episode: check_probability("epsilon(episode)", epsilon(episode))
    value = check_probability("epsilon", epsilon)
    return lambda episode: value


def _initial_q(initial_q: float | ArrayLike, n_states: int, n_actions: int) -> FloatArray:
    if np.isscalar(initial_q):
        return np.full((n_states, n_actions), float(initial_q))  # type: ignore[arg-type]
    q = as_float_array("initial_q", initial_q, 2)
    if q.shape != (n_states, n_actions):
        raise ValueError(f"initial_q must have shape ({n_states}, {n_actions}), got {q.shape}")
    return q.copy()


class _Setup:
    """What every control learner prepares: sizes, discount, Q, random streams, episode loop."""

    def __init__(
        self,
        env: DiscreteEnv,
        n_episodes: int,
        gamma: float | None,
        epsilon: Epsilon,
        seed: int | np.random.Generator | None,
        max_steps: int,
        initial_q: float | ArrayLike,
    ) -> None:
        self.n_states, self.n_actions = env_sizes(env)
        self.n_episodes = check_count("n_episodes", n_episodes)
        self.max_steps = check_count("max_steps", max_steps)
        self.gamma = resolve_gamma(env, gamma)
        self.epsilon = _epsilon_schedule(epsilon)
        self.q = _initial_q(initial_q, self.n_states, self.n_actions)
        rng = make_rng(seed)
        self.uniform = UniformStream(rng)
        self.env_seed = int(rng.integers(2**31 - 1))
        self.returns = np.zeros(self.n_episodes)
        self.lengths = np.zeros(self.n_episodes, dtype=np.int64)

    def reset(self, env: DiscreteEnv, episode: int) -> int:
        state, _ = env.reset(seed=self.env_seed if episode == 0 else None)
        return int(state)

    def act(self, state: int, epsilon: float) -> int:
        return epsilon_greedy_action(self.q[state], epsilon, self.uniform(), self.uniform())

    def result(self, name: str, params: dict[str, Any]) -> LearningResult:
        return LearningResult(
            algorithm=name,
            values=self.q.max(axis=1),
            q=self.q,
            episode_returns=self.returns,
            episode_lengths=self.lengths,
            params={"gamma": self.gamma, **params},
        )


def _td_control(
    name: str,
    env: DiscreteEnv,
    bootstrap: Callable[[_Setup, int, int, float], float] | None,
    *,
    n_episodes: int,
    alpha: float,
    gamma: float | None,
    epsilon: Epsilon,
    seed: int | np.random.Generator | None,
    max_steps: int,
    initial_q: float | ArrayLike,
    progress: bool,
) -> LearningResult:
    """The shared TD control loop. ``bootstrap(setup, next_state, next_action, epsilon)`` is the
    value of the next state in the target; ``None`` means SARSA (``Q(S', A')``)."""
    step = check_step_size("alpha", alpha)
    run = _Setup(env, n_episodes, gamma, epsilon, seed, max_steps, initial_q)
    q, discount = run.q, run.gamma
    for episode in tqdm(range(run.n_episodes), desc=name, disable=not progress, leave=False):
        eps = run.epsilon(episode)
        state = run.reset(env, episode)
        action = run.act(state, eps)
        total, steps = 0.0, 0
        while True:
            next_state, reward, terminated, truncated, _ = env.step(action)
            next_state = int(next_state)
            reward = float(reward)
            total += reward
            steps += 1
            if terminated:
                q[state, action] += step * (reward - q[state, action])
                break
            next_action = run.act(next_state, eps)
            if bootstrap is None:
                next_value = q[next_state, next_action]
            else:
                next_value = bootstrap(run, next_state, next_action, eps)
            q[state, action] += step * (reward + discount * next_value - q[state, action])
            if truncated or steps >= run.max_steps:
                break
            state, action = next_state, next_action
        run.returns[episode] = total
        run.lengths[episode] = steps
    return run.result(name, {"alpha": step, "epsilon": epsilon})


def sarsa(
    env: DiscreteEnv,
    *,
    n_episodes: int,
    alpha: float = 0.5,
    gamma: float | None = None,
    epsilon: Epsilon = 0.1,
    seed: int | np.random.Generator | None = None,
    max_steps: int = 10_000,
    initial_q: float | ArrayLike = 0.0,
    progress: bool = False,
) -> LearningResult:
    """SARSA: ``Q(S, A) += alpha [R + gamma Q(S', A') - Q(S, A)]`` (Sutton & Barto §6.4).

    Args:
        env: a Gymnasium-API environment with discrete spaces.
        n_episodes: training episodes.
        alpha: step size.
        gamma: discount (default: ``env.gamma``, e.g. of :class:`MDPEnv`).
        epsilon: exploration rate, or ``f(episode) -> rate``.
        seed: seed or Generator (exploration and the environment's first reset).
        max_steps: cut an episode off after this many steps.
        initial_q: initial ``Q`` (scalar or ``[S, A]``).
        progress: show a tqdm bar.
    """
    return _td_control(
        "sarsa", env, None, n_episodes=n_episodes, alpha=alpha, gamma=gamma, epsilon=epsilon, seed=seed,
        max_steps=max_steps, initial_q=initial_q, progress=progress,
    )  # fmt: skip


def _expected_value(run: _Setup, state: int, _action: int, epsilon: float) -> float:
    row = run.q[state]
    return float(epsilon_greedy_probabilities(row, epsilon) @ row)


def _max_value(run: _Setup, state: int, _action: int, _epsilon: float) -> float:
    return float(run.q[state].max())


def expected_sarsa(
    env: DiscreteEnv,
    *,
    n_episodes: int,
    alpha: float = 0.5,
    gamma: float | None = None,
    epsilon: Epsilon = 0.1,
    seed: int | np.random.Generator | None = None,
    max_steps: int = 10_000,
    initial_q: float | ArrayLike = 0.0,
    progress: bool = False,
) -> LearningResult:
    """Expected SARSA: target ``R + gamma sum_a pi(a|S') Q(S', a)`` under the epsilon-greedy policy
    (van Seijen et al. 2009; Sutton & Barto §6.6). Arguments as :func:`sarsa`."""
    return _td_control(
        "expected_sarsa", env, _expected_value, n_episodes=n_episodes, alpha=alpha, gamma=gamma,
        epsilon=epsilon, seed=seed, max_steps=max_steps, initial_q=initial_q, progress=progress,
    )  # fmt: skip


def q_learning(
    env: DiscreteEnv,
    *,
    n_episodes: int,
    alpha: float = 0.5,
    gamma: float | None = None,
    epsilon: Epsilon = 0.1,
    seed: int | np.random.Generator | None = None,
    max_steps: int = 10_000,
    initial_q: float | ArrayLike = 0.0,
    progress: bool = False,
) -> LearningResult:
    """Q-learning: ``Q(S, A) += alpha [R + gamma max_a Q(S', a) - Q(S, A)]`` (Watkins 1989;
    Sutton & Barto §6.5). Arguments as :func:`sarsa`."""
    return _td_control(
        "q_learning", env, _max_value, n_episodes=n_episodes, alpha=alpha, gamma=gamma, epsilon=epsilon,
        seed=seed, max_steps=max_steps, initial_q=initial_q, progress=progress,
    )  # fmt: skip


def mc_control(
    env: DiscreteEnv,
    *,
    n_episodes: int,
    first_visit: bool = True,
    alpha: float | None = None,
    gamma: float | None = None,
    epsilon: Epsilon = 0.1,
    seed: int | np.random.Generator | None = None,
    max_steps: int = 10_000,
    initial_q: float | ArrayLike = 0.0,
    progress: bool = False,
) -> LearningResult:
    """On-policy Monte Carlo control with an epsilon-soft (epsilon-greedy) policy (Sutton & Barto §5.4).

    After each episode, ``Q(S_t, A_t)`` moves toward the return ``G_t`` (first visit of each pair, or
    every visit); with ``alpha=None`` it is the average of the returns seen, otherwise a constant step.
    Arguments as :func:`sarsa`.
    """
    if alpha is not None:
        check_step_size("alpha", alpha)
    run = _Setup(env, n_episodes, gamma, epsilon, seed, max_steps, initial_q)
    q, discount = run.q, run.gamma
    counts = np.zeros_like(q)
    name = "mc_control_first_visit" if first_visit else "mc_control_every_visit"
    for episode in tqdm(range(run.n_episodes), desc=name, disable=not progress, leave=False):
        eps = run.epsilon(episode)
        state = run.reset(env, episode)
        states, actions, rewards = [state], [], []
        terminated = False
        for _ in range(run.max_steps):
            action = run.act(state, eps)
            state, reward, terminated, truncated, _ = env.step(action)
            state = int(state)
            states.append(state)
            actions.append(action)
            rewards.append(float(reward))
            if terminated or truncated:
                break
        played = Episode.from_lists(states, actions, rewards, terminated)
        returns = played.returns(discount)
        seen: set[tuple[int, int]] = set()
        for t in range(played.length):
            pair = (states[t], actions[t])
            if first_visit and pair in seen:
                continue
            seen.add(pair)
            counts[pair] += 1.0
            rate = 1.0 / counts[pair] if alpha is None else alpha
            q[pair] += rate * (returns[t] - q[pair])
        run.returns[episode] = played.total_reward
        run.lengths[episode] = played.length
    return run.result(name, {"alpha": alpha, "epsilon": epsilon, "first_visit": first_visit})
