"""Model-free control and the Gymnasium toy-text environments (FrozenLake, CliffWalking, Taxi)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from credo.tabular import (
    MDPEnv,
    evaluate_policy,
    expected_sarsa,
    mc_control,
    mdp_from_gymnasium,
    policy_evaluation,
    q_learning,
    run_episode,
    sarsa,
    seed001_gridworld,
    value_iteration,
)
from credo.tabular.control import epsilon_greedy_action, epsilon_greedy_probabilities

from .reference import success_within


def value_iteration_on_p_table(P, n_states, n_actions, gamma, sweeps=5_000):
    """Value iteration straight on Gymnasium's P lists (independent of mdp_from_gymnasium)."""
    V = np.zeros(n_states)
    for _ in range(sweeps):
        new = np.zeros(n_states)
        for s in range(n_states):
            new[s] = max(
                sum(p * (r + (0.0 if done else gamma * V[s2])) for p, s2, r, done in P[s][a])
                for a in range(n_actions)
            )
        V = new
    return V


@pytest.fixture(scope="module")
def frozen_lake():
    return gym.make("FrozenLake-v1")  # 4x4, slippery, 100-step time limit


def test_frozen_lake_value_iteration_is_optimal(frozen_lake):
    mdp = mdp_from_gymnasium(frozen_lake, gamma=1.0)
    assert (mdp.n_states, mdp.n_actions) == (16, 4)
    assert mdp.terminal_states.tolist() == [5, 7, 11, 12, 15]  # four holes and the goal
    values, policy = value_iteration(mdp, tol=1e-12)
    # The known optimal success probability from the start, gamma = 1: 0.8235 (= 14/17).
    assert values[0] == pytest.approx(14 / 17, abs=1e-6)
    # Our own exact solve of the greedy policy gives the same values.
    np.testing.assert_allclose(policy_evaluation(mdp, policy, method="exact"), values, atol=1e-8)
    # And value iteration written directly on env.unwrapped.P agrees (gamma 0.95 so it converges).
    P = frozen_lake.unwrapped.P
    discounted, _ = value_iteration(mdp.with_gamma(0.95), tol=1e-12)
    np.testing.assert_allclose(discounted, value_iteration_on_p_table(P, 16, 4, 0.95, 600), atol=1e-9)


def test_frozen_lake_q_learning_reaches_the_optimal_success_rate(frozen_lake):
    mdp = mdp_from_gymnasium(frozen_lake, gamma=1.0)
    _, optimal = value_iteration(mdp, tol=1e-12)
    # Trained directly on the Gymnasium env. gamma 0.99 (its optimal policy has the same success
    # rate as gamma 1's), alpha 0.05, epsilon 0.2, 10k episodes: over seeds 0-2 the greedy policy
    # differed from the optimal one in at most one state, with equal success rate.
    learned = q_learning(frozen_lake, n_episodes=10_000, alpha=0.05, gamma=0.99, epsilon=0.2, seed=0)
    assert learned.episode_returns.shape == (10_000,)
    policy = learned.greedy_policy
    # Exact probability of reaching the goal within the env's 100-step limit, from the start:
    # the learned policy is within 0.01 of the optimal one (~0.74).
    best = success_within(mdp, optimal, goal=15, horizon=100)[0]
    ours = success_within(mdp, policy, goal=15, horizon=100)[0]
    assert best == pytest.approx(0.74, abs=0.01)
    assert ours >= best - 0.01
    # Rollouts on the real env, fixed seed. Each success rate has a standard error of
    # sqrt(0.74 * 0.26 / 3000) = 0.008; the difference of two independent ones 0.011; we allow 3
    # standard errors (0.034) on top of the exact 0.01 gap above.
    n = 3_000
    rate_opt = evaluate_policy(frozen_lake, optimal, n_episodes=n, seed=123).success_rate
    rate_ours = evaluate_policy(frozen_lake, policy, n_episodes=n, seed=123).success_rate
    assert abs(rate_opt - best) < 0.034
    assert rate_ours > rate_opt - 0.044
    # Learning happened: late episodes succeed far more often than the first ones.
    assert learned.episode_returns[-2000:].mean() > learned.episode_returns[:500].mean() + 0.1


