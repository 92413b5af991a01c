from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import pytest

from credo.cli.train import shipped_configs
from credo.llm import toy
from credo.llm.config import TrainConfig, config_from_dict, load_config, parse_overrides
from credo.llm.trainer import Trainer

TINY = {"model": {"hidden_size": 32, "num_heads": 2, "context_length": 64}, "progress": False}


def test_yaml_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(
        "rollout:\n  group_size: 4\nloss:\n  kl_beta: 1e-3\ncredit:\n  estimator: gae\n  options: {lam: 0.9}\n"
    )
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


def test_wrong_estimator_option_fails_when_the_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    import credo.llm.models

    def no_model(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a model was built")

    monkeypatch.setattr(credo.llm.models, "load_policy", no_model)
    start = time.perf_counter()
    with pytest.raises(ValueError) as error:
        load_config(None, ["--credit.estimator", "gae", "--credit.options", "{lamda: 0.9}"])
    assert time.perf_counter() - start < 1.0
    message = str(error.value)
    assert "'credit.options.lamda'" in message and "estimator 'gae' has no option 'lamda'" in message
    assert "its options: gamma, lam, whiten" in message and "did you mean 'lam'?" in message
    with pytest.raises(ValueError, match=r"'credit.options.whiten'.*true or false; got 'yes'"):
        load_config(None, ["--credit.estimator", "gae", "--credit.options", "{whiten: 'yes'}"])
    assert load_config(None, ["--credit.options", "{eps: 1e-5}"]).credit.options == {"eps": 1e-5}


def test_estimator_options_are_checked_against_their_annotations(monkeypatch: pytest.MonkeyPatch) -> None:
    from credo.credit import ESTIMATORS
    from credo.credit.registry import EstimatorSpec, bind_options

    def fake(
        batch: Any,
        mode: Literal["a", "b"] = "a",
        name: str = "x",
        k: int = 1,
        lr: float = 0.1,
        on: bool = True,
    ) -> Any:
        return None

    monkeypatch.setitem(ESTIMATORS, "fake", EstimatorSpec(name="fake", fn=fake))
    assert bind_options("fake", {"mode": "b", "name": "y", "k": 2, "lr": 1, "on": False}) == {
        "mode": "b",
        "name": "y",
        "k": 2,
        "lr": 1,
        "on": False,
    }
    for options, match in [
        ({"mode": "c"}, r"'credit.options.mode'.*one of 'a', 'b'; got 'c'"),
        ({"name": 3}, r"'credit.options.name'.*a string; got 3"),
        ({"k": 1.5}, r"'credit.options.k'.*an integer; got 1.5"),
        ({"lr": "fast"}, r"'credit.options.lr'.*a number; got 'fast'"),
        ({"batch": 1}, r"has no option 'batch'; its options: mode, name, k, lr, on"),
    ]:
        with pytest.raises(ValueError, match=match):
            bind_options("fake", options)


def test_wrong_choice_fails_naming_the_key_and_the_choices(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("loss:\n  kl_mode: banana\n")
    with pytest.raises(ValueError, match=r"'loss.kl_mode' must be one of 'reward', 'loss', got 'banana'"):
        load_config(path)
    config = TrainConfig()
    config.critic.mode = "both"  # set in code: checked when validated
    with pytest.raises(ValueError, match=r"'critic.mode' must be one of \('separate', 'shared'\)"):
        Trainer(config)


def test_reinforce_needs_a_batch_of_two() -> None:
    overrides = ["--credit.estimator", "reinforce", "--rollout.group_size", "1", "--rollout.prompts_per_step"]
    with pytest.raises(ValueError, match="'reinforce' needs a batch of at least 2 completions"):
        load_config(None, [*overrides, "1"])
    assert load_config(None, [*overrides, "2"]).credit.estimator == "reinforce"


def test_set_task_configs_are_wired_by_the_cli() -> None:
    with pytest.raises(ValueError, match=r"credo\.cli\.wiring\.build_trainer"):
        _trainer({"task": {"set_task": "synthetic_recommendation"}})
