"""Held-out evaluation of a policy on a set-level task.

For each held-out prompt, sample ``samples_per_prompt`` answers from the policy (the policy's own
behaviour, temperature as in training, a fixed random stream so every policy is judged on the same
draws), parse and score them with the task, and report:

* ``set_utility``: the task's set utility v(S) of the answer (the user picks one candidate);
* ``mean_candidate_score``: the mean of the K candidate scores (are the K-1 others still useful?);
* ``distinct_valid``: the number of candidates with a positive score (repeats and unknown items
  score 0, so these are distinct and valid);
* ``unparsable``: the share of answers that did not give exactly K candidates;
* ``early_stop``: the share of answers that stopped before K candidates (fewer than K candidates
  with a non-empty parse; an answer with K or more is not early-stopped, extra items are ignored);
* ``kl_to_start``: the mean over answers of ``sum_t (log pi - log pi_start)``, a Monte Carlo
  estimate of the sequence-level KL(pi || pi_start) to the starting (reference) policy;
* ``completion_tokens``: the mean answer length in tokens.

``credo evaluate MODEL TASK [--k 3 --prompts 32 --samples 4 --task-options YAML]`` scores a model
directory (``OUTPUT_DIR/model`` of a ``credo train`` run) on the task's held-out (``"eval"``) prompts
and prints these metrics; ``--reference DIR`` (e.g. the starting model) fills ``kl_to_start``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import torch
import yaml

from credo.cli.errors import UsageError, config_errors
from credo.cli.generate import check_sampling, load_model_dir
from credo.llm.rollout import sample_completions, sequence_logprobs
from credo.tasks import TASKS, make_task
from credo.tasks.base import SetScoring, SetTask, TaskPrompt


def _n_candidates(scoring: SetScoring) -> int:
    """The number of candidates of an answer with a non-empty parse (at most K: the scoring keeps K)."""
    return sum(1 for c in scoring.candidates if c.strip())


@torch.no_grad()
def evaluate_set_policy(
    model: Any,
    tokenizer: Any,
    task: SetTask,
    prompts: Sequence[TaskPrompt],
    samples_per_prompt: int = 4,
    max_new_tokens: int = 48,
    temperature: float = 1.0,
    reference: Any = None,
    seed: int = 1234,
    batch_prompts: int = 32,
) -> dict[str, float]:
    """Evaluate ``model`` on ``prompts`` (see the module docstring); returns the metric means."""
    if not prompts:
        raise ValueError("evaluate_set_policy needs at least one prompt")
    if samples_per_prompt < 1:
        raise ValueError(f"samples_per_prompt must be >= 1, got {samples_per_prompt}")
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {}
    n_answers = 0
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for start in range(0, len(prompts), batch_prompts):
                chunk = list(prompts[start : start + batch_prompts])
                batch = sample_completions(
                    model, tokenizer, [p.text for p in chunk], samples_per_prompt, max_new_tokens, temperature
                )
                kl = torch.zeros(batch.batch_size)
                if reference is not None:
                    ref = sequence_logprobs(
                        reference,
                        batch.prompt_ids,
                        batch.prompt_mask,
                        batch.completion_ids,
                        batch.completion_mask,
                        temperature,
                    )
                    kl = ((batch.logprobs.float() - ref) * batch.completion_mask).sum(1).cpu()
                lengths = batch.completion_mask.sum(1).cpu()
                for b, text in enumerate(batch.completions):
                    scoring = task.score_completion(chunk[b // samples_per_prompt], text)
                    row = {
                        "set_utility": scoring.set_reward,
                        "mean_candidate_score": sum(scoring.scores) / len(scoring.scores),
                        "distinct_valid": float(sum(s > 0 for s in scoring.scores)),
                        "unparsable": 0.0 if scoring.parsed_ok else 1.0,
                        "early_stop": 1.0 if _n_candidates(scoring) < task.k else 0.0,
                        "kl_to_start": float(kl[b]),
                        "completion_tokens": float(lengths[b]),
                    }
                    for key, value in row.items():
                        totals[key] = totals.get(key, 0.0) + value
                    n_answers += 1
    finally:
        model.train(was_training)
    return {key: value / n_answers for key, value in totals.items()}


def build_task(name: str, k: int | None, options: str | None) -> SetTask:
    """The task ``name`` with ``--task-options`` (a YAML mapping) and ``--k``; a UsageError naming
    the flag at fault."""
    kwargs: dict[str, Any] = {}
    if options:
        with config_errors("--task-options"):
            loaded = yaml.safe_load(options)
            if not isinstance(loaded, dict):
                raise ValueError(f"give a YAML mapping such as '{{k: 3}}', got {options!r}")
        kwargs.update(loaded)
    if k is not None:
        kwargs["k"] = k
    with config_errors(f"TASK {name!r}"):
        return make_task(name, **kwargs)


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "evaluate",
        help="score a trained model on a set-level task's held-out prompts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="a model directory (OUTPUT_DIR/model of a credo train run)")
    parser.add_argument("task", help=f"a set-level task: {', '.join(sorted(TASKS))}")
    parser.add_argument("--k", type=int, default=None, help="candidates per answer (default: the task's, 3)")
    parser.add_argument(
        "--task-options", metavar="YAML", help="task options as a YAML mapping, e.g. '{k: 3}'"
    )
    parser.add_argument("--prompts", type=int, default=32, help="held-out prompts (default 32)")
    parser.add_argument("--samples", type=int, default=4, help="answers per prompt (default 4)")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="tokens per answer (default 48)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    parser.add_argument(
        "--seed", type=int, default=1234, help="seed of the prompts and samples (default 1234)"
    )
    parser.add_argument("--reference", metavar="DIR", help="a reference model directory for kl_to_start")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_sampling(args.samples, args.max_new_tokens, args.temperature)
    if args.prompts < 1:
        raise UsageError(f"--prompts must be >= 1, got {args.prompts}")
    task = build_task(args.task, args.k, args.task_options)
    model, tokenizer = load_model_dir(args.model, args.device)
    reference = load_model_dir(args.reference, args.device)[0] if args.reference else None
    prompts = task.prompts("eval", args.prompts, seed=args.seed)
    metrics = evaluate_set_policy(
        model, tokenizer, task, prompts, args.samples, args.max_new_tokens, args.temperature,
        reference=reference, seed=args.seed,
    )  # fmt: skip
    print(
        f"{args.model} on {args.task} (K={task.k}): {len(prompts)} held-out prompts x {args.samples} answers"
    )
    print("| metric | mean |\n|---|---|")
    for key, value in metrics.items():
        if key != "kl_to_start" or reference is not None:
            print(f"| {key} | {value:.4f} |")
    return 0
