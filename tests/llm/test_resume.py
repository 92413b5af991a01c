"""Resume says what it does and refuses what it cannot honour; checkpoints survive truncation."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from credo.llm.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from credo.llm.trainer import Trainer

from .configs import config_with

PROMPTS = ["ab", "cd"]


def reward(prompts: list[str], completions: list[str], **meta: Any) -> list[float]:
    return [(sum(map(ord, c)) % 11) / 10.0 for c in completions]


def _config(out: Path, **top: Any) -> Any:
    data: dict[str, Any] = {
        "model": {"hidden_size": 16, "num_heads": 2, "num_layers": 1, "context_length": 32},
        "rollout": {"group_size": 2, "prompts_per_step": 2, "max_new_tokens": 4},
        "optim": {"lr": 1e-3, "micro_batch_size": 4},
        "steps": 2,
        "checkpoint_every": 1,
        "output_dir": str(out),
        "progress": False,
        "tensorboard": False,
    }
    return config_with(data, **top)


def _train(out: Path, **top: Any) -> Trainer:
    trainer = Trainer(_config(out, **top), reward_functions=reward, prompts=PROMPTS)
    trainer.train()
    return trainer


def _steps(out: Path) -> list[int]:
    return [int(json.loads(x)["step"]) for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_resume_says_where_it_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _train(tmp_path)
    capsys.readouterr()
    trainer = _train(tmp_path, steps=3)
    said = capsys.readouterr().out
    assert f"resuming from step 2 (checkpoint {tmp_path / 'checkpoints' / 'step_000002'})" in said
    assert trainer.step_count == 3
    assert "resuming from step 2" in (tmp_path / "run.log").read_text()
    assert _steps(tmp_path) == [1, 2, 3]


def test_a_changed_lr_refuses_naming_the_key(tmp_path: Path) -> None:
    _train(tmp_path)
    with pytest.raises(
        ValueError, match=r"config key 'optim\.lr': checkpoint has 0\.001, this run has 0\.0003.*force"
    ):
        Trainer(_config(tmp_path, optim={"lr": 3e-4}, steps=3), reward_functions=reward, prompts=PROMPTS)
    with pytest.raises(ValueError, match=r"'credit\.estimator'"):
        Trainer(_config(tmp_path, credit={"estimator": "rloo"}), reward_functions=reward, prompts=PROMPTS)


def test_force_resumes_with_the_new_lr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _train(tmp_path)
    capsys.readouterr()
    trainer = _train(tmp_path, optim={"lr": 3e-4}, steps=3, resume="force")
    said = capsys.readouterr().out
    assert "config key 'optim.lr': checkpoint has 0.001, this run has 0.0003" in said
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(3e-4)
    assert trainer.history[-1]["lr"] == pytest.approx(3e-4)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["optim"]["lr"] == pytest.approx(3e-4)
    assert _steps(tmp_path) == [1, 2, 3]


def test_a_finished_run_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _train(tmp_path)
    capsys.readouterr()
    trainer = _train(tmp_path)
    assert trainer.history == []
    assert "run already finished at step 2; raise steps to continue" in capsys.readouterr().out


def test_a_fresh_run_into_a_used_dir_duplicates_no_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _train(tmp_path, checkpoint_every=0)  # no checkpoint: a rerun starts afresh
    capsys.readouterr()
    _train(tmp_path, checkpoint_every=0)
    assert _steps(tmp_path) == [1, 2]
    assert (tmp_path / "metrics.jsonl.old").exists()
    assert "metrics.jsonl.old" in capsys.readouterr().out
    samples = (tmp_path / "samples.txt").read_text()
    assert samples.count("=== step 1 ") == 1
    _train(tmp_path, resume=False)  # resume: false starts afresh too, old checkpoints set aside
    assert _steps(tmp_path) == [1, 2]
    assert latest_checkpoint(tmp_path / "checkpoints").name == "step_000002"


def test_a_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path: Path) -> None:
    _train(tmp_path)
    bad = tmp_path / "checkpoints" / "step_000002" / "policy.pt"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    with pytest.warns(UserWarning, match=r"step_000002.*policy\.pt"):
        trainer = Trainer(_config(tmp_path, steps=3), reward_functions=reward, prompts=PROMPTS)
    assert trainer.step_count == 1
    trainer.train()
    assert _steps(tmp_path) == [1, 2, 3]

    for step in ("step_000002", "step_000003"):  # none readable: a ValueError naming the directory
        path = tmp_path / "checkpoints" / step / "optimizer.pt"
        if path.exists():
            path.write_bytes(b"garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"no readable checkpoint in .*checkpoints"):
            Trainer(_config(tmp_path, steps=4), reward_functions=reward, prompts=PROMPTS)


def test_checkpoints_load_weights_only(tmp_path: Path) -> None:
    _train(tmp_path, steps=1)
    path = latest_checkpoint(tmp_path / "checkpoints")
    for file in path.glob("*.pt"):
        torch.load(file, weights_only=True)  # nothing but tensors, numbers, strings, lists, dicts
    objects, state = load_checkpoint(path)
    assert state["step"] == 1 and "policy" in objects

    class Evil:
        def __reduce__(self) -> Any:
            return (print, ("code ran",))

    save_checkpoint(tmp_path / "evil", 1, {"x": {"a": Evil()}}, {"step": 1})
    with pytest.raises(ValueError, match=r"x\.pt"):
        load_checkpoint(tmp_path / "evil" / "step_000001")
