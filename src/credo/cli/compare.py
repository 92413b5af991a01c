"""``credo compare CONFIG.yaml``: train the same starting policy with several credit estimators and
seeds, evaluate on held-out prompts every few steps, and write a plot, a report and the raw metrics.

The config (YAML)::

    train: synthetic_rec_shape_grpo   # a shipped train config or a path: the task, model, SFT, RL settings
    overrides: {steps: 60, ...}       # changes to it (nested keys as in the train config)
    estimators:                       # name -> credit options (credo.credit registry names)
      grpo: {}
      shape_grpo: {normalize: candidates}
    seeds: [0, 1, 2]
    eval_every: 10                    # evaluate at step 0, every N steps and at the end
    eval_prompts: 32                  # held-out prompts (the task's "eval" split)
    eval_samples: 4                   # answers sampled per held-out prompt
    threshold: null                   # set-utility threshold for steps-to-threshold (null: the
                                      #   reference estimator's final mean)
    reference: grpo                   # the estimator the others are compared with
    output_dir: runs/compare

How it runs: one supervised warm-up (SFT) builds the shared starting policy (saved and reused); then
each (estimator, seed) run starts from a copy of it, with the same data order and budget. Every run
checkpoints as the trainer does and records its evaluations in ``eval.jsonl``; a killed comparison
resumes where it stopped (finished runs are skipped, unfinished ones resume from their checkpoint).
Outputs in ``output_dir``: ``metrics.jsonl`` (all evaluations), ``curves.png``, ``report.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM

from credo.cli.evaluate import evaluate_set_policy
from credo.cli.report import markdown_report, plot_curves, summarize
from credo.cli.train import resolve_config_path
from credo.cli.wiring import build_trainer, make_set_task
from credo.credit import ESTIMATORS
from credo.credit.registry import bind_options
from credo.llm.config import load_config, merge_config_dicts, parse_overrides
from credo.llm.tiny import load_tokenizer, save_tokenizer

METRICS = ("set_utility", "mean_candidate_score", "distinct_valid", "unparsable", "kl_to_start")


@dataclass
class CompareConfig:
    train: str
    overrides: dict[str, Any] = field(default_factory=dict)
    estimators: dict[str, dict[str, Any]] = field(default_factory=lambda: {"grpo": {}, "shape_grpo": {}})
    seeds: list[int] = field(default_factory=lambda: [0])
    eval_every: int = 10
    eval_prompts: int = 32
    eval_samples: int = 4
    threshold: float | None = None
    reference: str = "grpo"
    output_dir: str = "runs/compare"


def resolve_compare_config(name: str) -> Path:
    """A path to a YAML file, or the name of a comparison config shipped in ``credo/configs/compare``."""

    return resolve_config_path(name, "compare")


def _apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``--key value`` overrides: top-level keys, or ``--train.KEY value`` for the train config."""
    extra = parse_overrides(overrides)
    train_extra = extra.pop("train", None)
    if isinstance(train_extra, dict):
        data["overrides"] = merge_config_dicts(data.get("overrides") or {}, train_extra)
    elif train_extra is not None:
        data["train"] = train_extra
    data.update(extra)
    return data


def _check_compare_config(cfg: CompareConfig) -> None:
    for name, options in cfg.estimators.items():
        if name not in ESTIMATORS:
            raise ValueError(
                f"compare config 'estimators': unknown estimator {name!r}; known: {sorted(ESTIMATORS)}"
            )
        if options is not None and not isinstance(options, dict):
            raise TypeError(f"compare config 'estimators.{name}' must be a mapping of options")
        bind_options(name, options or {})  # a wrong option fails now, naming the key
    if not cfg.seeds:
        raise ValueError("compare config 'seeds' must list at least one seed")
    for key in ("eval_every", "eval_prompts", "eval_samples"):
        if int(getattr(cfg, key)) < 1:
            raise ValueError(f"compare config {key!r} must be >= 1, got {getattr(cfg, key)}")


