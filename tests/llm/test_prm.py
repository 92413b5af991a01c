from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch

from credo.llm.preferences import letters_true_reward, synthetic_preferences, write_preferences
from credo.llm.prm import (
    ProcessRewardModel,
    aggregate,
    best_of_n,
    first_wrong_step,
    load_step_examples,
    split_steps,
    step_token_credit,
    synthetic_step_examples,
    train_prm,
    write_step_examples,
)
from credo.llm.reward_model import load_rm_config, train_reward_model
from credo.llm.tiny import build_tiny_model, tiny_model_config


def test_split_steps_on_blank_lines() -> None:
    text = "one\n\ntwo\n\n\n\nthree"
    spans = split_steps(text)
    assert [text[a:b] for a, b in spans] == ["one", "two", "three"]
    assert split_steps("") == []


def test_aggregations() -> None:
    assert aggregate([0.9, 0.5, 0.8], "min") == 0.5
    assert aggregate([0.9, 0.5, 0.8], "prod") == pytest.approx(0.36)
    assert aggregate([0.9, 0.5, 0.8], "last") == 0.8
    with pytest.raises(ValueError, match="aggregation"):
        aggregate([1.0], "mean")  # type: ignore[arg-type]


def test_step_token_credit_gives_each_step_its_score() -> None:
    text = "ab\n\ncd"
    offsets = [(i, i + 1) for i in range(len(text))]
    assert step_token_credit(offsets, split_steps(text), [0.25, 0.75]) == [0.25, 0.25, 0.0, 0.0, 0.75, 0.75]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"prompt": "p", "completions": ["a"]}', "missing field"),
        ('{"prompt": "p", "completions": ["a", ""], "labels": [true, false]}', "non-empty"),
        ('{"prompt": "p", "completions": ["a", "b"], "labels": [true]}', "one label per step"),
        ('{"prompt": "p", "completions": ["a"], "labels": [2]}', r"\[0, 1\]"),
    ],
)
def test_bad_step_data_names_the_line(line: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "steps.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ValueError, match=message) as info:
        load_step_examples(path)
    assert f"{path}:1:" in str(info.value)


def _small_backbone(tokenizer: Any) -> Any:
    return build_tiny_model(
        tiny_model_config(len(tokenizer), hidden_size=32, num_heads=2, num_layers=1), seed=0
    )


def test_prm_finds_the_first_wrong_step_and_gives_token_rewards(tokenizer: Any, tmp_path: Path) -> None:
    torch.manual_seed(0)
    train = synthetic_step_examples(300, seed=0)
    held_out = synthetic_step_examples(100, seed=1)
    write_step_examples(train, tmp_path / "s.jsonl")
    assert load_step_examples(tmp_path / "s.jsonl") == train
    prm = ProcessRewardModel(_small_backbone(tokenizer), tokenizer)
    losses = train_prm(prm, train, steps=80, batch_size=16)
    assert losses[-1] < losses[0]
    responses = ["\n\n".join(e.steps) for e in held_out]
    scores = prm.step_scores([e.prompt for e in held_out], responses)
    hits = 0
    for example, s in zip(held_out, scores):
        truth = next((i for i, x in enumerate(example.labels) if x < 0.5), None)
        hits += first_wrong_step(s) == truth
    # A guess among "step 1..S or none" (S = 2..4) is right at most 1/3 of the time; the step
    # verifier (an 'a' among the step's 4 letters) is local, so the PRM should be right almost always.
    assert hits / len(held_out) > 0.8
    # token rewards: one (char, score) pair per step at the step's last character
    fn = prm.as_token_reward()
    assert fn.reward_kind == "tokens"
    pairs = fn(["Steps:\n"], ["abcd\n\nbcde"])[0]
    assert [p for p, _ in pairs] == [3, 9]
    spread = prm.as_token_reward("spread")(["Steps:\n"], ["abcd\n\nbcde"])[0]
    assert [p for p, _ in spread] == [0, 1, 2, 3, 6, 7, 8, 9]
    outcome = prm.as_reward_function(how="min")(["Steps:\n"], ["abcd\n\nbcde"])
    assert outcome[0] == pytest.approx(min(s for _, s in pairs))


def test_best_of_n_with_a_learned_rm_beats_a_random_pick(tmp_path: Path) -> None:
    write_preferences(synthetic_preferences(300, seed=3), tmp_path / "t.jsonl")
    config = load_rm_config(
        None,
        {
            "data": {"train_path": str(tmp_path / "t.jsonl"), "eval_fraction": 0.0},
            "model": {"hidden_size": 32, "num_heads": 2, "num_layers": 1, "context_length": 64},
            "train": {"steps": 60, "batch_size": 16, "lr": 3e-3},
            "device": "cpu",
        },
    )
    rm = train_reward_model(config).model.as_reward_function()
    rng = random.Random(0)
    picked, random_pick, calls = 0.0, 0.0, 0
    for i in range(40):
        answers = [r.chosen for r in synthetic_preferences(4, seed=100 + i)]  # 4 candidate answers
        result = best_of_n(rm, "Letters: ", answers)
        calls += result.scorer_calls
        picked += letters_true_reward("Letters: ", result.completion)
        random_pick += letters_true_reward("Letters: ", rng.choice(answers))
    assert calls == 160  # N model calls per prompt
    assert picked / 40 > random_pick / 40 + 0.1
