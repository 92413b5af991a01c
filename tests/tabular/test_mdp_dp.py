"""FiniteMDP and dynamic programming: against loop references, each other, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credo.tabular import (
    FiniteMDP,
    MarkovRewardProcess,
    greedy_policy,
    policy_evaluation,
    policy_iteration,
    q_from_v,
    random_mdp,
    states_reaching_terminal,
    uniform_policy,
    value_iteration,
)

from .reference import policy_evaluation_loop, value_iteration_loop

mdp_params = st.tuples(
    st.integers(1, 10),  # S
    st.integers(1, 4),  # A
    st.floats(0.0, 0.95),  # gamma
    st.integers(0, 2**31 - 1),  # seed
    st.booleans(),  # sparse successors
    st.booleans(),  # rewards per transition
)


def build(params, n_terminal=0):
    n_states, n_actions, gamma, seed, sparse, per_transition = params
    n_terminal = min(n_terminal, n_states - 1)
    return random_mdp(
        n_states,
        n_actions,
        gamma=gamma,
        n_successors=2 if sparse else None,
        n_terminal=n_terminal,
        transition_rewards=per_transition,
        seed=seed,
    )


@settings(max_examples=40, deadline=None)
@given(mdp_params, st.integers(0, 2))
def test_value_iteration_policy_iteration_and_exact_solve_agree(params, n_terminal):
    mdp = build(params, n_terminal)
    v_vi, pi_vi = value_iteration(mdp, tol=1e-12)
    v_pi, pi_pi = policy_iteration(mdp)
    bound = 1e-12 * max(1.0, mdp.gamma / (1 - mdp.gamma)) + 1e-9
    np.testing.assert_allclose(v_vi, v_pi, atol=bound)
    # Both greedy policies are optimal: their exact values are V*.
    np.testing.assert_allclose(policy_evaluation(mdp, pi_vi, method="exact"), v_pi, atol=bound)
    np.testing.assert_allclose(policy_evaluation(mdp, pi_pi, method="exact"), v_pi, atol=1e-9)
    # Bellman optimality holds and no policy beats V*.
    np.testing.assert_allclose(q_from_v(mdp, v_pi).max(axis=1), v_pi, atol=1e-9)
    rng = np.random.default_rng(params[3])
    random_policy = rng.dirichlet(np.ones(mdp.n_actions), size=mdp.n_states)
    assert np.all(policy_evaluation(mdp, random_policy, method="exact") <= v_pi + 1e-9)
    assert np.all(v_pi[mdp.terminal_mask] == 0.0)


@settings(max_examples=40, deadline=None)
@given(mdp_params)
def test_iterative_policy_evaluation_matches_linear_solve(params):
    mdp = build(params, n_terminal=1)
    rng = np.random.default_rng(params[3] + 1)
    policy = rng.dirichlet(np.ones(mdp.n_actions), size=mdp.n_states)
    exact = policy_evaluation(mdp, policy, method="exact")
    iterative = policy_evaluation(mdp, policy, tol=1e-13)
    np.testing.assert_allclose(iterative, exact, atol=1e-10)
    # The exact solution satisfies the Bellman expectation equation.
    p_pi, r_pi = mdp.markov_reward_process(policy)
    keep = ~mdp.terminal_mask
    np.testing.assert_allclose(exact[keep], (r_pi + mdp.gamma * p_pi @ exact)[keep], atol=1e-10)
    np.testing.assert_allclose(p_pi.sum(axis=1), 1.0, atol=1e-12)


def test_against_loop_references():
    mdp = random_mdp(12, 3, gamma=0.8, n_terminal=2, seed=3)
    P, R, term = mdp.transitions, mdp.rewards, mdp.terminal_mask
    np.testing.assert_allclose(
        value_iteration(mdp, tol=1e-13)[0], value_iteration_loop(P, R, 0.8, term), atol=1e-10
    )
    pi = uniform_policy(12, 3)
    np.testing.assert_allclose(
        policy_evaluation(mdp, pi, method="exact"), policy_evaluation_loop(P, R, pi, 0.8, term), atol=1e-10
    )


def test_sparse_and_dense_storage_give_the_same_model():
    dense = random_mdp(15, 3, gamma=0.9, n_successors=4, n_terminal=2, transition_rewards=True, seed=7)
    next_states, probs, rewards = dense.successors()
    sparse = FiniteMDP.from_successors(next_states, probs, rewards, 0.9, dense.terminal_states)
    assert not sparse.is_dense and dense.is_dense
    np.testing.assert_allclose(sparse.transitions, dense.transitions, atol=1e-15)
    np.testing.assert_allclose(sparse.rewards, dense.rewards, atol=1e-12)
    v = np.random.default_rng(0).standard_normal(15)
    np.testing.assert_allclose(sparse.action_values(v), dense.action_values(v), atol=1e-12)
    np.testing.assert_allclose(value_iteration(sparse)[0], value_iteration(dense)[0], atol=1e-9)
    pi = uniform_policy(15, 3)
    for a, b in zip(sparse.markov_reward_process(pi), dense.markov_reward_process(pi)):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_transition_rewards_are_averaged_over_next_states():
    P = np.zeros((2, 1, 2))
    P[0, 0] = [0.25, 0.75]
    P[1, 0, 1] = 1.0
    R = np.zeros((2, 1, 2))
    R[0, 0] = [4.0, 8.0]
    mdp = FiniteMDP(P, R, gamma=0.5, terminal_states=[1])
    assert mdp.rewards[0, 0] == pytest.approx(0.25 * 4 + 0.75 * 8)
    # V(0) = 7 + 0.5 * (0.25 V(0) + 0.75 * 0)  =>  V(0) = 7 / 0.875
    assert policy_evaluation(mdp, [[1.0], [1.0]], method="exact")[0] == pytest.approx(8.0)


def test_terminal_rows_become_absorbing_with_zero_reward():
    P = np.full((3, 2, 3), 1 / 3)
    R = np.ones((3, 2))
    mdp = FiniteMDP(P, R, gamma=0.9, terminal_states=[2])
    np.testing.assert_array_equal(mdp.transitions[2], [[0, 0, 1], [0, 0, 1]])
    np.testing.assert_array_equal(mdp.rewards[2], [0.0, 0.0])
    assert value_iteration(mdp)[0][2] == 0.0


def test_markov_reward_process_class():
    mdp = random_mdp(6, 2, gamma=0.7, n_terminal=1, seed=1)
    pi = uniform_policy(6, 2)
    mrp = MarkovRewardProcess.from_mdp(mdp, pi)
    np.testing.assert_allclose(mrp.values(), policy_evaluation(mdp, pi, method="exact"), atol=1e-12)


def test_greedy_policy_ties():
    q = np.array([[1.0, 3.0, 3.0], [0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(greedy_policy(q), [[0, 1, 0], [1, 0, 0]])
    np.testing.assert_allclose(greedy_policy(q, ties="uniform"), [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])


def test_history_records_sweeps_and_contraction():
    mdp = random_mdp(20, 3, gamma=0.9, seed=2)
    history: list[float] = []
    value_iteration(mdp, tol=1e-8, history=history)
    assert history[-1] < 1e-8 <= history[-2]
    # Value iteration is a gamma-contraction in the sup norm (up to float round-off).
    changes = np.array(history)
    assert np.all(changes[1:] <= 0.9 * changes[:-1] + 1e-13)


def test_undiscounted_episodic_mdp_is_solved():
    # A corridor 0 -> 1 -> 2 (terminal), -1 per step, gamma = 1: V = [-2, -1, 0].
    P = np.zeros((3, 2, 3))
    for s in range(2):
        P[s, 0, s + 1] = 1.0  # forward
        P[s, 1, max(s - 1, 0)] = 1.0  # back
    R = -np.ones((3, 2))
    mdp = FiniteMDP(P, R, gamma=1.0, terminal_states=[2])
    v, pi = value_iteration(mdp)
    np.testing.assert_allclose(v, [-2.0, -1.0, 0.0])
    np.testing.assert_allclose(policy_iteration(mdp)[0], [-2.0, -1.0, 0.0])
    assert pi[0, 0] == 1.0 and pi[1, 0] == 1.0


# ---------------------------------------------------------------------- bad input


def two_state_transitions():
    P = np.zeros((2, 2, 2))
    P[:, :, 0] = 0.5
    P[:, :, 1] = 0.5
    return P


def test_rows_not_summing_to_one_are_rejected():
    P = two_state_transitions()
    P[1, 0] = [0.5, 0.6]
    with pytest.raises(ValueError, match=r"transitions rows must sum to 1.*\[1, 0\] sums to 1\.1"):
        FiniteMDP(P, np.zeros((2, 2)), gamma=0.9)


def test_negative_probabilities_are_rejected():
    P = two_state_transitions()
    P[0, 1] = [1.5, -0.5]
    with pytest.raises(ValueError, match="transitions holds negative probabilities"):
        FiniteMDP(P, np.zeros((2, 2)), gamma=0.9)
    with pytest.raises(ValueError, match="probs holds negative"):
        FiniteMDP.from_successors([[[0, 1]]] * 2, [[[1.5, -0.5]]] * 2, [[0.0]] * 2, 0.9)


@pytest.mark.parametrize("gamma", [-0.1, 1.5, float("nan")])
def test_gamma_outside_unit_interval_is_rejected(gamma):
    with pytest.raises(ValueError, match="gamma must lie in"):
        FiniteMDP(two_state_transitions(), np.zeros((2, 2)), gamma=gamma)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"transitions must have shape \[S, A, S\]"):
        FiniteMDP(np.full((2, 2, 3), 1 / 3), np.zeros((2, 2)), gamma=0.9)
    with pytest.raises(ValueError, match="transitions must be 3-D"):
        FiniteMDP(np.eye(2), np.zeros((2, 2)), gamma=0.9)
    with pytest.raises(ValueError, match="rewards must have shape"):
        FiniteMDP(two_state_transitions(), np.zeros((2, 3)), gamma=0.9)
    with pytest.raises(ValueError, match="terminal_states must hold state indices"):
        FiniteMDP(two_state_transitions(), np.zeros((2, 2)), gamma=0.9, terminal_states=[5])
    with pytest.raises(ValueError, match="transitions holds 1 NaN"):
        P = two_state_transitions()
        P[0, 0, 0] = np.nan
        FiniteMDP(P, np.zeros((2, 2)), gamma=0.9)


def test_policy_shape_mismatch_is_rejected():
    mdp = FiniteMDP(two_state_transitions(), np.zeros((2, 2)), gamma=0.9)
    with pytest.raises(ValueError, match=r"policy must have shape \[S, A\] = \(2, 2\)"):
        policy_evaluation(mdp, np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match="policy rows must sum to 1"):
        policy_evaluation(mdp, np.full((2, 2), 0.4))
    with pytest.raises(ValueError, match="method must be"):
        policy_evaluation(mdp, uniform_policy(2, 2), method="magic")


def test_gamma_one_without_terminal_states_is_rejected():
    mdp = FiniteMDP(two_state_transitions(), np.ones((2, 2)), gamma=1.0)
    for call in (
        lambda: policy_evaluation(mdp, uniform_policy(2, 2)),
        lambda: policy_evaluation(mdp, uniform_policy(2, 2), method="exact"),
        lambda: value_iteration(mdp),
        lambda: policy_iteration(mdp),
    ):
        with pytest.raises(ValueError, match="gamma=1 but the MDP has no terminal_states"):
            call()


def test_gamma_one_with_a_policy_that_never_terminates_is_rejected():
    # State 0 can reach terminal state 2 only through action 1; a policy that always takes action 0
    # loops forever (and collects reward 1 per step).
    P = np.zeros((3, 2, 3))
    P[0, 0, 0] = 1.0
    P[0, 1, 2] = 1.0
    P[1, :, 2] = 1.0
    mdp = FiniteMDP(P, np.ones((3, 2)), gamma=1.0, terminal_states=[2])
    looping = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match=r"gamma=1 but from 1 state\(s\) \(e.g. \[0\]\) this policy"):
        policy_evaluation(mdp, looping)
    assert states_reaching_terminal(mdp).tolist() == [True, True, True]
    assert states_reaching_terminal(mdp, looping > 0).tolist() == [False, True, True]
    # The same policy is fine with discounting: V(0) = 1 / (1 - 0.5).
    assert policy_evaluation(mdp.with_gamma(0.5), looping, method="exact")[0] == pytest.approx(2.0)


def test_gamma_one_with_unreachable_terminal_is_rejected_by_value_iteration():
    P = np.zeros((3, 1, 3))
    P[0, 0, 1] = 1.0
    P[1, 0, 0] = 1.0
    P[2, 0, 2] = 1.0
    mdp = FiniteMDP(P, np.ones((3, 1)), gamma=1.0, terminal_states=[2])
    with pytest.raises(ValueError, match=r"gamma=1 but from 2 state\(s\) \(e.g. \[0, 1\]\) no policy"):
        value_iteration(mdp)


def test_other_bad_arguments():
    mdp = random_mdp(4, 2, seed=0)
    with pytest.raises(ValueError, match="tol must be > 0"):
        value_iteration(mdp, tol=0.0)
    with pytest.raises(ValueError, match="ties must be"):
        greedy_policy(np.zeros((2, 2)), ties="random")
    with pytest.raises(ValueError, match=r"values must have shape \[S\]"):
        q_from_v(mdp, np.zeros(3))
    with pytest.raises(RuntimeError, match="max_iterations=2"):
        value_iteration(mdp, max_iterations=2)
    with pytest.raises(TypeError, match="transitions must be an array of numbers"):
        FiniteMDP("not an array", np.zeros((1, 1)), 0.9)
