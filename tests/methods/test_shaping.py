"""Potential-based shaping: same optimal policy, faster Q-learning; the two ways to break it."""

from __future__ import annotations

import numpy as np
import pytest

from credo.methods.shaping import (
    cell_bonus_gridworld,
    compare_learning,
    corridor,
    distance_potential,
    greedy_rollout,
    grid_distances,
    optimal_action_sets,
    shape_mdp,
    shaping_gridworld,
)
from credo.tabular import random_mdp, value_iteration


def slow_shaped_rewards(mdp, phi):
    next_states, probs, rewards = mdp.successors()
    out = np.zeros_like(rewards)
    for s in range(mdp.n_states):
        for a in range(mdp.n_actions):
            for k in range(next_states.shape[-1]):
                if probs[s, a, k] == 0.0 or mdp.terminal_mask[s]:
                    continue
                nxt = next_states[s, a, k]
                arrival = 0.0 if mdp.terminal_mask[nxt] else phi[nxt]
                out[s, a, k] = rewards[s, a, k] + mdp.gamma * arrival - phi[s]
    return out


def test_shaped_rewards_match_the_formula():
    grid = shaping_gridworld(6)
    mdp = grid.to_mdp()
    phi = np.random.default_rng(0).normal(size=mdp.n_states)
    shaped = shape_mdp(mdp, phi)
    _, probs, rewards = shaped.successors()
    np.testing.assert_allclose(np.where(probs > 0, rewards, 0.0), slow_shaped_rewards(mdp, phi))


def test_distance_potential_counts_moves_around_the_wall():
    grid = shaping_gridworld(10)
    distance = grid_distances(grid, (9, 9))
    assert distance[grid.state((0, 0))] == 18  # the gap is at column 8: no detour needed
    assert distance[grid.state((4, 0))] == 14
    assert distance[grid.state((6, 0))] == 12
    phi = distance_potential(grid, (9, 9))
    assert phi[grid.state((9, 9))] == 0.0 and phi[grid.state((0, 0))] == -18.0


@pytest.mark.parametrize("seed", range(3))
def test_optimal_policy_is_unchanged_on_random_mdps(seed):
    mdp = random_mdp(12, 3, gamma=0.9, n_terminal=2, seed=seed)
    phi = np.random.default_rng(seed).normal(scale=5.0, size=12)
    shaped = shape_mdp(mdp, phi)
    v, _ = value_iteration(mdp, tol=1e-12)
    v_shaped, _ = value_iteration(shaped, tol=1e-12)
    np.testing.assert_allclose(v_shaped, np.where(mdp.terminal_mask, 0.0, v - phi), atol=1e-8)
    np.testing.assert_array_equal(optimal_action_sets(shaped), optimal_action_sets(mdp))


def test_shaped_gridworld_keeps_the_optimal_policy_and_learns_faster():
    grid = shaping_gridworld(10)
    mdp = grid.to_mdp()
    shaped = shape_mdp(mdp, distance_potential(grid, (9, 9)))
    np.testing.assert_array_equal(optimal_action_sets(shaped), optimal_action_sets(mdp))
    runs = compare_learning(grid, episodes=40, seeds=(0, 1, 2))
    shortest = 18
    plain = [run.episodes_to_learn(shortest) for run in runs["unshaped"]]
    fast = [run.episodes_to_learn(shortest) for run in runs["shaped"]]
    assert max(fast) <= 10, fast
    assert min(plain) >= 40, plain  # not learnt within the 40 episodes
    total_plain = sum(run.steps.sum() for run in runs["unshaped"])
    total_fast = sum(run.steps.sum() for run in runs["shaped"])
    assert total_fast < 0.3 * total_plain


def test_a_nonzero_terminal_potential_changes_the_optimal_policy():
    # A constant potential phi = 10 should be harmless. With phi(terminal) = 0 it is; used at the
    # terminals too, an episode of length T collects -10 + 10 gamma^T, which favours the 1-step exit.
    mdp = corridor(7).to_mdp()
    start = 1
    phi = np.full(mdp.n_states, 10.0)
    left, right = 2, 3
    assert optimal_action_sets(mdp)[start].tolist() == [False, False, False, True]
    assert optimal_action_sets(shape_mdp(mdp, phi))[start, right]
    naive = optimal_action_sets(shape_mdp(mdp, phi, zero_terminal=False))
    assert naive[start, left] and not naive[start, right]


def test_a_cell_bonus_is_not_potential_based_and_changes_the_policy():
    plain = shaping_gridworld(10).to_mdp()
    bonus_grid = cell_bonus_gridworld(10, bonus=3.0)
    bonus = bonus_grid.to_mdp()
    start = bonus_grid.state((0, 0))
    _, plain_policy = value_iteration(plain)
    _, bonus_policy = value_iteration(bonus)
    plain_path = greedy_rollout(plain, plain_policy, start)
    bonus_path = greedy_rollout(bonus, bonus_policy, start)
    assert len(plain_path) == 19 and plain.terminal_mask[plain_path[-1]]
    assert not bonus.terminal_mask[bonus_path[-1]]  # it farms the bonus instead of leaving
    assert bonus_path[1] == bonus_grid.state((0, 1))


def test_bad_potentials():
    mdp = corridor(5).to_mdp()
    with pytest.raises(ValueError, match="potentials must have shape"):
        shape_mdp(mdp, np.zeros(3))
    with pytest.raises(ValueError, match="potentials must be finite"):
        shape_mdp(mdp, np.full(5, np.nan))
