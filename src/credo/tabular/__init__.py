"""credo.tabular: finite MDPs, dynamic programming and tabular model-free learners.

The foundations of seeds 000-002, each runnable and checked against an exact answer:

* models: :class:`FiniteMDP` (``[S, A, S]`` transitions, ``[S, A]`` or ``[S, A, S]`` rewards, terminal
  states), :class:`MarkovRewardProcess`, :class:`GridWorld` and its presets (``seed001``,
  ``sutton_barto_3_5``, ``dyna_maze``), Gymnasium toy-text environments via :func:`mdp_from_gymnasium`;
* planning: :func:`policy_evaluation` (iterative or exact), :func:`q_from_v`, :func:`greedy_policy`,
  :func:`policy_iteration`, :func:`value_iteration`;
* prediction: :func:`mc_prediction`, :func:`td0`, :func:`td_lambda`, :func:`n_step_td`;
* control: :func:`mc_control`, :func:`sarsa`, :func:`expected_sarsa`, :func:`q_learning`;
* the registry ``ALGORITHMS`` that ``credo tabular`` runs by name, and PNG plots;
* a tabular set policy with an exact gradient (:class:`SetPolicyBed`, :func:`default_bed`), the test
  bed of set-valued credit, and :func:`measure_gradient_quality`, the meter behind
  ``credo diagnose tabular``.
"""

from credo.tabular.control import expected_sarsa, mc_control, q_learning, sarsa
from credo.tabular.dp import (
    greedy_policy,
    policy_evaluation,
    policy_iteration,
    q_from_v,
    states_reaching_terminal,
    uniform_policy,
    value_iteration,
)
from credo.tabular.envs import MDPEnv, TabularProblem, gymnasium_layout, make_problem, mdp_from_gymnasium
from credo.tabular.episodes import Episode, LearningResult, evaluate_policy, run_episode, sample_episodes
from credo.tabular.gridworld import GRID_PRESETS, GridLayout, GridWorld, make_gridworld, seed001_gridworld
from credo.tabular.mdp import FiniteMDP, MarkovRewardProcess, random_mdp
from credo.tabular.plotting import plot_learning_curve, plot_values
from credo.tabular.prediction import mc_prediction, n_step_td, td0, td_lambda
from credo.tabular.registry import ALGORITHMS, TabularSettings, run_algorithm
from credo.tabular.set_policy import SetPolicyBed, default_bed, measure_gradient_quality

__all__ = [
    "ALGORITHMS",
    "GRID_PRESETS",
    "Episode",
    "FiniteMDP",
    "GridLayout",
    "GridWorld",
    "LearningResult",
    "MDPEnv",
    "MarkovRewardProcess",
    "SetPolicyBed",
    "TabularProblem",
    "TabularSettings",
    "default_bed",
    "evaluate_policy",
    "expected_sarsa",
    "greedy_policy",
    "gymnasium_layout",
    "make_gridworld",
    "make_problem",
    "mc_control",
    "mc_prediction",
    "measure_gradient_quality",
    "mdp_from_gymnasium",
    "n_step_td",
    "plot_learning_curve",
    "plot_values",
    "policy_evaluation",
    "policy_iteration",
    "q_from_v",
    "q_learning",
    "random_mdp",
    "run_algorithm",
    "run_episode",
    "sample_episodes",
    "sarsa",
    "seed001_gridworld",
    "states_reaching_terminal",
    "td0",
    "td_lambda",
    "uniform_policy",
    "value_iteration",
]
