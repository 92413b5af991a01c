"""Sampling environments: any :class:`FiniteMDP` as a Gymnasium environment, and Gymnasium's discrete
toy-text environments (FrozenLake, CliffWalking, Taxi) as :class:`FiniteMDP` models.

The learners in :mod:`credo.tabular.prediction` and :mod:`credo.tabular.control` only need the
Gymnasium API: ``reset(seed=...) -> (state, info)``, ``step(action) -> (state, reward, terminated,
truncated, info)``, ``observation_space.n`` and ``action_space.n``. So they run on :class:`MDPEnv`
and on ``gymnasium.make("FrozenLake-v1")`` alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import ArrayLike, NDArray

from credo.tabular._checks import check_count, check_distribution_rows, check_gamma, check_values
from credo.tabular.gridworld import GRID_PRESETS, GridLayout, make_gridworld
from credo.tabular.mdp import FiniteMDP


class MDPEnv(gym.Env):
    """A :class:`FiniteMDP` as a seedable Gymnasium environment (states and actions are ints).

    Args:
        mdp: the model to sample from. ``step`` draws ``s' ~ P(.|s, a)`` and pays the transition's
            reward (``R[s, a, s']`` when the model has one, else ``r(s, a)``).
        max_episode_steps: truncate an episode after this many steps (None: never).
        initial_distribution: ``[S]`` distribution of the first state, overriding the model's (e.g.
            uniform over all non-terminal states, "exploring starts", so every state gets visited).

    ``terminated`` is True on arriving in a terminal state. The discount is ``env.gamma`` (the model's),
    which the learners use when no ``gamma`` is passed to them.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (Gymnasium's convention)

    def __init__(
        self,
        mdp: FiniteMDP,
        *,
        max_episode_steps: int | None = None,
        initial_distribution: ArrayLike | None = None,
    ) -> None:
        if not isinstance(mdp, FiniteMDP):
            raise TypeError(f"mdp must be a FiniteMDP, got {type(mdp).__name__}")
        self.mdp = mdp
        self.gamma = mdp.gamma
        self.max_episode_steps = (
            None if max_episode_steps is None else check_count("max_episode_steps", max_episode_steps)
        )
        self.observation_space = spaces.Discrete(mdp.n_states)
        self.action_space = spaces.Discrete(mdp.n_actions)
        next_states, probs, rewards = mdp.successors()
        cumulative = np.cumsum(probs, axis=-1)
        self._cumulative = cumulative / cumulative[..., -1:]
        self._next_states = next_states
        self._rewards = rewards
        initial = mdp.initial_distribution
        if initial_distribution is not None:
            initial = check_values("initial_distribution", initial_distribution, mdp.n_states)
            check_distribution_rows("initial_distribution", initial)
        start = np.cumsum(initial)
        self._start_cumulative = start / start[-1]
        self._terminal = mdp.terminal_mask
        self._state = -1
        self._steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[int, dict]:
        super().reset(seed=seed)
        self._state = int(np.searchsorted(self._start_cumulative, self.np_random.random(), side="right"))
        self._steps = 0
        return self._state, {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        if self._state < 0:
            raise RuntimeError("call reset() before step()")
        a = int(action)
        if not 0 <= a < self.mdp.n_actions:
            raise ValueError(f"action must lie in [0, {self.mdp.n_actions}), got {action}")
        s = self._state
        k = int(np.searchsorted(self._cumulative[s, a], self.np_random.random(), side="right"))
        next_state = int(self._next_states[s, a, k])
        reward = float(self._rewards[s, a, k])
        self._state = next_state
        self._steps += 1
        terminated = bool(self._terminal[next_state])
        truncated = (
            not terminated and self.max_episode_steps is not None and self._steps >= self.max_episode_steps
        )
        return next_state, reward, terminated, truncated, {}


def _successor_arrays(
    table: Any, n_states: int, n_actions: int
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """``next_states, probs, rewards [S, A, width]`` of a ``P`` table (padded with zero-probability
    self-loops) and ``ends [S]``: the states some transition of positive probability terminates in."""
    width = max(len(table[s][a]) for s in range(n_states) for a in range(n_actions))
    next_states = np.zeros((n_states, n_actions, width), dtype=np.int64)
    probs = np.zeros((n_states, n_actions, width))
    rewards = np.zeros((n_states, n_actions, width))
    ends = np.zeros(n_states, dtype=bool)
    for s in range(n_states):
        for a in range(n_actions):
            next_states[s, a, :] = s
            for k, (p, s_next, r, done) in enumerate(table[s][a]):
                next_states[s, a, k] = int(s_next)
                probs[s, a, k] = float(p)
                rewards[s, a, k] = float(r)
                if float(p) > 0.0 and done:
                    ends[int(s_next)] = True
    return next_states, probs, rewards, ends


def _gymnasium_initial_distribution(base: Any) -> NDArray[np.float64] | None:
    """The env's ``initial_state_distrib``, normalised (None when it has none)."""
    initial = getattr(base, "initial_state_distrib", None)
    if initial is not None:
        initial = np.asarray(initial, dtype=np.float64)
        initial = initial / initial.sum()
    return initial


def _entered_alive(
    table: Any, n_actions: int, terminal: NDArray[np.bool_], initial: NDArray[np.float64] | None
) -> NDArray[np.bool_]:
    """``[S]``: the states some non-terminating transition of positive probability enters, counting
    only transitions from states reachable from the start (from any non-terminal state when the
    initial distribution is unknown)."""
    n_states = terminal.shape[0]
    reachable = np.zeros(n_states, dtype=bool) if initial is not None else ~terminal
    if initial is not None:
        reachable[initial > 0.0] = True
    frontier = list(np.flatnonzero(reachable))
    entered_alive = np.zeros(n_states, dtype=bool)
    while frontier:
        s = frontier.pop()
        if terminal[s]:
            continue
        for a in range(n_actions):
            for p, s_next, _, done in table[s][a]:
                if float(p) > 0.0 and not done:
                    entered_alive[int(s_next)] = True
                if float(p) > 0.0 and not reachable[int(s_next)]:
                    reachable[int(s_next)] = True
                    frontier.append(int(s_next))
    return entered_alive


def mdp_from_gymnasium(env: gym.Env, gamma: float) -> FiniteMDP:
    """The model of a Gymnasium toy-text environment, from its ``env.unwrapped.P`` table.

    ``P[s][a]`` is a list of ``(probability, next_state, reward, terminated)``. A state is terminal
    when some transition into it ends the episode (FrozenLake's holes and goal, CliffWalking's goal,
    Taxi's drop-offs); rewards are kept per successor, so sampling from the model is exact.

    Args:
        env: a Gymnasium environment with discrete spaces whose unwrapped env has ``P``.
        gamma: the discount of the returned MDP (the environment does not define one).
    """
    check_gamma("gamma", gamma)
    base = env.unwrapped
    table = getattr(base, "P", None)
    if table is None:
        raise ValueError(f"env {type(base).__name__} has no transition table P; it is not a tabular model")
    n_states = int(env.observation_space.n)  # type: ignore[attr-defined]
    n_actions = int(env.action_space.n)  # type: ignore[attr-defined]
    next_states, probs, rewards, terminal = _successor_arrays(table, n_states, n_actions)
    initial = _gymnasium_initial_distribution(base)
    # A state entered both with and without termination is ambiguous; only transitions from states
    # that episodes can reach count (Taxi has unreachable states whose table entries disagree).
    ambiguous = terminal & _entered_alive(table, n_actions, terminal, initial)
    if ambiguous.any():
        raise ValueError(
            f"env {type(base).__name__}: states {np.flatnonzero(ambiguous)[:8].tolist()} are entered both "
            "with and without termination; they cannot be modelled as terminal states"
        )
    return FiniteMDP.from_successors(
        next_states, probs, rewards, gamma, np.flatnonzero(terminal), initial_distribution=initial
    )


# ---------------------------------------------------------------------- grid layouts of Gymnasium envs


def _frozen_lake_layout(base: Any) -> GridLayout:
    desc = np.asarray(base.desc).astype(str)
    rows, cols = desc.shape
    cells = np.array([(s // cols, s % cols) for s in range(rows * cols)], dtype=np.int64)
    markers = {(r, c): desc[r, c] for r in range(rows) for c in range(cols) if desc[r, c] in "SHG"}
    terminal = frozenset(cell for cell, m in markers.items() if m in "HG")
    # FrozenLake actions: 0 left, 1 down, 2 right, 3 up.
    return GridLayout((rows, cols), cells, ((0, -1), (1, 0), (0, 1), (-1, 0)), frozenset(), markers, terminal)


def _cliff_walking_layout(base: Any) -> GridLayout:
    rows, cols = (int(x) for x in base.shape)
    cells = np.array([(s // cols, s % cols) for s in range(rows * cols)], dtype=np.int64)
    markers = {(rows - 1, 0): "S", (rows - 1, cols - 1): "G"}
    markers.update({(rows - 1, c): "C" for c in range(1, cols - 1)})
    # CliffWalking actions: 0 up, 1 right, 2 down, 3 left. Cliff cells are states of the table that
    # are never occupied (stepping there returns to the start): drawn as walls.
    cliff = frozenset((rows - 1, c) for c in range(1, cols - 1))
    terminal = frozenset({(rows - 1, cols - 1), *cliff})
    return GridLayout((rows, cols), cells, ((-1, 0), (0, 1), (1, 0), (0, -1)), cliff, markers, terminal)


GYMNASIUM_LAYOUTS: dict[str, Callable[[Any], GridLayout]] = {
    "FrozenLakeEnv": _frozen_lake_layout,
    "CliffWalkingEnv": _cliff_walking_layout,
}


def gymnasium_layout(env: gym.Env) -> GridLayout | None:
    """The grid layout of FrozenLake or CliffWalking (None for non-grid environments such as Taxi)."""
    builder = GYMNASIUM_LAYOUTS.get(type(env.unwrapped).__name__)
    return None if builder is None else builder(env.unwrapped)


# ---------------------------------------------------------------------- problems by name


@dataclass
class TabularProblem:
    """An environment together with what is known about it.

    Attributes:
        name: the preset name or Gymnasium id.
        env: a Gymnasium-API environment to learn from.
        gamma: the discount used by every algorithm on this problem.
        mdp: the exact model when known (grid presets, toy-text envs), for DP and for checking learners.
        layout: the grid layout for plotting (None for non-grid problems).
    """

    name: str
    env: gym.Env
    gamma: float
    mdp: FiniteMDP | None
    layout: GridLayout | None


# Discounts used for the Gymnasium problems when none is given (episodic tasks: 1.0 is the true
# objective; FrozenLake's 0.99 keeps learning stable and its optimal policy is nearly the same).
GYMNASIUM_DEFAULT_GAMMA: dict[str, float] = {
    "FrozenLake-v1": 0.99,
    "FrozenLake8x8-v1": 0.99,
    "CliffWalking-v1": 1.0,
    "Taxi-v4": 0.99,
}


def make_problem(name: str, *, gamma: float | None = None, max_episode_steps: int = 1_000) -> TabularProblem:
    """A grid preset (``GRID_PRESETS``) or a Gymnasium environment id, ready for the learners.

    Args:
        name: ``"seed001"``, ``"sutton_barto_3_5"``, ... or e.g. ``"FrozenLake-v1"``.
        gamma: override the discount (grid presets carry their own; Gymnasium ids use
            ``GYMNASIUM_DEFAULT_GAMMA`` or 0.99).
        max_episode_steps: episode cap for grid presets (Gymnasium envs keep their own time limits).
    """
    if name in GRID_PRESETS:
        grid = make_gridworld(name)
        mdp = grid.to_mdp() if gamma is None else grid.to_mdp().with_gamma(gamma)
        env = MDPEnv(mdp, max_episode_steps=max_episode_steps)
        return TabularProblem(name, env, mdp.gamma, mdp, grid.layout)
    try:
        env = gym.make(name)
    except gym.error.Error as error:
        raise ValueError(
            f"unknown problem {name!r}: not a grid preset ({sorted(GRID_PRESETS)}) nor a Gymnasium id "
            f"({error})"
        ) from None
    if not isinstance(env.observation_space, spaces.Discrete) or not isinstance(
        env.action_space, spaces.Discrete
    ):
        raise ValueError(f"{name!r} is not a discrete (tabular) environment")
    discount = GYMNASIUM_DEFAULT_GAMMA.get(name, 0.99) if gamma is None else check_gamma("gamma", gamma)
    mdp = mdp_from_gymnasium(env, discount) if hasattr(env.unwrapped, "P") else None
    return TabularProblem(name, env, discount, mdp, gymnasium_layout(env))


def cumulative_rows(probabilities: NDArray[np.float64]) -> NDArray[np.float64]:
    """Row-wise cumulative sums normalised to end at exactly 1 (for inverse-CDF sampling)."""
    cumulative = np.cumsum(probabilities, axis=-1)
    return cumulative / cumulative[..., -1:]