def greedy_path(env, result, max_steps=100):
    policy = result.greedy_policy.argmax(axis=1)
    return run_episode(env, lambda s: int(policy[s]), max_steps=max_steps, seed=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_cliff_walking_sarsa_is_safe_and_q_learning_hugs_the_cliff(seed):
    # Sutton & Barto Example 6.6: epsilon = 0.1, alpha = 0.5, gamma = 1, 500 episodes.
    env = gym.make("CliffWalking-v1")
    kwargs = {"n_episodes": 500, "alpha": 0.5, "gamma": 1.0, "epsilon": 0.1, "seed": seed}
    q_path = greedy_path(env, q_learning(env, **kwargs))
    s_result = sarsa(env, **kwargs)
    s_path = greedy_path(env, s_result)
    rows = lambda path: path.states // 12  # noqa: E731
    # Q-learning: the optimal path along the cliff edge, 13 steps, all on row 2 between S and G.
    assert q_path.terminated and q_path.length == 13 and q_path.total_reward == -13
    assert set(rows(q_path)[1:-1].tolist()) == {2}
    # SARSA: a longer path that keeps away from the edge (up to the top row), never falling.
    assert s_path.terminated and s_path.total_reward > -100
    assert s_path.length > 13 and rows(s_path).min() == 0
    # Online performance while exploring: SARSA does better, as in the book's figure.
    q_online = q_learning(env, **kwargs).episode_returns[100:].mean()
    assert s_result.episode_returns[100:].mean() > q_online


def test_expected_sarsa_and_mc_control_learn():
    env = gym.make("CliffWalking-v1")
    result = expected_sarsa(env, n_episodes=300, alpha=0.5, gamma=1.0, epsilon=0.1, seed=0)
    path = greedy_path(env, result)
    assert path.terminated and path.total_reward >= -17
    # On-policy MC control on seed 001's grid (deterministic): the greedy policy's start value is
    # optimal (0.9^5) after 2000 episodes (checked for seeds 0-2).
    mdp = seed001_gridworld().to_mdp()
    learned = mc_control(MDPEnv(mdp, max_episode_steps=200), n_episodes=2000, epsilon=0.1, seed=0)
    start = int(mdp.initial_distribution.argmax())
    assert policy_evaluation(mdp, learned.greedy_policy, method="exact")[start] == pytest.approx(0.9**5)
    every = mc_control(
        MDPEnv(mdp, max_episode_steps=200), n_episodes=2000, first_visit=False, alpha=0.1, seed=0
    )
    assert policy_evaluation(mdp, every.greedy_policy, method="exact")[start] == pytest.approx(0.9**5)


def test_q_learning_on_the_seed_grid_finds_v_star_with_exploring_starts():
    mdp = seed001_gridworld().to_mdp()
    env = MDPEnv(mdp, initial_distribution=(~mdp.terminal_mask) / 24, max_episode_steps=200)
    v_star, _ = value_iteration(mdp)
    result = q_learning(env, n_episodes=3000, alpha=0.5, epsilon=0.3, seed=0)
    # Deterministic moves and rewards: with alpha 0.5 the Q table converges to Q*.
    np.testing.assert_allclose(result.values, v_star, atol=1e-3)
    np.testing.assert_allclose(
        policy_evaluation(mdp, result.greedy_policy, method="exact"), v_star, atol=1e-9
    )


def test_taxi_model_and_learning():
    env = gym.make("Taxi-v4")
    mdp = mdp_from_gymnasium(env, gamma=0.99)
    assert (mdp.n_states, mdp.n_actions) == (500, 6)
    v_star, _ = value_iteration(mdp, tol=1e-8)
    optimal_start = float(mdp.initial_distribution @ v_star)
    result = q_learning(env, n_episodes=1500, alpha=0.5, epsilon=0.1, gamma=0.99, seed=0)
    first, last = result.episode_returns[:100].mean(), result.episode_returns[-100:].mean()
    assert first < -100 and last > 0  # from wandering to delivering
    learned_start = float(mdp.initial_distribution @ policy_evaluation(mdp, result.greedy_policy))
    assert learned_start > optimal_start - 1.5


def test_mdp_env_follows_the_gymnasium_api():
    env = MDPEnv(seed001_gridworld().to_mdp(), max_episode_steps=5)
    check_env(env, skip_render_check=True)
    state, info = env.reset(seed=0)
    assert state == 0 and info == {}
    for _ in range(5):
        *_, terminated, truncated, _ = env.step(0)  # up from row 0: stays, never terminates
    assert truncated and not terminated


def test_learning_is_repeatable_with_a_seed():
    env = gym.make("FrozenLake-v1")
    a = q_learning(env, n_episodes=200, gamma=0.99, seed=3)
    b = q_learning(env, n_episodes=200, gamma=0.99, seed=3)
    np.testing.assert_array_equal(a.q, b.q)
    np.testing.assert_array_equal(a.episode_returns, b.episode_returns)
    c = sarsa(env, n_episodes=200, gamma=0.9, epsilon=lambda k: 1.0 / (1 + k), seed=3)
    assert c.q.shape == (16, 4) and c.params["gamma"] == 0.9


def test_progress_bar_is_shown_when_asked(capsys):
    env = gym.make("FrozenLake-v1")
    sarsa(env, n_episodes=5, gamma=0.9, seed=0, progress=True)
    assert "sarsa" in capsys.readouterr().err
    sarsa(env, n_episodes=5, gamma=0.9, seed=0)
    assert "sarsa" not in capsys.readouterr().err


def test_epsilon_greedy_helpers():
    q = np.array([1.0, 5.0, 5.0, 0.0])
    np.testing.assert_allclose(epsilon_greedy_probabilities(q, 0.2), [0.05, 0.45, 0.45, 0.05])
    picks = [
        epsilon_greedy_action(q, 0.2, u1, u2) for u1 in np.linspace(0, 1, 50) for u2 in np.linspace(0, 1, 40)
    ]
    frequencies = np.bincount(picks, minlength=4) / len(picks)
    np.testing.assert_allclose(frequencies, [0.05, 0.45, 0.45, 0.05], atol=0.02)


def test_bad_control_arguments():
    env = gym.make("FrozenLake-v1")
    with pytest.raises(ValueError, match="gamma must be given for"):
        q_learning(env, n_episodes=2)
    with pytest.raises(ValueError, match="epsilon must lie in"):
        q_learning(env, n_episodes=2, gamma=0.9, epsilon=1.5)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        sarsa(env, n_episodes=2, gamma=0.9, alpha=-0.1)
    with pytest.raises(ValueError, match="n_episodes must be >= 1"):
        sarsa(env, n_episodes=0, gamma=0.9)
    with pytest.raises(ValueError, match=r"initial_q must have shape \(16, 4\)"):
        sarsa(env, n_episodes=2, gamma=0.9, initial_q=np.zeros((4, 4)))
    with pytest.raises(TypeError, match="env must have Discrete"):
        q_learning(gym.make("CartPole-v1"), n_episodes=2, gamma=0.9)
    with pytest.raises(ValueError, match="gamma must lie in"):
        mdp_from_gymnasium(env, gamma=1.2)
