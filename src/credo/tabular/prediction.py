"""Model-free prediction: estimate ``V_pi`` of a fixed policy from episodes (seeds 000 and 001).

* Monte Carlo (seed 001): wait for the end of the episode, then move ``V(S_t)`` toward the return
  ``G_t``; first-visit or every-visit; sample averages (``alpha=None``) or a constant step ``alpha``.
* TD(0) (seed 000's ``td_update``): ``V(S_t) += alpha [R_{t+1} + gamma V(S_{t+1}) - V(S_t)]``.
* n-step TD (Sutton & Barto §7.1): the target is ``n`` rewards then ``gamma^n V(S_{t+n})``.
* TD(lambda) with eligibility traces (seed 000's ``TDLambda``, the backward view)::

      delta_t = R_{t+1} + gamma V(S_{t+1}) - V(S_t)
      e <- gamma lambda e;  e(S_t) += 1   (accumulating)  or  e(S_t) = 1  (replacing)
      V <- V + alpha delta_t e            (online: every step; offline: summed, applied at the end)

Every learner takes either an environment plus a policy (it samples ``n_episodes`` episodes, seeded),
or a fixed list of :class:`~credo.tabular.episodes.Episode` (then ``gamma`` must be given). Fixed
episode sets make the classic equivalences checkable exactly: offline TD(1) equals every-visit
constant-alpha Monte Carlo, TD(lambda=0) equals TD(0), and n-step TD with n=1 equals TD(0).

Terminal states have value 0; a truncated episode bootstraps from the value of its last state (TD
methods) or simply stops summing rewards (Monte Carlo).

Reference: Sutton & Barto (2018) ch. 5.1, 6.1, 7.1, 12.1-12.3; Sutton (1988) for TD(lambda).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from tqdm.auto import tqdm

from credo.tabular._checks import check_count, check_gamma, check_probability, check_step_size
from credo.tabular.episodes import (
    DiscreteEnv,
    Episode,
    FloatArray,
    LearningResult,
    as_episode_list,
    check_initial_values,
    env_sizes,
    resolve_gamma,
    sample_episodes,
)

Trace = Literal["accumulating", "replacing"]


# ---------------------------------------------------------------------- one-episode updates


def _next_value(values: FloatArray, episode: Episode, t: int) -> float:
    """``V(S_{t+1})``, or 0 when ``S_{t+1}`` is the terminal state that ends the episode."""
    if t == episode.length - 1 and episode.terminated:
        return 0.0
    return float(values[episode.states[t + 1]])


def td0_episode_update(values: FloatArray, episode: Episode, alpha: float, gamma: float) -> FloatArray:
    """Online TD(0) over one episode, in place: ``V(S_t) += alpha (R_{t+1} + gamma V(S_{t+1}) - V(S_t))``."""
    for t in range(episode.length):
        state = int(episode.states[t])
        target = float(episode.rewards[t]) + gamma * _next_value(values, episode, t)
        values[state] += alpha * (target - values[state])
    return values


def td_lambda_episode_update(
    values: FloatArray,
    episode: Episode,
    alpha: float,
    gamma: float,
    lam: float,
    *,
    trace: Trace = "accumulating",
    online: bool = True,
) -> FloatArray:
    """TD(lambda) over one episode with eligibility traces ``e [S]``, in place (backward view).

    Online updates change ``V`` after every step, exactly as seed 000's ``TDLambda.update``; offline
    updates sum ``alpha delta_t e_t`` with ``V`` held fixed and apply the sum at the end of the episode.
    """
    traces = np.zeros_like(values)
    pending = np.zeros_like(values)
    decay = gamma * lam
    for t in range(episode.length):
        state = int(episode.states[t])
        delta = float(episode.rewards[t]) + gamma * _next_value(values, episode, t) - values[state]
        traces *= decay
        if trace == "accumulating":
            traces[state] += 1.0
        else:
            traces[state] = 1.0
        if online:
            values += alpha * delta * traces
        else:
            pending += alpha * delta * traces
    if not online:
        values += pending
    return values


def n_step_td_episode_update(
    values: FloatArray, episode: Episode, alpha: float, gamma: float, n: int
) -> FloatArray:
    """n-step TD over one episode, in place (Sutton & Barto §7.1, in the online order).

    ``G_{t:t+n} = R_{t+1} + ... + gamma^{n-1} R_{t+n} + gamma^n V(S_{t+n})`` (no bootstrap past a
    terminal state); ``V(S_t)`` is updated at time ``t + n`` with the values current then.
    """
    length = episode.length
    rewards = episode.rewards
    for tau in range(length):
        end = min(tau + n, length)
        discounts = gamma ** np.arange(end - tau)
        target = float(discounts @ rewards[tau:end])
        if end < length or not episode.terminated:
            target += gamma ** (end - tau) * float(values[episode.states[end]])
        state = int(episode.states[tau])
        values[state] += alpha * (target - values[state])
    return values


def mc_episode_update(
    values: FloatArray,
    counts: FloatArray,
    episode: Episode,
    gamma: float,
    *,
    first_visit: bool = True,
    alpha: float | None = None,
) -> FloatArray:
    """Monte Carlo over one finished episode, in place.

    ``alpha=None``: ``V(s)`` is the average of all returns seen from ``s`` (``counts`` holds how many).
    ``alpha=float``: constant-step MC, ``V(s) += alpha sum_{t: S_t = s} (G_t - V(s))`` with ``V`` fixed
    during the episode (the offline form that TD(1) reproduces exactly).
    """
    returns = episode.returns(gamma)
    states = episode.states[:-1]
    visits = np.ones(episode.length, dtype=bool)
    if first_visit:
        _, first = np.unique(states, return_index=True)
        visits[:] = False
        visits[first] = True
    if alpha is None:
        for t in np.flatnonzero(visits):
            state = int(states[t])
            counts[state] += 1.0
            values[state] += (returns[t] - values[state]) / counts[state]
        return values
    errors = returns[visits] - values[states[visits]]
    values += alpha * np.bincount(states[visits], weights=errors, minlength=len(values))
    np.add.at(counts, states[visits], 1.0)
    return values


# ---------------------------------------------------------------------- learners


def _episode_source(
    source: DiscreteEnv | Sequence[Episode],
    policy: ArrayLike | None,
    n_episodes: int | None,
    gamma: float | None,
    n_states: int | None,
    seed: int | np.random.Generator | None,
    max_steps: int,
) -> tuple[Iterable[Episode], int, float, int]:
    """``(episodes, n_states, gamma, count)`` from an environment or a fixed list of episodes."""
    if hasattr(source, "step") and hasattr(source, "reset"):
        env_states, _ = env_sizes(source)  # type: ignore[arg-type]
        if policy is None:
            raise ValueError("policy [S, A] is required to sample episodes from an environment")
        if n_episodes is None:
            raise ValueError("n_episodes is required to sample episodes from an environment")
        check_count("n_episodes", n_episodes)
        discount = resolve_gamma(source, gamma)
        episodes = sample_episodes(source, policy, n_episodes, seed=seed, max_steps=max_steps)  # type: ignore[arg-type]
        return episodes, env_states, discount, n_episodes
    episode_list = as_episode_list(source, "source")
    if gamma is None:
        raise ValueError("gamma must be given when learning from a fixed list of episodes")
    discount = check_gamma("gamma", gamma)
    largest = max((int(e.states.max()) for e in episode_list), default=-1) + 1
    if n_states is None:
        n_states = largest
    elif n_states < largest:
        raise ValueError(f"n_states={n_states} but the episodes visit state {largest - 1}")
    return episode_list, n_states, discount, len(episode_list)


def _predict(
    name: str,
    update: object,
    source: DiscreteEnv | Sequence[Episode],
    policy: ArrayLike | None,
    *,
    n_episodes: int | None,
    gamma: float | None,
    n_states: int | None,
    seed: int | np.random.Generator | None,
    max_steps: int,
    initial_values: ArrayLike | None,
    progress: bool,
    params: dict[str, object],
) -> LearningResult:
    check_count("max_steps", max_steps)
    episodes, size, discount, count = _episode_source(
        source, policy, n_episodes, gamma, n_states, seed, max_steps
    )
    values = check_initial_values(initial_values, size)
    returns, lengths = [], []
    for episode in tqdm(episodes, total=count, desc=name, disable=not progress, leave=False):
        update(values, episode, discount)  # type: ignore[operator]
        returns.append(episode.total_reward)
        lengths.append(episode.length)
    return LearningResult(
        algorithm=name,
        values=values,
        q=None,
        episode_returns=np.asarray(returns, dtype=np.float64),
        episode_lengths=np.asarray(lengths, dtype=np.int64),
        params={"gamma": discount, **params},
    )


def mc_prediction(
    source: DiscreteEnv | Sequence[Episode],
    policy: ArrayLike | None = None,
    *,
    n_episodes: int | None = None,
    first_visit: bool = True,
    alpha: float | None = None,
    gamma: float | None = None,
    n_states: int | None = None,
    seed: int | np.random.Generator | None = None,
    max_steps: int = 10_000,
    initial_values: ArrayLike | None = None,
    progress: bool = False,
) -> LearningResult:
    """Monte Carlo prediction of ``V_pi`` (first-visit or every-visit; Sutton & Barto §5.1, §6.1).

    Args:
        source: an environment (then ``policy [S, A]`` and ``n_episodes`` are required) or a list of
            :class:`Episode`.
        first_visit: count only the first visit to a state in each episode.
        alpha: None for sample averages; a float for constant-step (offline per episode) updates.
        gamma: discount (default: the environment's ``gamma``; required for episode lists).
        n_states: number of states for episode lists (default: largest visited + 1).
        seed: seed or Generator for sampling episodes.
        max_steps: cut episodes off after this many steps.
        initial_values: ``[S]`` start values (default 0).
        progress: show a tqdm bar.
    """
    if alpha is not None:
        check_step_size("alpha", alpha)
    counts: dict[str, FloatArray] = {}

    def update(values: FloatArray, episode: Episode, discount: float) -> None:
        visits = counts.setdefault("n", np.zeros_like(values))
        mc_episode_update(values, visits, episode, discount, first_visit=first_visit, alpha=alpha)

    name = "mc_first_visit" if first_visit else "mc_every_visit"
    return _predict(
        name, update, source, policy, n_episodes=n_episodes, gamma=gamma, n_states=n_states, seed=seed,
        max_steps=max_steps, initial_values=initial_values, progress=progress,
        params={"alpha": alpha, "first_visit": first_visit},
    )  # fmt: skip


def td0(
    source: DiscreteEnv | Sequence[Episode],
    policy: ArrayLike | None = None,
    *,
    n_episodes: int | None = None,
    alpha: float = 0.1,
    gamma: float | None = None,
    n_states: int | None = None,
    seed: int | np.random.Generator | None = None,
    max_steps: int = 10_000,
    initial_values: ArrayLike | None = None,
    progress: bool = False,
) -> LearningResult:
    """TD(0) prediction of ``V_pi`` (seed 000's ``td_update``; Sutton 1988; Sutton & Barto §6.1).

    Arguments as :func:`mc_prediction`; ``alpha`` is the step size.
    """
    step = check_step_size("alpha", alpha)
    return _predict(
        "td0", lambda v, e, g: td0_episode_update(v, e, step, g), source, policy, n_episodes=n_episodes,
        gamma=gamma, n_states=n_states, seed=seed, max_steps=max_steps, initial_values=initial_values,
        progress=progress, params={"alpha": step},
    )  # fmt: skip


def td_lambda(
    source: DiscreteEnv | Sequence[Episode],
    policy: ArrayLike | None = None,
    *,
    lam: float = 0.9,
    n_episodes: int | None = None,
    alpha: float = 0.1,
    trace: Trace = "accumulating",
    online: bool = True,
    gamma: float | None = None,
    n_states: int | None = None,
    seed: int | np.random.Generator | None = None,
    max_steps: int = 10_000,
    initial_values: ArrayLike | None = None,
    progress: bool = False,
) -> LearningResult:
    """TD(lambda) prediction with eligibility traces (seed 000's ``TDLambda``; Sutton & Barto §12.2).

    Args:
        lam: trace decay lambda in [0, 1] (0: TD(0); 1 offline: every-visit constant-alpha MC).
        trace: ``"accumulating"`` (``e(s) += 1``, as seed 000) or ``"replacing"`` (``e(s) = 1``;
            Singh & Sutton 1996).
        online: update V after every step (seed 000) or once per episode (offline).
        other arguments: as :func:`mc_prediction`; ``alpha`` is the step size.
    """
    step = check_step_size("alpha", alpha)
    decay = check_probability("lam", lam)
    if trace not in ("accumulating", "replacing"):
        raise ValueError(f"trace must be 'accumulating' or 'replacing', got {trace!r}")

    def update(values: FloatArray, episode: Episode, discount: float) -> None:
        td_lambda_episode_update(values, episode, step, discount, decay, trace=trace, online=online)

    return _predict(
        "td_lambda", update, source, policy, n_episodes=n_episodes, gamma=gamma, n_states=n_states,
        seed=seed, max_steps=max_steps, initial_values=initial_values, progress=progress,
        params={"alpha": step, "lam": decay, "trace": trace, "online": online},
    )  # fmt: skip


def n_step_td(
    source: DiscreteEnv | Sequence[Episode],
    policy: ArrayLike | None = None,
    *,
    n: int = 4,
    n_episodes: int | None = None,
    alpha: float = 0.1,
    gamma: float | None = None,
    n_states: int | None = None,
    seed: int | np.random.Generator | None = None,
    max_steps: int = 10_000,
    initial_values: ArrayLike | None = None,
    progress: bool = False,
) -> LearningResult:
    """n-step TD prediction (Sutton & Barto §7.1). ``n=1`` is TD(0); ``n >= T`` is constant-alpha MC.

    Arguments as :func:`mc_prediction`; ``n`` is the number of rewards before bootstrapping.
    """
    step = check_step_size("alpha", alpha)
    horizon = check_count("n", n)
    return _predict(
        "n_step_td", lambda v, e, g: n_step_td_episode_update(v, e, step, g, horizon), source, policy,
        n_episodes=n_episodes, gamma=gamma, n_states=n_states, seed=seed, max_steps=max_steps,
        initial_values=initial_values, progress=progress, params={"alpha": step, "n": horizon},
    )  # fmt: skip
