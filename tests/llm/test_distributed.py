from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_same_code_runs_data_parallel_under_torchrun(tmp_path: Path) -> None:
    """Two CPU processes (gloo DDP through accelerate): whole prompts per process, identical weights
    after every step, one writer of metrics and checkpoints."""
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    if not Path(torchrun).exists():
        pytest.skip("torchrun not found")
    pytest.importorskip("accelerate")
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "--master_port", "29517", str(worker), str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [
        json.loads(line[len("RESULT ") :]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")
    ]
    assert sorted(r["rank"] for r in results) == [0, 1] and all(r["world"] == 2 for r in results)
    assert results[0]["checksum"] == results[1]["checksum"]  # DDP kept the replicas identical
    assert results[0]["prompts"] != results[1]["prompts"]  # each process takes its own prompts
    assert results[0]["reward"] == results[1]["reward"]  # logged rewards are gathered over processes
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2
    assert (tmp_path / "run" / "checkpoints" / "latest").read_text() == "step_000002"
