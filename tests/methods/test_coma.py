"""COMA's counterfactual advantage against a brute-force loop, its properties, and the team-game demo."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from credo.methods.coma import (
    CLIMBING_GAME,
    coma_advantages,
    coordination_reward,
    counterfactual_q,
    train_matrix_game,
)


def slow_coma(q, pi, actions):
    batch, agents, n_actions = q.shape
    out = torch.zeros(batch, agents, dtype=torch.float64)
    for b in range(batch):
        for a in range(agents):
            baseline = 0.0
            for u in range(n_actions):
                baseline += float(pi[b, a, u]) * float(q[b, a, u])
            out[b, a] = float(q[b, a, int(actions[b, a])]) - baseline
    return out


def random_inputs(seed, batch=5, agents=3, n_actions=4):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, agents, n_actions, generator=gen, dtype=torch.float64)
    pi = torch.softmax(torch.randn(batch, agents, n_actions, generator=gen, dtype=torch.float64), -1)
    actions = torch.randint(0, n_actions, (batch, agents), generator=gen)
    return q, pi, actions


@pytest.mark.parametrize("seed", range(4))
def test_matches_slow_loop(seed):
    q, pi, actions = random_inputs(seed)
    torch.testing.assert_close(coma_advantages(q, pi, actions), slow_coma(q, pi, actions))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 4), st.integers(1, 4), st.integers(2, 5))
def test_expected_advantage_is_zero(seed, batch, agents, n_actions):
    # sum_u pi_a(u) A_a(u) = 0: the counterfactual baseline adds no bias to the policy gradient.
    q, pi, _ = random_inputs(seed, batch, agents, n_actions)
    expected = torch.zeros(batch, agents, dtype=torch.float64)
    for u in range(n_actions):
        actions = torch.full((batch, agents), u)
        expected += pi[..., u] * coma_advantages(q, pi, actions)
    torch.testing.assert_close(expected, torch.zeros_like(expected), atol=1e-10, rtol=0)


def test_baseline_ignores_other_agents_reward():
    # An additive team reward: agent a's COMA credit depends on its own action only.
    reward = coordination_reward(4, bonus=0.0)
    actions = np.array([[0, 1, 2, 0], [0, 0, 0, 0]])
    q = counterfactual_q(reward, actions, 3)
    pi = torch.full((2, 4, 3), 1.0 / 3.0, dtype=torch.float64)
    adv = coma_advantages(torch.from_numpy(q), pi, torch.from_numpy(actions))
    torch.testing.assert_close(adv[0, 0], adv[1, 0])
    torch.testing.assert_close(adv[0, 0], torch.tensor(0.25 * (1 - 1 / 3), dtype=torch.float64))


def test_counterfactual_q_on_climbing_game():
    game = lambda u: CLIMBING_GAME[u[:, 0], u[:, 1]]  # noqa: E731
    q = counterfactual_q(game, np.array([[0, 2]]), 3)
    np.testing.assert_array_equal(q[0, 0], CLIMBING_GAME[:, 2])  # agent 0 varies, agent 1 plays 2
    np.testing.assert_array_equal(q[0, 1], CLIMBING_GAME[0, :])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"q": torch.zeros(2, 3)}, "q must be 3-D"),
        ({"pi": torch.full((2, 3, 3), 1 / 3)}, "pi must have the shape of q"),
        ({"actions": torch.zeros(2, 2, dtype=torch.long)}, "actions must have shape"),
        ({"actions": torch.full((2, 3), 4)}, "actions must lie in"),
        ({"actions": torch.zeros(2, 3)}, "actions must be an integer"),
        ({"pi": torch.full((2, 3, 4), 0.5)}, "pi must sum to 1"),
        ({"q": torch.full((2, 3, 4), float("nan"))}, "q holds NaN"),
        ({"q": np.zeros((2, 3, 4))}, "q must be a torch.Tensor"),
    ],
)
def test_bad_inputs_name_the_argument(kwargs, match):
    args = {
        "q": torch.zeros(2, 3, 4),
        "pi": torch.full((2, 3, 4), 0.25),
        "actions": torch.zeros(2, 3, dtype=torch.long),
    }
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        coma_advantages(**args)


def test_coma_credit_learns_the_team_game_where_the_shared_reward_does_not():
    # 10 agents, one team reward (how many chose action 0): at the same step size, COMA's per-agent
    # credit finds the optimal joint action on every seed; REINFORCE on the shared reward (with a
    # running-mean baseline) credits agents for the others' luck and locks some onto a wrong action.
    reward = coordination_reward(10, bonus=0.0)
    coma = [train_matrix_game("coma", reward, 10, 3, updates=150, batch=2, lr=16.0, seed=s) for s in range(5)]
    shared = [
        train_matrix_game("reinforce", reward, 10, 3, updates=150, batch=2, lr=16.0, seed=s) for s in range(5)
    ]
    assert min(run.optimal_probability[-1] for run in coma) > 0.95
    assert sum(run.optimal_probability[-1] < 0.1 for run in shared) >= 3
