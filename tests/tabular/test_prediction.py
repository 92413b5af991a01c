"""Model-free prediction: exact equivalences on fixed episode sets, the seed-000 code, convergence."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credo.tabular import (
    Episode,
    MDPEnv,
    mc_prediction,
    n_step_td,
    policy_evaluation,
    random_mdp,
    sample_episodes,
    seed001_gridworld,
    td0,
    td_lambda,
    uniform_policy,
)

from .reference import (
    SeedTDLambda,
    first_visit_mc_loop,
    n_step_td_loop,
    offline_lambda_return_loop,
    seed_td_update,
)


def seed001_episodes(n: int, seed: int) -> tuple[list[Episode], int]:
    mdp = seed001_gridworld().to_mdp()
    env = MDPEnv(mdp)
    episodes = list(sample_episodes(env, uniform_policy(25, 4), n, seed=seed, max_steps=100_000))
    assert all(e.terminated for e in episodes)
    return episodes, mdp.n_states


def random_episodes(seed: int, n: int = 20) -> tuple[list[Episode], int]:
    mdp = random_mdp(8, 3, gamma=0.9, n_terminal=2, transition_rewards=True, seed=seed)
    env = MDPEnv(mdp)
    episodes = list(sample_episodes(env, uniform_policy(8, 3), n, seed=seed, max_steps=100_000))
    return episodes, mdp.n_states


def test_td_lambda_one_offline_equals_every_visit_monte_carlo():
    episodes, n_states = seed001_episodes(40, seed=1)
    assert max(len(set(e.states.tolist())) < e.length for e in episodes)  # states do repeat
    td = td_lambda(episodes, lam=1.0, alpha=0.01, online=False, gamma=0.9, n_states=n_states)
    mc = mc_prediction(episodes, first_visit=False, alpha=0.01, gamma=0.9, n_states=n_states)
    np.testing.assert_allclose(td.values, mc.values, atol=1e-12)
    assert np.abs(td.values).max() > 0.01  # something was learned


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.0, 1.0), st.sampled_from([0.05, 0.2]))
def test_offline_td_lambda_equals_offline_lambda_return(seed, lam, alpha):
    # Backward view (traces) == forward view (lambda-returns), offline (Sutton & Barto §12.1-12.2).
    episodes, n_states = random_episodes(seed)
    td = td_lambda(episodes, lam=lam, alpha=alpha, online=False, gamma=0.9, n_states=n_states)
    expected = offline_lambda_return_loop(episodes, n_states, alpha, 0.9, lam)
    np.testing.assert_allclose(td.values, expected, atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_td_lambda_zero_equals_td0_and_the_seed_code(seed):
    episodes, n_states = random_episodes(seed)
    zero = td_lambda(episodes, lam=0.0, alpha=0.1, gamma=0.9, n_states=n_states)
    plain = td0(episodes, alpha=0.1, gamma=0.9, n_states=n_states)
    np.testing.assert_allclose(zero.values, plain.values, atol=1e-13)
    replacing = td_lambda(episodes, lam=0.0, alpha=0.1, gamma=0.9, n_states=n_states, trace="replacing")
    np.testing.assert_allclose(replacing.values, plain.values, atol=1e-13)
    # Seed 000's td_update, step by step (terminal states are never updated, so they stay 0).
    V = np.zeros(n_states)
    for e in episodes:
        for t in range(e.length):
            seed_td_update(V, e.states[t], e.rewards[t], e.states[t + 1], alpha=0.1, gamma=0.9)
    np.testing.assert_allclose(plain.values, V, atol=1e-13)
    one_step = n_step_td(episodes, n=1, alpha=0.1, gamma=0.9, n_states=n_states)
    np.testing.assert_allclose(one_step.values, plain.values, atol=1e-13)


def test_online_td_lambda_is_seed_000s_class():
    episodes, n_states = random_episodes(5, n=30)
    ours = td_lambda(episodes, lam=0.8, alpha=0.05, gamma=0.95, n_states=n_states)
    agent = SeedTDLambda(n_states, alpha=0.05, gamma=0.95, lam=0.8)
    for e in episodes:
        agent.e[:] = 0.0  # traces start afresh in each episode (Sutton & Barto §12.2)
        for t in range(e.length):
            agent.update(e.states[t], e.rewards[t], e.states[t + 1])
    np.testing.assert_allclose(ours.values, agent.V, atol=1e-12)


def test_replacing_traces_differ_from_accumulating_on_revisits():
    episodes, n_states = seed001_episodes(5, seed=2)
    acc = td_lambda(episodes, lam=0.9, alpha=0.1, gamma=0.9, n_states=n_states)
    rep = td_lambda(episodes, lam=0.9, alpha=0.1, gamma=0.9, n_states=n_states, trace="replacing")
    assert np.abs(acc.values - rep.values).max() > 1e-3


@pytest.mark.parametrize("n", [2, 3, 7])
def test_n_step_td_matches_the_pseudocode(n):
    episodes, n_states = random_episodes(11, n=25)
    ours = n_step_td(episodes, n=n, alpha=0.1, gamma=0.9, n_states=n_states)
    np.testing.assert_allclose(ours.values, n_step_td_loop(episodes, n_states, 0.1, 0.9, n), atol=1e-12)


def test_first_visit_mc_is_the_average_of_first_visit_returns():
    episodes, n_states = seed001_episodes(30, seed=3)
    ours = mc_prediction(episodes, first_visit=True, gamma=0.9, n_states=n_states)
    np.testing.assert_allclose(ours.values, first_visit_mc_loop(episodes, n_states, 0.9), atol=1e-12)


def test_hand_worked_episode():
    # Two episodes over states 0, 1 (2 terminal), gamma 0.5.
    episodes = [
        Episode.from_lists([0, 1, 0, 2], [0, 0, 0], [1.0, 2.0, 4.0]),
        Episode.from_lists([1, 2], [0], [8.0]),
    ]
    # Returns: episode 1: G0 = 1 + 0.5*2 + 0.25*4 = 3, G1 = 2 + 0.5*4 = 4, G2 = 4; episode 2: G = 8.
    first = mc_prediction(episodes, first_visit=True, gamma=0.5, n_states=3).values
    every = mc_prediction(episodes, first_visit=False, gamma=0.5, n_states=3).values
    np.testing.assert_allclose(first, [3.0, 6.0, 0.0])
    np.testing.assert_allclose(every, [3.5, 6.0, 0.0])
    # TD(0), alpha 0.5: V0 += .5(1 + .5*0 - 0) = .5; V1 += .5(2 + .5*.5 - 0) = 1.125;
    # V0 += .5(4 - .5) = 2.25; then V1 += .5(8 - 1.125) = 4.5625.
    np.testing.assert_allclose(td0(episodes, alpha=0.5, gamma=0.5, n_states=3).values, [2.25, 4.5625, 0.0])


def test_truncated_episodes_bootstrap_in_td_but_not_in_mc():
    cut = [Episode.from_lists([0, 1], [0], [1.0], terminated=False)]
    start = np.array([0.0, 10.0])
    assert td0(cut, alpha=1.0, gamma=0.5, initial_values=start).values[0] == pytest.approx(6.0)
    assert mc_prediction(cut, alpha=1.0, gamma=0.5, initial_values=start).values[0] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("learner", "kwargs", "tolerance"),
    [
        (mc_prediction, {}, 0.04),
        (td0, {"alpha": 0.01}, 0.08),
        (td_lambda, {"alpha": 0.01, "lam": 0.8}, 0.08),
        (n_step_td, {"alpha": 0.01, "n": 4}, 0.08),
    ],
)
def test_learners_converge_to_the_exact_values_on_the_seed_grid(learner, kwargs, tolerance):
    # Exploring starts (uniform over the 24 non-terminal cells) so every state is estimated; 3000
    # episodes, seed 0. Measured over seeds 0-4: sample-average MC reaches an RMS error of 0.012-0.020
    # and constant-step TD methods 0.02-0.06 (their noise floor ~ sqrt(alpha) * sd(return)); the
    # values themselves have an RMS size of ~0.4, so a 0.08 bound still means "learned".
    mdp = seed001_gridworld().to_mdp()
    env = MDPEnv(mdp, initial_distribution=(~mdp.terminal_mask) / 24)
    policy = uniform_policy(25, 4)
    exact = policy_evaluation(mdp, policy, method="exact")
    assert np.sqrt(np.mean(exact**2)) > 0.3
    result = learner(env, policy, n_episodes=3000, seed=0, **kwargs)
    rmse = np.sqrt(np.mean((result.values - exact) ** 2))
    assert rmse < tolerance, rmse
    assert result.episode_returns.shape == (3000,) and result.params["gamma"] == 0.9


def test_seeded_learners_repeat_exactly():
    mdp = seed001_gridworld().to_mdp()
    a = td_lambda(MDPEnv(mdp), uniform_policy(25, 4), n_episodes=50, seed=7)
    b = td_lambda(MDPEnv(mdp), uniform_policy(25, 4), n_episodes=50, seed=7)
    c = td_lambda(MDPEnv(mdp), uniform_policy(25, 4), n_episodes=50, seed=8)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)


def test_bad_prediction_arguments():
    mdp = seed001_gridworld().to_mdp()
    env = MDPEnv(mdp)
    pi = uniform_policy(25, 4)
    episodes = [Episode.from_lists([0, 1], [0], [1.0])]
    with pytest.raises(ValueError, match="policy \\[S, A\\] is required"):
        td0(env, n_episodes=3)
    with pytest.raises(ValueError, match="n_episodes is required"):
        td0(env, pi)
    with pytest.raises(ValueError, match="gamma must be given when learning from a fixed list"):
        td0(episodes)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        td0(env, pi, n_episodes=3, alpha=0.0)
    with pytest.raises(ValueError, match="lam must lie in"):
        td_lambda(env, pi, n_episodes=3, lam=1.5)
    with pytest.raises(ValueError, match="trace must be"):
        td_lambda(env, pi, n_episodes=3, trace="dutch")
    with pytest.raises(ValueError, match=r"policy must have shape \[S, A\] = \(25, 4\)"):
        td0(env, np.ones((25, 2)) / 2, n_episodes=3)
    with pytest.raises(ValueError, match="n_states=1 but the episodes visit state 1"):
        td0(episodes, gamma=0.9, n_states=1)
    with pytest.raises(TypeError, match=r"source\[0\] must be an Episode"):
        td0([(0, 1)], gamma=0.9)
    with pytest.raises(ValueError, match="n must be >= 1"):
        n_step_td(env, pi, n_episodes=3, n=0)
    with pytest.raises(ValueError, match="an Episode needs"):
        Episode.from_lists([0, 1], [0, 0], [1.0])
