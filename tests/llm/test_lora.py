"""LoRA (``model.lora``, through peft): only the adapters train, the reference is the base network
with its adapters off (no second copy), rollout and training log-probs agree, resume is bit-identical."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("peft")

from peft import PeftModel

from credo.llm import toy
from credo.llm.config import config_from_dict, load_config
from credo.llm.models import AdapterFreeReference
from credo.llm.rollout import RolloutBatch, sequence_logprobs
from credo.llm.trainer import Trainer

from .configs import SMALL_MODEL, config_with

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated")

PROMPTS = ["ab", "cd"]


def spread_reward(prompts: list[str], completions: list[str], **meta: Any) -> list[float]:
    return [(sum(map(ord, c)) % 11) / 10.0 for c in completions]


def _config(lora: dict[str, Any] | None = None, **sections: Any) -> Any:
    data: dict[str, Any] = {
        "model": {**SMALL_MODEL, "lora": {"r": 4, "alpha": 8} if lora is None else lora},
        "rollout": {"group_size": 4, "prompts_per_step": 2, "max_new_tokens": 6},
        "optim": {"lr": 1e-2, "micro_batch_size": 4},
        "progress": False,
        "tensorboard": False,
    }
    return config_with(data, **sections)


def _logp(model: Any, batch: RolloutBatch, temperature: float = 1.0) -> torch.Tensor:
    with torch.no_grad():
        return sequence_logprobs(
            model,
            batch.prompt_ids,
            batch.prompt_mask,
            batch.completion_ids,
            batch.completion_mask,
            temperature,
        )


def _frozen(model: Any) -> dict[str, torch.Tensor]:
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.clone() for k, v in model.state_dict().items() if k not in trainable}


def test_only_the_adapters_train_and_the_base_stays_bit_identical() -> None:
    trainer = Trainer(_config(), reward_functions=spread_reward, prompts=PROMPTS)
    model = trainer.model
    assert isinstance(model, PeftModel)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_A" in n or "lora_B" in n for n in trainable)
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in trainable.values()}
    base_before = _frozen(model)
    adapters_before = {n: p.detach().clone() for n, p in trainable.items()}
    trainer.train(steps=2)  # step 1 moves B (A's gradient is 0 while B = 0), step 2 moves A too
    for name, value in _frozen(model).items():
        torch.testing.assert_close(value, base_before[name], atol=0, rtol=0, msg=name)
    for name, p in trainable.items():
        assert not torch.equal(p, adapters_before[name]), f"{name} did not change"


def test_the_reference_is_the_untouched_base_and_needs_no_copy(tiny_model: Any, tokenizer: Any) -> None:
    base = copy.deepcopy(tiny_model).eval()
    config = _config(loss={"kl_beta": 0.1, "kl_mode": "loss", "kl_kind": "k3"}, steps=3)
    trainer = Trainer(
        config, reward_functions=spread_reward, prompts=PROMPTS, model=tiny_model, tokenizer=tokenizer
    )
    assert isinstance(trainer.reference, AdapterFreeReference) and trainer.reference.policy is trainer.model
    torch.manual_seed(0)
    batch = trainer.sampler.sample(PROMPTS)
    ref_start = _logp(trainer.reference, batch)
    torch.testing.assert_close(ref_start, _logp(base, batch), atol=0, rtol=0)
    torch.testing.assert_close(_logp(trainer.model, batch), ref_start, atol=0, rtol=0)  # B = 0 at start

    history = trainer.train()
    assert len(history) == 3 and history[-1]["kl"] > 0
    torch.testing.assert_close(_logp(trainer.reference, batch), _logp(base, batch), atol=0, rtol=0)
    assert not torch.allclose(_logp(trainer.model, batch), ref_start)  # the policy moved, the reference not
    inputs = {"input_ids": batch.prompt_ids, "attention_mask": batch.prompt_mask.long()}
    assert not trainer.reference(**inputs).logits.requires_grad  # no graph, even outside no_grad()
    assert not any(isinstance(m, type(base)) for m in vars(trainer).values())  # no second model kept


def test_rollout_logprobs_equal_the_training_forward_with_lora() -> None:
    trainer = Trainer(_config(steps=2), reward_functions=spread_reward, prompts=PROMPTS)
    trainer.train()  # adapters away from zero
    torch.manual_seed(1)
    batch = trainer.sampler.sample(PROMPTS)  # generate() on the peft model, log-probs recorded
    trainer.model.train()
    torch.testing.assert_close(_logp(trainer.model, batch), batch.logprobs, atol=1e-5, rtol=1e-5)
    with trainer.model.disable_adapter():  # the adapters matter: the base alone gives other log-probs
        assert not torch.allclose(_logp(trainer.model, batch), batch.logprobs)


def _resume_config(output_dir: Path, sft_steps: int, r: int = 4) -> Any:
    return _config(
        lora={"r": r, "alpha": 8, "target_modules": ["q_proj", "v_proj", "gate_proj"]},
        credit={"estimator": "gae", "options": {"gamma": 1.0, "lam": 0.95}},
        loss={"policy_loss": "ppo_clip", "epochs": 2, "kl_beta": 0.05, "value_clip": 0.2},
        optim={"lr": 1e-2, "mini_batches": 2, "schedule": "cosine", "warmup_steps": 2},
        sft={"steps": sft_steps},
        task={"sft_pairs": "credo.llm.toy:letters_sft_pairs"},
        steps=5,
        checkpoint_every=2,
        output_dir=str(output_dir),
    )


@pytest.mark.parametrize("sft_steps", [0, 5])
def test_kill_and_resume_with_lora_is_bit_identical(tmp_path: Path, sft_steps: int) -> None:
    prompts = toy.letters_prompts()
    straight = Trainer(
        _resume_config(tmp_path / "a", sft_steps), reward_functions=spread_reward, prompts=prompts
    )
    straight.train()

    killed = Trainer(
        _resume_config(tmp_path / "b", sft_steps), reward_functions=spread_reward, prompts=prompts
    )
    killed.train(steps=3)  # checkpoint at step 2; step 3 is lost with the process
    del killed
    assert (tmp_path / "b" / "lora_base.pt").exists() == (sft_steps > 0)  # the warm-up merged into the base
    policy = torch.load(tmp_path / "b" / "checkpoints" / "step_000002" / "policy.pt", weights_only=True)
    assert policy and all("lora_" in k for k in policy)  # checkpoints hold the adapters only
    resumed = Trainer(
        _resume_config(tmp_path / "b", sft_steps), reward_functions=spread_reward, prompts=prompts
    )
    assert resumed.step_count == 2
    resumed.train()

    a_state, b_state = straight.model.state_dict(), resumed.model.state_dict()
    assert a_state.keys() == b_state.keys()
    for name, value in a_state.items():  # the base weights and the adapters
        torch.testing.assert_close(b_state[name], value, atol=0, rtol=0, msg=name)
    for a, b in zip(straight.critic.parameters(), resumed.critic.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    rows = [(tmp_path / d / "metrics.jsonl").read_text().splitlines() for d in ("a", "b")]
    rewards = [[json.loads(x)["reward/mean"] for x in lines] for lines in rows]
    assert rewards[0] == rewards[1] and len(rewards[0]) == 5
    assert (tmp_path / "a" / "samples.txt").read_text() == (tmp_path / "b" / "samples.txt").read_text()


def test_resume_with_another_lora_setting_is_refused(tmp_path: Path) -> None:
    config = _config(steps=2, checkpoint_every=1, output_dir=str(tmp_path))
    Trainer(config, reward_functions=spread_reward, prompts=PROMPTS).train()
    with pytest.raises(ValueError) as error:
        Trainer(
            _config(lora={"r": 8, "alpha": 8}, steps=3, checkpoint_every=1, output_dir=str(tmp_path)),
            reward_functions=spread_reward,
            prompts=PROMPTS,
        )
    message = str(error.value)
    assert "config key 'model.lora.r': checkpoint has 4, this run has 8" in message and "\n" not in message
    without = config_from_dict(
        {
            "model": SMALL_MODEL,
            "steps": 3,
            "output_dir": str(tmp_path),
            "progress": False,
            "tensorboard": False,
        }
    )
    with pytest.raises(ValueError, match=r"config key 'model\.lora"):
        Trainer(without, reward_functions=spread_reward, prompts=PROMPTS)
    forced = _config(lora={"r": 8, "alpha": 8}, steps=3, output_dir=str(tmp_path), resume="force")
    with pytest.raises(ValueError, match=r"another model\.lora setting"):  # the adapters do not fit
        Trainer(forced, reward_functions=spread_reward, prompts=PROMPTS)


@pytest.mark.parametrize(
    ("lora", "error", "match"),
    [
        ("{r: 0}", ValueError, r"'model\.lora\.r' must be an integer >= 1, got 0"),
        ("{r: -2}", ValueError, r"'model\.lora\.r'"),
        ("{r: 2.5}", TypeError, r"'model\.lora\.r' must be an integer"),
        ("{alpha: 0}", ValueError, r"'model\.lora\.alpha' must be > 0"),
        ("{alpha: -1}", ValueError, r"'model\.lora\.alpha' must be > 0"),
        ("{dropout: -0.1}", ValueError, r"'model\.lora\.dropout' must be in \[0, 1\)"),
        ("{dropout: 1.0}", ValueError, r"'model\.lora\.dropout' must be in \[0, 1\)"),
        ("{dropout: 0.1}", ValueError, r"'model\.lora\.dropout' must be 0, got 0\.1: dropout makes"),
        ("{rank: 8}", ValueError, r"unknown config key 'model\.lora\.rank'"),
        ("{target_modules: []}", ValueError, r"'model\.lora\.target_modules'"),
        ("yes", TypeError, r"'model\.lora' must be a mapping"),
    ],
)
def test_bad_lora_settings_fail_in_one_line_naming_the_key(
    lora: str, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as raised:
        load_config(None, ["--model.lora", lora])
    assert "\n" not in str(raised.value)


def test_lora_settings_load_and_are_checked_when_set_in_code() -> None:
    config = load_config(None, ["--model.lora.r", "8", "--model.lora.target_modules", "[q_proj, v_proj]"])
    assert config.model.lora is not None
    assert (config.model.lora.r, config.model.lora.alpha, config.model.lora.dropout) == (8, 32.0, 0.0)
    assert config.model.lora.target_modules == ["q_proj", "v_proj"]
    assert load_config(None, []).model.lora is None
    config.model.lora.r = 0
    with pytest.raises(ValueError, match=r"'model\.lora\.r'"):
        Trainer(config, reward_functions=spread_reward, prompts=PROMPTS)
    with pytest.raises(ValueError, match=r"'model\.lora'.*vllm"):
        load_config(None, ["--model.lora", "{}", "--rollout.backend", "vllm"])


def test_lora_without_peft_fails_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "peft" else find_spec(name, *a)
    )
    with pytest.raises(ValueError, match=r"config key 'model\.lora' needs peft.*pip install peft"):
        load_config(None, ["--model.lora", "{r: 8}"])
    load_config(None, [])  # without LoRA, peft is not needed


@pytest.mark.parametrize("kl_mode", ["loss", "reward"])
def test_grpo_with_kl_and_lora_runs_end_to_end(kl_mode: str) -> None:
    config = _config(
        credit={"estimator": "grpo"},
        loss={"kl_beta": 0.05, "kl_mode": kl_mode, "kl_kind": "k3"},
        steps=3,
    )
    history = Trainer(config, reward_functions=spread_reward, prompts=PROMPTS).train()
    assert len(history) == 3
    assert all(math.isfinite(m["loss"]) and math.isfinite(m["kl"]) for m in history)
    assert history[0]["kl"] == pytest.approx(0.0, abs=1e-6) and history[-1]["kl"] > 0


@pytest.mark.parametrize("mode", ["shared", "separate"])
def test_a_critic_works_with_lora(mode: str) -> None:
    config = _config(
        credit={"estimator": "gae", "options": {"lam": 1.0}},
        loss={"policy_loss": "ppo_clip", "value_coef": 1.0},
        critic={"mode": mode, "lr": 1e-2},
        steps=3,
    )
    trainer = Trainer(config, reward_functions=lambda p, c, **m: [1.0] * len(c), prompts=PROMPTS)
    history = trainer.train()
    assert all(math.isfinite(m["value_loss"]) for m in history)


@pytest.mark.parametrize("named_base", [True, False])
def test_credo_train_saves_a_merged_model_and_the_adapter(
    tmp_path: Path, tiny_model: Any, tokenizer: Any, named_base: bool
) -> None:
    """``save_final_model`` (what ``credo train`` saves): a plain merged model any tool loads, with or
    without a base directory to name, and the adapters alone in ``adapter/``; the trainer keeps its
    adapters."""
    from transformers import AutoModelForCausalLM

    from credo.cli.train import save_final_model
    from credo.llm.tiny import save_tokenizer

    config = _config(steps=2)
    if named_base:
        tiny_model.save_pretrained(tmp_path / "base")
        save_tokenizer(tokenizer, tmp_path / "base")
        config.model.model_path = str(tmp_path / "base")
    trainer = Trainer(config, reward_functions=spread_reward, prompts=PROMPTS)
    trainer.train()
    out = save_final_model(trainer, config, tmp_path / "model")
    assert (out / "model.safetensors").exists() and (out / "adapter" / "adapter_model.safetensors").exists()
    assert isinstance(trainer.unwrapped_model, PeftModel)  # merged from a copy
    torch.manual_seed(0)
    batch = trainer.sampler.sample(PROMPTS)
    expected = _logp(trainer.model, batch)
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert not isinstance(merged, PeftModel)
    torch.testing.assert_close(_logp(merged, batch), expected, atol=1e-5, rtol=1e-5)
    if named_base:  # the adapter alone, onto its base
        base = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
        with_adapter = PeftModel.from_pretrained(base, out / "adapter")
        torch.testing.assert_close(_logp(with_adapter, batch), expected, atol=1e-6, rtol=1e-6)
