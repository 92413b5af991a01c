"""Finite Markov decision processes ``(S, A, P, R, gamma)`` as NumPy arrays.

The tuple, as seeds 001 and 002 write it:

* ``P[s, a, s'] = Pr(S_{t+1} = s' | S_t = s, A_t = a)``: the transitions, ``[S, A, S]``, rows sum to 1.
* ``R``: the reward, either per transition ``R[s, a, s']`` (``[S, A, S]``) or already averaged over the
  next state, ``r(s, a) = sum_{s'} P[s, a, s'] R[s, a, s']`` (``[S, A]``). Dynamic programming only ever
  needs ``r(s, a)``; sampling environments use ``R[s, a, s']`` when it is given.
* ``gamma`` in [0, 1]: the discount.
* terminal states: absorbing, reward 0, value 0 (the end of an episode). Whatever rows the caller gives
  for a terminal state are replaced by a self-loop with reward 0.

Two storages of the same model, chosen by the constructor:

* dense ``[S, A, S]`` (``FiniteMDP(...)``): Bellman backups are one matrix product;
* successor lists ``next_states [S, A, K]``, ``probs [S, A, K]`` (``FiniteMDP.from_successors``): for
  sparse models such as grid worlds (K <= 3), where a dense ``[S, A, S]`` would not fit in memory;
  backups are one gather and a sum over K.

Both give the same numbers; every algorithm goes through :meth:`FiniteMDP.expected_next_values`.

Reference: Sutton & Barto (2018), *Reinforcement Learning: An Introduction*, ch. 3.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from credo.tabular._checks import (
    as_float_array,
    check_count,
    check_distribution_rows,
    check_gamma,
    check_policy,
    check_state_indices,
    check_values,
)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

# Above this many [S, A, S] entries, turning successor lists into a dense array is refused.
MAX_DENSE_ENTRIES = 200_000_000


class FiniteMDP:
    """A finite MDP with ``S`` states and ``A`` actions.

    Args:
        transitions: ``[S, A, S]`` probabilities ``P[s, a, s']``; every non-terminal row sums to 1 and
            no entry is negative.
        rewards: ``[S, A]`` expected rewards ``r(s, a)`` or ``[S, A, S]`` transition rewards
            ``R[s, a, s']`` (the reward of ``s --a--> s'``).
        gamma: discount in [0, 1].
        terminal_states: indices (or a ``[S]`` bool mask) of absorbing states with value 0.
        initial_distribution: ``[S]`` distribution of the first state (used by sampling environments;
            default: uniform over non-terminal states).
        state_labels, action_labels: optional names, for printing.

    Example (a two-state chain: one action, reward 1 for leaving state 0, state 1 terminal)::

        P = np.zeros((2, 1, 2)); P[0, 0, 1] = 1.0; P[1, 0, 1] = 1.0
        mdp = FiniteMDP(P, rewards=[[1.0], [0.0]], gamma=0.9, terminal_states=[1])
    """

    def __init__(
        self,
        transitions: ArrayLike,
        rewards: ArrayLike,
        gamma: float,
        terminal_states: Iterable[int] | ArrayLike | None = None,
        *,
        initial_distribution: ArrayLike | None = None,
        state_labels: Sequence[str] | None = None,
        action_labels: Sequence[str] | None = None,
    ) -> None:
        dense = as_float_array("transitions", transitions, 3)
        n_states, n_actions, n_next = dense.shape
        if n_next != n_states or n_states == 0 or n_actions == 0:
            raise ValueError(
                f"transitions must have shape [S, A, S] with S, A >= 1, got {dense.shape} "
                "(the first and last sizes are both the number of states)"
            )
        terminal = _terminal_mask(terminal_states, n_states)
        check_distribution_rows(
            "transitions", dense, rows=np.broadcast_to(~terminal[:, None], dense.shape[:2])
        )
        reward_array = as_float_array("rewards", rewards, (2, 3))
        if reward_array.shape not in ((n_states, n_actions), (n_states, n_actions, n_states)):
            raise ValueError(
                f"rewards must have shape [S, A] = ({n_states}, {n_actions}) or [S, A, S] = "
                f"({n_states}, {n_actions}, {n_states}), got {reward_array.shape}"
            )
        dense = dense.copy()
        terminal_ids = np.flatnonzero(terminal)
        dense[terminal_ids] = 0.0
        dense[terminal_ids, :, terminal_ids] = 1.0
        if reward_array.ndim == 3:
            transition_rewards: FloatArray | None = reward_array.copy()
            transition_rewards[terminal] = 0.0
            expected = np.einsum("sat,sat->sa", dense, transition_rewards)
        else:
            transition_rewards = None
            expected = reward_array.copy()
        expected[terminal] = 0.0
        self._init_common(gamma, terminal, expected, initial_distribution, state_labels, action_labels)
        self._dense: FloatArray | None = dense
        self._transition_rewards = transition_rewards
        self._next_states: IntArray | None = None
        self._probs: FloatArray | None = None
        self._successor_rewards: FloatArray | None = None

    @classmethod
    def from_successors(
        cls,
        next_states: ArrayLike,
        probs: ArrayLike,
        rewards: ArrayLike,
        gamma: float,
        terminal_states: Iterable[int] | ArrayLike | None = None,
        *,
        initial_distribution: ArrayLike | None = None,
        state_labels: Sequence[str] | None = None,
        action_labels: Sequence[str] | None = None,
    ) -> FiniteMDP:
        """A sparse MDP from successor lists: ``s --a--> next_states[s, a, k]`` with ``probs[s, a, k]``.

        Args:
            next_states: ``[S, A, K]`` int successor states (padding entries have probability 0; a
                state may repeat within a row, its probabilities add up).
            probs: ``[S, A, K]`` probabilities; every non-terminal ``[s, a]`` row sums to 1.
            rewards: ``[S, A]`` expected rewards or ``[S, A, K]`` per-successor rewards.
            gamma, terminal_states, initial_distribution, state_labels, action_labels: as the
                constructor.
        """
        successors = np.asarray(next_states)
        if successors.ndim != 3:
            raise ValueError(f"next_states must be 3-D [S, A, K], got shape {successors.shape}")
        if successors.size and not np.issubdtype(successors.dtype, np.integer):
            raise TypeError(f"next_states must hold integer state indices, got dtype {successors.dtype}")
        n_states, n_actions, width = successors.shape
        if n_states == 0 or n_actions == 0 or width == 0:
            raise ValueError(f"next_states must have S, A, K >= 1, got shape {successors.shape}")
        if successors.min() < 0 or successors.max() >= n_states:
            raise ValueError(f"next_states must hold state indices in [0, {n_states})")
        probabilities = as_float_array("probs", probs, 3)
        if probabilities.shape != successors.shape:
            raise ValueError(
                f"probs must have the shape of next_states {successors.shape}, got {probabilities.shape}"
            )
        terminal = _terminal_mask(terminal_states, n_states)
        rows = np.broadcast_to(~terminal[:, None], (n_states, n_actions))
        check_distribution_rows("probs", probabilities, rows=rows)
        reward_array = as_float_array("rewards", rewards, (2, 3))
        if reward_array.shape not in ((n_states, n_actions), successors.shape):
            raise ValueError(
                f"rewards must have shape [S, A] = ({n_states}, {n_actions}) or [S, A, K] = "
                f"{successors.shape}, got {reward_array.shape}"
            )
        if reward_array.ndim == 2:
            reward_array = np.broadcast_to(reward_array[:, :, None], successors.shape)
        successors = successors.astype(np.int64, copy=True)
        probabilities = probabilities.copy()
        successor_rewards = reward_array.astype(np.float64, copy=True)
        terminal_ids = np.flatnonzero(terminal)
        successors[terminal_ids] = terminal_ids[:, None, None]
        probabilities[terminal_ids] = 0.0
        probabilities[terminal_ids, :, 0] = 1.0
        successor_rewards[terminal_ids] = 0.0
        successor_rewards = np.where(probabilities > 0.0, successor_rewards, 0.0)
        expected = (probabilities * successor_rewards).sum(axis=-1)
        mdp = cls.__new__(cls)
        mdp._init_common(gamma, terminal, expected, initial_distribution, state_labels, action_labels)
        mdp._dense = None
        mdp._transition_rewards = None
        mdp._next_states = successors
        mdp._probs = probabilities
        mdp._successor_rewards = successor_rewards
        return mdp

    def _init_common(
        self,
        gamma: float,
        terminal: BoolArray,
        expected_rewards: FloatArray,
        initial_distribution: ArrayLike | None,
        state_labels: Sequence[str] | None,
        action_labels: Sequence[str] | None,
    ) -> None:
        n_states, n_actions = expected_rewards.shape
        self.gamma: float = check_gamma("gamma", gamma)
        self.n_states: int = n_states
        self.n_actions: int = n_actions
        self.terminal_mask: BoolArray = terminal
        self._expected_rewards: FloatArray = expected_rewards
        if initial_distribution is None:
            start = (~terminal).astype(np.float64)
            if start.sum() == 0:
                start = np.ones(n_states)
            start /= start.sum()
        else:
            start = check_values("initial_distribution", initial_distribution, n_states)
            check_distribution_rows("initial_distribution", start)
        self.initial_distribution: FloatArray = start
        self.state_labels = _labels("state_labels", state_labels, n_states)
        self.action_labels = _labels("action_labels", action_labels, n_actions)

    # ------------------------------------------------------------------ model access

    @property
    def terminal_states(self) -> IntArray:
        """``[n_terminal]`` indices of the terminal states."""
        return np.flatnonzero(self.terminal_mask)

    @property
    def rewards(self) -> FloatArray:
        """``[S, A]`` expected reward ``r(s, a) = sum_{s'} P(s'|s, a) R(s, a, s')`` (0 at terminals)."""
        return self._expected_rewards

    @property
    def is_dense(self) -> bool:
        """Whether the model is stored as a dense ``[S, A, S]`` array."""
        return self._dense is not None

    @property
    def transitions(self) -> FloatArray:
        """``[S, A, S]`` transition probabilities (built from successor lists when stored sparse)."""
        if self._dense is None:
            cached = getattr(self, "_dense_cache", None)
            if cached is not None:
                return cached
            entries = self.n_states * self.n_actions * self.n_states
            if entries > MAX_DENSE_ENTRIES:
                raise ValueError(
                    f"this MDP has S={self.n_states}, A={self.n_actions}: a dense [S, A, S] array would "
                    f"hold {entries:,} entries; use successors() instead"
                )
            next_states, probs, _ = self.successors()
            dense = np.zeros((self.n_states, self.n_actions, self.n_states))
            rows = np.arange(self.n_states * self.n_actions).repeat(next_states.shape[-1])
            np.add.at(dense.reshape(-1, self.n_states), (rows, next_states.reshape(-1)), probs.reshape(-1))
            self._dense_cache = dense
            return dense
        return self._dense

    def successors(self) -> tuple[IntArray, FloatArray, FloatArray]:
        """Successor lists ``(next_states [S, A, K], probs [S, A, K], rewards [S, A, K])``.

        ``rewards[s, a, k]`` is the reward of the transition to ``next_states[s, a, k]``. For a dense
        model, K is the largest number of successors of any ``(s, a)`` (built once, then cached).
        """
        if self._next_states is None:
            assert self._dense is not None
            positive = self._dense > 0.0
            width = max(int(positive.sum(axis=-1).max()), 1)
            order = np.argsort(~positive, axis=-1, kind="stable")[..., :width]
            probs = np.take_along_axis(self._dense, order, axis=-1)
            if self._transition_rewards is not None:
                rewards = np.take_along_axis(self._transition_rewards, order, axis=-1)
            else:
                rewards = np.broadcast_to(self._expected_rewards[:, :, None], order.shape).copy()
            self._next_states = order.astype(np.int64)
            self._probs = probs
            self._successor_rewards = np.where(probs > 0.0, rewards, 0.0)
        assert self._probs is not None and self._successor_rewards is not None
        return self._next_states, self._probs, self._successor_rewards

    # ------------------------------------------------------------------ Bellman building blocks

    def expected_next_values(self, values: ArrayLike) -> FloatArray:
        """``[S, A]``: ``sum_{s'} P(s'|s, a) V(s')``, one vectorised product (no loop over states).

        Args:
            values: ``[S]`` state values (terminal entries are treated as 0).
        """
        v = check_values("values", values, self.n_states)
        v = np.where(self.terminal_mask, 0.0, v)
        if self._dense is not None:
            flat = self._dense.reshape(self.n_states * self.n_actions, self.n_states) @ v
            return flat.reshape(self.n_states, self.n_actions)
        assert self._probs is not None and self._next_states is not None
        return np.einsum("sak,sak->sa", self._probs, v[self._next_states])

    def action_values(self, values: ArrayLike) -> FloatArray:
        """``[S, A]``: ``q(s, a) = r(s, a) + gamma * sum_{s'} P(s'|s, a) V(s')`` (0 at terminal states).

        This is the inner term of both Bellman equations (seed 002).
        """
        q = self._expected_rewards + self.gamma * self.expected_next_values(values)
        q[self.terminal_mask] = 0.0
        return q

    def markov_reward_process(self, policy: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """The Markov reward process that ``policy`` induces (seed 001: MDP + policy = MRP).

        Args:
            policy: ``[S, A]`` probabilities ``pi(a|s)``.

        Returns:
            ``(P_pi [S, S], r_pi [S])`` with ``P_pi[s, s'] = sum_a pi(a|s) P(s'|s, a)`` and
            ``r_pi[s] = sum_a pi(a|s) r(s, a)``.
        """
        pi = check_policy("policy", policy, self.n_states, self.n_actions)
        r_pi = (pi * self._expected_rewards).sum(axis=1)
        if self._dense is not None:
            return np.einsum("sa,sat->st", pi, self._dense), r_pi
        assert self._probs is not None and self._next_states is not None
        n = self.n_states
        if n * n > MAX_DENSE_ENTRIES:
            raise ValueError(f"P_pi would be a dense [{n}, {n}] array; too large for S={n}")
        weights = pi[:, :, None] * self._probs
        flat_index = np.arange(n)[:, None, None] * n + self._next_states
        p_pi = np.bincount(flat_index.reshape(-1), weights=weights.reshape(-1), minlength=n * n)
        return p_pi.reshape(n, n), r_pi

    def policy_successor_weights(self, policy: ArrayLike) -> tuple[IntArray, FloatArray] | FloatArray:
        """What one sweep of policy evaluation multiplies V by: ``P_pi`` (dense) or, sparse,
        ``(next_states [S, A, K], pi(a|s) * probs [S, A, K])``."""
        pi = check_policy("policy", policy, self.n_states, self.n_actions)
        if self._dense is not None:
            return np.einsum("sa,sat->st", pi, self._dense)
        assert self._probs is not None and self._next_states is not None
        return self._next_states, pi[:, :, None] * self._probs

    def with_gamma(self, gamma: float) -> FiniteMDP:
        """The same model with another discount (arrays are shared, not copied)."""
        clone = object.__new__(FiniteMDP)
        clone.__dict__.update(self.__dict__)
        clone.gamma = check_gamma("gamma", gamma)
        return clone

    def __repr__(self) -> str:
        storage = "dense" if self.is_dense else "sparse"
        return (
            f"FiniteMDP(S={self.n_states}, A={self.n_actions}, gamma={self.gamma}, "
            f"terminal={self.terminal_states.tolist()[:8]}{'...' if self.terminal_mask.sum() > 8 else ''}, "
            f"{storage})"
        )


class MarkovRewardProcess:
    """A Markov reward process ``(S, P, R, gamma)`` (seed 001): a Markov chain that pays rewards.

    Args:
        transitions: ``[S, S]`` row-stochastic ``P[s, s']``.
        rewards: ``[S]`` expected reward of leaving state s.
        gamma: discount in [0, 1].
        terminal_states: indices of absorbing, zero-value states.

    ``values()`` solves the Bellman equation ``V = r + gamma P V`` exactly.
    """

    def __init__(
        self,
        transitions: ArrayLike,
        rewards: ArrayLike,
        gamma: float,
        terminal_states: Iterable[int] | ArrayLike | None = None,
    ) -> None:
        p = as_float_array("transitions", transitions, 2)
        if p.shape[0] != p.shape[1] or p.shape[0] == 0:
            raise ValueError(f"transitions must be square [S, S], got {p.shape}")
        self.n_states = p.shape[0]
        self.terminal_mask = _terminal_mask(terminal_states, self.n_states)
        check_distribution_rows("transitions", p, rows=~self.terminal_mask)
        self.transitions = p
        self.rewards = check_values("rewards", rewards, self.n_states)
        self.gamma = check_gamma("gamma", gamma)

    @classmethod
    def from_mdp(cls, mdp: FiniteMDP, policy: ArrayLike) -> MarkovRewardProcess:
        p_pi, r_pi = mdp.markov_reward_process(policy)
        return cls(p_pi, r_pi, mdp.gamma, mdp.terminal_mask)

    def values(self) -> FloatArray:
        """``[S]``: ``V = (I - gamma P)^{-1} r`` over the non-terminal states (terminals 0)."""
        return solve_linear_values(self.transitions, self.rewards, self.gamma, self.terminal_mask)


def random_mdp(
    n_states: int,
    n_actions: int,
    *,
    gamma: float = 0.9,
    n_successors: int | None = None,
    n_terminal: int = 0,
    transition_rewards: bool = False,
    seed: int | np.random.Generator | None = None,
) -> FiniteMDP:
    """A random dense MDP: Dirichlet(1) rows, standard normal rewards.

    Args:
        n_states, n_actions: sizes S and A.
        gamma: discount.
        n_successors: each ``(s, a)`` reaches this many random states (None: all S).
        n_terminal: the last ``n_terminal`` states are terminal.
        transition_rewards: rewards ``[S, A, S]`` instead of ``[S, A]``.
        seed: seed or Generator.
    """
    check_count("n_states", n_states)
    check_count("n_actions", n_actions)
    check_count("n_terminal", n_terminal, minimum=0)
    if n_terminal >= n_states:
        raise ValueError(f"n_terminal must be < n_states={n_states}, got {n_terminal}")
    rng = np.random.default_rng(seed)
    if n_successors is None or n_successors >= n_states:
        probs = rng.dirichlet(np.ones(n_states), size=(n_states, n_actions))
    else:
        check_count("n_successors", n_successors)
        probs = np.zeros((n_states, n_actions, n_states))
        keys = rng.random((n_states, n_actions, n_states))
        chosen = np.argpartition(keys, n_successors - 1, axis=-1)[..., :n_successors]
        weights = rng.dirichlet(np.ones(n_successors), size=(n_states, n_actions))
        np.put_along_axis(probs, chosen, weights, axis=-1)
    shape = (n_states, n_actions, n_states) if transition_rewards else (n_states, n_actions)
    rewards = rng.standard_normal(shape)
    terminal = np.arange(n_states - n_terminal, n_states)
    return FiniteMDP(probs, rewards, gamma, terminal)


def solve_linear_values(
    transitions: FloatArray, rewards: FloatArray, gamma: float, terminal_mask: BoolArray
) -> FloatArray:
    """Exact values of a Markov reward process: ``V_N = (I - gamma P_NN)^{-1} r_N``, ``V_T = 0``.

    Args:
        transitions: ``[S, S]`` ``P_pi``; rewards: ``[S]`` ``r_pi``; gamma: discount;
        terminal_mask: ``[S]`` bool terminal states (value 0).
    """
    keep = ~terminal_mask
    values = np.zeros(transitions.shape[0])
    if not keep.any():
        return values
    system = np.eye(int(keep.sum())) - gamma * transitions[np.ix_(keep, keep)]
    try:
        values[keep] = np.linalg.solve(system, rewards[keep])
    except np.linalg.LinAlgError as error:
        raise ValueError(
            f"(I - gamma P_pi) is singular for gamma={gamma}: some states never terminate; "
            "use gamma < 1 or give terminal_states"
        ) from error
    return values


def _terminal_mask(terminal_states: Iterable[int] | ArrayLike | None, n_states: int) -> BoolArray:
    if terminal_states is None:
        return np.zeros(n_states, dtype=bool)
    return check_state_indices("terminal_states", terminal_states, n_states)  # type: ignore[arg-type]


def _labels(name: str, labels: Sequence[str] | None, size: int) -> list[str] | None:
    if labels is None:
        return None
    names = [str(label) for label in labels]
    if len(names) != size:
        raise ValueError(f"{name} must have {size} entries, got {len(names)}")
    return names
