"""The ``credo`` command: one subcommand per module of :mod:`credo.cli`.

Each subcommand module exposes ``add_parser(subparsers) -> None``, which registers its parser and sets
``func`` (called with the parsed arguments, returning an exit code). Only the module of the
subcommand being run is imported (the others appear in ``credo --help`` by their one-line help), so
``credo --help`` stays fast while every module imports what it needs at its top.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from credo import __version__
from credo.cli.errors import UsageError

# Subcommand modules and their one-line help, in the order ``credo --help`` lists them.
SUBCOMMANDS: dict[str, str] = {
    "demo": "run the main demonstration",
    "tabular": "run a tabular RL algorithm (DP, MC, TD, SARSA, Q-learning) and plot it",
    "train": "post-train a causal LM with a credit estimator (GRPO, RLOO, PPO+GAE, ShapE-GRPO, ...)",
    "compare": "compare credit estimators (e.g. ShapE-GRPO vs GRPO) over seeds on a set-level task",
    "diagnose": "measure the gradient quality of credit estimators at a fixed policy",
    "rm": "train a reward model from preference data (pairs, rankings, ratings)",
    "prm": "train a process reward model on step labels; rerank answers with it",
    "methods": "demonstrate HER, COMA and potential-based shaping (progress bar, table, PNG)",
    "generate": "sample completions of prompts from a trained model directory",
    "evaluate": "score a trained model on a set-level task's held-out prompts",
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; the full parser of the subcommand named in ``argv`` (all of them when None)."""
    parser = argparse.ArgumentParser(
        prog="credo", description="Credit assignment for reinforcement learning."
    )
    parser.add_argument("--version", action="version", version=f"credo {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = set(SUBCOMMANDS) if argv is None else {a for a in argv if a in SUBCOMMANDS}
    for name, help_text in SUBCOMMANDS.items():
        if name in chosen:
            module_name = f"credo.cli.{name}"
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as error:
                if error.name == module_name:  # subcommand not built yet
                    continue
                raise
            module.add_parser(subparsers)
        else:
            subparsers.add_parser(name, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser([command] if command else []).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as error:  # a bad command line or config: one line, no traceback
        print(f"credo {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
