"""A two-step smoke run of ``credo compare`` on the CPU: plot, report and metrics are written, and a
second invocation resumes (finished runs are skipped) instead of training again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from credo.cli.compare import load_compare_config
from credo.cli.main import main


@pytest.mark.slow
def test_two_step_comparison_writes_plot_report_and_metrics(tmp_path: Path, capsys) -> None:
    config = {
        "train": "synthetic_rec_shape_grpo",
        "overrides": {
            "steps": 2,
            "sft": {"steps": 3, "batch_size": 4},
            "task": {"num_prompts": 8},
            "rollout": {"group_size": 2, "prompts_per_step": 2, "max_new_tokens": 12},
            "checkpoint_every": 1,
        },
        "estimators": {"grpo": {}, "shape_grpo": {}},
        "seeds": [0],
        "eval_every": 1,
        "eval_prompts": 2,
        "eval_samples": 2,
        "output_dir": str(tmp_path / "out"),
    }
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["compare", str(path)]) == 0
    out = tmp_path / "out"
    assert (out / "curves.png").stat().st_size > 5000
    report = (out / "report.md").read_text()
    assert "| shape_grpo |" in report and "| grpo |" in report
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {(r["estimator"], r["step"]) for r in records} == {
        (e, s) for e in ("grpo", "shape_grpo") for s in (0, 1, 2)
    }
    for r in records:
        assert 0.0 <= r["unparsable"] <= 1.0 and r["distinct_valid"] >= 0
    # Run again: both runs are finished, so nothing is retrained and the records are the same.
    mtime = (out / "runs" / "grpo-seed0" / "eval.jsonl").stat().st_mtime
    assert main(["compare", str(path)]) == 0
    assert (out / "runs" / "grpo-seed0" / "eval.jsonl").stat().st_mtime == mtime
    assert len((out / "metrics.jsonl").read_text().splitlines()) == len(records)


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
