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

How it runs: one supervised warm-up (SFT, seed 0) builds the shared starting policy, saved in
``output_dir/start`` and reused; then each (estimator, seed) run loads it and trains with the same
data and budget. Every run checkpoints as the trainer does and records its evaluations in
``runs/<estimator>-seed<seed>/eval.jsonl``; a killed comparison resumes where it stopped (finished
runs are skipped, unfinished ones resume from their checkpoint).

Paired seeds: for a given seed, every estimator starts from the same saved start weights, takes the
same training prompts in the same order (the prompt list and its order are functions of the seed) and
draws from the same random stream at every step (a function of seed, step and process), so at step 0
all estimators sample exactly the same completions; they part only once their updates differ. The
report therefore compares each estimator with the reference seed by seed (paired differences).

Parallel runs: ``--jobs N`` trains the (estimator, seed) runs in N worker processes (``credo compare
<output_dir>/jobs/compare.yaml --only EST --seeds [S] --no-report``, each with cpu_count // N CPU
threads and its log in its run directory) once the parent has built the start; the parent shows one
progress bar over all steps and writes the report. A failing worker stops the others and fails with
the end of its log; finished runs are kept and a rerun resumes the rest.

Command line: ``--only a,b`` (or ``--only a --only b``) runs some of the estimators, ``--seeds [0,1]``
(any top-level key can be overridden so) some seeds, ``--start-only`` builds the start, ``--report-only``
writes the report from what is recorded, ``--no-report`` trains without writing one.
Outputs in ``output_dir``: ``metrics.jsonl`` (all evaluations), ``curves.png``, ``report.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
import yaml
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM

from credo.cli.errors import config_errors
from credo.cli.evaluate import evaluate_set_policy
from credo.cli.report import markdown_report, plot_curves, summarize
from credo.cli.train import resolve_config_path
from credo.cli.wiring import build_trainer, make_set_task
from credo.credit import ESTIMATORS
from credo.credit.registry import bind_options
from credo.llm.config import load_config, merge_config_dicts, parse_overrides
from credo.llm.tiny import load_tokenizer, save_tokenizer

METRICS = (
    "set_utility",
    "mean_candidate_score",
    "distinct_valid",
    "unparsable",
    "early_stop",
    "kl_to_start",
)
START_SEED = 0  # the seed of the SFT warm-up that builds the shared start (whatever seeds are run)
PAIRED_SEEDS = (
    "per seed, every estimator starts from the same saved weights (start/), takes the same training "
    "prompts in the same order and draws from the same random stream at each step (functions of the "
    "seed and step), so all sample the same completions at step 0"
)


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
    keep_checkpoints: bool = True  # False: no checkpoint is written (a killed run restarts; saves disk
    #                                for pretrained models, whose optimizer state is GBs per run)


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


