"""``credo methods``: demonstrations of credit assignment beyond outcome rewards (docs/methods.md).

Examples::

    credo methods her                 # DQN with and without HER on 8-bit flipping
    credo methods her --bits 15 --episodes 600
    credo methods coma                # COMA (learned critic) vs a shared team reward, 5 agents x 5 steps
    credo methods coma --critic exact # the same with the exact Q table as critic
    credo methods coma --game matrix  # the one-step 10-agent team game (exact critic)
    credo methods shaping             # Q-learning with and without phi = -distance shaping

Each prints a short table and writes a PNG (``--out``, default ``outputs/methods``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from credo.methods.coma import RelayGame, coordination_reward, train_matrix_game, train_relay_game
from credo.methods.her import train_bitflip
from credo.methods.shaping import (
    compare_learning,
    distance_potential,
    grid_distances,
    optimal_action_sets,
    shape_mdp,
    shaping_gridworld,
)
from credo.threads import one_thread


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "methods",
        help="demonstrate HER, COMA and potential-based shaping (progress bar, table, PNG)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("method", choices=("her", "coma", "shaping"))
    parser.add_argument("--out", type=Path, default=Path("outputs/methods"), help="folder of the PNG")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default per method)")
    parser.add_argument("--bits", type=int, default=8, help="her: number of bits")
    parser.add_argument("--episodes", type=int, default=None, help="her/shaping: training episodes")
    parser.add_argument(
        "--game",
        choices=("relay", "matrix"),
        default="relay",
        help="coma: the 5-step relay game (delayed team reward) or the one-step team game",
    )
    parser.add_argument(
        "--critic",
        choices=("learned", "exact"),
        default="learned",
        help="coma, relay game: learned centralised critic (TD(lambda), target net) or the exact Q table",
    )
    parser.add_argument(
        "--agents", type=int, default=None, help="coma: number of agents (relay 5, matrix 10)"
    )
    parser.add_argument("--updates", type=int, default=150, help="coma: policy updates")
    parser.add_argument(
        "--lr", type=float, default=None, help="coma: step size of both methods (relay 8, matrix 16)"
    )
    parser.add_argument("--size", type=int, default=10, help="shaping: grid size")
    parser.set_defaults(func=run)


def _figure() -> Figure:
    return Figure(figsize=(6.0, 3.6), dpi=110, layout="constrained")


def _table(header: tuple[str, ...], rows: list[tuple]) -> str:
    cells = [tuple(str(c) for c in header)] + [tuple(str(c) for c in row) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _her(args: argparse.Namespace) -> Path:
    with one_thread():
        return _her_runs(args)


def _her_runs(args: argparse.Namespace) -> Path:
    episodes = args.episodes or 300
    seeds = args.seeds or 1
    fig = _figure()
    ax = fig.add_subplot()
    rows = []
    for strategy in ("future", "final", "none"):
        for seed in tqdm(range(seeds), desc=f"her {strategy}"):
            run = train_bitflip(
                args.bits, strategy=strategy, episodes=episodes, eval_every=max(1, episodes // 10), seed=seed
            )
            label = "DQN (no HER)" if strategy == "none" else f"DQN + HER {strategy}"
            ax.plot(run.episodes_at, run.success, marker="o", label=label if seed == 0 else None,
                    color={"future": "C0", "final": "C1", "none": "C3"}[strategy])  # fmt: skip
            first = next((e for e, s in zip(run.episodes_at, run.success) if s >= 0.9), None)
            rows.append((strategy, seed, f"{run.success[-1]:.2f}", first or "-", run.env_steps))
    ax.set(xlabel="training episodes", ylabel="greedy success rate", title=f"bit flipping, n={args.bits}")
    ax.set_ylim(-0.02, 1.02)
    ax.legend()
    print(_table(("strategy", "seed", "final success", "episodes to 90%", "env steps"), rows))
    path = args.out / f"her-bitflip-{args.bits}.png"
    fig.savefig(path)
    return path


def _coma(args: argparse.Namespace) -> Path:
    if args.game == "matrix":
        args.agents, args.lr = args.agents or 10, args.lr or 16.0
        return _coma_matrix(args)
    args.agents, args.lr = args.agents or 5, args.lr or 8.0
    with one_thread():
        return _coma_relay(args)


def _coma_relay(args: argparse.Namespace) -> Path:
    seeds = args.seeds or 5
    game = RelayGame(args.agents)
    fig = _figure()
    ax = fig.add_subplot()
    rows = []
    for method, color in (("coma", "C0"), ("reinforce", "C3")):
        finals, errors = [], []
        for seed in tqdm(range(seeds), desc=f"coma relay: {method}"):
            run = train_relay_game(
                method, game, critic=args.critic, updates=args.updates, batch=8, lr=args.lr, seed=seed
            )
            label = f"COMA ({args.critic} critic)" if method == "coma" else "REINFORCE (shared team return)"
            ax.plot(run.optimal_probability, color=color, alpha=0.7, label=label if seed == 0 else None)
            finals.append(run.optimal_probability[-1])
            errors.append(float(run.critic_error[-20:].mean()))
        f = np.asarray(finals)
        error = f"{np.mean(errors):.3f}" if method == "coma" and args.critic == "learned" else "-"
        rows.append((method, run.critic, f"{f.mean():.3f}", f"{f.min():.3f}", int((f > 0.9).sum()), error))
    ax.set(
        xlabel="policy updates",
        ylabel="P(optimal plan)",
        title=f"{args.agents}-agent relay game, {game.horizon} steps, reward at the end",
    )
    ax.legend()
    header = ("method", "critic", "mean P(opt)", "min P(opt)", f"seeds > 0.9 (of {seeds})", "critic |Q - Q*|")
    print(_table(header, rows))
    suffix = "" if args.critic == "learned" else f"-{args.critic}"
    path = args.out / f"coma-{args.agents}-agents{suffix}.png"
    fig.savefig(path)
    return path


def _coma_matrix(args: argparse.Namespace) -> Path:
    seeds = args.seeds or 5
    reward = coordination_reward(args.agents, bonus=0.0)
    fig = _figure()
    ax = fig.add_subplot()
    rows = []
    for method, color in (("coma", "C0"), ("reinforce", "C3")):
        finals = []
        for seed in tqdm(range(seeds), desc=f"coma game: {method}"):
            run = train_matrix_game(
                method, reward, args.agents, 3, updates=args.updates, batch=2, lr=args.lr, seed=seed
            )
            label = "COMA (per-agent credit)" if method == "coma" else "REINFORCE (shared team reward)"
            ax.plot(run.optimal_probability, color=color, alpha=0.7, label=label if seed == 0 else None)
            finals.append(run.optimal_probability[-1])
        finals_array = np.asarray(finals)
        rows.append(
            (
                method,
                f"{finals_array.mean():.3f}",
                f"{finals_array.min():.3f}",
                int((finals_array > 0.9).sum()),
            )
        )
    ax.set(xlabel="policy updates", ylabel="P(optimal joint action)", title=f"{args.agents}-agent team game")
    ax.legend()
    print(_table(("method", "mean P(opt)", "min P(opt)", f"seeds > 0.9 (of {seeds})"), rows))
    path = args.out / f"coma-matrix-{args.agents}-agents.png"
    fig.savefig(path)
    return path


def _shaping(args: argparse.Namespace) -> Path:
    grid = shaping_gridworld(args.size)
    goal = next(iter(grid.terminals))
    mdp = grid.to_mdp()
    same = bool(
        (
            optimal_action_sets(mdp) == optimal_action_sets(shape_mdp(mdp, distance_potential(grid, goal)))
        ).all()
    )
    shortest = int(grid_distances(grid, goal)[grid.state(grid.start)])
    runs = compare_learning(
        grid, episodes=args.episodes or 60, seeds=tuple(range(args.seeds or 3)), progress=True
    )
    fig = _figure()
    ax = fig.add_subplot()
    rows = []
    for name, color in (("unshaped", "C3"), ("shaped", "C0")):
        for i, run in enumerate(runs[name]):
            ax.plot(run.steps, color=color, alpha=0.7, label=name if i == 0 else None)
            rows.append(
                (name, i, run.episodes_to_learn(shortest), int(run.steps.sum()), f"{run.reached.mean():.2f}")
            )
    ax.axhline(shortest, color="grey", linestyle=":", label="shortest path")
    ax.set(
        xlabel="episode",
        ylabel="steps to the goal",
        yscale="log",
        title=f"Q-learning on a {args.size}x{args.size} grid",
    )
    ax.legend()
    print(_table(("reward", "seed", "episodes to learn", "total steps", "reached goal"), rows))
    print(f"optimal action sets equal with and without shaping (value iteration): {same}")
    path = args.out / f"shaping-{args.size}x{args.size}.png"
    fig.savefig(path)
    return path


def run(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    demo = {"her": _her, "coma": _coma, "shaping": _shaping}[args.method]
    path = demo(args)
    print(f"wrote {path}")
    return 0
