"""``credo prm train CONFIG.yaml [--key value ...]``: train a process reward model on step-labelled JSONL
(``{"prompt", "completions": [step, ...], "labels": [...]}``, steps joined by a blank line), print the
held-out first-wrong-step accuracy and save it to ``output_dir``. ``credo prm generate-data OUT.jsonl``:
synthetic step labels (a step is correct iff it holds an ``a``). ``credo prm rerank MODEL_DIR
--prompt P CANDIDATE ...``: best-of-N with a saved reward model (outcome RM, or a PRM with
``--aggregate min|prod|last``), printing the pick and the number of model calls. ``credo prm search
--method best_of_n beam dvts sample --budget N --runs R``: on the synthetic step task (a tiny policy SFT'd
on steps right half of the time and a PRM trained on step labels, built in seconds), each method's mean
true reward (share of correct steps) and its mean generator / scorer calls per run, side by side.

The PRM config takes the sections of ``credo rm train`` (``model``, ``data.train_path``,
``data.eval_path`` / ``data.eval_fraction``, ``train.steps|lr|batch_size|seed``, ``output_dir``,
``device``); ``data.rankings`` and margins do not apply.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from credo.llm.config import resolve_device
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
from credo.llm.reward_model import RewardModel, load_rm_config, split_records
from credo.llm.search import (
    SearchResult,
    dvts,
    prm_beam_search,
    synthetic_search_setup,
    synthetic_steps_true_reward,
)
from credo.llm.search import (
    best_of_n as sample_best_of_n,
)
from credo.llm.tiny import build_char_tokenizer


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
    search = actions.add_parser(
        "search", help="compare best-of-N, PRM beam search and DVTS on the synthetic step task"
    )
    search.add_argument("--method", nargs="+", choices=SEARCH_METHODS, default=list(SEARCH_METHODS))
    search.add_argument("--budget", type=int, default=4, help="step samples per round (best_of_n: answers)")
    search.add_argument("--beam-width", type=int, default=2, help="beam width / DVTS subtrees")
    search.add_argument("--max-steps", type=int, default=5)
    search.add_argument("--runs", type=int, default=30)
    search.add_argument("--aggregate", choices=("min", "prod", "last"), default="min")
    search.add_argument("--seed", type=int, default=0)
    search.set_defaults(func=run_search)


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


SEARCH_METHODS = ("sample", "best_of_n", "beam", "dvts")


def _search_once(
    method: str, policy: Any, tokenizer: Any, prm: ProcessRewardModel, args: Any
) -> SearchResult:
    prompt, width = "Steps:\n", args.beam_width
    expansions = max(1, args.budget // width)
    tree = {"max_steps": args.max_steps, "how": args.aggregate, "max_step_tokens": 8}
    if method == "beam":
        return prm_beam_search(policy, tokenizer, prm, prompt, width, expansions, **tree)
    if method == "dvts":
        return dvts(policy, tokenizer, prm, prompt, width, expansions, **tree)
    if method == "sample":  # plain sampling: one answer, no scorer
        result = sample_best_of_n(
            policy, tokenizer, prompt, 1, lambda p, c: [0.0] * len(c), max_new_tokens=32
        )
        result.budget.scorer_calls = 0
        return result
    return sample_best_of_n(
        policy, tokenizer, prompt, args.budget, prm.as_reward_function(how=args.aggregate), max_new_tokens=32
    )


def run_search(args: argparse.Namespace) -> int:
    if args.budget < 1 or args.beam_width < 1 or args.runs < 1 or args.max_steps < 1:
        raise ValueError("--budget, --beam-width, --runs and --max-steps must be >= 1")
    tokenizer = build_char_tokenizer()
    policy, prm = synthetic_search_setup(tokenizer, seed=args.seed)
    print(f"{'method':<10} {'true reward':>11} {'generator calls':>16} {'scorer calls':>13}")
    for method in args.method:
        torch.manual_seed(args.seed + 1)
        results = [_search_once(method, policy, tokenizer, prm, args) for _ in range(args.runs)]
        reward = sum(synthetic_steps_true_reward("", r.completion) for r in results) / args.runs
        gen = sum(r.generator_calls for r in results) / args.runs
        scored = sum(r.scorer_calls for r in results) / args.runs
        print(f"{method:<10} {reward:>11.3f} {gen:>16.1f} {scored:>13.1f}")
    return 0
