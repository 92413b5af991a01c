from __future__ import annotations

import subprocess
import sys

from credo.cli.main import main


def test_demo_prints_seed_tables(capsys) -> None:
    assert main(["demo", "--tables-only"]) == 0
    out = capsys.readouterr().out
    assert "loss = 0.4133" in out  # seed 003 REINFORCE loss: mean of -(sum logp) * advantage
    assert "rloo  -1.5000  +0.0000  +1.5000" in out


def test_cli_help_runs_as_a_program() -> None:
    proc = subprocess.run([sys.executable, "-m", "credo.cli.main", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "demo" in proc.stdout
