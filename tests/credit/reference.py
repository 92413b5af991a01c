"""Slow, obvious reference implementations: Python loops over rows and time, in float64."""

from __future__ import annotations

import torch


def returns_loop(rewards, dones, gamma, bootstrap=None, mask=None):
    B, T = rewards.shape
    out = torch.zeros(B, T, dtype=torch.float64)
    for b in range(B):
        g = 0.0 if bootstrap is None else float(bootstrap[b])
        for t in reversed(range(T)):
            if mask is not None and not mask[b, t]:
                continue
            if dones is not None and dones[b, t]:
                g = 0.0
            g = float(rewards[b, t]) + gamma * g
            out[b, t] = g
    return out


def gae_loop(rewards, values, next_values, dones, terminated, gamma, lam, mask=None):
    B, T = rewards.shape
    out = torch.zeros(B, T, dtype=torch.float64)
    for b in range(B):
        a = 0.0
        for t in reversed(range(T)):
            if mask is not None and not mask[b, t]:
                continue
            bootstrap = 0.0 if terminated[b, t] else float(next_values[b, t])
            delta = float(rewards[b, t]) + gamma * bootstrap - float(values[b, t])
            a = delta + (0.0 if dones[b, t] else gamma * lam * a)
            out[b, t] = a
    return out


def lambda_return_recursive(rewards, values, dones, terminated, gamma, lam):
    """G_t = r_t + gamma (1 - term_t) [(1 - lam) V(s_{t+1}) + lam G_{t+1}], and at a truncation
    G_t = r_t + gamma V(s_{t+1}); V(s_{t+1}) = values[t+1] inside an episode."""
    B, T = rewards.shape
    out = torch.zeros(B, T, dtype=torch.float64)
    for b in range(B):
        g_next = 0.0
        for t in reversed(range(T)):
            if terminated[b, t]:
                g = float(rewards[b, t])
            elif dones[b, t]:
                g = (
                    float(rewards[b, t]) + gamma * float(values[b, t + 1])
                    if t + 1 < T
                    else float(rewards[b, t])
                )
            else:
                v_next = float(values[b, t + 1]) if t + 1 < T else 0.0
                g = float(rewards[b, t]) + gamma * ((1 - lam) * v_next + lam * g_next)
            out[b, t] = g
            g_next = g
    return out


def rloo_loop(rewards):
    N, G = rewards.shape
    out = torch.zeros(N, G, dtype=torch.float64)
    for n in range(N):
        for i in range(G):
            others = [float(rewards[n, j]) for j in range(G) if j != i]
            out[n, i] = float(rewards[n, i]) - sum(others) / len(others)
    return out


def grpo_loop(rewards, scale=True, eps=1e-6):
    N, G = rewards.shape
    out = torch.zeros(N, G, dtype=torch.float64)
    for n in range(N):
        xs = [float(r) for r in rewards[n]]
        mean = sum(xs) / G
        std = (sum((x - mean) ** 2 for x in xs) / (G - 1)) ** 0.5
        for i in range(G):
            out[n, i] = (xs[i] - mean) / (std + eps) if scale else xs[i] - mean
    return out


def spans_loop(span_credit, spans, mask, outside):
    B, T = mask.shape
    out = torch.zeros(B, T, dtype=torch.float64)
    for b in range(B):
        for t in range(T):
            if not mask[b, t]:
                continue
            value = float(outside[b])
            for k in range(spans.shape[1]):
                s, e = int(spans[b, k, 0]), int(spans[b, k, 1])
                if s >= 0 and s <= t < e:
                    value = float(span_credit[b, k])
            out[b, t] = value
    return out