def _seed_list(seeds: Any) -> list[int]:
    """``seeds`` as a list of ints: a list, one int, or a comma-separated string (``--seeds 0,1``)."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    elif isinstance(seeds, str):
        seeds = [part for part in seeds.replace(",", " ").split() if part]
    if not isinstance(seeds, list | tuple):
        raise TypeError(f"compare config 'seeds' must be a list of ints, got {seeds!r}")
    try:
        result = [int(s) for s in seeds]
    except (TypeError, ValueError):
        raise TypeError(f"compare config 'seeds' must be a list of ints, got {seeds!r}") from None
    if len(set(result)) != len(result):
        raise ValueError(f"compare config 'seeds' lists a seed twice: {result}")
    return result


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
    cfg.seeds = _seed_list(cfg.seeds)
    _check_compare_config(cfg)
    return cfg


def select_estimators(cfg: CompareConfig, only: list[str] | None) -> None:
    """Keep the estimators named in ``only`` (entries may be comma-separated), in that order."""
    names = [n for entry in only or [] for n in entry.replace(",", " ").split()]
    if not names:
        return
    unknown = [n for n in names if n not in cfg.estimators]
    if unknown:
        raise ValueError(f"--only names estimator(s) {unknown} that the config does not list")
    cfg.estimators = {n: cfg.estimators[n] for n in dict.fromkeys(names)}


def train_config_for(cfg: CompareConfig, estimator: str | None, seed: int, output_dir: Path | None) -> Any:
    """The train config of one run: the base config, the overrides, this estimator and seed."""

    run: dict[str, Any] = {"seed": seed, "output_dir": None if output_dir is None else str(output_dir)}
    if estimator is not None:
        run["credit"] = {"estimator": estimator, "options": dict(cfg.estimators.get(estimator) or {})}
    if output_dir is None:
        run["checkpoint_every"] = 0
    overrides = {**cfg.overrides, **run}
    return load_config(resolve_config_path(cfg.train), overrides)


def build_start(cfg: CompareConfig, out: Path) -> Path:
    """The shared starting policy's directory, ``out/start``: the SFT warm-up (seed ``START_SEED``)
    is run and saved the first time (written aside, then renamed: a killed build leaves no start)."""
    start = out / "start"
    if (start / "config.json").exists():
        return start
    trainer = build_trainer(train_config_for(cfg, None, START_SEED, None))
    trainer.warm_up()  # the SFT warm-up only: no RL step is taken
    partial = out / "start.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    trainer.unwrapped_model.save_pretrained(partial)
    save_tokenizer(trainer.tokenizer, partial)
    trainer.close()
    del trainer
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the workers of --jobs need the memory, not this process
    partial.rename(start)
    return start


def starting_policy(cfg: CompareConfig, out: Path) -> tuple[Any, Any]:
    """The shared starting policy as saved in ``out/start`` (built once by :func:`build_start`): every
    run starts from these saved weights, whether it is trained here or in a worker process."""
    start = build_start(cfg, out)
    return AutoModelForCausalLM.from_pretrained(start), load_tokenizer(start)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []


def run_dir_of(out: Path, estimator: str, seed: int) -> Path:
    return out / "runs" / f"{estimator}-seed{seed}"


def run_one(
    cfg: CompareConfig, estimator: str, seed: int, start_model: Any, tokenizer: Any, out: Path, bar: Any
) -> list[dict[str, Any]]:
    """Train one (estimator, seed) run from the starting policy, evaluating as configured."""

    run_dir = run_dir_of(out, estimator, seed)
    done_file, eval_file = run_dir / "done", run_dir / "eval.jsonl"
    if done_file.exists():
        bar.update(train_config_for(cfg, estimator, seed, None).steps)
        return _read_jsonl(eval_file)
    config = train_config_for(cfg, estimator, seed, run_dir)
    config.sft.steps = 0  # the starting policy is already warmed up
    config.progress = False
    if not cfg.keep_checkpoints:
        config.checkpoint_every = 0
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
    if cfg.keep_checkpoints and (not config.checkpoint_every or config.steps % config.checkpoint_every):
        trainer.save()
    done_file.write_text("done\n")
    return records


# ----------------------------------------------------------------------------------------------------
# Parallel runs (--jobs N): one worker process per (estimator, seed) run, N at a time


def cpu_count() -> int:
    """The CPU cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


@dataclass
class _Worker:
    estimator: str
    seed: int
    proc: subprocess.Popen  # type: ignore[type-arg]
    log: Path
    handle: IO[bytes]


def write_worker_config(cfg: CompareConfig, out: Path) -> Path:
    """This comparison's config, resolved (command-line overrides applied), for the workers to read."""
    path = out / "jobs" / "compare.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**asdict(cfg), "output_dir": str(out.resolve())}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _launch(
    config_path: Path, out: Path, estimator: str, seed: int, threads: int, gpu: int | None
) -> _Worker:
    command = [
        sys.executable, "-m", "credo.cli.main", "compare", str(config_path),
        "--only", estimator, "--seeds", f"[{seed}]", "--no-report",
    ]  # fmt: skip
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "CREDO_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "TQDM_DISABLE": "1",
    }
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    run_dir = run_dir_of(out, estimator, seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "worker.log"
    handle = open(log, "wb")  # noqa: SIM115  (closed when the worker ends)
    proc = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    return _Worker(estimator, seed, proc, log, handle)


def _last_step(path: Path) -> int:
    """The ``step`` of the last complete JSON line of ``path`` (0 when there is none)."""
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 16384))
        lines = f.read().decode(errors="replace").splitlines()
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return 0


