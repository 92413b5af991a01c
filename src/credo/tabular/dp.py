"""Dynamic programming on a known :class:`~credo.tabular.mdp.FiniteMDP` (planning, seed 001).

* Bellman expectation equation (policy evaluation), seed 002::

      V_pi(s) = sum_a pi(a|s) [ r(s, a) + gamma * sum_{s'} P(s'|s, a) V_pi(s') ]

  solved by repeated synchronous sweeps (``method="iterative"``) or as the linear system
  ``(I - gamma P_pi) V = r_pi`` over the non-terminal states (``method="exact"``).
* Bellman optimality equation (value iteration)::

      V*(s) = max_a [ r(s, a) + gamma * sum_{s'} P(s'|s, a) V*(s') ]

* Policy iteration: evaluate, act greedily, repeat until the policy is stable.

Every sweep is one vectorised backup over all states and actions at once
(:meth:`FiniteMDP.expected_next_values`); there is no Python loop over states.

With ``gamma = 1`` values are finite only when the policy reaches a terminal state from every state
(a *proper* policy); the functions here check this and raise a ``ValueError`` naming ``gamma``
otherwise, instead of looping forever.

Reference: Sutton & Barto (2018), ch. 4 (Bellman 1957; Howard 1960 for policy iteration).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from credo.tabular._checks import check_count, check_policy, check_positive, check_q, check_values
from credo.tabular.mdp import FiniteMDP, solve_linear_values

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

EvaluationMethod = Literal["iterative", "exact"]
# Largest state count for which the exact (dense linear solve) evaluation is allowed.
MAX_EXACT_STATES = 12_000


def uniform_policy(n_states: int, n_actions: int) -> FloatArray:
    """``[S, A]`` policy with ``pi(a|s) = 1/A`` (seed 001's 0.25 policy for four actions)."""
    check_count("n_states", n_states)
    check_count("n_actions", n_actions)
    return np.full((n_states, n_actions), 1.0 / n_actions)


def states_reaching_terminal(mdp: FiniteMDP, allowed_actions: ArrayLike | None = None) -> BoolArray:
    """``[S]`` bool: from which states some terminal state is reached with positive probability.

    Args:
        mdp: the model.
        allowed_actions: ``[S, A]`` bool, the actions the policy may take (``pi(a|s) > 0``); None
            allows every action (then the answer is "some policy can reach a terminal state").

    A backwards breadth-first search, one vectorised step per distance (no loop over states).
    """
    allowed = np.ones((mdp.n_states, mdp.n_actions), dtype=bool)
    if allowed_actions is not None:
        allowed = np.asarray(allowed_actions, dtype=bool)
    reach = mdp.terminal_mask.copy()
    if not reach.any():
        return reach
    if mdp.is_dense:
        edges = np.einsum("sa,sat->st", allowed.astype(np.float64), mdp.transitions) > 0.0
        edge_weights = edges.astype(np.float64)
        while True:
            new_reach = reach | ((edge_weights @ reach.astype(np.float64)) > 0.0)
            if np.array_equal(new_reach, reach):
                return reach
            reach = new_reach
    next_states, probs, _ = mdp.successors()
    usable = (probs > 0.0) & allowed[:, :, None]
    while True:
        new_reach = reach | (usable & reach[next_states]).any(axis=(1, 2))
        if np.array_equal(new_reach, reach):
            return reach
        reach = new_reach


def _check_undiscounted_policy(mdp: FiniteMDP, policy: FloatArray, who: str = "this policy") -> None:
    if mdp.gamma < 1.0:
        return
    if not mdp.terminal_mask.any():
        raise ValueError(
            "gamma=1 but the MDP has no terminal_states: undiscounted values of a continuing task "
            "diverge; use gamma < 1 or give terminal_states"
        )
    stuck = ~states_reaching_terminal(mdp, policy > 0.0)
    if stuck.any():
        raise ValueError(
            f"gamma=1 but from {int(stuck.sum())} state(s) (e.g. {np.flatnonzero(stuck)[:8].tolist()}) "
            f"{who} never reaches a terminal state, so undiscounted values diverge or are "
            "undefined; use gamma < 1 or make those states reach a terminal state"
        )


def policy_evaluation(
    mdp: FiniteMDP,
    policy: ArrayLike,
    *,
    tol: float = 1e-10,
    method: EvaluationMethod = "iterative",
    max_iterations: int = 100_000,
    initial_values: ArrayLike | None = None,
    history: list[float] | None = None,
) -> FloatArray:
    """``[S]`` state values ``V_pi`` of a stochastic policy (Bellman expectation equation).

    Args:
        mdp: the model.
        policy: ``[S, A]`` ``pi(a|s)``.
        tol: ``"iterative"`` stops when a sweep changes no value by more than ``tol`` (then
            ``|V - V_pi| <= tol * gamma / (1 - gamma)`` for gamma < 1).
        method: ``"iterative"`` (synchronous sweeps ``V <- r_pi + gamma P_pi V``) or ``"exact"``
            (dense linear solve, O(S^3), for S up to 12,000).
        max_iterations: sweep limit (``RuntimeError`` when reached).
        initial_values: ``[S]`` start of the sweeps (default zeros).
        history: if a list is given, the sup-norm change of each sweep is appended to it.
    """
    pi = check_policy("policy", policy, mdp.n_states, mdp.n_actions)
    check_positive("tol", tol)
    check_count("max_iterations", max_iterations)
    _check_undiscounted_policy(mdp, pi)
    if method == "exact":
        if mdp.n_states > MAX_EXACT_STATES:
            raise ValueError(
                f"method='exact' solves a dense {mdp.n_states}x{mdp.n_states} system; use "
                f"method='iterative' for S > {MAX_EXACT_STATES}"
            )
        p_pi, r_pi = mdp.markov_reward_process(pi)
        return solve_linear_values(p_pi, r_pi, mdp.gamma, mdp.terminal_mask)
    if method != "iterative":
        raise ValueError(f"method must be 'iterative' or 'exact', got {method!r}")
    r_pi = (pi * mdp.rewards).sum(axis=1)
    weights = mdp.policy_successor_weights(pi)
    values = np.zeros(mdp.n_states)
    if initial_values is not None:
        values = check_values("initial_values", initial_values, mdp.n_states).copy()
    values[mdp.terminal_mask] = 0.0
    for _ in range(max_iterations):
        if isinstance(weights, tuple):
            next_states, weighted_probs = weights
            expected = np.einsum("sak,sak->s", weighted_probs, values[next_states])
        else:
            expected = weights @ values
        new_values = r_pi + mdp.gamma * expected
        new_values[mdp.terminal_mask] = 0.0
        change = float(np.max(np.abs(new_values - values)))
        values = new_values
        if history is not None:
            history.append(change)
        if change < tol:
            return values
    raise RuntimeError(
        f"policy_evaluation did not converge to tol={tol} within max_iterations={max_iterations} "
        f"(last change {change:.3g}); raise max_iterations or use method='exact'"
    )


def q_from_v(mdp: FiniteMDP, values: ArrayLike) -> FloatArray:
    """``[S, A]``: ``Q(s, a) = r(s, a) + gamma sum_{s'} P(s'|s, a) V(s')`` (seed 001: V -> Q)."""
    return mdp.action_values(values)


def greedy_policy(
    q: ArrayLike, *, ties: Literal["first", "uniform"] = "first", atol: float = 1e-9
) -> FloatArray:
    """``[S, A]`` policy that is greedy in ``q`` (seed 001's "pick the best next cell").

    Args:
        q: ``[S, A]`` action values.
        ties: actions within ``atol`` of the best count as tied; ``"first"`` takes the lowest-index
            one (deterministic, one-hot rows), ``"uniform"`` spreads probability evenly over them.
        atol: tie tolerance.
    """
    values = check_q("q", q)
    is_best = values >= values.max(axis=1, keepdims=True) - atol
    if ties == "uniform":
        return is_best / is_best.sum(axis=1, keepdims=True)
    if ties != "first":
        raise ValueError(f"ties must be 'first' or 'uniform', got {ties!r}")
    policy = np.zeros_like(values)
    policy[np.arange(values.shape[0]), is_best.argmax(axis=1)] = 1.0
    return policy


def value_iteration(
    mdp: FiniteMDP,
    *,
    tol: float = 1e-10,
    max_iterations: int = 100_000,
    initial_values: ArrayLike | None = None,
    history: list[float] | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Optimal values and a greedy policy by value iteration (Bellman optimality equation).

    Each sweep is ``V <- max_a [r + gamma P V]`` for all states at once; it stops when no value moves
    by more than ``tol`` (then ``|V - V*| <= tol * gamma / (1 - gamma)`` for gamma < 1).

    Args:
        mdp: the model.
        tol: stopping threshold on the sup-norm change of one sweep.
        max_iterations: sweep limit (``RuntimeError`` when reached).
        initial_values: ``[S]`` start (default zeros).
        history: if a list is given, the sup-norm change of each sweep is appended to it.

    Returns:
        ``(V [S], policy [S, A])``: the values and the deterministic greedy policy
        (:func:`greedy_policy`, ties to the lowest action index).
    """
    check_positive("tol", tol)
    check_count("max_iterations", max_iterations)
    if mdp.gamma >= 1.0:
        any_policy = np.ones((mdp.n_states, mdp.n_actions)) / mdp.n_actions
        _check_undiscounted_policy(mdp, any_policy, who="no policy")
    values = np.zeros(mdp.n_states)
    if initial_values is not None:
        values = check_values("initial_values", initial_values, mdp.n_states).copy()
    values[mdp.terminal_mask] = 0.0
    for _ in range(max_iterations):
        q = mdp.action_values(values)
        new_values = q.max(axis=1)
        change = float(np.max(np.abs(new_values - values)))
        values = new_values
        if history is not None:
            history.append(change)
        if change < tol:
            return values, greedy_policy(mdp.action_values(values))
    hint = " (with gamma=1, some policy may collect reward forever)" if mdp.gamma >= 1.0 else ""
    raise RuntimeError(
        f"value_iteration did not converge to tol={tol} within max_iterations={max_iterations} "
        f"(last change {change:.3g}){hint}"
    )


def policy_iteration(
    mdp: FiniteMDP,
    *,
    evaluation: Literal["exact", "iterative", "auto"] = "auto",
    tol: float = 1e-10,
    max_iterations: int = 1_000,
    initial_policy: ArrayLike | None = None,
    atol: float = 1e-9,
    history: list[int] | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Optimal values and policy by policy iteration (Howard 1960; Sutton & Barto §4.3).

    Repeat: evaluate the current policy, then make it greedy in ``q_pi``. An action is only changed
    when another one beats it by more than ``atol``, so ties cannot make it cycle; it stops when no
    state changes its action.

    Args:
        mdp: the model.
        evaluation: how each policy is evaluated: ``"exact"`` (linear solve), ``"iterative"``
            (sweeps to ``tol``) or ``"auto"`` (exact for S <= 2,000).
        tol: tolerance of iterative evaluation.
        max_iterations: limit on improvement steps.
        initial_policy: ``[S, A]`` start (default: uniform, seed 001's 0.25 policy). With gamma=1 it
            must reach a terminal state from every state.
        atol: an action is replaced only by one better by more than this.
        history: if a list is given, the number of states that changed action is appended per step.

    Returns:
        ``(V [S], policy [S, A])``: the values of the final deterministic policy, and that policy.
    """
    check_count("max_iterations", max_iterations)
    if evaluation == "auto":
        evaluation = "exact" if mdp.n_states <= 2_000 else "iterative"
    if evaluation not in ("exact", "iterative"):
        raise ValueError(f"evaluation must be 'exact', 'iterative' or 'auto', got {evaluation!r}")
    if initial_policy is None:
        policy = uniform_policy(mdp.n_states, mdp.n_actions)
    else:
        policy = check_policy("initial_policy", initial_policy, mdp.n_states, mdp.n_actions).copy()
    rows = np.arange(mdp.n_states)
    actions: NDArray[np.int64] | None = None
    values = np.zeros(mdp.n_states)
    for _ in range(max_iterations):
        values = policy_evaluation(mdp, policy, tol=tol, method=evaluation, initial_values=values)
        q = mdp.action_values(values)
        best = q.argmax(axis=1)
        if actions is None:
            new_actions = best
            changed = mdp.n_states
        else:
            keep = q[rows, actions] >= q[rows, best] - atol
            new_actions = np.where(keep, actions, best)
            changed = int((new_actions != actions).sum())
        if history is not None:
            history.append(changed)
        if changed == 0:
            return values, policy
        actions = new_actions
        policy = np.zeros((mdp.n_states, mdp.n_actions))
        policy[rows, actions] = 1.0
    raise RuntimeError(f"policy_iteration did not stabilise within max_iterations={max_iterations}")
