"""Splitting a global batch over processes does not change training (DDP, 2 CPU processes, gloo).

A 2-process run with P prompts per process and a 1-process run with 2P prompts per process take the
same union of prompts each step (:class:`~credo.llm.prompts.PromptOrder`: step s takes positions
``s*N .. s*N + N-1`` of the seeded order, N = per-process prompts x world size; rank r takes every
second one), and the worker's test-only sampler gives a prompt the same completions on any process
(``split_worker.PromptSeededSampler``). The loss normaliser is global
(:func:`credo.llm.losses.batch_normalizer` with :meth:`Distributed.global_counts`), and DDP averages
gradients, so both runs compute the same gradient, in another order of fp32 sums.

Tolerances. Losses and rewards are O(1) fp32 sums of ~100 terms: reordering changes them by a few
ulp (~1e-7); we allow 1e-6 absolute (observed <= 7e-8). Parameters: AdamW (lr 1e-3) moves each
element by at most ~lr per step, and divides by the gradient's own magnitude, so an element whose
gradient nearly cancels can turn a ~1e-7 relative reordering error into a larger share of its move;
we allow 1e-5 absolute (1% of one step's move; observed ~8e-7). A per-process normaliser, the bug
this guards against, changes the parameters by ~4e-3 and the loss by ~6e-3 (checked below).

FSDP: accelerate (1.16) does not shard on the CPU: with ``distributed_type: FSDP`` (or an explicit
``FullyShardedDataParallelPlugin``) and no GPU, ``Accelerator`` falls back to ``MULTI_CPU`` and wraps
the model in DDP; ``test_fsdp_request_on_cpu_falls_back_to_ddp`` records that. See docs/distributed.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

WORKER = Path(__file__).with_name("split_worker.py")
FSDP_CONFIG = Path(__file__).parents[2] / "src" / "credo" / "configs" / "accelerate" / "fsdp.yaml"
SCALAR_ATOL = 1e-6
PARAM_ATOL = 1e-5


def _bin(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        pytest.skip(f"{name} not found")
    return found


def _launch(out: Path, nproc: int, port: int, *args: str) -> dict[str, Any]:
    """Run the worker on ``nproc`` CPU processes; rank 0's result (params in ``out/params.pt``)."""
    pytest.importorskip("accelerate")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [_bin("torchrun"), "--nproc_per_node", str(nproc), "--master_port", str(port), str(WORKER)]
    proc = subprocess.run([*cmd, str(out), *args], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "result.json").read_text())


def _max_param_diff(a: Path, b: Path) -> float:
    pa = torch.load(a / "params.pt", weights_only=True)
    pb = torch.load(b / "params.pt", weights_only=True)
    assert pa.keys() == pb.keys()
    return max(float((pa[k].double() - pb[k].double()).abs().max()) for k in pa)


def _assert_same_run(one: dict[str, Any], two: dict[str, Any]) -> None:
    assert one["world"] == 1 and two["world"] == 2
    assert len(one["loss"]) == len(two["loss"]) == 3
    for key in ("loss", "reward"):
        assert one[key] == pytest.approx(two[key], rel=0, abs=SCALAR_ATOL), key
    assert one["grad_norm"] == pytest.approx(two["grad_norm"], rel=1e-5)


CASES = [
    ("token_mean", "pg", 1),
    ("seq_mean_token_sum", "pg", 1),
    ("seq_mean_token_mean", "pg", 1),
    ("token_mean", "ppo_clip", 2),  # two epochs: the shuffled order differs per split, the sum does not
]


@pytest.mark.slow
@pytest.mark.parametrize(("aggregation", "policy_loss", "epochs"), CASES)
def test_two_processes_train_like_one_with_twice_the_prompts(
    tmp_path: Path, aggregation: str, policy_loss: str, epochs: int
) -> None:
    """Same samples -> same per-step loss, mean reward, gradient norm and final parameters, whether
    the 4 prompts of a step sit on one process or 2 + 2 on two."""
    port = 29630 + 2 * CASES.index((aggregation, policy_loss, epochs))
    args = ["--aggregation", aggregation, "--policy-loss", policy_loss, "--epochs", str(epochs)]
    one = _launch(tmp_path / "one", 1, port, "--global-prompts", "4", *args)
    two = _launch(tmp_path / "two", 2, port + 1, "--global-prompts", "4", *args)
    _assert_same_run(one, two)
    assert two["model_class"] == "DistributedDataParallel"
    assert _max_param_diff(tmp_path / "one", tmp_path / "two") <= PARAM_ATOL


@pytest.mark.slow
def test_a_per_process_normaliser_would_be_caught(tmp_path: Path) -> None:
    """Negative control: normalising each process's loss by its own token count (x world size) instead
    of the global count changes the run far beyond the tolerances above."""
    one = _launch(tmp_path / "one", 1, 29650, "--global-prompts", "4")
    bad = _launch(tmp_path / "bad", 2, 29651, "--global-prompts", "4", "--local-normaliser")
    assert max(abs(a - b) for a, b in zip(one["loss"], bad["loss"])) > 100 * SCALAR_ATOL
    assert _max_param_diff(tmp_path / "one", tmp_path / "bad") > 100 * PARAM_ATOL


@pytest.mark.slow
def test_fsdp_request_on_cpu_falls_back_to_ddp(tmp_path: Path) -> None:
    """``accelerate launch`` with the shipped fsdp.yaml on 2 CPU processes: accelerate cannot shard on
    the CPU (``sync_module_states`` must be off there, or it raises) and runs DDP instead. This
    records that behaviour; when it changes (FSDP on CPU), the FSDP split-invariance and
    resume tests belong here."""
    pytest.importorskip("accelerate")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [_bin("accelerate"), "launch", "--config_file", str(FSDP_CONFIG), "--num_processes", "2"]
    cmd += ["--main_process_port", "29660", "--fsdp_sync_module_states", "false"]
    proc = subprocess.run(
        [*cmd, str(WORKER), str(tmp_path / "fsdp"), "--steps", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "fsdp" / "result.json").read_text())
    assert result["world"] == 2
    assert result["distributed_type"] == "DistributedType.MULTI_CPU"
    assert result["model_class"] == "DistributedDataParallel"
    assert "FSDP was requested but accelerate runs DistributedType.MULTI_CPU" in proc.stderr
