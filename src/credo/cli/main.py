"""The ``credo`` command: one subcommand per module of :mod:`credo.cli`.

Each subcommand module exposes ``add_parser(subparsers) -> None``, which registers its parser and sets
``func`` (called with the parsed arguments, returning an exit code). Modules import heavy libraries
inside ``func`` so that ``credo --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand modules, in the order ``credo --help`` lists them.
SUBCOMMANDS: tuple[str, ...] = ("demo", "tabular", "train", "compare")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="credo", description="Credit assignment for reinforcement learning."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        module_name = f"credo.cli.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name == module_name:  # subcommand not built yet
                continue
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
