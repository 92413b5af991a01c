from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from credo.llm import toy
from credo.llm.checkpoint import latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from credo.llm.models import lr_lambda, step_seed
from credo.llm.sft import sft_batch, sft_warmup


def test_sft_labels_only_answer_and_eos(tokenizer: Any) -> None:
    ids, mask, labels = sft_batch(tokenizer, [("ab: ", "xy"), ("a: ", "z")], torch.device("cpu"))
    assert ids.shape == (2, 7)
    eos = tokenizer.eos_token_id
    x, y, z = (tokenizer.convert_tokens_to_ids(c) for c in "xyz")
    assert labels[0].tolist() == [-100, -100, -100, -100, x, y, eos]
    assert labels[1].tolist() == [-100, -100, -100, z, eos, -100, -100]
    assert mask[1].tolist() == [1, 1, 1, 1, 1, 0, 0]


def test_sft_warmup_learns_the_format(tiny_model: Any, tokenizer: Any) -> None:
    losses = sft_warmup(tiny_model, tokenizer, toy.letters_sft_pairs(64), steps=80, lr=1e-2, batch_size=16)
    assert losses[-1] < 0.8 * losses[0]
    with pytest.raises(ValueError, match="at least one"):
        sft_warmup(tiny_model, tokenizer, [], steps=1)


def test_schedules() -> None:
    constant = lr_lambda("constant", 2, 10)
    assert [constant(s) for s in range(4)] == [0.5, 1.0, 1.0, 1.0]
    linear = lr_lambda("linear", 0, 10)
    assert linear(0) == 1.0 and abs(linear(5) - 0.5) < 1e-12 and linear(10) == 0.0
    cosine = lr_lambda("cosine", 0, 10)
    assert cosine(0) == 1.0 and abs(cosine(5) - 0.5) < 1e-12 and abs(cosine(10)) < 1e-12
    assert all(0 <= cosine(s) <= 1 for s in range(12)) and not math.isnan(cosine(3))


def test_step_seeds_are_distinct() -> None:
    seeds = {step_seed(s, t, r) for s in range(3) for t in range(50) for r in range(4)}
    assert len(seeds) == 3 * 50 * 4


def test_checkpoint_round_trip_and_crash_during_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "ckpt"
    torch.manual_seed(5)
    state = rng_state()
    save_checkpoint(root, 1, {"w": torch.ones(3), "rng": state}, {"step": 1})
    first = torch.rand(2)
    objects, meta = load_checkpoint(latest_checkpoint(root))
    assert meta == {"step": 1} and torch.equal(objects["w"], torch.ones(3))
    set_rng_state(objects["rng"])
    assert torch.equal(torch.rand(2), first)

    real_save = torch.save
    calls = {"n": 0}

    def dying_save(obj: Any, path: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed while writing")
        real_save(obj, path)

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(root, 2, {"w": 2 * torch.ones(3), "rng": state}, {"step": 2})
    monkeypatch.setattr(torch, "save", real_save)
    latest = latest_checkpoint(root)
    assert latest is not None and latest.name == "step_000001"  # the half-written one is ignored
    save_checkpoint(root, 3, {"w": 3 * torch.ones(3)}, {"step": 3}, keep=1)
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_000003"]
    assert not list(root.glob(".tmp_step_*"))
