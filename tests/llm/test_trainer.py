from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from credo.credit import ESTIMATORS
from credo.llm import toy
from credo.llm.rewards import CandidateScores, candidate_reward
from credo.llm.rollout import sequence_logprobs
from credo.llm.trainer import Trainer

from .configs import SMALL_MODEL, config_with


def spread_reward(prompts: list[str], completions: list[str], **meta: Any) -> list[float]:
    """Many distinct reward values, so every estimator sees non-zero advantages."""
    return [(sum(map(ord, c)) % 11) / 10.0 for c in completions]


@candidate_reward
def chunk_candidates(prompts: list[str], completions: list[str], **meta: Any) -> list[CandidateScores]:
    """Three candidates per completion (its thirds), each with a spread score; set reward = max."""
    result = []
    for c in completions:
        cuts = [0, len(c) // 3, 2 * len(c) // 3, len(c)]
        spans = [(a, b) if b > a else None for a, b in itertools.pairwise(cuts)]
        scores = [
            (sum(map(ord, c[a:b])) % 11) / 10.0 if (b > a) else 0.0 for a, b in itertools.pairwise(cuts)
        ]
        result.append(CandidateScores(scores=scores, spans=spans, set_reward=max(scores)))
    return result


def _config(**sections: Any) -> Any:
    data: dict[str, Any] = {
        "model": SMALL_MODEL,
        "rollout": {"group_size": 4, "prompts_per_step": 2, "max_new_tokens": 6},
        "optim": {"lr": 1e-4, "micro_batch_size": 4},
        "progress": False,
    }
    return config_with(data, **sections)


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_one_step_moves_probability_the_way_the_advantage_says(estimator: str) -> None:
    spec = ESTIMATORS[estimator]
    candidates = "candidate_scores" in spec.requires
    reward = chunk_candidates if candidates else spread_reward
    trainer = Trainer(
        _config(credit={"estimator": estimator}), reward_functions=reward, prompts=["x y z:", "Hi:"]
    )
    policy_before = copy.deepcopy(trainer.model)
    trainer.step()  # one rollout, its credit, one update
    assert trainer.last_experience is not None
    batch, credit = trainer.last_experience.batch, trainer.last_experience.credit
    advantages = credit.advantages.float()
    mask = batch.completion_mask
    assert advantages.abs().sum() > 0, "degenerate test: all advantages are zero"

    def logp(model: Any) -> torch.Tensor:
        with torch.no_grad():
            return sequence_logprobs(
                model,
                batch.prompt_ids,
                batch.prompt_mask,
                batch.completion_ids,
                mask,
                trainer.config.rollout.temperature,
            )

    delta = logp(trainer.model) - logp(policy_before)
    # first-order ascent on sum A_t log pi(y_t): the advantage-weighted change of log-probs is positive
    assert float((advantages * delta)[mask].sum()) > 0
    constant_per_row = all(
        torch.allclose(a[m], a[m][0].expand_as(a[m])) for a, m in zip(advantages, mask) if m.any()
    )
    if constant_per_row:  # bandit credit: the best completion gains probability, the worst loses it
        row_adv = torch.stack([a[m][0] for a, m in zip(advantages, mask)])
        row_delta = delta.sum(dim=1)
        assert float(row_delta[row_adv.argmax()]) > 0
        assert float(row_delta[row_adv.argmin()]) < 0


def _letters_run(estimator: str, steps: int) -> list[float]:
    config = _config(
        model={"hidden_size": 64, "num_heads": 4},
        credit={"estimator": estimator},
        rollout={"group_size": 8, "prompts_per_step": 4, "max_new_tokens": 9},
        optim={"lr": 3e-3, "micro_batch_size": 32},
        sft={"steps": 100},
        task={"sft_pairs": "credo.llm.toy:letters_sft_pairs"},
        steps=steps,
    )
    trainer = Trainer(config, reward_functions=toy.letter_fraction_reward, prompts=toy.letters_prompts())
    return [m["reward/mean"] for m in trainer.train()]


@pytest.mark.parametrize("estimator", ["grpo", "rloo"])
def test_rl_raises_the_reward_on_a_toy_task(estimator: str) -> None:
    rewards = _letters_run(estimator, steps=25)
    start, end = rewards[0], sum(rewards[-5:]) / 5
    # the SFT policy writes uniform letters: about 1/26 of them are 'a'
    assert start < 0.1
    assert end > start + 0.3, f"{estimator}: reward {start:.3f} -> {end:.3f}"


def _resume_config(output_dir: Path) -> Any:
    return _config(
        credit={"estimator": "gae", "options": {"gamma": 1.0, "lam": 0.95}},
        loss={"policy_loss": "ppo_clip", "epochs": 2, "kl_beta": 0.05, "value_clip": 0.2},
        optim={"lr": 1e-3, "mini_batches": 2, "schedule": "cosine", "warmup_steps": 2},
        sft={"steps": 5},
        task={"sft_pairs": "credo.llm.toy:letters_sft_pairs"},
        steps=6,
        checkpoint_every=2,
        output_dir=str(output_dir),
    )


def test_kill_and_resume_continues_the_same_run(tmp_path: Path) -> None:
    prompts = toy.letters_prompts()
    straight = Trainer(_resume_config(tmp_path / "a"), reward_functions=spread_reward, prompts=prompts)
    straight.train()

    killed = Trainer(_resume_config(tmp_path / "b"), reward_functions=spread_reward, prompts=prompts)
    killed.train(steps=3)  # checkpoint at step 2; step 3 is lost with the process
    del killed
    (tmp_path / "b" / "checkpoints" / ".tmp_step_000004_crashed").mkdir()  # a write cut short
    resumed = Trainer(_resume_config(tmp_path / "b"), reward_functions=spread_reward, prompts=prompts)
    assert resumed.step_count == 2
    resumed.train()

    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)
    for a, b in zip(straight.critic.parameters(), resumed.critic.parameters()):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    lines = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3, 4, 5, 6]
    reference = [
        json.loads(x)["reward/mean"] for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [m["reward/mean"] for m in lines] == reference
    samples = (tmp_path / "b" / "samples.txt").read_text()
    assert [int(line.split()[2]) for line in samples.splitlines() if line.startswith("=== step")] == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]
    assert samples == (tmp_path / "a" / "samples.txt").read_text()


