"""Grid worlds: seed 001's preset, Sutton & Barto's published numbers, the move rules, rendering."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credo.tabular import (
    GridWorld,
    MDPEnv,
    make_gridworld,
    plot_values,
    policy_evaluation,
    policy_iteration,
    seed001_gridworld,
    uniform_policy,
    value_iteration,
)

from .reference import policy_evaluation_loop, seed001_book_evaluation


def as_grid(world: GridWorld, values: np.ndarray) -> np.ndarray:
    return world.layout.value_grid(values)


def test_seed001_preset_matches_the_seed():
    world = seed001_gridworld()
    mdp = world.to_mdp()
    assert (mdp.n_states, mdp.n_actions, mdp.gamma) == (25, 4, 0.9)  # four actions, gamma 0.9
    assert world.action_names == ("up", "down", "left", "right")
    assert world.slip == 0.0  # state-transition probability 1
    np.testing.assert_array_equal(mdp.transitions.max(axis=2), 1.0)
    # Triangles pay -1, the circle +1 (on arrival).
    assert world.cell_rewards == {(1, 2): -1.0, (2, 1): -1.0, (2, 2): 1.0}
    assert mdp.rewards[world.state((1, 1)), 3] == -1.0  # right from (1,1) lands on a triangle
    assert mdp.rewards[world.state((2, 3)), 2] == 1.0  # left from (2,3) lands on the circle
    assert mdp.terminal_states.tolist() == [world.state((2, 2))]


def test_seed001_uniform_policy_values():
    world = seed001_gridworld()
    mdp = world.to_mdp()
    policy = uniform_policy(25, 4)  # seed 001: pi(a|s) = 0.25
    exact = policy_evaluation(mdp, policy, method="exact")
    iterative = policy_evaluation(mdp, policy, tol=1e-13)
    np.testing.assert_allclose(iterative, exact, atol=1e-11)
    # The same numbers as the lecture's own procedure (value table, sweeps, circle fixed at 0).
    np.testing.assert_allclose(as_grid(world, exact), seed001_book_evaluation(), atol=1e-10)
    # And as a plain triple loop over states, actions and next states.
    loop = policy_evaluation_loop(mdp.transitions, mdp.rewards, policy, 0.9, mdp.terminal_mask)
    np.testing.assert_allclose(exact, loop, atol=1e-10)
    # The layout is symmetric under transposition (triangles at (1,2) and (2,1), circle on the
    # diagonal; up/left and down/right swap, the uniform policy does not care): so is V.
    grid = as_grid(world, exact)
    np.testing.assert_allclose(grid, grid.T, atol=1e-12)
    # Next to the circle the value is above the triangles' and (0,0) is negative: the random walk
    # bumps into triangles more often than it reaches the circle.
    assert grid[2, 3] > 0 > grid[1, 2] and grid[0, 0] < 0


def test_seed001_optimal_values_by_hand():
    world = seed001_gridworld()
    values, policy = value_iteration(world.to_mdp(), tol=1e-13)
    grid = as_grid(world, values)
    # From (0,0) the best route avoids both triangles: 6 moves, +1 on the last, so 0.9^5.
    assert grid[0, 0] == pytest.approx(0.9**5)
    # A triangle-crossing route is worse: -0.9^3 + 0.9^4 < 0.9^5.
    assert grid[2, 3] == pytest.approx(1.0) and grid[1, 3] == pytest.approx(0.9)
    assert grid[1, 2] == pytest.approx(1.0)  # on a triangle, step down onto the circle
    # From (1,1): across a triangle (-1 + 0.9) or around it (six moves, 0.9^5).
    assert grid[1, 1] == pytest.approx(max(-1 + 0.9 * 1.0, 0.9**5))
    np.testing.assert_allclose(policy_iteration(world.to_mdp())[0], values, atol=1e-10)
    assert world.render_policy(policy).splitlines()[2].split()[2] == "+1"


def test_sutton_barto_example_3_5_published_values():
    world = make_gridworld("sutton_barto_3_5")
    mdp = world.to_mdp()
    # Figure 3.2: state values of the equiprobable random policy (one decimal in the book).
    figure_3_2 = np.array(
        [
            [3.3, 8.8, 4.4, 5.3, 1.5],
            [1.5, 3.0, 2.3, 1.9, 0.5],
            [0.1, 0.7, 0.7, 0.4, -0.4],
            [-1.0, -0.4, -0.4, -0.6, -1.2],
            [-1.9, -1.3, -1.2, -1.4, -2.0],
        ]
    )
    v_random = policy_evaluation(mdp, uniform_policy(25, 4), method="exact")
    np.testing.assert_allclose(as_grid(world, v_random), figure_3_2, atol=0.05)
    # Figure 3.5: optimal state values.
    figure_3_5 = np.array(
        [
            [22.0, 24.4, 22.0, 19.4, 17.5],
            [19.8, 22.0, 19.8, 17.8, 16.0],
            [17.8, 19.8, 17.8, 16.0, 14.4],
            [16.0, 17.8, 16.0, 14.4, 13.0],
            [14.4, 16.0, 14.4, 13.0, 11.7],
        ]
    )
    v_star, _ = value_iteration(mdp, tol=1e-12)
    np.testing.assert_allclose(as_grid(world, v_star), figure_3_5, atol=0.05)


def test_slip_walls_and_bumps():
    world = GridWorld(2, 3, walls=[(0, 1)], slip=0.2, bump_reward=-1.0, step_reward=-0.1, start=(0, 0))
    assert world.n_states == 5
    # From (1,1) going up: blocked by the wall (stay, bump), slipping left/right moves.
    outcomes = sorted(world.outcomes((1, 1), 0))
    assert outcomes == sorted([(0.8, (1, 1), -1.1), (0.1, (1, 0), -0.1), (0.1, (1, 2), -0.1)])
    mdp = world.to_mdp()
    np.testing.assert_allclose(mdp.transitions.sum(axis=2), 1.0)
    s = world.state((1, 1))
    assert mdp.transitions[s, 0, s] == pytest.approx(0.8)
    assert mdp.rewards[s, 0] == pytest.approx(0.8 * -1.1 + 0.2 * -0.1)


def test_teleport_and_sampling_env_agree_with_the_model():
    world = GridWorld(3, 3, teleports={(0, 0): ((2, 2), 5.0)}, slip=0.3, terminals=[(2, 0)], start=(0, 0))
    mdp = world.to_mdp()
    env = MDPEnv(mdp)
    state, _ = env.reset(seed=3)
    assert state == world.state((0, 0))
    next_state, reward, terminated, truncated, _ = env.step(1)
    assert (next_state, reward, terminated, truncated) == (world.state((2, 2)), 5.0, False, False)
    # Empirical next-state frequencies from the centre match P.
    centre = world.state((1, 1))
    counts = np.zeros(mdp.n_states)
    rng_env = MDPEnv(mdp, initial_distribution=np.eye(mdp.n_states)[centre])
    rng_env.reset(seed=0)
    for _ in range(4000):
        rng_env.reset()
        s_next, *_ = rng_env.step(3)
        counts[s_next] += 1
    np.testing.assert_allclose(counts / 4000, mdp.transitions[centre, 3], atol=0.03)


def test_rendering_and_plot(tmp_path):
    world = make_gridworld("dyna_maze")
    values, policy = value_iteration(world.to_mdp())
    text = world.render_values(values)
    assert text.count("#") >= 7 and len(text.splitlines()) == 6
    arrows = world.render_policy(policy, ascii_only=True).splitlines()
    assert arrows[0].split()[-1] == "+1" and "#" in arrows[1]
    out = plot_values(values, tmp_path / "maze.png", layout=world.layout, policy=policy)
    assert out.exists() and out.read_bytes()[:4] == b"\x89PNG"


def test_bad_grid_arguments():
    with pytest.raises(ValueError, match="walls: cell \\(5, 0\\) lies outside the 2x2 grid"):
        GridWorld(2, 2, walls=[(5, 0)])
    with pytest.raises(ValueError, match="terminals: cell \\(0, 1\\) is a wall"):
        GridWorld(2, 2, walls=[(0, 1)], terminals=[(0, 1)])
    with pytest.raises(ValueError, match="slip must lie in"):
        GridWorld(2, 2, slip=1.5)
    with pytest.raises(ValueError, match="gamma must lie in"):
        GridWorld(2, 2, gamma=2.0)
    with pytest.raises(ValueError, match="start \\(0, 0\\) is a terminal cell"):
        GridWorld(2, 2, terminals=[(0, 0)])
    with pytest.raises(ValueError, match="unknown grid world preset 'nope'"):
        make_gridworld("nope")
    with pytest.raises(ValueError, match=r"policy must have shape \(25, 4\)"):
        seed001_gridworld().render_policy(np.ones((25, 3)) / 3)


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 5),
    st.integers(1, 5),
    st.floats(0.0, 0.6),
    st.integers(0, 2**31 - 1),
)
def test_random_grids_give_valid_models_that_match_their_rules(height, width, slip, seed):
    rng = np.random.default_rng(seed)
    cells = [(r, c) for r in range(height) for c in range(width)]
    order = rng.permutation(len(cells))
    walls = [cells[i] for i in order[: len(cells) // 4]]
    rest = [cells[i] for i in order[len(cells) // 4 :]]
    terminals = rest[:1] if len(rest) > 1 else []
    rewards = {cell: float(rng.normal()) for cell in rest[1:3]}
    world = GridWorld(height, width, walls=walls, terminals=terminals, cell_rewards=rewards, slip=slip,
                      bump_reward=-0.5, step_reward=-0.1, gamma=0.8, start=None)  # fmt: skip
    mdp = world.to_mdp()
    np.testing.assert_allclose(mdp.transitions.sum(axis=2), 1.0, atol=1e-12)
    # Value iteration on the model equals value iteration straight on the rules (outcomes lists).
    values = np.zeros(world.n_states)
    for _ in range(400):
        new = np.zeros(world.n_states)
        for s, cell in enumerate(world.cells):
            if cell in world.terminals:
                continue
            new[s] = max(
                sum(p * (r + 0.8 * values[world.state_of[c]]) for p, c, r in world.outcomes(cell, a))
                for a in range(4)
            )
        values = new
    np.testing.assert_allclose(value_iteration(mdp, tol=1e-12)[0], values, atol=1e-9)
