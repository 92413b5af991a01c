"""Potential-based reward shaping on finite MDPs (Ng, Harada & Russell 1999).

Adding ``F(s, a, s') = gamma * phi(s') - phi(s)`` to every reward leaves the optimal policy unchanged:
along any episode the bonus telescopes to ``-phi(s_0)``, so ``Q'*(s, a) = Q*(s, a) - phi(s)`` and the
greedy actions agree. Two conditions make that hold:

* the potential of a **terminal** state is 0. With ``phi(terminal) = c != 0`` an episode of length
  ``T`` collects ``-phi(s_0) + gamma^T c``, which depends on ``T``: when episodes vary in length the
  shaping then prefers short (``c < 0`` ... long) episodes and can change the optimal policy
  (:func:`shape_mdp` with ``zero_terminal=False`` shows it);
* the bonus is a difference of potentials. A bonus for *entering* a cell is not: an agent can collect
  it again and again (:func:`cell_bonus_gridworld`), and the optimal policy changes.

The demonstration: Q-learning on a grid world with ``phi(s) = -distance_to_goal(s)`` reaches the goal
in far fewer steps than without shaping, while value iteration finds the same greedy policy on the
shaped and the unshaped MDP (:func:`compare_learning`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from credo.tabular import FiniteMDP, GridWorld, MDPEnv, q_learning, value_iteration

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


def shape_mdp(mdp: FiniteMDP, potentials: ArrayLike, *, zero_terminal: bool = True) -> FiniteMDP:
    """The MDP with rewards ``R'(s, a, s') = R(s, a, s') + gamma * phi(s') - phi(s)``.

    Args:
        mdp: the model.
        potentials: ``[S]`` finite ``phi(s)``.
        zero_terminal: take ``phi(terminal) = 0`` on arrival at a terminal state (Ng et al.; the
            default). ``False`` uses the given terminal potentials as they are, which breaks policy
            invariance when episodes vary in length; it exists to show that.

    Returns:
        A sparse :class:`FiniteMDP` with the same transitions, terminals and start distribution.
    """
    phi = np.asarray(potentials, dtype=np.float64)
    if phi.shape != (mdp.n_states,):
        raise ValueError(f"potentials must have shape ({mdp.n_states},), got {phi.shape}")
    if not np.isfinite(phi).all():
        raise ValueError("potentials must be finite")
    arrival = np.where(mdp.terminal_mask, 0.0, phi) if zero_terminal else phi
    next_states, probs, rewards = mdp.successors()
    shaped = rewards + mdp.gamma * arrival[next_states] - phi[:, None, None]
    return FiniteMDP.from_successors(
        next_states,
        probs,
        shaped,
        mdp.gamma,
        mdp.terminal_states,
        initial_distribution=mdp.initial_distribution,
        state_labels=mdp.state_labels,
        action_labels=mdp.action_labels,
    )


def grid_distances(grid: GridWorld, goal: tuple[int, int]) -> FloatArray:
    """``[S]`` fewest moves from each cell to ``goal`` around walls (inf if unreachable).

    ``d(goal) = 0``, ``d(s) = 1 + min over actions and possible successors s' of d(s')``, iterated to a
    fixed point on the grid's model (at most S sweeps).
    """
    mdp = grid.to_mdp()
    next_states, probs, _ = mdp.successors()
    target = grid.state(goal)
    distance = np.full(grid.n_states, np.inf)
    distance[target] = 0.0
    for _ in range(grid.n_states):
        reachable = np.where(probs > 0.0, distance[next_states], np.inf).min(axis=(1, 2)) + 1.0
        updated = np.minimum(distance, reachable)
        updated[target] = 0.0
        if np.array_equal(updated, distance):
            break
        distance = updated
    return distance


def distance_potential(grid: GridWorld, goal: tuple[int, int], scale: float = 1.0) -> FloatArray:
    """``phi(s) = -scale * distance(s, goal)``, 0 at terminal cells (and the goal)."""
    phi = -scale * grid_distances(grid, goal)
    phi[[grid.state(c) for c in grid.terminals]] = 0.0
    return np.where(np.isfinite(phi), phi, 0.0)


def shaping_gridworld(size: int = 10, gamma: float = 0.95) -> GridWorld:
    """A ``size x size`` grid, start top-left, terminal goal bottom-right, a wall across the middle
    with one gap near the right edge, reward -1 per move: the shortest path to the goal is optimal."""
    mid = size // 2
    walls = [(mid, c) for c in range(size) if c != size - 2]
    goal = (size - 1, size - 1)
    return GridWorld(
        size, size, walls=walls, terminals=[goal], step_reward=-1.0, gamma=gamma,
        start=(0, 0), name=f"shaping_{size}x{size}",
    )  # fmt: skip


def cell_bonus_gridworld(size: int = 10, bonus: float = 3.0, gamma: float = 0.95) -> GridWorld:
    """The same grid with a non-potential shaping reward: ``bonus`` for entering the cell next to the
    start. Stepping in and out of it forever beats walking to the goal, so the optimal policy changes."""
    base = shaping_gridworld(size, gamma)
    rewards = dict(base.cell_rewards)
    rewards[(0, 1)] = bonus
    return GridWorld(
        size, size, walls=base.walls, terminals=base.terminals, cell_rewards=rewards, step_reward=-1.0, gamma=gamma,
        start=(0, 0), name=f"cell_bonus_{size}x{size}",
    )  # fmt: skip


def optimal_action_sets(mdp: FiniteMDP, atol: float = 1e-6) -> BoolArray:
    """``[S, A]`` bool: the actions within ``atol`` of the best ``Q*(s, .)`` (by value iteration)."""
    values, _ = value_iteration(mdp, tol=1e-12)
    q = mdp.action_values(values)
    return q >= q.max(axis=1, keepdims=True) - atol


def greedy_rollout(mdp: FiniteMDP, policy: FloatArray, start: int, max_steps: int = 200) -> list[int]:
    """The states visited by a deterministic policy on a deterministic MDP, from ``start``."""
    next_states, probs, _ = mdp.successors()
    state, path = start, [start]
    for _ in range(max_steps):
        if mdp.terminal_mask[state]:
            break
        action = int(policy[state].argmax())
        state = int(next_states[state, action, probs[state, action].argmax()])
        path.append(state)
    return path


@dataclass
class ShapingRun:
    """Q-learning on one MDP: ``steps [episodes]`` per episode, and ``reached [episodes]`` bool."""

    name: str
    steps: NDArray[np.int64]
    reached: BoolArray

    def episodes_to_learn(self, optimal_steps: int, slack: int = 2, window: int = 5) -> int:
        """The first episode after which ``window`` episodes in a row take at most
        ``optimal_steps + slack`` steps (``len(steps)`` if never)."""
        good = self.steps <= optimal_steps + slack
        for i in range(len(good) - window + 1):
            if good[i : i + window].all():
                return i
        return len(good)


def run_q_learning(
    name: str, mdp: FiniteMDP, *, episodes: int, seed: int, max_steps: int = 500, progress: bool = False
) -> ShapingRun:
    """Q-learning (alpha 0.5, epsilon 0.05, Q initialised to 0) for ``episodes`` episodes."""
    env = MDPEnv(mdp, max_episode_steps=max_steps)
    result = q_learning(
        env, n_episodes=episodes, alpha=0.5, epsilon=0.05, seed=seed, max_steps=max_steps, progress=progress
    )
    steps = result.episode_lengths
    return ShapingRun(name, steps, steps < max_steps)


def compare_learning(
    grid: GridWorld, *, episodes: int = 100, seeds: tuple[int, ...] = (0, 1, 2), progress: bool = False
) -> dict[str, list[ShapingRun]]:
    """Q-learning on ``grid`` with and without ``phi = -distance_to_goal`` shaping, per seed."""
    goal = next(iter(grid.terminals))
    plain = grid.to_mdp()
    shaped = shape_mdp(plain, distance_potential(grid, goal))
    return {
        "unshaped": [
            run_q_learning("unshaped", plain, episodes=episodes, seed=s, progress=progress) for s in seeds
        ],
        "shaped": [
            run_q_learning("shaped", shaped, episodes=episodes, seed=s, progress=progress) for s in seeds
        ],
    }


def corridor(length: int = 7, gamma: float = 0.9) -> GridWorld:
    """A ``1 x length`` corridor with a terminal at each end, the start next to the left one; only the
    right end pays (+1). Its two policies end episodes of different lengths (1 step or ``length - 2``)."""
    return GridWorld(
        1, length, terminals=[(0, 0), (0, length - 1)], cell_rewards={(0, length - 1): 1.0}, gamma=gamma,
        start=(0, 1), name=f"corridor_{length}",
    )  # fmt: skip