def run_progress(out: Path, estimator: str, seed: int, steps: int) -> int:
    """Training steps done by one run: all of them once it is finished, else the last step its trainer
    logged (``metrics.jsonl``) or evaluated (``eval.jsonl``)."""
    run_dir = run_dir_of(out, estimator, seed)
    if (run_dir / "done").exists():
        return steps
    return min(steps, max(_last_step(run_dir / "metrics.jsonl"), _last_step(run_dir / "eval.jsonl")))


def _log_tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.replace("\r", "\n").splitlines()[-lines:])


def _stop(workers: list[_Worker]) -> None:
    """End the still-running workers (their checkpoints are kept: a rerun resumes them)."""
    for w in workers:
        if w.proc.poll() is None:
            w.proc.terminate()
    for w in workers:
        try:
            w.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait()
        w.handle.close()


def _reap(running: list[_Worker]) -> None:
    """Remove the workers that have ended; a RuntimeError with its log's end when one failed."""
    for w in [w for w in running if w.proc.poll() is not None]:
        running.remove(w)
        w.handle.close()
        if w.proc.returncode != 0:
            raise RuntimeError(
                f"credo compare: run {w.estimator}-seed{w.seed} failed (exit code {w.proc.returncode}); "
                f"finished runs are kept and rerunning resumes the others. The end of {w.log}:\n"
                f"{_log_tail(w.log)}"
            )


def train_parallel(cfg: CompareConfig, out: Path, steps: int, jobs: int, bar: Any) -> None:
    """Every unfinished (estimator, seed) run in a worker process, ``jobs`` at a time; the start is
    built here first. CPU threads are shared out (cpu_count // jobs each); with several GPUs, the
    workers take them in turn."""
    build_start(cfg, out)
    config_path = write_worker_config(cfg, out)
    runs = [(e, s) for s in cfg.seeds for e in cfg.estimators]
    pending = [r for r in runs if not (run_dir_of(out, *r) / "done").exists()]
    threads = max(1, cpu_count() // jobs)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    running: list[_Worker] = []
    launched = 0
    try:
        while pending or running:
            while pending and len(running) < jobs:
                gpu = launched % gpus if gpus > 1 and "CUDA_VISIBLE_DEVICES" not in os.environ else None
                running.append(_launch(config_path, out, *pending.pop(0), threads, gpu))
                launched += 1
            time.sleep(0.5)
            bar.update(max(0, sum(run_progress(out, e, s, steps) for e, s in runs) - bar.n))
            bar.set_postfix(running=len(running), waiting=len(pending))
            _reap(running)
    finally:
        _stop(running)


# ----------------------------------------------------------------------------------------------------
# The comparison: train, then report


def gather_records(cfg: CompareConfig, out: Path) -> list[dict[str, Any]]:
    """The evaluations recorded by every (estimator, seed) run of ``cfg``, seed by seed."""
    records: list[dict[str, Any]] = []
    for seed in cfg.seeds:
        for estimator in cfg.estimators:
            records += _read_jsonl(run_dir_of(out, estimator, seed) / "eval.jsonl")
    return records


def write_report(
    cfg: CompareConfig, out: Path, records: list[dict[str, Any]], extra: dict[str, Any]
) -> dict[str, Path]:
    """``metrics.jsonl``, ``curves.png`` (one panel per metric) and ``report.md`` from ``records``."""
    metrics_path = out / "metrics.jsonl"
    metrics_path.write_text("".join(json.dumps(r) + "\n" for r in records))
    plot_path = plot_curves(records, list(METRICS), out / "curves.png", title=f"credo compare: {cfg.train}")
    threshold = cfg.threshold
    if threshold is None:
        ref = [s for s in summarize(records, "set_utility") if s.estimator == cfg.reference]
        threshold = ref[0].final_mean if ref else None
    summary_config = {
        "train": cfg.train,
        "overrides": cfg.overrides,
        "estimators": cfg.estimators,
        "seeds": cfg.seeds,
        "paired_seeds": PAIRED_SEEDS,
        **extra,
        "eval_every": cfg.eval_every,
        "eval_prompts": cfg.eval_prompts,
        "eval_samples": cfg.eval_samples,
        "threshold": threshold,
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


def run_comparison(
    cfg: CompareConfig, train: bool = True, jobs: int = 1, report: bool = True
) -> dict[str, Path]:
    """Run every (estimator, seed) (in ``jobs`` worker processes when ``jobs > 1``), then write
    ``metrics.jsonl``, ``curves.png`` and ``report.md`` (unless ``report=False``).

    ``train=False`` only gathers the evaluations already recorded (of finished or unfinished runs)
    into the report.
    """
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    steps = train_config_for(cfg, None, cfg.seeds[0], None).steps
    if train:
        total = steps * len(cfg.estimators) * len(cfg.seeds)
        with tqdm(total=total, desc="compare", unit="step") as bar:
            if jobs > 1:
                train_parallel(cfg, out, steps, jobs, bar)
            else:
                model, tokenizer = starting_policy(cfg, out)
                for seed in cfg.seeds:
                    for estimator in cfg.estimators:
                        run_one(cfg, estimator, seed, model, tokenizer, out, bar)
    if not report:
        return {"runs": out / "runs"}
    records = gather_records(cfg, out)
    if not records:
        raise ValueError(f"no evaluations recorded under {out / 'runs'} yet")
    extra = {"steps": steps, "jobs": jobs, "wall_time_s": round(time.perf_counter() - started, 1)}
    return write_report(cfg, out, records, extra)


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "compare",
        help="compare credit estimators (e.g. ShapE-GRPO vs GRPO) over seeds on a set-level task",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="a compare YAML file, or the name of a shipped compare config")
    parser.add_argument(
        "--only",
        action="append",
        help="estimators of the config to run, comma-separated or repeated (the others are skipped)",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="train the runs in N worker processes (default 1: in this one)"
    )
    parser.add_argument("--start-only", action="store_true", help="only build the shared starting policy")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="only write the report from the evaluations recorded so far",
    )
    parser.add_argument("--no-report", action="store_true", help="train the runs but write no report")
    parser.add_argument(
        "overrides", nargs=argparse.REMAINDER, help="--key value overrides (e.g. --seeds [0,1])"
    )
    parser.set_defaults(func=run)