def test_outputs_and_candidate_metrics(tmp_path: Path) -> None:
    config = _config(output_dir=str(tmp_path), steps=2, checkpoint_every=1)
    trainer = Trainer(
        config,
        reward_functions=[
            {"fn": spread_reward, "weight": 2.0},
            {"fn": "credo.llm.toy:letter_fraction_reward", "weight": 1.0},
        ],
        prompts=["ab", "cd"],
    )
    history = trainer.train()
    assert len(history) == 2
    m = history[-1]
    assert {
        "reward/mean",
        "reward/spread_reward",
        "reward/letter_fraction_reward",
        "loss",
        "grad_norm",
    } <= set(m)
    expected = 2.0 * m["reward/spread_reward"] + m["reward/letter_fraction_reward"]
    assert abs(m["reward/mean"] - expected) < 1e-5
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step_000002"
    assert (tmp_path / "config.yaml").exists()


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`")
@pytest.mark.parametrize(
    "options", [{"gradient_checkpointing": True}, {"precision": "bf16-mixed"}, {"precision": "bf16"}]
)
def test_memory_and_precision_options_run_a_step(options: dict[str, Any]) -> None:
    reference = Trainer(_config(), reward_functions=spread_reward, prompts=["ab", "cd"])
    trainer = Trainer(_config(**options), reward_functions=spread_reward, prompts=["ab", "cd"])
    torch.manual_seed(3)
    batch = reference.sampler.sample(["ab", "cd"])

    class FixedSampler:  # both trainers' steps learn from the same rollout
        def sample(self, prompts: list[str]) -> Any:
            return dataclasses.replace(batch)

    grads = []
    for t in (reference, trainer):
        t.sampler = FixedSampler()
        t.optimizer.step = lambda: None  # keep the parameters: compare gradients only
        t.step()
        grads.append(torch.cat([p.grad.float().flatten() for p in t.model.parameters()]))
    if options.get("gradient_checkpointing"):
        torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)
    else:  # bf16: the same direction, to bf16 precision
        cosine = torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0)
        assert float(cosine) > 0.98


def test_candidate_credit_flows_end_to_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """A candidate-level estimator gets token spans that cover exactly the candidates' characters, and
    its per-span credit reaches the update (a stand-in estimator: score - 0.5 on each span)."""
    from credo.credit import ESTIMATORS, CreditResult, spans_to_token_credit
    from credo.credit.registry import EstimatorSpec

    def span_scores(batch: Any) -> CreditResult:
        spans = batch.candidate_spans
        adv = spans_to_token_credit(
            batch.candidate_scores - 0.5, spans, batch.response_mask, 0 * batch.rewards
        )
        return CreditResult(
            advantages=adv, info={"candidate_tokens": (spans[..., 1] - spans[..., 0]).float()}
        )

    spec = EstimatorSpec(name="span_scores", fn=span_scores, requires=("candidate_scores", "candidate_spans"))
    monkeypatch.setitem(ESTIMATORS, "span_scores", spec)
    # teach the list format first so that candidates parse
    config = _config(
        credit={"estimator": "span_scores"},
        rollout={"max_new_tokens": 8},
        steps=1,
        sft={"steps": 60, "lr": 1e-2},
        task={"sft_pairs": "credo.llm.toy:vowel_list_sft_pairs"},
    )
    trainer = Trainer(config, reward_functions=toy.vowel_candidates_reward, prompts=toy.vowel_list_prompts())
    trainer.warm_up()  # SFT is an explicit call (train() makes it)
    metrics = trainer.step()  # both prompts, G completions each
    assert trainer.last_experience is not None
    batch, scored, credit = (
        trainer.last_experience.batch,
        trainer.last_experience.rewards,
        trainer.last_experience.credit,
    )
    candidates = toy.vowel_candidates_reward(batch.prompts, batch.completions)
    checked = 0
    for b, cand in enumerate(candidates):
        ids = batch.completion_ids[b]
        for k, char_span in enumerate(cand.spans):
            start, end = scored.candidate_spans[b, k].tolist()
            if char_span is None:
                assert (start, end) == (-1, -1)
                continue
            text = batch.completions[b][char_span[0] : char_span[1]]
            assert trainer.tokenizer.decode(ids[start:end]) == text
            assert torch.allclose(credit.advantages[b, start:end], torch.tensor(cand.scores[k] - 0.5))
            checked += 1
    assert checked >= 8, "too few parsed candidates to check"
    assert "credit/candidate_tokens_mean" in metrics


@pytest.mark.parametrize("mode", ["shared", "separate"])
def test_ppo_with_critic_modes_runs_and_fits_values(mode: str) -> None:
    config = _config(
        credit={"estimator": "gae", "options": {"lam": 1.0}},
        loss={"policy_loss": "ppo_clip", "epochs": 2, "value_coef": 1.0},
        critic={"mode": mode, "lr": 1e-2},
        optim={"lr": 1e-4, "micro_batch_size": 8},
        steps=6,
    )
    trainer = Trainer(config, reward_functions=lambda p, c, **m: [1.0] * len(c), prompts=["ab", "cd"])
    history = trainer.train()
    assert (trainer.critic.backbone is None) == (mode == "shared")
    losses = [m["value_loss"] for m in history]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]  # constant reward 1: V -> 1 everywhere


def test_a_local_model_directory_loads_and_trains(tmp_path: Path, tiny_model: Any, tokenizer: Any) -> None:
    from credo.llm.tiny import save_tokenizer

    tiny_model.save_pretrained(tmp_path / "model")
    save_tokenizer(tokenizer, tmp_path / "model")
    config = _config(model={"model_path": str(tmp_path / "model")}, steps=1)
    trainer = Trainer(config, reward_functions=spread_reward, prompts=["a b", "c\nd"])
    assert trainer.tokenizer.decode(trainer.tokenizer("a b\nc")["input_ids"]) == "a b\nc"
    for a, b in zip(trainer.model.parameters(), tiny_model.parameters()):
        torch.testing.assert_close(a, b)
    assert len(trainer.train()) == 1


def test_dropout_is_disabled_so_training_logprobs_match_rollout(tokenizer: Any) -> None:
    from transformers import GPT2Config

    from credo.llm.tiny import build_tiny_model

    cfg = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=64,
        resid_pdrop=0.3,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = build_tiny_model(cfg)
    trainer = Trainer(
        _config(), reward_functions=spread_reward, prompts=["ab", "cd"], model=model, tokenizer=tokenizer
    )
    assert all(m.p == 0.0 for m in trainer.model.modules() if isinstance(m, torch.nn.Dropout))
    batch = trainer.sampler.sample(["ab", "cd"])
    trainer.model.train()
    with torch.no_grad():
        again = sequence_logprobs(
            trainer.model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids, batch.completion_mask
        )
    torch.testing.assert_close(again, batch.logprobs, atol=1e-5, rtol=1e-5)


def test_dict_prompts_pass_their_fields_to_reward_functions() -> None:
    seen: list[Any] = []

    def target_reward(
        prompts: list[str], completions: list[str], target: list[str], **meta: Any
    ) -> list[float]:
        seen.append((list(prompts), list(target)))
        return [float(c.count(t)) for c, t in zip(completions, target)]

    prompts = [{"prompt": "say a: ", "target": "a"}, {"prompt": "say b: ", "target": "b"}]
    trainer = Trainer(
        _config(rollout={"prompts_per_step": 2}, steps=1), reward_functions=target_reward, prompts=prompts
    )
    trainer.train()
    texts, targets = seen[0]
    assert len(texts) == 8 and all(t == {"say a: ": "a", "say b: ": "b"}[p] for p, t in zip(texts, targets))
    with pytest.raises(ValueError, match="'prompt' string"):
        Trainer(_config(), reward_functions=target_reward, prompts=[{"text": "x"}])


def test_sft_is_an_explicit_call_that_train_makes() -> None:
    config = _config(
        sft={"steps": 5},
        task={"sft_pairs": "credo.llm.toy:letters_sft_pairs"},
        loss={"kl_beta": 0.1},
        steps=2,
    )
    trainer = Trainer(config, reward_functions=spread_reward, prompts=["ab", "cd"])
    initial = copy.deepcopy(trainer.model.state_dict())
    assert trainer.warm_up_due and trainer.reference is None  # the constructor trains nothing
    with pytest.raises(RuntimeError, match=r"warm_up\(\)"):
        trainer.step()
    trainer.warm_up()
    assert not trainer.warm_up_due
    assert any(not torch.equal(initial[k], v) for k, v in trainer.model.state_dict().items())
    for a, b in zip(trainer.reference.parameters(), trainer.model.parameters()):  # the post-SFT policy
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    trainer.warm_up()  # once only
    explicit = trainer.train()
    implicit = Trainer(config, reward_functions=spread_reward, prompts=["ab", "cd"]).train()

    def timeless(m: dict[str, float]) -> dict[str, float]:
        return {k: v for k, v in m.items() if not k.startswith(("time/", "throughput/"))}

    assert [timeless(m) for m in explicit] == [timeless(m) for m in implicit]
    assert {"time/step_s", "time/rollout_s", "time/score_s", "time/update_s"} <= set(explicit[0])
    phases = explicit[0]["time/rollout_s"] + explicit[0]["time/score_s"] + explicit[0]["time/update_s"]
    assert 0 < phases <= explicit[0]["time/step_s"]
