"""Every tabular algorithm by name, with one calling convention (used by ``credo tabular``).

``ALGORITHMS[name].run(problem, settings) -> TabularRun``. Planning algorithms need the model
(``problem.mdp``); prediction algorithms evaluate the uniform random policy (seed 001's 0.25 policy);
control algorithms learn from the environment. When the model is known, each run also reports how
close it came to the exact answer, so a learner can see whether to trust it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from credo.tabular import control, dp, prediction
from credo.tabular.envs import TabularProblem
from credo.tabular.episodes import FloatArray, LearningResult

Kind = Literal["planning", "prediction", "control"]


@dataclass(frozen=True)
class TabularSettings:
    """Hyper-parameters shared by the command line and the registry (each algorithm reads its own).

    ``alpha=None`` means the algorithm's default: 0.1 for TD prediction, sample averages for Monte
    Carlo, 0.1 for control.
    """

    episodes: int = 2_000
    alpha: float | None = None
    epsilon: float = 0.1
    lam: float = 0.9
    n: int = 4
    trace: Literal["accumulating", "replacing"] = "accumulating"
    online: bool = True
    tol: float = 1e-10
    seed: int = 0
    max_steps: int = 10_000
    progress: bool = False


@dataclass
class TabularRun:
    """The outcome of one algorithm on one problem, ready to print and plot.

    Attributes:
        algorithm: its name.
        values: ``[S]`` the value function found.
        policy: ``[S, A]`` the greedy policy (None when none can be formed).
        curve: what improved over time (episode returns, or the change per DP sweep).
        curve_label, curve_xlabel: axis labels; curve_log: plot on a log scale.
        result: the learner's :class:`LearningResult` (model-free algorithms).
        notes: lines comparing the run with the exact answer, when the model is known.
        reference: a value to draw on the curve (e.g. the optimal return), or None.
    """

    algorithm: str
    values: FloatArray
    policy: FloatArray | None
    curve: FloatArray
    curve_label: str
    curve_xlabel: str
    curve_log: bool = False
    result: LearningResult | None = None
    notes: list[str] = field(default_factory=list)
    reference: float | None = None


@dataclass(frozen=True)
class Algorithm:
    name: str
    kind: Kind
    description: str
    run: Callable[[TabularProblem, TabularSettings], TabularRun]


def _require_model(problem: TabularProblem, name: str):  # -> FiniteMDP
    if problem.mdp is None:
        raise ValueError(f"{name} plans with the model, but {problem.name!r} has no transition table")
    return problem.mdp


def _start_value(problem: TabularProblem, values: FloatArray) -> float:
    assert problem.mdp is not None
    return float(problem.mdp.initial_distribution @ values)


# ---------------------------------------------------------------------- planning


def _run_value_iteration(problem: TabularProblem, settings: TabularSettings) -> TabularRun:
    mdp = _require_model(problem, "value_iteration")
    history: list[float] = []
    values, policy = dp.value_iteration(mdp, tol=settings.tol, history=history)
    notes = [
        f"{len(history)} sweeps; optimal value of the start distribution: {_start_value(problem, values):.4f}"
    ]
    return TabularRun("value_iteration", values, policy, np.asarray(history), "max |V_k+1 - V_k|", "sweep",
                      curve_log=True, notes=notes)  # fmt: skip


def _run_policy_iteration(problem: TabularProblem, settings: TabularSettings) -> TabularRun:
    mdp = _require_model(problem, "policy_iteration")
    history: list[int] = []
    values, policy = dp.policy_iteration(mdp, tol=settings.tol, history=history)
    notes = [f"{len(history)} improvement steps; start value {_start_value(problem, values):.4f}"]
    return TabularRun("policy_iteration", values, policy, np.asarray(history, dtype=float),
                      "states whose action changed", "improvement step", notes=notes)  # fmt: skip


def _run_policy_evaluation(problem: TabularProblem, settings: TabularSettings) -> TabularRun:
    mdp = _require_model(problem, "policy_evaluation")
    uniform = dp.uniform_policy(mdp.n_states, mdp.n_actions)
    history: list[float] = []
    values = dp.policy_evaluation(mdp, uniform, tol=settings.tol, history=history)
    greedy = dp.greedy_policy(dp.q_from_v(mdp, values), ties="uniform")
    notes = [f"uniform random policy, {len(history)} sweeps; start value {_start_value(problem, values):.4f}",
             "arrows: the greedy policy of one improvement step"]  # fmt: skip
    return TabularRun("policy_evaluation", values, greedy, np.asarray(history), "max |V_k+1 - V_k|", "sweep",
                      curve_log=True, notes=notes)  # fmt: skip


# ---------------------------------------------------------------------- prediction


def _prediction_runner(
    name: str, learn: Callable[[TabularProblem, np.ndarray, TabularSettings], LearningResult]
) -> Callable[[TabularProblem, TabularSettings], TabularRun]:
    def run(problem: TabularProblem, settings: TabularSettings) -> TabularRun:
        n_states, n_actions = int(problem.env.observation_space.n), int(problem.env.action_space.n)
        uniform = dp.uniform_policy(n_states, n_actions)
        result = learn(problem, uniform, settings)
        notes = ["evaluating the uniform random policy"]
        policy = None
        if problem.mdp is not None:
            policy = dp.greedy_policy(dp.q_from_v(problem.mdp, result.values), ties="uniform")
            try:
                method = "exact" if n_states <= 2_000 else "iterative"
                exact = dp.policy_evaluation(problem.mdp, uniform, method=method)
                rmse = float(np.sqrt(np.mean((result.values - exact)[~problem.mdp.terminal_mask] ** 2)))
                notes.append(f"RMS error against the exact V_pi (linear solve): {rmse:.4f}")
            except ValueError as error:
                notes.append(f"no exact V_pi to compare with: {error}")
            notes.append("arrows: the greedy policy of one improvement step on the learned V")
        return TabularRun(name, result.values, policy, result.episode_returns, "episode return", "episode",
                          result=result, notes=notes)  # fmt: skip

    return run


def _alpha(settings: TabularSettings, default: float) -> float:
    return default if settings.alpha is None else settings.alpha


def _common(problem: TabularProblem, settings: TabularSettings) -> dict:
    return {"gamma": problem.gamma, "seed": settings.seed, "max_steps": settings.max_steps,
            "progress": settings.progress, "n_episodes": settings.episodes}  # fmt: skip


def _mc(first_visit: bool) -> Callable[[TabularProblem, np.ndarray, TabularSettings], LearningResult]:
    return lambda p, pi, s: prediction.mc_prediction(p.env, pi, first_visit=first_visit, alpha=s.alpha,
                                                     **_common(p, s))  # fmt: skip


def _td0(p: TabularProblem, pi: np.ndarray, s: TabularSettings) -> LearningResult:
    return prediction.td0(p.env, pi, alpha=_alpha(s, 0.1), **_common(p, s))


def _td_lambda(p: TabularProblem, pi: np.ndarray, s: TabularSettings) -> LearningResult:
    return prediction.td_lambda(p.env, pi, lam=s.lam, alpha=_alpha(s, 0.1), trace=s.trace, online=s.online,
                                **_common(p, s))  # fmt: skip


def _n_step(p: TabularProblem, pi: np.ndarray, s: TabularSettings) -> LearningResult:
    return prediction.n_step_td(p.env, pi, n=s.n, alpha=_alpha(s, 0.1), **_common(p, s))


# ---------------------------------------------------------------------- control


def _control_runner(
    name: str, learn: Callable[[TabularProblem, TabularSettings], LearningResult]
) -> Callable[[TabularProblem, TabularSettings], TabularRun]:
    def run(problem: TabularProblem, settings: TabularSettings) -> TabularRun:
        result = learn(problem, settings)
        policy = result.greedy_policy
        notes = [result.summary()]
        reference = None
        if problem.mdp is not None:
            optimal, _ = dp.value_iteration(problem.mdp)
            best = _start_value(problem, optimal)
            try:
                method = "exact" if problem.mdp.n_states <= 2_000 else "iterative"
                learned = _start_value(problem, dp.policy_evaluation(problem.mdp, policy, method=method))
                notes.append(f"start value of the learned greedy policy: {learned:.4f} (optimal {best:.4f})")
            except ValueError as error:
                notes.append(f"the learned greedy policy cannot be evaluated exactly: {error}")
            if problem.gamma == 1.0:
                reference = best
        return TabularRun(name, result.values, policy, result.episode_returns, "episode return", "episode",
                          result=result, notes=notes, reference=reference)  # fmt: skip

    return run


def _control_kwargs(p: TabularProblem, s: TabularSettings) -> dict:
    return {"gamma": p.gamma, "seed": s.seed, "max_steps": s.max_steps, "progress": s.progress,
            "n_episodes": s.episodes, "epsilon": s.epsilon}  # fmt: skip


ALGORITHMS: dict[str, Algorithm] = {
    spec.name: spec
    for spec in (
        Algorithm("value_iteration", "planning", "Bellman optimality sweeps until V stops moving",
                  _run_value_iteration),
        Algorithm("policy_iteration", "planning", "exact evaluation + greedy improvement until stable",
                  _run_policy_iteration),
        Algorithm("policy_evaluation", "planning", "iterative evaluation of the uniform random policy",
                  _run_policy_evaluation),
        Algorithm("mc_prediction", "prediction", "first-visit Monte Carlo prediction (uniform policy)",
                  _prediction_runner("mc_prediction", _mc(True))),
        Algorithm("mc_every_visit", "prediction", "every-visit Monte Carlo prediction (uniform policy)",
                  _prediction_runner("mc_every_visit", _mc(False))),
        Algorithm("td0", "prediction", "TD(0) prediction (uniform policy)", _prediction_runner("td0", _td0)),
        Algorithm("td_lambda", "prediction", "TD(lambda) with eligibility traces (uniform policy)",
                  _prediction_runner("td_lambda", _td_lambda)),
        Algorithm("n_step_td", "prediction", "n-step TD prediction (uniform policy)",
                  _prediction_runner("n_step_td", _n_step)),
        Algorithm("mc_control", "control", "on-policy first-visit Monte Carlo control, epsilon-soft",
                  _control_runner("mc_control", lambda p, s: control.mc_control(
                      p.env, alpha=s.alpha, **_control_kwargs(p, s)))),
        Algorithm("sarsa", "control", "SARSA (on-policy TD control)",
                  _control_runner("sarsa", lambda p, s: control.sarsa(
                      p.env, alpha=_alpha(s, 0.1), **_control_kwargs(p, s)))),
        Algorithm("expected_sarsa", "control", "Expected SARSA",
                  _control_runner("expected_sarsa", lambda p, s: control.expected_sarsa(
                      p.env, alpha=_alpha(s, 0.1), **_control_kwargs(p, s)))),
        Algorithm("q_learning", "control", "Q-learning (off-policy TD control)",
                  _control_runner("q_learning", lambda p, s: control.q_learning(
                      p.env, alpha=_alpha(s, 0.1), **_control_kwargs(p, s)))),
    )
}  # fmt: skip


def run_algorithm(name: str, problem: TabularProblem, settings: TabularSettings | None = None) -> TabularRun:
    """Run a registered algorithm by name on a problem (see ``ALGORITHMS``)."""
    try:
        algorithm = ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; known: {', '.join(ALGORITHMS)}") from None
    return algorithm.run(problem, settings or TabularSettings())
