"""Episodes, rollouts and the result object every model-free learner returns.

Notation (Sutton & Barto): an episode is ``S_0, A_0, R_1, S_1, A_1, R_2, ..., S_T``. Here
``states[t] = S_t`` for ``t = 0..T`` (``states[T]`` is the state the last step arrived in),
``actions[t] = A_t`` and ``rewards[t] = R_{t+1}`` for ``t = 0..T-1``. ``terminated`` says whether
``S_T`` is terminal (value 0); otherwise the episode was cut off (truncated) and ``S_T`` has a value
that TD methods bootstrap from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from credo.tabular._checks import as_float_array, check_count, check_gamma, check_policy
from credo.tabular.dp import greedy_policy

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


class DiscreteEnv(Protocol):
    """What the learners need from an environment (the Gymnasium API with discrete spaces)."""

    observation_space: Any
    action_space: Any

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict]: ...

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict]: ...


@dataclass(frozen=True)
class Episode:
    """One episode: ``states [T+1]``, ``actions [T]``, ``rewards [T]`` and whether ``S_T`` is terminal."""

    states: IntArray
    actions: IntArray
    rewards: FloatArray
    terminated: bool

    def __post_init__(self) -> None:
        if self.states.ndim != 1 or self.actions.ndim != 1 or self.rewards.ndim != 1:
            raise ValueError("Episode arrays must be 1-D")
        if len(self.states) != len(self.actions) + 1 or len(self.rewards) != len(self.actions):
            raise ValueError(
                f"an Episode needs len(states) == len(actions) + 1 == len(rewards) + 1, got "
                f"{len(self.states)}, {len(self.actions)}, {len(self.rewards)}"
            )

    @classmethod
    def from_lists(
        cls, states: ArrayLike, actions: ArrayLike, rewards: ArrayLike, terminated: bool = True
    ) -> Episode:
        return cls(
            np.asarray(states, dtype=np.int64),
            np.asarray(actions, dtype=np.int64),
            np.asarray(rewards, dtype=np.float64),
            bool(terminated),
        )

    @property
    def length(self) -> int:
        """T, the number of steps."""
        return len(self.actions)

    @property
    def total_reward(self) -> float:
        """The undiscounted return ``R_1 + ... + R_T`` (what learning curves show)."""
        return float(self.rewards.sum())

    def returns(self, gamma: float) -> FloatArray:
        """``[T]`` Monte Carlo returns ``G_t = R_{t+1} + gamma G_{t+1}``, ``G_T = 0`` (no bootstrap)."""
        out = np.zeros(self.length)
        g = 0.0
        for t in range(self.length - 1, -1, -1):
            g = float(self.rewards[t]) + gamma * g
            out[t] = g
        return out


class UniformStream:
    """Uniform [0, 1) numbers from a NumPy Generator, drawn in blocks (cheap per-step sampling).

    The sequence is fixed by the generator's state, so a learner given the same seed repeats exactly.
    """

    def __init__(self, rng: np.random.Generator, block: int = 4096) -> None:
        self._rng = rng
        self._block = block
        self._buffer: list[float] = []
        self._index = 0

    def __call__(self) -> float:
        if self._index >= len(self._buffer):
            self._buffer = self._rng.random(self._block).tolist()
            self._index = 0
        value = self._buffer[self._index]
        self._index += 1
        return value


def make_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A NumPy Generator from a seed (or the Generator itself)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def env_sizes(env: DiscreteEnv) -> tuple[int, int]:
    """``(n_states, n_actions)`` of an environment with ``Discrete`` spaces."""
    try:
        return int(env.observation_space.n), int(env.action_space.n)
    except AttributeError:
        raise TypeError(
            "env must have Discrete observation and action spaces (observation_space.n, action_space.n)"
        ) from None


def resolve_gamma(env: Any, gamma: float | None) -> float:
    """The discount: ``gamma`` when given, else the environment's own ``env.gamma``."""
    if gamma is not None:
        return check_gamma("gamma", gamma)
    own = getattr(env, "gamma", None)
    if own is None:
        raise ValueError(f"gamma must be given for {type(env).__name__} (it defines no discount of its own)")
    return check_gamma("gamma", own)


def policy_sampler(policy: ArrayLike, n_states: int, n_actions: int) -> Callable[[int, float], int]:
    """``f(state, u) -> action`` drawing ``A ~ pi(.|state)`` by inverse CDF of a uniform ``u``."""
    pi = check_policy("policy", policy, n_states, n_actions)
    cumulative = np.cumsum(pi, axis=1)
    cumulative /= cumulative[:, -1:]
    rows = cumulative.tolist()

    def sample(state: int, u: float) -> int:
        row = rows[state]
        for action, edge in enumerate(row):
            if u < edge:
                return action
        return n_actions - 1

    return sample


