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
from credo.integrations.verl import outcome_estimators, register  # noqa: E402


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
    assert names == [f"credo_{n}" for n in outcome_estimators()]
    assert {"credo_grpo", "credo_rloo", "credo_dr_grpo"} <= set(names)
    assert not {"credo_shape_grpo", "credo_gae"} & set(names)
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
