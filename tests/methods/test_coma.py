"""COMA's counterfactual advantage against a brute-force loop, its properties, and the team-game demo."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from credo.credit.returns import lambda_returns
from credo.methods.coma import (
    CLIMBING_GAME,
    CentralCritic,
    RelayGame,
    coma_advantages,
    coma_critic_targets,
    coordination_reward,
    counterfactual_q,
    train_matrix_game,
    train_relay_game,
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


# ------------------------------------------------------------------------ the learned critic


def test_critic_one_pass_equals_each_action_evaluated_separately():
    # q[b, a, u] of one forward pass == Q of the joint action with u_a := u, evaluated on its own.
    torch.manual_seed(0)
    critic = CentralCritic(state_dim=4, n_agents=3, n_actions=5, hidden=16)
    gen = torch.Generator().manual_seed(1)
    state = torch.randn(6, 4, generator=gen)
    actions = torch.randint(0, 5, (6, 3), generator=gen)
    q = critic(state, actions)
    assert q.shape == (6, 3, 5)
    for a in range(3):
        for u in range(5):
            swapped = actions.clone()
            swapped[:, a] = u
            separate = critic(state, swapped)[:, a].gather(-1, swapped[:, a, None]).squeeze(-1)
            torch.testing.assert_close(q[:, a, u], separate)
    # pymarl's input layout: state, the others' one-hot actions (own slot zeroed), agent id.
    inputs = critic.inputs(state, actions)
    torch.testing.assert_close(inputs[:, 1, :4], state)
    assert inputs[:, 1, 4 + 5 : 4 + 10].sum() == 0  # agent 1's own action is hidden from its row
    torch.testing.assert_close(inputs[:, 1, 4:9], torch.nn.functional.one_hot(actions[:, 0], 5).float())
    torch.testing.assert_close(inputs[:, 1, -3:], torch.tensor([0.0, 1.0, 0.0]).expand(6, 3))


def test_critic_targets_are_td_lambda_returns_on_a_hand_example():
    # One episode of 3 steps, 2 agents' rows, gamma 0.5, lambda 0.5:
    # G_2 = r_2 = 4 (terminal);  G_1 = r_1 + g[(1-l) Q_2 + l G_2] = 1 + 0.5 (0.5*6 + 0.5*4) = 3.5
    # G_0 = r_0 + g[(1-l) Q_1 + l G_1] = 0 + 0.5 (0.5*2 + 0.5*3.5) = 1.375      (row 0, Q = 8, 2, 6)
    # row 1, Q = 0: G = (0.5, 2, 4)
    rewards = torch.tensor([[0.0, 1.0, 4.0]], dtype=torch.float64)
    q_taken = torch.tensor([[[8.0, 2.0, 6.0], [0.0, 0.0, 0.0]]], dtype=torch.float64)
    targets = coma_critic_targets(rewards, q_taken, gamma=0.5, lam=0.5)
    torch.testing.assert_close(targets[0, 0], torch.tensor([1.375, 3.5, 4.0], dtype=torch.float64))
    torch.testing.assert_close(targets[0, 1], torch.tensor([0.5, 2.0, 4.0], dtype=torch.float64))
    done = torch.tensor([[[False, False, True]] * 2])
    nxt = torch.cat([q_taken[..., 1:], torch.zeros(1, 2, 1, dtype=torch.float64)], dim=-1)
    torch.testing.assert_close(
        targets, lambda_returns(rewards.expand(1, 2, 3), q_taken, nxt, done, done, 0.5, 0.5)
    )
    # lambda = 1: the Monte Carlo return; lambda = 0: one-step TD targets.
    torch.testing.assert_close(
        coma_critic_targets(rewards, q_taken, 1.0, 1.0)[0, 0],
        torch.tensor([5.0, 5.0, 4.0], dtype=torch.float64),
    )
    torch.testing.assert_close(
        coma_critic_targets(rewards, q_taken, 1.0, 0.0)[0, 0],
        torch.tensor([2.0, 7.0, 4.0], dtype=torch.float64),
    )


def test_relay_exact_q_matches_its_definition():
    game = RelayGame(3, horizon=4)
    rng = np.random.default_rng(0)
    pi = rng.dirichlet(np.ones(3), size=(3, 4))
    states, actions, rewards = game.sample(pi, 5, rng)
    q = game.exact_q(states, actions, pi)
    right = game.correct()
    p_later = [pi[:, t, right[t]].mean() for t in range(4)]
    for b, t, a, u in [(0, 0, 0, 0), (1, 2, 1, 2), (4, 3, 2, 1), (2, 1, 0, 1)]:
        joint = actions[b, t].copy()
        joint[a] = u
        score_before = sum((actions[b, s] == right[s]).mean() for s in range(t))
        expected = score_before + (joint == right[t]).mean() + sum(p_later[t + 1 :])
        assert q[b, t, a, u] == pytest.approx(expected)
    np.testing.assert_allclose(rewards[:, -1], (actions == right[None, :, None]).mean(-1).sum(-1))


def test_coma_with_a_learned_critic_solves_the_relay_game_where_the_shared_reward_does_not():
    # 5 agents, 5 steps, the team reward paid only at the end: COMA with the learned critic (TD(0.8)
    # targets, target network) finds the optimal plan on every seed; REINFORCE on the team return at
    # the same step size locks agents onto wrong actions.
    game, threads = RelayGame(5), torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny MLP: one thread is the fastest
    try:
        coma = [train_relay_game("coma", game, updates=150, batch=8, lr=8.0, seed=s) for s in range(3)]
        shared = [train_relay_game("reinforce", game, updates=150, batch=8, lr=8.0, seed=s) for s in range(3)]
    finally:
        torch.set_num_threads(threads)
    assert min(run.optimal_probability[-1] for run in coma) > 0.85
    assert max(run.optimal_probability[-1] for run in shared) < 0.1
    assert max(run.critic_error[-20:].mean() for run in coma) < 0.1  # the learned Q is close to exact
