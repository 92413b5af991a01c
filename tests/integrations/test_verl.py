"""credo's verl plugin (skipped without verl: ``pip install verl==0.9.1``)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
import torch

core_algos = pytest.importorskip("verl.trainer.ppo.core_algos")

from credo.credit.registry import CreditBatch, compute_credit  # noqa: E402
from credo.credit.reward_types import CandidateScores, candidate_reward  # noqa: E402
from credo.integrations import verl as credo_verl  # noqa: E402
from credo.integrations.verl import (  # noqa: E402
    candidate_estimators,
    candidate_reward_for_verl,
    outcome_estimators,
    register,
)


def random_batch(seed: int = 0, groups: int = 3, G: int = 4, T: int = 7) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    B = groups * G
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    mask = (torch.arange(T)[None] < lengths[:, None]).float()
    token_rewards = torch.zeros(B, T)
    token_rewards[torch.arange(B), lengths - 1] = torch.rand(B, generator=gen)
    perm = torch.randperm(B, generator=gen)  # verl's rows need not be prompt-major: uids say the group
    uids = np.array([f"uid-{i // G}" for i in range(B)], dtype=object)[perm.numpy()]
    return token_rewards[perm], mask[perm], uids


def test_register_gives_every_outcome_estimator() -> None:
    names = register()
    assert names == [f"credo_{n}" for n in outcome_estimators() + candidate_estimators()]
    assert {"credo_grpo", "credo_rloo", "credo_dr_grpo"} <= set(names)
    assert {f"credo_{n}" for n in ("shape_grpo", "wta", "set_splice", "set_rtg", "set_coma")} <= set(names)
    assert "credo_gae" not in names
    assert register() == names  # registering twice is harmless


@pytest.mark.parametrize("name", ["grpo", "rloo", "dr_grpo", "reinforce", "reinforce_pp"])
def test_registered_function_equals_compute_credit(name: str) -> None:
    register()
    token_rewards, mask, uids = random_batch()
    fn = core_algos.get_adv_estimator_fn(f"credo_{name}")
    advantages, returns = fn(token_level_rewards=token_rewards, response_mask=mask, index=uids, config=None)
    _, group_ids = np.unique(uids, return_inverse=True)
    batch = CreditBatch(
        rewards=token_rewards.sum(-1), response_mask=mask.bool(), group_ids=torch.as_tensor(group_ids)
    )
    expected = compute_credit(name, batch).advantages
    torch.testing.assert_close(advantages, expected, atol=1e-6, rtol=0)
    assert returns.shape == advantages.shape


def test_credo_grpo_through_verl_compute_advantage_equals_verl_grpo() -> None:
    ray_trainer = pytest.importorskip("verl.trainer.ppo.ray_trainer")  # needs cachetools, uvicorn, fastapi...
    protocol = pytest.importorskip("verl.protocol")
    register()
    token_rewards, mask, uids = random_batch(seed=1)

    def advantages(estimator: str) -> torch.Tensor:
        data = protocol.DataProto.from_dict(
            tensors={"token_level_rewards": token_rewards.clone(), "response_mask": mask.clone()},
            non_tensors={"uid": uids},
        )
        out = ray_trainer.compute_advantage(data, adv_estimator=estimator, config={})
        return out.batch["advantages"]

    torch.testing.assert_close(advantages("credo_grpo"), advantages("grpo"), atol=1e-6, rtol=0)


def test_verl_plugin_loader_registers_credo(tmp_path: Any) -> None:
    """verl's own loader (``import verl`` loads the ``verl.plugins`` entry points) registers credo's
    estimators; the entry point is declared in a throw-away dist-info, as pyproject.toml declares it."""
    info = tmp_path / "credo_ep-0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: credo-ep\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text("[verl.plugins]\ncredo = credo.integrations.verl:register\n")
    code = (
        "import verl; from verl.trainer.ppo import core_algos; "
        "print(sorted(k for k in core_algos.ADV_ESTIMATOR_REGISTRY if k.startswith('credo_')))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "'credo_grpo'" in out.stdout


@candidate_reward
def words_with_a(prompts: list[str], completions: list[str], **meta: Any) -> list[CandidateScores]:
    """Candidates: the space-separated words; a word scores 1 if it contains 'a'; set reward: max."""
    out = []
    for text in completions:
        spans, scores, start = [], [], 0
        for word in text.split(" "):
            spans.append((start, start + len(word)) if word else None)
            scores.append(float("a" in word))
            start += len(word) + 1
        out.append(CandidateScores(scores=scores, spans=spans, set_reward=max(scores)))
    return out


def test_candidate_reward_for_verl_returns_score_and_extra_keys() -> None:
    compute_score = candidate_reward_for_verl(words_with_a)
    out = compute_score(data_source="toy", solution_str="xy ab", ground_truth=None, extra_info={"index": 0})
    assert out == {"score": 1.0, "candidate_scores": [0.0, 1.0], "candidate_char_spans": [[0, 2], [3, 5]]}
    padded = candidate_reward_for_verl(words_with_a, max_candidates=4)("toy", "x  z", None)
    assert padded["candidate_scores"] == [0.0, 0.0, 0.0, 0.0]
    assert padded["candidate_char_spans"][-1] == [-1, -1]
    assert padded["candidate_char_spans"][1] == [-1, -1]  # the empty word between two spaces
    with pytest.raises(ValueError, match="max_candidates"):
        candidate_reward_for_verl(words_with_a, max_candidates=1)("toy", "a b", None)
    with pytest.raises(TypeError, match="candidate_reward"):
        candidate_reward_for_verl(lambda prompts, completions: [1.0])


def test_candidate_estimator_without_patch_is_loud() -> None:
    register()
    fn = core_algos.get_adv_estimator_fn("credo_shape_grpo")
    with pytest.raises(RuntimeError, match="patch_compute_advantage"):
        fn(token_level_rewards=torch.zeros(2, 3), response_mask=torch.ones(2, 3), index=np.array(["a", "a"]))


def test_credo_shape_grpo_through_patched_compute_advantage(monkeypatch: pytest.MonkeyPatch) -> None:
    """The candidate route end to end on verl's own DataProto and compute_advantage (legacy trainer's
    layout): the wrapped reward function scores each response, its extra keys are stacked as verl's
    fit does (``np.array`` per key), and ``credo_shape_grpo`` equals ``compute_credit``."""
    ray_trainer = pytest.importorskip("verl.trainer.ppo.ray_trainer")
    protocol = pytest.importorskip("verl.protocol")
    from credo.llm.tiny import build_char_tokenizer

    register()
    monkeypatch.setattr(ray_trainer, "compute_advantage", ray_trainer.compute_advantage)  # undone after
    monkeypatch.setattr(credo_verl, "_TOKENIZER", {})
    tokenizer = build_char_tokenizer()
    credo_verl.configure(tokenizer)
    assert "verl.trainer.ppo.ray_trainer" in credo_verl.patch_compute_advantage()

    texts = ["ab cd", "xy za", "aa bb", "qq rr", "ca ta", "no on"]  # 3 prompts x 2 responses, K = 2
    uids = np.array(["p0", "p1", "p2", "p0", "p1", "p2"], dtype=object)
    B, P, T = len(texts), 3, 8
    responses = torch.full((B, T), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros(B, P + T, dtype=torch.long)
    attention[:, :P] = 1
    compute_score = candidate_reward_for_verl(words_with_a)
    extra: dict[str, list[Any]] = {}
    token_rewards = torch.zeros(B, T)
    for b, text in enumerate(texts):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        responses[b, : len(ids)] = torch.tensor(ids)
        attention[b, P : P + len(ids)] = 1
        solution = tokenizer.decode(ids, skip_special_tokens=True)  # as verl's reward manager decodes
        result = compute_score(data_source="toy", solution_str=solution, ground_truth=None, extra_info={})
        token_rewards[b, len(ids) - 1] = result["score"]
        for key, value in result.items():
            extra.setdefault(key, []).append(value)
    response_mask = attention[:, P:].float()
    data = protocol.DataProto.from_dict(
        tensors={
            "responses": responses,
            "attention_mask": attention,
            "response_mask": response_mask,
            "token_level_rewards": token_rewards,
        },
        non_tensors={"uid": uids, **{k: np.array(v) for k, v in extra.items()}},  # as verl's fit does
    )
    out = ray_trainer.compute_advantage(data, adv_estimator="credo_shape_grpo", config={})

    scores = torch.tensor(extra["candidate_scores"])
    spans = torch.tensor(extra["candidate_char_spans"])  # one token per character: token = char spans
    _, group_ids = np.unique(uids, return_inverse=True)
    batch = CreditBatch(
        rewards=token_rewards.sum(-1),
        response_mask=response_mask.bool(),
        group_ids=torch.as_tensor(group_ids),
        candidate_scores=scores,
        candidate_spans=spans,
    )
    expected = compute_credit("shape_grpo", batch).advantages
    torch.testing.assert_close(out.batch["advantages"], expected, atol=1e-6, rtol=0)
    assert not torch.equal(expected[0, 0:2], expected[0, 3:5])  # the candidate spans get different credit
    # every other estimator goes through verl's own function unchanged
    grpo = ray_trainer.compute_advantage(
        protocol.DataProto.from_dict(
            tensors={"token_level_rewards": token_rewards.clone(), "response_mask": response_mask.clone()},
            non_tensors={"uid": uids},
        ),
        adv_estimator="grpo",
        config={},
    )
    assert grpo.batch["advantages"].shape == (B, T)


def test_credo_verl_patch_env_patches_through_verl_plugin_loader(tmp_path: Any) -> None:
    """``CREDO_VERL_PATCH=1``: ``import verl`` (the plugin loader) registers and patches compute_advantage."""
    pytest.importorskip("verl.trainer.ppo.ray_trainer")
    info = tmp_path / "credo_ep-0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: credo-ep\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text("[verl.plugins]\ncredo = credo.integrations.verl:register\n")
    code = (
        "import verl; from verl.trainer.ppo import ray_trainer, core_algos; "
        "print(getattr(ray_trainer.compute_advantage, 'credo_patched', False), "
        "'credo_shape_grpo' in core_algos.ADV_ESTIMATOR_REGISTRY)"
    )
    env = {
        **os.environ,
        "CREDO_VERL_PATCH": "1",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ["True", "True"]
