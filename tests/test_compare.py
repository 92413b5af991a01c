"""``credo compare`` on the CPU: a two-step smoke run (plot, report and metrics are written, and a
second invocation resumes instead of training again), paired seeds (every estimator of a seed samples
the same completions at its first step), ``--jobs`` worker processes (end to end, and a failing
worker failing the comparison with its log), the command-line flags and the ``early_stop`` metric."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml

import credo.cli.evaluate as evaluate_module
from credo.cli.compare import METRICS, configure, load_compare_config
from credo.cli.evaluate import evaluate_set_policy
from credo.cli.main import build_parser, main
from credo.tasks import make_task


def _config(tmp_path: Path, estimators: list[str], seeds: list[int], **extra: Any) -> Path:
    config = {
        "train": "synthetic_rec_shape_grpo",
        "overrides": {
            "steps": 2,
            "sft": {"steps": 3, "batch_size": 4},
            "task": {"num_prompts": 8},
            "rollout": {"group_size": 2, "prompts_per_step": 2, "max_new_tokens": 12},
            "checkpoint_every": 1,
            "samples_per_step": 4,
        },
        "estimators": {e: {} for e in estimators},
        "seeds": seeds,
        "eval_every": 1,
        "eval_prompts": 2,
        "eval_samples": 2,
        "output_dir": str(tmp_path / "out"),
        **extra,
    }
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _first_step_samples(out: Path, estimator: str, seed: int) -> str:
    """The completions (prompts, texts, rewards) that run sampled at its first training step."""
    text = (out / "runs" / f"{estimator}-seed{seed}" / "samples.txt").read_text()
    block = re.search(r"=== step 1 .*?(?==== step 2 |\Z)", text, re.S)
    assert block is not None
    return block.group(0)


def _records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_step_comparison_writes_plot_report_and_metrics(tmp_path: Path, capsys) -> None:
    path = _config(tmp_path, ["grpo", "shape_grpo"], [0])
    assert main(["compare", str(path)]) == 0
    out = tmp_path / "out"
    assert (out / "curves.png").stat().st_size > 5000
    report = (out / "report.md").read_text()
    assert "| shape_grpo |" in report and "| grpo |" in report
    assert "## Mean over evaluation points" in report and "paired_seeds: per seed" in report
    assert "shape_grpo - grpo, final set_utility" in report and "one seed" in report
    records = _records(out)
    assert {(r["estimator"], r["step"]) for r in records} == {
        (e, s) for e in ("grpo", "shape_grpo") for s in (0, 1, 2)
    }
    for r in records:
        assert set(METRICS) <= set(r)
        assert 0.0 <= r["unparsable"] <= 1.0 and 0.0 <= r["early_stop"] <= 1.0 and r["distinct_valid"] >= 0
    # Paired: both estimators of seed 0 sampled the same completions at their first step.
    assert _first_step_samples(out, "grpo", 0) == _first_step_samples(out, "shape_grpo", 0)
    # Run again: both runs are finished, so nothing is retrained and the records are the same.
    mtime = (out / "runs" / "grpo-seed0" / "eval.jsonl").stat().st_mtime
    assert main(["compare", str(path)]) == 0
    assert (out / "runs" / "grpo-seed0" / "eval.jsonl").stat().st_mtime == mtime
    assert len((out / "metrics.jsonl").read_text().splitlines()) == len(records)


@pytest.mark.slow
def test_jobs_run_paired_seeds_in_worker_processes(tmp_path: Path, capsys) -> None:
    """Two workers train 2 estimators x 2 seeds end to end. Paired seeds: every run starts from the
    same saved weights (its step-0 evaluation is the same), and for one seed both estimators take
    the same prompts and sample the same completions at their first step (another seed does not)."""
    path = _config(tmp_path, ["grpo", "set_rtg"], [0, 1])
    assert main(["compare", str(path), "--jobs", "2"]) == 0
    out = tmp_path / "out"
    runs = [(e, s) for e in ("grpo", "set_rtg") for s in (0, 1)]
    for e, s in runs:
        run_dir = out / "runs" / f"{e}-seed{s}"
        assert (run_dir / "done").exists() and (run_dir / "worker.log").exists()
    records = _records(out)
    assert {(r["estimator"], r["seed"], r["step"]) for r in records} == {
        (e, s, step) for e, s in runs for step in (0, 1, 2)
    }
    at_start = [{m: r[m] for m in METRICS} for r in records if r["step"] == 0]
    assert len(at_start) == 4 and all(m == at_start[0] for m in at_start)
    for seed in (0, 1):
        assert _first_step_samples(out, "grpo", seed) == _first_step_samples(out, "set_rtg", seed)
    assert _first_step_samples(out, "grpo", 0) != _first_step_samples(out, "grpo", 1)
    report = (out / "report.md").read_text()
    assert "set_rtg - grpo, final set_utility: per seed" in report
    assert "set_rtg - grpo, mean over points set_utility: per seed" in report
    assert "jobs: 2" in report and "| set_rtg |" in report
    # Run again: every run is finished, nothing is retrained.
    mtime = (out / "runs" / "set_rtg-seed1" / "eval.jsonl").stat().st_mtime
    assert main(["compare", str(path), "--jobs", "2"]) == 0
    assert (out / "runs" / "set_rtg-seed1" / "eval.jsonl").stat().st_mtime == mtime


def test_a_failing_worker_fails_the_comparison_with_its_log(tmp_path: Path) -> None:
    path = _config(tmp_path, ["grpo", "shape_grpo"], [0])
    start = tmp_path / "out" / "start"
    start.mkdir(parents=True)
    (start / "config.json").write_text("{}")  # a broken start: every worker fails to load it
    with pytest.raises(RuntimeError, match=r"run \w+-seed0 failed \(exit code \d+\)") as error:
        main(["compare", str(path), "--jobs", "2"])
    assert "Traceback" in str(error.value)  # the end of the worker's log
    assert not (tmp_path / "out" / "report.md").exists()


def test_command_line_flags_after_the_config(tmp_path: Path) -> None:
    path = _config(tmp_path, ["grpo", "shape_grpo", "set_rtg"], [0, 1, 2])
    argv = ["compare", str(path), "--only", "set_rtg,grpo", "--jobs", "3", "--seeds", "[2]"]
    args = build_parser(argv).parse_args([*argv, "--no-report", "--only", "shape_grpo"])
    cfg = configure(args)
    assert list(cfg.estimators) == ["set_rtg", "grpo", "shape_grpo"]
    assert cfg.seeds == [2] and args.jobs == 3 and args.no_report
    args = build_parser(argv).parse_args(["compare", str(path), "--seeds", "1", "--jobs=2"])
    cfg = configure(args)
    assert cfg.seeds == [1] and args.jobs == 2 and list(cfg.estimators) == ["grpo", "shape_grpo", "set_rtg"]
    args = build_parser(argv).parse_args(["compare", str(path), "--only", "rloo"])
    with pytest.raises(ValueError, match="rloo"):
        configure(args)


def test_bad_compare_config_keys_are_named(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"train": "synthetic_rec_grpo", "estimators": {"grpoo": {}}}))
    with pytest.raises(ValueError, match="grpoo"):
        load_compare_config(path)
    path.write_text(yaml.safe_dump({"train": "synthetic_rec_grpo", "seeds": [0], "evals": 3}))
    with pytest.raises(ValueError, match="evals"):
        load_compare_config(path)
    path.write_text(yaml.safe_dump({"train": "synthetic_rec_grpo", "eval_every": 0}))
    with pytest.raises(ValueError, match="eval_every"):
        load_compare_config(path)
    path.write_text(yaml.safe_dump({"train": "synthetic_rec_grpo", "seeds": [0, 0]}))
    with pytest.raises(ValueError, match="twice"):
        load_compare_config(path)


def test_early_stop_counts_answers_with_fewer_than_k_candidates(monkeypatch) -> None:
    task = make_task("synthetic_recommendation", k=3)
    prompt = task.prompts("eval", 1, seed=0)[0]
    import random

    items = task.demo_candidates(prompt, random.Random(0))
    completions = [
        task.format_answer(prompt, items),  # K candidates: not early-stopped
        task.format_answer(prompt, items[:2]),  # stopped after 2
        task.format_answer(prompt, [*items, items[0]]),  # more than K: not early-stopped
        "",  # nothing
    ]

    def fake_sample(model, tokenizer, texts, samples, *args, **kwargs):
        assert samples == len(completions)
        return SimpleNamespace(
            batch_size=len(completions), completions=completions, completion_mask=torch.ones(4, 5)
        )

    monkeypatch.setattr(evaluate_module, "sample_completions", fake_sample)
    metrics = evaluate_set_policy(torch.nn.Linear(1, 1), None, task, [prompt], samples_per_prompt=4)
    assert metrics["early_stop"] == 0.5
    assert metrics["unparsable"] >= 0.5  # the two early-stopped answers do not give K candidates