def load_compare_config(path: str | Path, overrides: list[str] | None = None) -> CompareConfig:
    """Read and check a comparison config; ``overrides`` as ``--key value`` (top-level keys, or
    ``--train.KEY value`` for the train config)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise TypeError(f"compare config {str(path)!r} must hold a mapping")
    if overrides:
        data = _apply_overrides(data, overrides)
    known = set(CompareConfig.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown compare config key(s) {unknown}; known keys: {sorted(known)}")
    if "train" not in data:
        raise ValueError("compare config needs 'train': a shipped train config name or a path")
    cfg = CompareConfig(**data)
    if isinstance(cfg.estimators, list):
        cfg.estimators = {name: {} for name in cfg.estimators}
    _check_compare_config(cfg)
    return cfg


def train_config_for(cfg: CompareConfig, estimator: str | None, seed: int, output_dir: Path | None) -> Any:
    """The train config of one run: the base config, the overrides, this estimator and seed."""

    run: dict[str, Any] = {"seed": seed, "output_dir": None if output_dir is None else str(output_dir)}
    if estimator is not None:
        run["credit"] = {"estimator": estimator, "options": dict(cfg.estimators.get(estimator) or {})}
    if output_dir is None:
        run["checkpoint_every"] = 0
    overrides = {**cfg.overrides, **run}
    return load_config(resolve_config_path(cfg.train), overrides)


def starting_policy(cfg: CompareConfig, out: Path) -> tuple[Any, Any]:
    """The shared starting policy: SFT warm-up once (saved in ``out/start``), reused afterwards."""

    start = out / "start"
    if (start / "config.json").exists():
        return AutoModelForCausalLM.from_pretrained(start), load_tokenizer(start)
    first = next(iter(cfg.estimators))
    warm = train_config_for(cfg, first, cfg.seeds[0], None)
    trainer = build_trainer(warm)
    trainer.warm_up()  # the SFT warm-up only: no RL step is taken
    model, tokenizer = trainer.unwrapped_model, trainer.tokenizer
    start.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(start)
    save_tokenizer(tokenizer, start)
    return model, tokenizer


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []


def run_one(
    cfg: CompareConfig, estimator: str, seed: int, start_model: Any, tokenizer: Any, out: Path, bar: Any
) -> list[dict[str, Any]]:
    """Train one (estimator, seed) run from the starting policy, evaluating as configured."""

    run_dir = out / "runs" / f"{estimator}-seed{seed}"
    done_file, eval_file = run_dir / "done", run_dir / "eval.jsonl"
    if done_file.exists():
        bar.update(train_config_for(cfg, estimator, seed, None).steps)
        return _read_jsonl(eval_file)
    config = train_config_for(cfg, estimator, seed, run_dir)
    config.sft.steps = 0  # the starting policy is already warmed up
    config.progress = False
    task = make_set_task(config)
    if task is None:
        raise ValueError("credo compare needs a set-level task: set task.set_task in the train config")
    trainer = build_trainer(config, task=task, model=copy.deepcopy(start_model), tokenizer=tokenizer)
    eval_prompts = task.prompts("eval", cfg.eval_prompts, seed=0)
    reference = copy.deepcopy(start_model).to(trainer.device).eval()
    records = [r for r in _read_jsonl(eval_file) if r["step"] <= trainer.step_count]  # resumed: drop the rest
    run_dir.mkdir(parents=True, exist_ok=True)
    eval_file.write_text("".join(json.dumps(r) + "\n" for r in records))
    bar.update(trainer.step_count)
    done_steps = {r["step"] for r in records}

    def evaluate() -> None:
        if trainer.step_count in done_steps:
            return
        metrics = evaluate_set_policy(
            trainer.unwrapped_model,
            tokenizer,
            task,
            eval_prompts,
            samples_per_prompt=cfg.eval_samples,
            max_new_tokens=config.rollout.max_new_tokens,
            temperature=config.rollout.temperature,
            reference=reference,
        )
        record = {"estimator": estimator, "seed": seed, "step": trainer.step_count, **metrics}
        if trainer.history:
            record["train_reward"] = trainer.history[-1]["reward/mean"]
        records.append(record)
        done_steps.add(trainer.step_count)
        with open(eval_file, "a") as f:
            f.write(json.dumps(record) + "\n")
        bar.set_postfix(run=f"{estimator}/s{seed}", utility=f"{metrics['set_utility']:.3f}")

    try:
        while trainer.step_count < config.steps:
            if trainer.step_count % cfg.eval_every == 0:
                evaluate()
            trainer.step()
            bar.update(1)
        evaluate()
    finally:
        trainer.close()
    if not config.checkpoint_every or config.steps % config.checkpoint_every:
        trainer.save()
    done_file.write_text("done\n")
    return records


def run_comparison(cfg: CompareConfig, train: bool = True) -> dict[str, Path]:
    """Run every (estimator, seed), then write ``metrics.jsonl``, ``curves.png`` and ``report.md``.

    ``train=False`` only gathers the evaluations already recorded (of finished or unfinished runs)
    into the report.
    """
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    steps = train_config_for(cfg, None, cfg.seeds[0], None).steps
    records: list[dict[str, Any]] = []
    if train:
        model, tokenizer = starting_policy(cfg, out)
        with tqdm(total=steps * len(cfg.estimators) * len(cfg.seeds), desc="compare", unit="step") as bar:
            for seed in cfg.seeds:
                for estimator in cfg.estimators:
                    records += run_one(cfg, estimator, seed, model, tokenizer, out, bar)
    else:
        for seed in cfg.seeds:
            for estimator in cfg.estimators:
                records += _read_jsonl(out / "runs" / f"{estimator}-seed{seed}" / "eval.jsonl")
        if not records:
            raise ValueError(f"no evaluations recorded under {out / 'runs'} yet")
    metrics_path = out / "metrics.jsonl"
    metrics_path.write_text("".join(json.dumps(r) + "\n" for r in records))
    plot_path = plot_curves(
        records, list(METRICS[:4]), out / "curves.png", title=f"credo compare: {cfg.train}"
    )
    threshold = cfg.threshold
    if threshold is None:
        ref = [s for s in summarize(records, "set_utility") if s.estimator == cfg.reference]
        threshold = ref[0].final_mean if ref else None
    summary_config = {
        "train": cfg.train,
        "overrides": cfg.overrides,
        "estimators": cfg.estimators,
        "seeds": cfg.seeds,
        "steps": steps,
        "eval_every": cfg.eval_every,
        "eval_prompts": cfg.eval_prompts,
        "eval_samples": cfg.eval_samples,
        "threshold": threshold,
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    report = markdown_report(
        records,
        list(METRICS),
        "set_utility",
        threshold,
        summary_config,
        plot_path.name,
        reference=cfg.reference,
    )
    report_path = out / "report.md"
    report_path.write_text(report)
    return {"metrics": metrics_path, "plot": plot_path, "report": report_path}


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "compare",
        help="compare credit estimators (e.g. ShapE-GRPO vs GRPO) over seeds on a set-level task",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="a compare YAML file, or the name of a shipped compare config")
    parser.add_argument("--only", help="comma-separated estimators of the config to run (others skipped)")
    parser.add_argument("--start-only", action="store_true", help="only build the shared starting policy")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="only write the report from the evaluations recorded so far",
    )
    parser.add_argument("overrides", nargs=argparse.REMAINDER, help="--key value overrides")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides or [])
    for flag in ("--start-only", "--report-only"):  # flags given after CONFIG land among the overrides
        if flag in overrides:
            overrides.remove(flag)
            setattr(args, flag[2:].replace("-", "_"), True)
    if "--only" in overrides:
        at = overrides.index("--only")
        args.only = overrides[at + 1] if at + 1 < len(overrides) else ""
        del overrides[at : at + 2]
    cfg = load_compare_config(resolve_compare_config(args.config), overrides)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in cfg.estimators]
        if unknown:
            raise ValueError(f"--only names estimator(s) {unknown} that the config does not list")
        cfg.estimators = {n: cfg.estimators[n] for n in names}
    if args.start_only:
        starting_policy(cfg, Path(cfg.output_dir))
        print(f"starting policy: {Path(cfg.output_dir) / 'start'}")
        return 0
    paths = run_comparison(cfg, train=not args.report_only)
    print(Path(paths["report"]).read_text())
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0
