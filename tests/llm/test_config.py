from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from credo.cli.train import shipped_configs
from credo.llm import toy
from credo.llm.config import TrainConfig, config_from_dict, load_config, parse_overrides
from credo.llm.trainer import Trainer

TINY = {"model": {"hidden_size": 32, "num_heads": 2, "context_length": 64}, "progress": False}


def test_yaml_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("rollout:\n  group_size: 4\nloss:\n  kl_beta: 1e-3\ncredit:\n  options: {lam: 0.9}\n")
    config = load_config(path, ["--rollout.group_size", "6", "--optim.lr=2e-5", "--loss.epochs", "1"])
    assert isinstance(config, TrainConfig)
    assert config.rollout.group_size == 6 and config.optim.lr == 2e-5 and config.loss.kl_beta == 1e-3
    assert config.credit.options == {"lam": 0.9}
    assert parse_overrides(["--a.b", "1", "--c=x"]) == {"a": {"b": 1}, "c": "x"}


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        (["--rollout.grop_size", "4"], ValueError, "did you mean 'group_size'"),
        (["--stpes", "4"], ValueError, "did you mean 'steps'"),
        (["--rollout.group_size", "four"], TypeError, "rollout.group_size"),
        (["--steps", "1.5"], TypeError, "integer"),
        (["--credit.estimator", "rloo", "--rollout.group_size", "1"], ValueError, "group_size >= 2"),
        (["--credit.estimator", "grpo", "--rollout.group_size", "1"], ValueError, "group_size >= 2"),
        (["--credit.estimator", "nope"], ValueError, "unknown credit estimator"),
        (["--loss.aggregation", "mean"], ValueError, "loss.aggregation"),
        (["--loss.epochs", "2"], ValueError, "ppo_clip"),
        (["--loss.kl_beta", "-1"], ValueError, "kl_beta"),
        (["--checkpoint_every", "5"], ValueError, "output_dir"),
        (["--model.model_path", "/no/such/dir"], ValueError, "model_path"),
        (["--sft.steps", "10"], ValueError, "sft_pairs"),
        (["--optim.mini_batches", "3", "--loss.policy_loss", "ppo_clip"], ValueError, "divide"),
        (["oops"], ValueError, "--key value"),
    ],
)
def test_bad_configs_fail_with_clear_errors(overrides: list[str], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        load_config(None, overrides)


def test_unknown_key_in_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ValueError, match=r"unknown config key 'optim.learning_rate'"):
        load_config(path)


def _trainer(config: dict[str, Any], **kwargs: Any) -> Trainer:
    return Trainer(config_from_dict({**TINY, **config}), **kwargs)


def test_missing_reward_function_fails_before_training() -> None:
    with pytest.raises(ValueError, match="no reward function"):
        _trainer({}, prompts=["a"])
    with pytest.raises(ValueError, match="cannot import module"):
        _trainer({"task": {"rewards": [{"fn": "no_such_module:f"}]}}, prompts=["a"])
    with pytest.raises(ValueError, match="has no attribute"):
        _trainer({"task": {"rewards": [{"fn": "credo.llm.toy:no_such_reward"}]}}, prompts=["a"])


def test_prompt_longer_than_context_fails_before_training() -> None:
    with pytest.raises(ValueError, match="context of 64 tokens"):
        _trainer(
            {"rollout": {"max_new_tokens": 16}},
            reward_functions=toy.letter_fraction_reward,
            prompts=["short", "x" * 50],
        )


def test_missing_prompts() -> None:
    with pytest.raises(ValueError, match="no prompts"):
        _trainer({}, reward_functions=toy.letter_fraction_reward)


def test_candidate_estimator_needs_a_candidate_reward(monkeypatch: pytest.MonkeyPatch) -> None:
    from credo.credit import ESTIMATORS
    from credo.credit.registry import EstimatorSpec

    fake = EstimatorSpec(
        name="needs_candidates",
        fn=lambda batch: None,
        requires=("candidate_scores", "candidate_spans"),
        needs_groups=True,
        min_group_size=2,
    )
    monkeypatch.setitem(ESTIMATORS, "needs_candidates", fake)
    with pytest.raises(ValueError, match="candidate reward function"):
        _trainer(
            {"credit": {"estimator": "needs_candidates"}},
            reward_functions=toy.letter_fraction_reward,
            prompts=["a"],
        )


def test_shipped_configs_load() -> None:
    configs = shipped_configs()
    assert "letters_grpo" in configs
    for path in configs.values():
        load_config(path)


def test_cli_train_runs_a_shipped_config(tmp_path: Path) -> None:
    from credo.cli.main import main

    out = tmp_path / "run"
    code = main(
        [
            "train",
            "letters_grpo",
            "--steps",
            "2",
            "--sft.steps",
            "3",
            "--output_dir",
            str(out),
            "--progress",
            "false",
            "--model.hidden_size",
            "32",
            "--model.num_heads",
            "2",
        ]
    )
    assert code == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert "completion:" in (out / "samples.txt").read_text()


def test_vllm_backend_without_vllm_fails_before_training() -> None:
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    with pytest.raises(ValueError, match="vLLM is not installed"):
        _trainer({"rollout": {"backend": "vllm"}}, reward_functions=toy.letter_fraction_reward, prompts=["a"])


def test_set_task_supplies_prompts_rewards_and_sft_pairs() -> None:
    config = config_from_dict(
        {
            **TINY,
            "task": {"set_task": "synthetic_recommendation", "num_prompts": 8},
            "sft": {"steps": 2},
            "rollout": {"group_size": 2, "prompts_per_step": 2, "max_new_tokens": 24},
            "steps": 1,
        }
    )
    config.model.context_length = 128
    trainer = Trainer(config)
    assert len(trainer.prompts) == 8 and [r.kind for r in trainer.reward_fns] == ["candidates"]
    _, scored, _, _ = trainer.make_experience(trainer.prompts[:2])
    assert scored.candidate_scores is not None and scored.candidate_scores.shape == (4, 3)
    with pytest.raises(ValueError, match=r"task\.set_task"):
        Trainer(config_from_dict({**TINY, "task": {"set_task": "no_such_task"}}))
