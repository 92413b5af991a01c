"""HER: the replay buffer's invariants one by one, the bit-flipping environment, and DQN with/without HER."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from credo.methods.her import (
    BitFlipEnv,
    HindsightReplayBuffer,
    bitflip_reward,
    bitflip_success,
    train_bitflip,
)

N = 6


def make_buffer(strategy="future", capacity=4, k=4, seed=0, max_steps=N):
    return HindsightReplayBuffer(
        capacity, max_steps, N, N, bitflip_reward, bitflip_success, strategy=strategy, k=k, seed=seed
    )


def walk(buffer, steps, *, marker=0.0, finish="truncated"):
    """An episode flipping bits 0, 1, 2, ... from all-zeros (every achieved goal distinct) with the
    last bit set to ``marker`` (never flipped, so the goal, which differs there, is never reached).
    ``finish``: "truncated", "terminated" or "open" (not ended)."""
    state = np.zeros(N, dtype=np.float32)
    state[-1] = marker
    goal = np.ones(N, dtype=np.float32)
    goal[-1] = 1.0 - marker
    slot = buffer.start_episode(state, state, goal)
    for t in range(steps):
        state = state.copy()
        state[t % (N - 1)] = 1.0 - state[t % (N - 1)]
        last = t == steps - 1
        buffer.add(
            t % (N - 1),
            float(bitflip_reward(state, goal)),
            state,
            state,
            terminated=last and finish == "terminated",
            truncated=last and finish == "truncated",
        )
    return slot


def test_bitflip_env():
    env = BitFlipEnv(4, seed=0)
    state, goal = env.reset()
    assert state.shape == goal.shape == (4,) and not (state == goal).all()
    diff = np.flatnonzero(state != goal)
    for i, bit in enumerate(diff):
        _, reward, terminated, truncated = env.step(int(bit))
        assert terminated == (i == len(diff) - 1) and reward == (0.0 if terminated else -1.0)
        assert not truncated
    env = BitFlipEnv(4, seed=1)
    state, goal = env.reset()
    same = int(np.flatnonzero(state == goal)[0]) if (state == goal).any() else None
    if same is None:  # every bit differs: flip one back and forth instead
        env.step(0)
        same = 0
    outcomes = [env.step(same) for _ in range(4 - env.steps)]
    assert [o[3] for o in outcomes] == [False] * (len(outcomes) - 1) + [True]  # time limit after n steps
    assert not any(o[2] for o in outcomes)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset()
    with pytest.raises(ValueError, match="action must lie"):
        env.step(9)


def test_relabelled_reward_and_done_are_recomputed():
    # SB3 #627: after relabelling, done must follow the new goal, not the stored flag.
    buffer = make_buffer("final", k=1_000_000)
    walk(buffer, 4)
    batch = buffer.sample(256)
    assert batch.relabelled.mean() > 0.99
    final = batch.t == 3
    assert final.any() and (~final).any()
    # the last transition achieves the final goal: reward 0 and terminal, though the episode was not
    assert (batch.reward[final & batch.relabelled] == 0.0).all() and batch.done[
        final & batch.relabelled
    ].all()
    assert (batch.reward[~final] == -1.0).all() and not batch.done[~final].any()
    np.testing.assert_array_equal(batch.reward, bitflip_reward(batch.next_obs, batch.goal))
    np.testing.assert_array_equal(batch.done, bitflip_success(batch.next_obs, batch.goal))


@pytest.mark.parametrize("strategy", ["future", "episode", "final"])
def test_new_goals_come_from_next_achieved_goals(strategy):
    # SB3 PR #848: goals are ag[t'+1] for t' in [t, L-1] (future): never the state the step started from.
    buffer = make_buffer(strategy, k=1_000_000)
    walk(buffer, 5)
    batch = buffer.sample(2_000)
    rel = batch.relabelled
    idx, t = batch.goal_index[rel], batch.t[rel]
    np.testing.assert_array_equal(batch.goal[rel], buffer.achieved[batch.episode[rel], idx])
    if strategy == "future":
        assert (idx >= t + 1).all() and (idx <= 5).all()
        assert set(np.unique(idx[t == 0]).tolist()) == {1, 2, 3, 4, 5}  # all of the future, uniformly
        assert (idx[t == 4] == 5).all()
    elif strategy == "episode":
        assert set(np.unique(idx).tolist()) == {1, 2, 3, 4, 5}
    else:
        assert (idx == 5).all()


def test_original_goals_keep_the_stored_reward_and_done():
    buffer = make_buffer("none")
    walk(buffer, 3, finish="terminated")
    batch = buffer.sample(100)
    assert not batch.relabelled.any() and (batch.goal_index == -1).all()
    np.testing.assert_array_equal(batch.done, batch.t == 2)
    np.testing.assert_array_equal(batch.goal, np.broadcast_to(buffer.goals[0], batch.goal.shape))


def test_time_limit_truncation_is_not_terminal():
    buffer = make_buffer("none")
    walk(buffer, N, finish="truncated")
    batch = buffer.sample(200)
    assert (batch.t == N - 1).any()
    assert not batch.done.any()  # the last step of a truncated episode still bootstraps


def test_never_samples_an_unfinished_episode():
    buffer = make_buffer("future")
    with pytest.raises(RuntimeError, match="no finished episode"):
        buffer.sample(1)
    done_slot = walk(buffer, 3)
    open_slot = walk(buffer, 4, finish="open")
    batch = buffer.sample(1_000)
    assert (batch.episode == done_slot).all() and open_slot != done_slot
    with pytest.raises(RuntimeError, match="has not ended"):
        buffer.start_episode(np.zeros(N), np.zeros(N), np.ones(N))


def test_never_samples_an_overwritten_episode():
    buffer = make_buffer("episode", capacity=2)
    walk(buffer, 3, marker=0.0)  # slot 0
    walk(buffer, 2, marker=1.0)  # slot 1
    walk(buffer, 5, marker=0.0, finish="open")  # overwriting slot 0, not finished
    batch = buffer.sample(1_000)
    assert (batch.episode == 1).all()
    # only the marked episode: neither the old nor the half-written content of slot 0
    assert (batch.obs[:, -1] == 1.0).all() and (batch.next_obs[:, -1] == 1.0).all()
    assert (batch.goal[~batch.relabelled, -1] == 0.0).all()
    assert buffer.lengths[0] == 5 and not buffer.finished[0]


def test_transitions_are_uniform_over_steps():
    buffer = make_buffer("none", capacity=3)
    walk(buffer, 1)
    walk(buffer, 5)
    batch = buffer.sample(6_000)
    assert abs((batch.episode == 0).mean() - 1 / 6) < 0.03


def test_buffer_errors():
    with pytest.raises(ValueError, match="strategy must be one of"):
        make_buffer("later")
    buffer = make_buffer(max_steps=2)
    with pytest.raises(RuntimeError, match="start_episode"):
        buffer.add(0, -1.0, np.zeros(N), np.zeros(N), False, False)
    buffer.start_episode(np.zeros(N), np.zeros(N), np.ones(N))
    buffer.add(0, -1.0, np.zeros(N), np.zeros(N), False, False)
    buffer.add(0, -1.0, np.zeros(N), np.zeros(N), False, False)
    with pytest.raises(RuntimeError, match="longer than max_steps"):
        buffer.add(0, -1.0, np.zeros(N), np.zeros(N), False, False)


@pytest.mark.slow
def test_dqn_with_her_solves_8_bits_and_without_does_not():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        her = train_bitflip(8, strategy="future", episodes=250, eval_every=250, seed=0)
        plain = train_bitflip(8, strategy="none", episodes=250, eval_every=250, seed=0)
    finally:
        torch.set_num_threads(threads)
    assert her.success[-1] > 0.9, her.success
    assert plain.success[-1] < 0.2, plain.success
