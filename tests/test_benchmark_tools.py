"""The benchmark scripts' pure helpers (the scripts themselves need a GPU for their real figures):
``trainer_profile.peak_allocations`` on a synthetic allocator trace shaped like an H200 snapshot."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _trainer_profile() -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))  # the script imports its sibling trainer_bench
    try:
        spec = importlib.util.spec_from_file_location("trainer_profile", BENCHMARKS / "trainer_profile.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


VENV = "/opt/torch/.venv/lib/python3.12/site-packages"  # a venv under a directory named torch
CPP = [{"name": "torch::unwind::unwind()", "filename": "??", "line": 0}]
MLP = [
    *CPP,
    {"name": "call", "filename": "/tmp/torchinductor_root/b6/cb6wsbbk.py", "line": 1655},
    {"name": "forward", "filename": f"{VENV}/transformers/models/qwen2/modeling_qwen2.py", "line": 47},
    {"name": "_fn", "filename": f"{VENV}/torch/_dynamo/eval_frame.py", "line": 1263},
    {"name": "run", "filename": "/work/main/src/credo/llm/models.py", "line": 350},
]
LOSS = [*CPP, {"name": "micro_batch_loss", "filename": "/work/main/src/credo/llm/losses.py", "line": 194}]


def test_peak_allocations_names_the_model_line_and_the_credo_line_below_it() -> None:
    profile = _trainer_profile()
    trace = [
        {"action": "alloc", "addr": 1, "size": 300, "frames": MLP},
        {"action": "alloc", "addr": 2, "size": 100, "frames": LOSS},
        {"action": "alloc", "addr": 3, "size": 50, "frames": MLP},
        {"action": "free_completed", "addr": 1, "size": 300, "frames": MLP},  # the peak was before
        {"action": "alloc", "addr": 4, "size": 20, "frames": CPP},
    ]
    result = profile.peak_allocations({"device_traces": [trace]}, before=1000)
    assert result["peak_GiB"] * 2**30 == 1450
    places = {row["where"]: row["GiB"] * 2**30 for row in result["top_at_peak"]}
    assert places == {
        "modeling_qwen2.py:47 forward (from models.py:350 run)": 350,
        "losses.py:194 micro_batch_loss": 100,
    }
    assert profile._where(CPP) == "torch internals"
