"""Slow, obvious reference implementations (Python loops over states, actions and time steps)."""

from __future__ import annotations

import numpy as np


def value_iteration_loop(P, R, gamma, terminal, tol=1e-12, max_sweeps=100_000):
    """Per-state, per-action, per-successor loops; P [S, A, S], R [S, A] expected rewards."""
    S, A, _ = P.shape
    V = [0.0] * S
    for _ in range(max_sweeps):
        new = [0.0] * S
        for s in range(S):
            if terminal[s]:
                continue
            best = -float("inf")
            for a in range(A):
                q = R[s][a]
                for t in range(S):
                    if P[s][a][t] > 0.0 and not terminal[t]:
                        q += gamma * P[s][a][t] * V[t]
                best = max(best, q)
            new[s] = best
        change = max(abs(x - y) for x, y in zip(new, V))
        V = new
        if change < tol:
            return np.array(V)
    raise RuntimeError("no convergence")


def policy_evaluation_loop(P, R, policy, gamma, terminal, tol=1e-13, max_sweeps=200_000):
    S, A, _ = P.shape
    V = [0.0] * S
    for _ in range(max_sweeps):
        new = [0.0] * S
        for s in range(S):
            if terminal[s]:
                continue
            total = 0.0
            for a in range(A):
                q = R[s][a]
                for t in range(S):
                    if not terminal[t]:
                        q += gamma * P[s][a][t] * V[t]
                total += policy[s][a] * q
            new[s] = total
        change = max(abs(x - y) for x, y in zip(new, V))
        V = new
        if change < tol:
            return np.array(V)
    raise RuntimeError("no convergence")


def seed001_book_evaluation(sweeps=2_000):
    """Seed 001's grid world evaluated the way its source lecture's code does: a 5x5 value table,
    reward = reward of the cell the move lands in (moves off the grid stay), circle (2, 2) fixed at 0,
    uniform 0.25 policy, gamma 0.9, synchronous sweeps."""
    reward = [[0.0] * 5 for _ in range(5)]
    reward[2][2], reward[1][2], reward[2][1] = 1.0, -1.0, -1.0
    moves = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    value = [[0.0] * 5 for _ in range(5)]
    for _ in range(sweeps):
        nxt = [[0.0] * 5 for _ in range(5)]
        for r in range(5):
            for c in range(5):
                if (r, c) == (2, 2):
                    continue
                total = 0.0
                for dr, dc in moves:
                    nr, nc = min(max(r + dr, 0), 4), min(max(c + dc, 0), 4)
                    total += 0.25 * (reward[nr][nc] + 0.9 * value[nr][nc])
                nxt[r][c] = total
        value = nxt
    return np.array(value)


class SeedTDLambda:
    """Seed 000's ``TDLambda`` class, as written there (online, accumulating traces)."""

    def __init__(self, n_states, alpha=0.1, gamma=0.95, lam=0.9):
        self.V = np.zeros(n_states)
        self.e = np.zeros(n_states)
        self.alpha, self.gamma, self.lam = alpha, gamma, lam

    def update(self, state, reward, next_state):
        td_error = reward + self.gamma * self.V[next_state] - self.V[state]
        self.e *= self.gamma * self.lam
        self.e[state] += 1
        self.V += self.alpha * td_error * self.e


def seed_td_update(V, state, reward, next_state, alpha=0.1, gamma=0.95):
    """Seed 000's ``td_update``."""
    td_error = reward + gamma * V[next_state] - V[state]
    V[state] += alpha * td_error
    return V


def first_visit_mc_loop(episodes, n_states, gamma):
    returns = {s: [] for s in range(n_states)}
    for ep in episodes:
        G = 0.0
        rets = []
        for t in reversed(range(ep.length)):
            G = ep.rewards[t] + gamma * G
            rets.append((t, G))
        rets.reverse()
        seen = set()
        for t, g in rets:
            s = int(ep.states[t])
            if s in seen:
                continue
            seen.add(s)
            returns[s].append(g)
    return np.array([np.mean(returns[s]) if returns[s] else 0.0 for s in range(n_states)])


def offline_lambda_return_loop(episodes, n_states, alpha, gamma, lam):
    """Forward view: the offline lambda-return algorithm (Sutton & Barto §12.1), V fixed per episode."""
    V = np.zeros(n_states)
    for ep in episodes:
        T = ep.length
        G = [0.0] * T
        for t in reversed(range(T)):
            if t == T - 1:
                nxt = 0.0 if ep.terminated else V[ep.states[T]]
                G[t] = ep.rewards[t] + gamma * nxt
            else:
                G[t] = ep.rewards[t] + gamma * ((1 - lam) * V[ep.states[t + 1]] + lam * G[t + 1])
        dV = np.zeros(n_states)
        for t in range(T):
            dV[ep.states[t]] += alpha * (G[t] - V[ep.states[t]])
        V = V + dV
    return V


def n_step_td_loop(episodes, n_states, alpha, gamma, n):
    """Sutton & Barto's n-step TD pseudo-code, line by line (episodes all terminated)."""
    V = np.zeros(n_states)
    for ep in episodes:
        T = ep.length
        S = list(ep.states)
        R = [0.0, *list(ep.rewards)]  # R[t] = R_t, t = 1..T
        t = 0
        while True:
            tau = t - n + 1
            if tau >= 0:
                G = sum(gamma ** (i - tau - 1) * R[i] for i in range(tau + 1, min(tau + n, T) + 1))
                if tau + n < T:
                    G += gamma**n * V[S[tau + n]]
                V[S[tau]] += alpha * (G - V[S[tau]])
            if tau == T - 1:
                break
            t += 1
    return V


def success_within(mdp, policy, goal, horizon):
    """P(reach ``goal`` within ``horizon`` steps) from each state, by repeated P_pi products."""
    P_pi, _ = mdp.markov_reward_process(policy)
    x = np.zeros(mdp.n_states)
    x[goal] = 1.0
    for _ in range(horizon):
        x = P_pi @ x
    return x
