from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from credo.cli.main import main
from credo.llm.reward_model import RewardModel


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def test_rm_generate_then_train_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train, held_out = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    assert main(["rm", "generate-data", str(train), "--n", "300", "--kind", "rankings", "--k", "3"]) == 0
    assert main(["rm", "generate-data", str(held_out), "--n", "100", "--seed", "1"]) == 0
    assert len(train.read_text().splitlines()) == 300
    config = {
        "model": {"hidden_size": 32, "num_heads": 2, "num_layers": 1, "context_length": 64},
        "data": {"train_path": str(train), "eval_path": str(held_out)},
        "train": {"steps": 5, "batch_size": 8},
        "output_dir": str(tmp_path / "rm"),
        "device": "cpu",
    }
    path = tmp_path / "rm.yaml"
    path.write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert main(["rm", "train", str(path), "--train.steps", "40", "--train.lr", "0.003"]) == 0
    out = capsys.readouterr().out
    assert "held-out pairwise accuracy" in out
    accuracy = float(out.split("held-out pairwise accuracy: ")[1].split()[0])
    assert accuracy > 0.8  # chance is 0.5 (see tests/llm/test_reward_model.py for the threshold)
    metrics = json.loads((tmp_path / "rm" / "rm_metrics.json").read_text())
    assert metrics["eval_accuracy"] == pytest.approx(accuracy, abs=1e-4)
    assert metrics["num_train_pairs"] == 900  # 300 rankings of 3 answers, 3 pairs each
    RewardModel.load(tmp_path / "rm")


def test_rm_train_bad_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "rm.yaml"
    path.write_text(yaml.safe_dump({"data": {"train_path": "x.jsonl"}, "trian": {}}))
    with pytest.raises(ValueError, match="trian"):
        main(["rm", "train", str(path)])


def test_prm_generate_train_and_rerank_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "steps.jsonl"
    assert main(["prm", "generate-data", str(data), "--n", "200"]) == 0
    config = {
        "model": {"hidden_size": 32, "num_heads": 2, "num_layers": 1, "context_length": 64},
        "data": {"train_path": str(data), "eval_fraction": 0.25},
        "train": {"steps": 60, "batch_size": 16, "lr": 0.003},
        "output_dir": str(tmp_path / "prm"),
        "device": "cpu",
    }
    path = tmp_path / "prm.yaml"
    path.write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert main(["prm", "train", str(path)]) == 0
    out = capsys.readouterr().out
    accuracy = float(out.split("first-wrong-step accuracy: ")[1].split()[0])
    assert accuracy > 0.6  # a guess among 'step 1..S or none' (S = 2..4) is right <= 1/3 of the time
    assert (
        main(
            [
                "prm",
                "rerank",
                str(tmp_path / "prm"),
                "--prm",
                "--prompt",
                "Steps:\n",
                "bcde\n\nfghi",
                "abcd\n\nbacd",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "best: 1 " in out and "(2 model calls)" in out