def run_episode(
    env: DiscreteEnv,
    choose_action: Callable[[int], int],
    *,
    max_steps: int,
    seed: int | None = None,
) -> Episode:
    """Play one episode, choosing actions with ``choose_action(state)``; cut off after ``max_steps``."""
    state, _ = env.reset(seed=seed)
    state = int(state)
    states, actions, rewards = [state], [], []
    terminated = False
    for _ in range(max_steps):
        action = choose_action(state)
        state, reward, terminated, truncated, _ = env.step(action)
        state = int(state)
        states.append(state)
        actions.append(action)
        rewards.append(float(reward))
        if terminated or truncated:
            break
    return Episode.from_lists(states, actions, rewards, bool(terminated))


def sample_episodes(
    env: DiscreteEnv,
    policy: ArrayLike,
    n_episodes: int,
    *,
    seed: int | np.random.Generator | None = None,
    max_steps: int = 10_000,
) -> Iterator[Episode]:
    """Episodes of ``policy [S, A]`` in ``env`` (a generator; seeded, so repeatable)."""
    n_states, n_actions = env_sizes(env)
    check_count("n_episodes", n_episodes)
    sample = policy_sampler(policy, n_states, n_actions)
    rng = make_rng(seed)
    uniform = UniformStream(rng)
    env_seed = int(rng.integers(2**31 - 1))
    for index in range(n_episodes):
        yield run_episode(
            env,
            lambda s: sample(s, uniform()),
            max_steps=max_steps,
            seed=env_seed if index == 0 else None,
        )


@dataclass(frozen=True)
class PolicyEvaluation:
    """Monte Carlo estimate of a policy's performance from ``n`` rollouts."""

    mean_return: float
    std_error: float
    success_rate: float
    mean_length: float
    n: int


def evaluate_policy(
    env: DiscreteEnv,
    policy: ArrayLike,
    *,
    n_episodes: int = 1_000,
    seed: int = 0,
    max_steps: int = 10_000,
) -> PolicyEvaluation:
    """Roll ``policy [S, A]`` out ``n_episodes`` times (fixed seed) and average.

    ``success_rate`` is the fraction of episodes with a positive total reward that ended in a terminal
    state (FrozenLake's "reached the goal").
    """
    returns, lengths, successes = [], [], 0
    for episode in sample_episodes(env, policy, n_episodes, seed=seed, max_steps=max_steps):
        returns.append(episode.total_reward)
        lengths.append(episode.length)
        successes += int(episode.terminated and episode.total_reward > 0.0)
    values = np.asarray(returns)
    return PolicyEvaluation(
        mean_return=float(values.mean()),
        std_error=float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0,
        success_rate=successes / n_episodes,
        mean_length=float(np.mean(lengths)),
        n=n_episodes,
    )


@dataclass
class LearningResult:
    """What a model-free learner returns.

    Attributes:
        algorithm: the algorithm's name.
        values: ``[S]`` state values (prediction: the estimate of ``V_pi``; control: ``max_a Q``).
        q: ``[S, A]`` action values (control), or None (prediction).
        episode_returns: ``[N]`` undiscounted return of each training episode (the learning curve).
        episode_lengths: ``[N]`` steps of each training episode.
        params: the hyper-parameters used.
    """

    algorithm: str
    values: FloatArray
    q: FloatArray | None
    episode_returns: FloatArray
    episode_lengths: IntArray
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def greedy_policy(self) -> FloatArray:
        """``[S, A]`` deterministic policy greedy in ``q`` (ties to the lowest action index)."""
        if self.q is None:
            raise ValueError(f"{self.algorithm} is a prediction method: it learns V, not Q")
        return greedy_policy(self.q, atol=0.0)

    def moving_average(self, window: int = 100) -> FloatArray:
        """``[N - window + 1]`` moving average of the episode returns."""
        check_count("window", window)
        returns = self.episode_returns
        window = min(window, len(returns))
        if window == 0:
            return returns.copy()
        kernel = np.ones(window) / window
        return np.convolve(returns, kernel, mode="valid")

    def summary(self) -> str:
        n = len(self.episode_returns)
        tail = self.episode_returns[-max(1, n // 10) :]
        params = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return (
            f"{self.algorithm} ({params}): {n} episodes, mean return of the last {len(tail)}: "
            f"{tail.mean():.3f}"
        )


def as_episode_list(episodes: Any, name: str = "episodes") -> list[Episode]:
    """A list of :class:`Episode` (checked)."""
    items = list(episodes)
    for i, item in enumerate(items):
        if not isinstance(item, Episode):
            raise TypeError(f"{name}[{i}] must be an Episode, got {type(item).__name__}")
    return items


def check_initial_values(values: ArrayLike | None, n_states: int) -> FloatArray:
    if values is None:
        return np.zeros(n_states)
    v = as_float_array("initial_values", values, 1)
    if v.shape != (n_states,):
        raise ValueError(f"initial_values must have shape ({n_states},), got {v.shape}")
    return v.copy()
