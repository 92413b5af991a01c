"""``credo demo``: the main job.

1. A short tour of the credit layer on the seed examples (seed 003's REINFORCE and RLOO batches,
   every outcome estimator on one group, GAE with truncation vs termination), printed as tables.
2. The comparison credo exists for: GRPO, ShapE-GRPO and credo's recommended candidate estimators
   ``set_splice`` (unbiased per-slot credit) and ``set_coma`` (myopic, lowest variance; both in
   :mod:`credo.credit.causal_credit`) on set-valued answers
   (``credo compare synthetic_rec_cpu``: an SFT warm-up of the built-in tiny model, then each
   estimator over 3 paired seeds; about 6 minutes on 2 idle CPU cores). It prints the report and where
   the plot, the report and the raw metrics are. Run again, it reuses what is finished.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable

import torch

from credo.cli.compare import load_compare_config, resolve_compare_config, run_comparison
from credo.credit import (
    ESTIMATORS,
    CreditBatch,
    compute_credit,
    gae,
    kl_reward_penalty,
    sequence_rewards,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the main demonstration", description=__doc__)
    parser.add_argument("--tables-only", action="store_true", help="only print the credit-layer tables")
    parser.add_argument("--config", default="synthetic_rec_cpu", help="the comparison config to run")
    parser.add_argument("--output-dir", default="runs/demo_compare", help="where the comparison writes")
    parser.set_defaults(func=run)


def _table(title: str, header: list[str], rows: list[list[object]]) -> str:
    cells = [[f"{c:+.4f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    line = "  ".join(h.rjust(w) for h, w in zip(header, widths))
    body = "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells)
    return f"\n{title}\n{line}\n{'-' * len(line)}\n{body}"


def credit_layer_demo() -> str:
    out = []
    # Seed 003, REINFORCE: two completions of three tokens, KL in the reward, score on the last token.
    logp = torch.tensor([[-12.3, -8.3, -2.3], [-10.0, -7.0, -3.0]])
    ref = torch.tensor([[-11.3, -8.4, -2.0], [-9.5, -7.2, -2.8]])
    score = torch.tensor([1.0, 0.5])
    mask = torch.ones(2, 3, dtype=torch.bool)
    penalty = kl_reward_penalty(logp, ref, beta=0.1)
    batch = CreditBatch(rewards=score, response_mask=mask, token_rewards=penalty)
    adv = compute_credit("reinforce", batch).advantages
    loss = float((-(logp * adv).sum(1)).mean())
    seq = sequence_rewards(score, mask, penalty)
    rows = [[i, float(score[i]), float(seq[i]), float(adv[i, 0])] for i in range(2)]
    out.append(
        _table(
            f"Seed 003 REINFORCE example (beta=0.1): loss = {loss:.4f}",
            ["completion", "score", "reward+KL", "advantage"],
            rows,
        )
    )

    # Seed 003, RLOO: three prompts, three completions each (KL left out here to show the baseline).
    scores = torch.tensor([[1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [3.0, 4.0, 5.0]])
    mask9 = torch.ones(9, 3, dtype=torch.bool)
    rows = []
    for name in ("reinforce", "rloo", "grpo", "dr_grpo", "reinforce_pp"):
        result = compute_credit(
            name, CreditBatch(rewards=scores.reshape(9), response_mask=mask9, group_size=3)
        )
        rows.append([name, *(float(a) for a in result.advantages[:3, -1])])
    out.append(
        _table(
            "Outcome estimators on seed 003's RLOO scores, prompt 1 (scores 1, 2, 3)",
            ["estimator", "A(y1)", "A(y2)", "A(y3)"],
            rows,
        )
    )

    # GAE: one episode, the same rewards, truncated (bootstraps from V = 10) vs terminated.
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.6, 0.8]])
    next_values = torch.tensor([[0.6, 0.8, 10.0]])
    done = torch.tensor([[False, False, True]])
    rows = []
    for label, terminated in (("terminated", done), ("truncated", torch.zeros_like(done))):
        for lam in (0.0, 0.95, 1.0):
            a = gae(rewards, values, next_values, done, terminated, gamma=0.9, lam=lam)[0]
            rows.append([label, lam, *(float(x) for x in a)])
    out.append(
        _table(
            "GAE (gamma=0.9): truncation bootstraps, termination does not",
            ["episode end", "lambda", "A_0", "A_1", "A_2"],
            rows,
        )
    )
    out.append(f"\nRegistered estimators: {', '.join(sorted(ESTIMATORS))}")
    return "\n".join(out)


ESTIMATOR_TITLES = {
    "grpo": "GRPO",
    "shape_grpo": "ShapE-GRPO",
    "set_rtg": "set_rtg (causal)",
    "set_splice": "set_splice (causal)",
    "set_coma": "set_coma (causal, myopic)",
    "wta": "winner-takes-all",
    "rloo": "RLOO",
}


def comparison_title(estimators: Iterable[str]) -> str:
    """``"GRPO vs ShapE-GRPO vs ..."``: the comparison's estimators, by their usual names."""
    return " vs ".join(ESTIMATOR_TITLES.get(name, name) for name in estimators)


def run(args: argparse.Namespace) -> int:
    print(credit_layer_demo())
    if args.tables_only:
        return 0
    cfg = load_compare_config(resolve_compare_config(args.config), ["--output_dir", args.output_dir])
    print(f"\n{comparison_title(cfg.estimators)} on set-valued answers (credo compare {args.config}):")
    paths = run_comparison(cfg)
    print(paths["report"].read_text())
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0
