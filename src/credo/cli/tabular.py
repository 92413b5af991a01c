"""``credo tabular``: run one tabular algorithm on a grid preset or a Gymnasium toy-text environment.

Examples::

    credo tabular value_iteration seed001
    credo tabular td_lambda seed001 --episodes 5000 --lam 0.8
    credo tabular q_learning FrozenLake-v1 --episodes 10000 --alpha 0.05 --epsilon 0.2 --progress
    credo tabular sarsa CliffWalking-v1 --episodes 500 --alpha 0.5
    credo tabular --list

It prints the values and the greedy policy (as text on grids), how the result compares with the
exact answer when the model is known, and writes two PNGs: the value function with greedy arrows and
the learning curve (episode returns, or the change per sweep for dynamic programming).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from credo.tabular.envs import GYMNASIUM_DEFAULT_GAMMA, make_problem
from credo.tabular.gridworld import GRID_PRESETS
from credo.tabular.plotting import plot_learning_curve, plot_values
from credo.tabular.registry import ALGORITHMS, TabularSettings


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tabular",
        help="run a tabular RL algorithm (DP, MC, TD, SARSA, Q-learning) and plot it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("algorithm", nargs="?", help="algorithm name (see --list)")
    parser.add_argument(
        "problem",
        nargs="?",
        default="seed001",
        help="grid preset (seed001, sutton_barto_3_5, dyna_maze, slippery_maze) or a Gymnasium id "
        "(FrozenLake-v1, CliffWalking-v1, Taxi-v4); default seed001",
    )
    parser.add_argument("--list", action="store_true", help="list algorithms and problems, then exit")
    parser.add_argument("--episodes", type=int, default=2_000, help="training episodes (model-free)")
    parser.add_argument("--alpha", type=float, default=None, help="step size (default per algorithm)")
    parser.add_argument("--epsilon", type=float, default=0.1, help="exploration rate (control)")
    parser.add_argument("--lam", type=float, default=0.9, help="lambda of td_lambda")
    parser.add_argument("--n", type=int, default=4, help="n of n_step_td")
    parser.add_argument("--trace", choices=("accumulating", "replacing"), default="accumulating")
    parser.add_argument("--offline", action="store_true", help="td_lambda: apply updates per episode")
    parser.add_argument("--gamma", type=float, default=None, help="override the problem's discount")
    parser.add_argument("--tol", type=float, default=1e-10, help="DP stopping tolerance")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=10_000, help="cap on steps per episode")
    parser.add_argument("--out", type=Path, default=Path("outputs/tabular"), help="folder for the PNGs")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    parser.set_defaults(func=run)


def _listing() -> str:

    width = max(len(name) for name in ALGORITHMS)
    lines = ["algorithms:"]
    lines += [f"  {a.name.ljust(width)}  [{a.kind}] {a.description}" for a in ALGORITHMS.values()]
    lines.append("problems:")
    lines += [f"  {name}" for name in GRID_PRESETS]
    lines += [f"  {name} (Gymnasium, gamma {g})" for name, g in GYMNASIUM_DEFAULT_GAMMA.items()]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:

    if args.list or args.algorithm is None:
        print(_listing())
        return 0 if args.list else 2
    if args.algorithm not in ALGORITHMS:
        print(f"error: unknown algorithm {args.algorithm!r}\n{_listing()}")
        return 2
    try:
        problem = make_problem(args.problem, gamma=args.gamma)
        settings = TabularSettings(
            episodes=args.episodes, alpha=args.alpha, epsilon=args.epsilon, lam=args.lam, n=args.n,
            trace=args.trace, online=not args.offline, tol=args.tol, seed=args.seed,
            max_steps=args.max_steps, progress=args.progress,
        )  # fmt: skip
        outcome = ALGORITHMS[args.algorithm].run(problem, settings)
    except (ValueError, TypeError) as error:
        print(f"error: {error}")
        return 2

    print(f"{outcome.algorithm} on {problem.name} (gamma={problem.gamma})")
    if problem.layout is not None:
        print("\nstate values:")
        print(problem.layout.render_values(outcome.values))
        if outcome.policy is not None:
            print("\ngreedy policy:")
            print(problem.layout.render_policy(outcome.policy))
    for note in outcome.notes:
        print(f"- {note}")

    stem = f"{problem.name.replace('/', '_')}-{outcome.algorithm}"
    values_png = plot_values(
        outcome.values,
        args.out / f"{stem}-values.png",
        layout=problem.layout,
        policy=outcome.policy,
        title=f"{outcome.algorithm} on {problem.name}: V and greedy policy",
    )
    curve_png = plot_learning_curve(
        outcome.curve,
        args.out / f"{stem}-curve.png",
        title=f"{outcome.algorithm} on {problem.name}",
        xlabel=outcome.curve_xlabel,
        ylabel=outcome.curve_label,
        log_scale=outcome.curve_log and bool((outcome.curve > 0).all()),
        window=1 if outcome.result is None else None,
        reference=outcome.reference,
        reference_label="optimal expected return",
    )
    print(f"\nvalue function + greedy policy: {values_png}")
    print(f"learning curve: {curve_png}")
    return 0
