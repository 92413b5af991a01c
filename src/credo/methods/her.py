"""Hindsight Experience Replay (Andrychowicz et al. 2017, NeurIPS) with a DQN agent on bit flipping.

In a goal-reaching task with a sparse reward (``0`` on reaching the goal, ``-1`` otherwise), almost
every episode fails and teaches nothing. HER replays each transition ``(s_t, a_t, s_{t+1}, g)`` also
with a goal the agent *did* reach, ``g' = achieved(s_{t'+1})``, and recomputes the reward and the
``done`` flag for ``g'``: a failed episode becomes a successful one for another goal.

Relabelling strategies (for a transition at step ``t`` of an episode of ``L`` steps; ``ag[i]`` is the
goal achieved after ``i`` steps, ``ag[0]`` the start):

* ``final``:   ``g' = ag[L]``;
* ``future``:  ``g' = ag[t' + 1]``, ``t'`` uniform in ``[t, L - 1]`` (the *next* achieved goal at
  ``t' = t``: a transition always counts its own result, never the state it started from);
* ``episode``: ``g' = ag[t' + 1]``, ``t'`` uniform in ``[0, L - 1]``.

The buffer (:class:`HindsightReplayBuffer`) keeps whole episodes in a ring of slots. A transition is
sampled only from an episode that has finished (terminated or truncated) and not been overwritten
since: a slot is invalid from the moment a new episode starts writing into it. A time-limit
truncation is not terminal (the target bootstraps); ``done`` of a relabelled transition is "the new
goal is achieved".

The bit-flipping environment (:class:`BitFlipEnv`): ``n`` bits, action ``i`` flips bit ``i``, the goal
is a random bit string, ``n`` steps per episode. DQN alone fails beyond about 10 bits (a random walk
almost never meets the goal); with HER it solves ``n = 50`` in the paper.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from tqdm.auto import tqdm

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
STRATEGIES = ("final", "future", "episode", "none")


# ---------------------------------------------------------------------- the environment


def bitflip_reward(achieved: NDArray, goal: NDArray) -> FloatArray:
    """``[...]`` reward ``0`` where ``achieved == goal`` (all bits), ``-1`` elsewhere (``[..., n]`` in)."""
    return -(np.asarray(achieved) != np.asarray(goal)).any(axis=-1).astype(np.float64)


def bitflip_success(achieved: NDArray, goal: NDArray) -> NDArray[np.bool_]:
    """``[...]`` bool: every bit of ``achieved`` equals ``goal``."""
    return (np.asarray(achieved) == np.asarray(goal)).all(axis=-1)


class BitFlipEnv:
    """Bit flipping (Andrychowicz et al. 2017, section 3.1).

    The state is ``n_bits`` bits (also the achieved goal), the goal another bit string, both drawn
    uniformly (redrawn while equal). ``step(i)`` flips bit ``i`` and returns ``(state, reward,
    terminated, truncated)``: ``terminated`` when the state equals the goal (reward 0; otherwise -1),
    ``truncated`` after ``max_steps`` steps (default ``n_bits``) without reaching it.
    """

    def __init__(self, n_bits: int, *, max_steps: int | None = None, seed: int | None = None) -> None:
        if n_bits < 1:
            raise ValueError(f"n_bits must be >= 1, got {n_bits}")
        self.n_bits = n_bits
        self.max_steps = n_bits if max_steps is None else max_steps
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.rng = np.random.default_rng(seed)
        self.state = np.zeros(n_bits, dtype=np.float32)
        self.goal = np.zeros(n_bits, dtype=np.float32)
        self.steps = -1

    def reset(self) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """A new episode: ``(state [n], goal [n])``."""
        self.state = self.rng.integers(0, 2, self.n_bits).astype(np.float32)
        self.goal = self.state.copy()
        while (self.goal == self.state).all():
            self.goal = self.rng.integers(0, 2, self.n_bits).astype(np.float32)
        self.steps = 0
        return self.state.copy(), self.goal.copy()

    def step(self, action: int) -> tuple[NDArray[np.float32], float, bool, bool]:
        if self.steps < 0:
            raise RuntimeError("call reset() before step()")
        if not 0 <= int(action) < self.n_bits:
            raise ValueError(f"action must lie in [0, {self.n_bits}), got {action}")
        self.state[int(action)] = 1.0 - self.state[int(action)]
        self.steps += 1
        terminated = bool(bitflip_success(self.state, self.goal))
        truncated = not terminated and self.steps >= self.max_steps
        if terminated or truncated:
            self.steps = -1
        return self.state.copy(), float(bitflip_reward(self.state, self.goal)), terminated, truncated


# ---------------------------------------------------------------------- the replay buffer


@dataclass
class Batch:
    """Sampled transitions, ``[B, ...]`` each: ``obs``, ``goal`` (relabelled where ``relabelled``),
    ``action``, ``reward``, ``next_obs``, ``done`` (terminal for ``goal``: no bootstrap), and where they
    came from (``episode`` slot, step ``t``, ``goal_index`` into the achieved goals or -1)."""

    obs: NDArray[np.float32]
    goal: NDArray[np.float32]
    action: IntArray
    reward: FloatArray
    next_obs: NDArray[np.float32]
    done: NDArray[np.bool_]
    episode: IntArray
    t: IntArray
    goal_index: IntArray
    relabelled: NDArray[np.bool_]


class HindsightReplayBuffer:
    """Episodes of at most ``max_steps`` steps in ``capacity`` slots, sampled with HER relabelling.

    Args:
        capacity: number of episodes kept (the oldest is overwritten first).
        max_steps: the longest episode.
        obs_dim, goal_dim: sizes of observations and goals.
        reward_fn, success_fn: ``(achieved [..., g], goal [..., g]) -> [...]``, the reward and
            "goal reached" of the task, used to recompute both after relabelling.
        strategy: ``"final"``, ``"future"``, ``"episode"`` or ``"none"`` (plain replay).
        k: relabelled goals per real one: a sampled transition is relabelled with probability
            ``k / (k + 1)`` (HER's ``future_p``).
        seed: the sampler's seed.
    """

    def __init__(
        self,
        capacity: int,
        max_steps: int,
        obs_dim: int,
        goal_dim: int,
        reward_fn: Callable[[NDArray, NDArray], FloatArray],
        success_fn: Callable[[NDArray, NDArray], NDArray[np.bool_]],
        *,
        strategy: str = "future",
        k: int = 4,
        seed: int | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if capacity < 1 or max_steps < 1 or k < 0:
            raise ValueError(f"need capacity >= 1, max_steps >= 1, k >= 0; got {capacity}, {max_steps}, {k}")
        self.capacity, self.max_steps, self.strategy = capacity, max_steps, strategy
        self.relabel_probability = 0.0 if strategy == "none" else k / (k + 1.0)
        self.reward_fn, self.success_fn = reward_fn, success_fn
        self.obs = np.zeros((capacity, max_steps + 1, obs_dim), dtype=np.float32)
        self.achieved = np.zeros((capacity, max_steps + 1, goal_dim), dtype=np.float32)
        self.goals = np.zeros((capacity, goal_dim), dtype=np.float32)
        self.actions = np.zeros((capacity, max_steps), dtype=np.int64)
        self.rewards = np.zeros((capacity, max_steps))
        self.terminated = np.zeros((capacity, max_steps), dtype=bool)
        self.lengths = np.zeros(capacity, dtype=np.int64)
        self.finished = np.zeros(capacity, dtype=bool)
        self.rng = np.random.default_rng(seed)
        self._next_slot = 0
        self._open: int | None = None

    @property
    def n_episodes(self) -> int:
        """Finished episodes that can be sampled."""
        return int(self.finished.sum())

    def start_episode(self, obs: NDArray, achieved: NDArray, goal: NDArray) -> int:
        """Open the next slot (invalidating the episode stored there) and return its index."""
        if self._open is not None:
            raise RuntimeError("the previous episode has not ended (terminated or truncated)")
        slot = self._next_slot
        self._next_slot = (slot + 1) % self.capacity
        self.finished[slot] = False
        self.lengths[slot] = 0
        self.obs[slot, 0], self.achieved[slot, 0], self.goals[slot] = obs, achieved, goal
        self._open = slot
        return slot

    def add(
        self,
        action: int,
        reward: float,
        next_obs: NDArray,
        next_achieved: NDArray,
        terminated: bool,
        truncated: bool,
    ) -> None:
        """Append one step to the open episode; it becomes sampleable once terminated or truncated."""
        if self._open is None:
            raise RuntimeError("call start_episode() before add()")
        slot, t = self._open, int(self.lengths[self._open])
        if t >= self.max_steps:
            raise RuntimeError(f"episode longer than max_steps={self.max_steps}: end it with truncated=True")
        self.actions[slot, t], self.rewards[slot, t], self.terminated[slot, t] = action, reward, terminated
        self.obs[slot, t + 1], self.achieved[slot, t + 1] = next_obs, next_achieved
        self.lengths[slot] = t + 1
        if terminated or truncated:
            self.finished[slot] = True
            self._open = None

    def _relabel_indices(self, t: IntArray, lengths: IntArray) -> IntArray:
        """Index into the achieved goals of each relabelled goal (``t' + 1``, see the module docstring)."""
        u = self.rng.random(t.shape[0])
        if self.strategy == "final":
            return lengths
        if self.strategy == "future":
            return t + 1 + np.floor(u * (lengths - t)).astype(np.int64)
        return 1 + np.floor(u * lengths).astype(np.int64)

    def sample(self, batch_size: int) -> Batch:
        """``batch_size`` transitions, uniform over the steps of finished episodes, relabelled with
        probability ``k / (k + 1)``; reward and done recomputed for the relabelled goals."""
        valid = np.flatnonzero(self.finished)
        if valid.size == 0:
            raise RuntimeError("no finished episode to sample from")
        weights = self.lengths[valid] / self.lengths[valid].sum()
        episode = valid[self.rng.choice(valid.size, size=batch_size, p=weights)]
        lengths = self.lengths[episode]
        t = np.floor(self.rng.random(batch_size) * lengths).astype(np.int64)
        relabelled = self.rng.random(batch_size) < self.relabel_probability
        goal_index = np.where(relabelled, self._relabel_indices(t, lengths), -1)
        goal = np.where(
            relabelled[:, None], self.achieved[episode, np.maximum(goal_index, 0)], self.goals[episode]
        )
        next_achieved = self.achieved[episode, t + 1]
        reward = np.where(relabelled, self.reward_fn(next_achieved, goal), self.rewards[episode, t])
        done = np.where(relabelled, self.success_fn(next_achieved, goal), self.terminated[episode, t])
        return Batch(
            obs=self.obs[episode, t], goal=goal, action=self.actions[episode, t], reward=reward,
            next_obs=self.obs[episode, t + 1], done=done.astype(bool), episode=episode, t=t,
            goal_index=goal_index, relabelled=relabelled,
        )  # fmt: skip


# ---------------------------------------------------------------------- the agent


class GoalDQN:
    """DQN on ``[obs, goal]`` with a target network (Mnih et al. 2015), as in the HER paper's bit
    flipping: an MLP with one hidden layer of ``hidden`` units, targets clipped to the attainable
    range ``[-1 / (1 - gamma), 0]``, Polyak-averaged target network (rate ``tau``)."""

    def __init__(
        self, obs_dim: int, goal_dim: int, n_actions: int, *, hidden: int = 256, lr: float = 1e-3,
        gamma: float = 0.98, tau: float = 0.05, seed: int = 0,
    ) -> None:  # fmt: skip
        torch.manual_seed(seed)
        self.net = nn.Sequential(
            nn.Linear(obs_dim + goal_dim, hidden), nn.ReLU(), nn.Linear(hidden, n_actions)
        )
        self.target = nn.Sequential(
            nn.Linear(obs_dim + goal_dim, hidden), nn.ReLU(), nn.Linear(hidden, n_actions)
        )
        self.target.load_state_dict(self.net.state_dict())
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.gamma, self.tau, self.n_actions = gamma, tau, n_actions

    @torch.no_grad()
    def greedy(self, obs: NDArray, goal: NDArray) -> IntArray:
        """``[M]`` greedy actions for ``obs [M, o]``, ``goal [M, g]``."""
        x = torch.from_numpy(np.concatenate([obs, goal], axis=-1).astype(np.float32))
        return self.net(x).argmax(dim=-1).numpy()

    def update(self, batch: Batch) -> float:
        """One gradient step on the Huber TD loss; returns the loss."""
        x = torch.from_numpy(np.concatenate([batch.obs, batch.goal], axis=-1))
        x_next = torch.from_numpy(np.concatenate([batch.next_obs, batch.goal], axis=-1))
        reward = torch.from_numpy(batch.reward).float()
        alive = torch.from_numpy(~batch.done).float()
        with torch.no_grad():
            target = reward + self.gamma * alive * self.target(x_next).max(dim=-1).values
            target = target.clamp(-1.0 / (1.0 - self.gamma), 0.0)
        q = self.net(x).gather(1, torch.from_numpy(batch.action)[:, None]).squeeze(1)
        loss = nn.functional.smooth_l1_loss(q, target)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            for p, p_target in zip(self.net.parameters(), self.target.parameters()):
                p_target.lerp_(p, self.tau)
        return float(loss.detach())


def evaluate_bitflip(agent: GoalDQN, n_bits: int, episodes: int = 100, seed: int = 12345) -> float:
    """Success rate of the greedy policy over ``episodes`` fresh bit-flipping episodes (vectorised)."""
    rng = np.random.default_rng(seed)
    state = rng.integers(0, 2, (episodes, n_bits)).astype(np.float32)
    goal = rng.integers(0, 2, (episodes, n_bits)).astype(np.float32)
    same = (state == goal).all(axis=1)
    goal[same, 0] = 1.0 - goal[same, 0]
    solved = np.zeros(episodes, dtype=bool)
    rows = np.arange(episodes)
    for _ in range(n_bits):
        actions = agent.greedy(state, goal)
        state[rows[~solved], actions[~solved]] = 1.0 - state[rows[~solved], actions[~solved]]
        solved |= bitflip_success(state, goal)
    return float(solved.mean())


@dataclass
class BitFlipRun:
    """A training run: ``success [evaluations]`` after ``episodes_at [evaluations]`` episodes."""

    strategy: str
    n_bits: int
    episodes_at: list[int] = field(default_factory=list)
    success: list[float] = field(default_factory=list)
    env_steps: int = 0


def _run_episode(env: BitFlipEnv, agent: GoalDQN, buffer: HindsightReplayBuffer, epsilon: float) -> int:
    state, goal = env.reset()
    buffer.start_episode(state, state, goal)
    steps = 0
    while True:
        if env.rng.random() < epsilon:
            action = int(env.rng.integers(env.n_bits))
        else:
            action = int(agent.greedy(state[None], goal[None])[0])
        state, reward, terminated, truncated = env.step(action)
        buffer.add(action, reward, state, state, terminated, truncated)
        steps += 1
        if terminated or truncated:
            return steps


def train_bitflip(
    n_bits: int,
    *,
    strategy: str = "future",
    episodes: int = 500,
    updates_per_episode: int | None = None,
    batch_size: int = 128,
    epsilon: float = 0.2,
    k: int = 4,
    eval_every: int = 50,
    eval_episodes: int = 100,
    seed: int = 0,
    progress: bool = False,
) -> BitFlipRun:
    """DQN (+ HER unless ``strategy="none"``) on ``n_bits`` bit flipping for ``episodes`` episodes.

    After each episode, ``updates_per_episode`` (default ``n_bits``) gradient steps on batches from the
    buffer; every ``eval_every`` episodes the greedy success rate over ``eval_episodes`` episodes.
    """
    env = BitFlipEnv(n_bits, seed=seed)
    buffer = HindsightReplayBuffer(
        max(1, min(episodes, 10_000)), n_bits, n_bits, n_bits, bitflip_reward, bitflip_success,
        strategy=strategy, k=k, seed=seed + 1,
    )  # fmt: skip
    agent = GoalDQN(n_bits, n_bits, n_bits, seed=seed)
    updates = n_bits if updates_per_episode is None else updates_per_episode
    run = BitFlipRun(strategy, n_bits)
    bar = tqdm(
        range(1, episodes + 1), desc=f"bitflip n={n_bits} {strategy}", disable=not progress, leave=False
    )
    for episode in bar:
        run.env_steps += _run_episode(env, agent, buffer, epsilon)
        for _ in range(updates):
            agent.update(buffer.sample(batch_size))
        if episode % eval_every == 0 or episode == episodes:
            run.episodes_at.append(episode)
            run.success.append(evaluate_bitflip(agent, n_bits, eval_episodes))
            bar.set_postfix(success=run.success[-1])
    return run