_BOOL_FLAGS = ("--start-only", "--report-only", "--no-report")


def pop_cli_flags(args: argparse.Namespace, overrides: list[str]) -> list[str]:
    """Take the command's own flags out of ``overrides`` (flags given after CONFIG land there) into
    ``args``; the rest are ``--key value`` config overrides."""
    rest: list[str] = []
    args.only = list(args.only or [])
    i = 0
    while i < len(overrides):
        name, eq, value = overrides[i].partition("=")
        if overrides[i] in _BOOL_FLAGS:
            setattr(args, overrides[i][2:].replace("-", "_"), True)
            i += 1
            continue
        if name not in ("--only", "--jobs"):
            rest.append(overrides[i])
            i += 1
            continue
        if not eq:
            value = overrides[i + 1] if i + 1 < len(overrides) else ""
        i += 1 if eq else 2
        if name == "--only":
            args.only.append(value)
        else:
            args.jobs = int(value)
    return rest


def configure(args: argparse.Namespace) -> CompareConfig:
    """The comparison config of a parsed command line (its flags moved into ``args``)."""
    overrides = pop_cli_flags(args, list(args.overrides or []))
    cfg = load_compare_config(resolve_compare_config(args.config), overrides)
    select_estimators(cfg, args.only)
    return cfg


def run(args: argparse.Namespace) -> int:
    with config_errors(args.config):  # a bad config or override: one line naming it, exit 2
        cfg = configure(args)
        for estimator in cfg.estimators:  # each run's train config loads, before any training
            train_config_for(cfg, estimator, cfg.seeds[0], None)
    if os.environ.get("CREDO_NUM_THREADS"):  # a --jobs worker: its share of the CPU threads
        torch.set_num_threads(max(1, int(os.environ["CREDO_NUM_THREADS"])))
    if args.start_only:
        print(f"starting policy: {build_start(cfg, Path(cfg.output_dir))}")
        return 0
    paths = run_comparison(cfg, train=not args.report_only, jobs=args.jobs, report=not args.no_report)
    if "report" in paths:
        print(Path(paths["report"]).read_text())
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0
