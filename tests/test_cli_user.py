"""What a new user meets: the model, curves and TensorBoard logs ``credo train`` leaves, ``credo
generate`` and ``credo evaluate`` on them, one-line errors (exit 2) and ``credo --version``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import credo
import credo.cli.train as train_cli
from credo.cli.errors import UsageError, config_errors
from credo.cli.main import main
from credo.cli.train import plot_training_curves
from credo.llm.config import load_config
from credo.llm.tiny import build_char_tokenizer, build_tiny_model, save_tokenizer, tiny_model_config

TINY = ["--model.hidden_size", "32", "--model.num_layers", "1", "--progress", "false"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("letters") / "run"
    argv = ["train", "letters_grpo", "--steps", "2", "--sft.steps", "2", "--output_dir", str(out), *TINY]
    argv += ["--checkpoint_every", "0", "--tensorboard", "true"]
    code = main(argv)
    assert code == 0
    return out, ""


def test_train_leaves_model_curves_and_tensorboard(trained: tuple[Path, str]) -> None:
    out, _ = trained
    model = out / "model"
    assert (model / "config.json").is_file()
    assert (model / "model.safetensors").is_file()
    assert (model / "tokenizer.json").is_file()
    assert (out / "curves.png").stat().st_size > 1000
    assert (out / "metrics.jsonl").is_file()
    assert list((out / "tensorboard").glob("events.out.tfevents.*")), "tensorboard event files"


def test_train_prints_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["train", "letters_grpo", "--steps", "1", "--sft.steps", "0", "--output_dir", str(out), *TINY]
    assert main([*argv, "--checkpoint_every", "1", "--tensorboard", "false"]) == 0
    printed = capsys.readouterr().out
    assert f"model: {out / 'model'}" in printed
    assert f"curves: {out / 'curves.png'}" in printed
    assert (out / "model" / "config.json").is_file()


def test_generate_samples_from_the_trained_model(
    trained: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = trained
    argv = ["generate", str(out / "model"), "--prompt", "Letters: ", "--prompt", "Some letters: "]
    assert main([*argv, "--n", "3", "--max-new-tokens", "9", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("prompt: ") == 2
    assert "[3]" in printed
    assert main([*argv, "--n", "3", "--max-new-tokens", "9", "--seed", "1"]) == 0
    assert capsys.readouterr().out == printed  # a fixed seed, the same samples


@pytest.fixture(scope="module")
def set_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("setmodel")
    tokenizer = build_char_tokenizer()
    model = build_tiny_model(tiny_model_config(len(tokenizer), hidden_size=32, num_layers=1))
    model.save_pretrained(path)
    save_tokenizer(tokenizer, path)
    return path


def test_evaluate_prints_the_metrics(set_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["evaluate", str(set_model), "synthetic_recommendation", "--k", "2", "--prompts", "2"]
    assert main([*argv, "--samples", "2", "--max-new-tokens", "8", "--reference", str(set_model)]) == 0
    printed = capsys.readouterr().out
    for metric in ("set_utility", "mean_candidate_score", "unparsable", "kl_to_start", "completion_tokens"):
        assert f"| {metric} |" in printed
    assert "(K=2)" in printed


def test_evaluate_task_options(set_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "evaluate",
        str(set_model),
        "synthetic_recommendation",
        "--task-options",
        "{k: 4}",
        "--prompts",
        "1",
    ]
    assert main([*argv, "--samples", "1", "--max-new-tokens", "4"]) == 0
    assert "(K=4)" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"credo {credo.__version__}"


def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def test_yaml_error_is_one_line_with_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: 3\nrollout: [1\nfoo: 2\n")
    line = _one_line_error(["train", str(bad)], capsys)
    assert line.startswith(f"credo train: {bad}: line 3")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "letters_grpo", "--optim.lr", "-1"], "optim.lr"),
        (["train", "letters_grpo", "--no_such_key", "1"], "no_such_key"),
        (["train", "no_such_config"], "no_such_config"),
        (["train", "letters_grpo", "--credit.estimator", "nope"], "credit.estimator"),
        (["train", "letters_grpo", "--device", "nonsense"], "device"),
        (["train", "letters_grpo", "--device", "cuda:99"], "cuda:99"),
        (["train"], "CONFIG"),
        (["compare", "no_such_compare"], "no_such_compare"),
        (["compare", "synthetic_rec_cpu", "--train.optim.lr", "-1"], "optim.lr"),
        (["diagnose", "lm", "letters_grpo", "--loss.kl_beta", "-1"], "loss.kl_beta"),
        (["generate", "/no/such/dir", "--prompt", "x"], "/no/such/dir"),
        (["evaluate", "/no/such/dir", "no_such_task"], "no_such_task"),
        (["evaluate", "/no/such/dir", "synthetic_recommendation", "--task-options", "[1"], "--task-options"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _one_line_error(argv, capsys)
    assert line.startswith(f"credo {argv[0]}"), line
    assert needle in line, line


def test_device_cuda_without_cuda_fails_at_load(capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    line = _one_line_error(["train", "letters_grpo", "--device", "cuda"], capsys)
    assert "'cuda'" in line and "device" in line
    with pytest.raises(ValueError, match="device"):
        load_config(None, {"device": "cuda"})
    assert load_config(None, {"device": "auto"}).device == "auto"
    assert load_config(None, {"device": "cpu"}).device == "cpu"


def test_bugs_during_a_run_are_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args: object) -> int:
        raise ValueError("a genuine bug")

    monkeypatch.setattr(train_cli, "run", broken)
    with pytest.raises(ValueError, match="genuine bug"):
        main(["train", "letters_grpo"])


def test_config_errors_keeps_usage_errors_and_names_the_source() -> None:
    with pytest.raises(UsageError, match=r"^f\.yaml: bad value$"), config_errors("f.yaml"):
        raise ValueError("bad\n  value")
    with pytest.raises(UsageError, match=r"^--x: as is$"), config_errors("f.yaml"):
        raise UsageError("--x: as is")
    with pytest.raises(RuntimeError), config_errors("f.yaml"):
        raise RuntimeError("not a config error")


def test_curves_plot_candidate_metrics(tmp_path: Path) -> None:
    rows = [
        {
            "step": s,
            "reward/mean": 0.1 * s,
            "reward/std": 1.0,
            "kl": 0.01 * s,
            "credit/candidate_tokens_mean": 3.0,
        }
        for s in range(1, 5)
    ]
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert train_cli._curve_groups(rows) == [
        ("reward", ["reward/mean"]),
        ("KL to the reference", ["kl"]),
        ("candidates", ["credit/candidate_tokens_mean"]),
    ]
    assert plot_training_curves(metrics, tmp_path / "curves.png") == tmp_path / "curves.png"
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert plot_training_curves(tmp_path / "none.jsonl", tmp_path / "x.png") is None
