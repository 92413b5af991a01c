"""``credo generate --rerank RM_DIR``: best-of-N with a reward model trained by ``credo rm train``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
import yaml

from credo.cli.main import main
from credo.llm.reward_model import load_reward_function

TINY = ["--model.hidden_size", "32", "--model.num_layers", "1", "--progress", "false"]


def test_generate_reranks_by_the_reward_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.set_num_threads(1)
    run = tmp_path / "run"
    argv = ["train", "letters_grpo", "--steps", "1", "--sft.steps", "2", "--output_dir", str(run), *TINY]
    assert main([*argv, "--checkpoint_every", "0", "--tensorboard", "false"]) == 0
    data = tmp_path / "prefs.jsonl"
    assert main(["rm", "generate-data", str(data), "--n", "200", "--kind", "pairs"]) == 0
    config = {
        "model": {"hidden_size": 32, "num_heads": 2, "num_layers": 1, "context_length": 64},
        "data": {"train_path": str(data)},
        "train": {"steps": 20, "batch_size": 8, "lr": 0.003},
        "output_dir": str(tmp_path / "rm"),
        "device": "cpu",
    }
    (tmp_path / "rm.yaml").write_text(yaml.safe_dump(config))
    assert main(["rm", "train", str(tmp_path / "rm.yaml")]) == 0
    capsys.readouterr()
    prompt = "Letters: "
    argv = ["generate", str(run / "model"), "--prompt", prompt, "--n", "4", "--max-new-tokens", "8"]
    assert main([*argv, "--rerank", str(tmp_path / "rm")]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("[")]
    assert len(lines) == 4 and lines[0].endswith("<- best")
    scores = [float(ln.split("reward ")[1].split()[0]) for ln in lines]
    assert scores == sorted(scores, reverse=True)  # best first
    completions = [ast.literal_eval(ln.split("] ", 1)[1].split("  reward")[0]) for ln in lines]
    rescored = load_reward_function(tmp_path / "rm")([prompt] * 4, completions)
    assert rescored == pytest.approx(scores, abs=1e-4)  # the printed rewards are the model's


def test_rerank_needs_a_model_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["generate", str(tmp_path / "nothing"), "--prompt", "x", "--rerank", str(tmp_path / "none")])
        == 2
    )
    assert "not a model directory" in capsys.readouterr().err
