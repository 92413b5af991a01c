"""``credo prm train CONFIG.yaml [--key value ...]``: train a process reward model on step-labelled JSONL
(``{"prompt", "completions": [step, ...], "labels": [...]}``, steps joined by a blank line), print the
held-out first-wrong-step accuracy and save it to ``output_dir``. ``credo prm generate-data OUT.jsonl``:
synthetic step labels (a step is correct iff it holds an ``a``). ``credo prm rerank MODEL_DIR
--prompt P CANDIDATE ...``: best-of-N with a saved reward model (outcome RM, or a PRM with
``--aggregate min|prod|last``), printing the pick and the number of model calls.

The PRM config takes the sections of ``credo rm train`` (``model``, ``data.train_path``,
``data.eval_path`` / ``data.eval_fraction``, ``train.steps|lr|batch_size|seed``, ``output_dir``,
``device``); ``data.rankings`` and margins do not apply.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from credo.llm.models import load_policy, seed_everything
from credo.llm.prm import (
    ProcessRewardModel,
    best_of_n,
    first_wrong_step,
    load_step_examples,
    synthetic_step_examples,
    train_prm,
    write_step_examples,
)
from credo.llm.reward_model import RewardModel, load_rm_config, resolve_device, split_records


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "prm",
        help="train a process reward model on step labels; rerank answers with it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    train = actions.add_parser("train", help="train a PRM from a YAML config")
    train.add_argument("config")
    train.add_argument("overrides", nargs=argparse.REMAINDER, help="config overrides: --key value")
    train.set_defaults(func=run_train)
    gen = actions.add_parser("generate-data", help="write synthetic step-labelled data")
    gen.add_argument("output")
    gen.add_argument("--n", type=int, default=1000)
    gen.add_argument("--seed", type=int, default=0)
    gen.set_defaults(func=run_generate)
    rerank = actions.add_parser(
        "rerank", help="best-of-N: pick the candidate a saved RM / PRM scores highest"
    )
    rerank.add_argument("model_dir")
    rerank.add_argument("candidates", nargs="+")
    rerank.add_argument("--prompt", default="")
    rerank.add_argument("--prm", action="store_true", help="the model is a PRM (aggregate its step scores)")
    rerank.add_argument("--aggregate", choices=("min", "prod", "last"), default="min")
    rerank.set_defaults(func=run_rerank)


def run_train(args: argparse.Namespace) -> int:
    config = load_rm_config(args.config, list(args.overrides or []))
    tc = config.train
    seed_everything(tc.seed)
    examples = load_step_examples(config.data.train_path)
    if config.data.eval_path:
        train, held_out = examples, load_step_examples(config.data.eval_path)
    else:
        train, held_out = split_records(examples, config.data.eval_fraction, tc.seed)
    backbone, tokenizer = load_policy(config.model, resolve_device(config.device), "fp32")
    model = ProcessRewardModel(backbone, tokenizer)
    losses = train_prm(model, train, steps=tc.steps, lr=tc.lr, batch_size=tc.batch_size, seed=tc.seed)
    print(f"trained on {len(train)} examples, final loss {losses[-1]:.4f}")
    summary: dict[str, float | int | None] = {"final_loss": losses[-1], "num_train": len(train)}
    if held_out:
        scores = model.step_scores(
            [e.prompt for e in held_out], [model.separator.join(e.steps) for e in held_out]
        )
        hits = sum(
            first_wrong_step(s) == first_wrong_step(e.labels) for e, s in zip(held_out, scores, strict=True)
        )
        summary["first_wrong_step_accuracy"] = hits / len(held_out)
        print(f"held-out first-wrong-step accuracy: {hits / len(held_out):.4f} ({len(held_out)} examples)")
    if config.output_dir:
        model.save(config.output_dir)
        (Path(config.output_dir) / "prm_metrics.json").write_text(json.dumps(summary, indent=2))
        print(f"process reward model saved to {config.output_dir}")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    path = write_step_examples(synthetic_step_examples(args.n, seed=args.seed), args.output)
    print(f"wrote {args.n} step-labelled examples to {path}")
    return 0


def run_rerank(args: argparse.Namespace) -> int:
    if args.prm:
        scorer = ProcessRewardModel.load(args.model_dir).as_reward_function(how=args.aggregate)
    else:
        scorer = RewardModel.load(args.model_dir).as_reward_function()
    result = best_of_n(scorer, args.prompt, args.candidates)
    print(
        f"best: {result.index} {result.completion!r} score {result.score:.4f} ({result.scorer_calls} model calls)"
    )
    return 0
