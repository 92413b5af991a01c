"""``credo rm train CONFIG.yaml [--key value ...]``: train a reward model on JSONL preferences
(Bradley-Terry; rankings expanded to pairs or Plackett-Luce), print held-out pairwise accuracy and save
it to ``output_dir``. ``credo rm generate-data OUT.jsonl``: synthetic preferences on the ``letters``
task, labelled by its known reward (the share of ``a``). The schema is in ``docs/reward_models.md``.
"""

from __future__ import annotations

import argparse

from credo.llm.preferences import synthetic_preferences, write_preferences
from credo.llm.reward_model import load_rm_config, train_reward_model


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "rm",
        help="train a reward model from preference data (pairs, rankings, ratings)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    train = actions.add_parser("train", help="train a reward model from a YAML config")
    train.add_argument("config", help="a YAML config (model, data, train, output_dir, device)")
    train.add_argument(
        "overrides", nargs=argparse.REMAINDER, help="config overrides: --key value (dotted keys for sections)"
    )
    train.set_defaults(func=run_train)
    gen = actions.add_parser("generate-data", help="write synthetic preferences with a known reward")
    gen.add_argument("output", help="the JSONL file to write")
    gen.add_argument("--n", type=int, default=1000, help="number of records (ratings: prompts)")
    gen.add_argument("--kind", choices=("pairs", "rankings", "ratings"), default="pairs")
    gen.add_argument("--k", type=int, default=4, help="answers per ranking / rated answers per prompt")
    gen.add_argument("--seed", type=int, default=0)
    gen.set_defaults(func=run_generate)


def run_train(args: argparse.Namespace) -> int:
    config = load_rm_config(args.config, list(args.overrides or []))
    result = train_reward_model(config)
    print(f"trained on {result.num_train_pairs} pairs, final loss {result.losses[-1]:.4f}")
    print(f"train pairwise accuracy: {result.train_accuracy:.4f}")
    if result.eval_accuracy is not None:
        print(f"held-out pairwise accuracy: {result.eval_accuracy:.4f} ({result.num_eval_pairs} pairs)")
    if config.output_dir:
        print(f"reward model saved to {config.output_dir}")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    records = synthetic_preferences(args.n, kind=args.kind, k=args.k, seed=args.seed)
    path = write_preferences(records, args.output)
    print(f"wrote {len(records)} {args.kind} records to {path}")
    return 0
