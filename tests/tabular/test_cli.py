"""``credo tabular`` and the algorithm registry."""

from __future__ import annotations

import numpy as np
import pytest

from credo.cli.main import main
from credo.tabular import ALGORITHMS, TabularSettings, make_problem, run_algorithm, value_iteration


def test_every_registered_algorithm_runs_on_the_seed_grid():
    problem = make_problem("seed001")
    v_star, _ = value_iteration(problem.mdp)
    settings = TabularSettings(episodes=300, seed=0)
    for name, algorithm in ALGORITHMS.items():
        run = run_algorithm(name, problem, settings)
        assert run.values.shape == (25,), name
        assert run.curve.ndim == 1 and run.curve.size > 0, name
        assert run.notes, name
        if algorithm.kind == "planning" and name != "policy_evaluation":
            np.testing.assert_allclose(run.values, v_star, atol=1e-8)
        if algorithm.kind == "control":
            assert run.policy is not None and run.policy.shape == (25, 4)
            assert run.result is not None and run.result.episode_returns.shape == (300,)


def test_cli_writes_both_pngs_and_says_where(tmp_path, capsys):
    code = main(["tabular", "value_iteration", "seed001", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    values_png = tmp_path / "seed001-value_iteration-values.png"
    curve_png = tmp_path / "seed001-value_iteration-curve.png"
    assert values_png.read_bytes()[:4] == b"\x89PNG" and curve_png.read_bytes()[:4] == b"\x89PNG"
    assert str(values_png) in out and str(curve_png) in out
    assert "0.59" in out and "+1" in out  # V*(0,0) = 0.9^5 and the circle in the arrow grid


def test_cli_on_gymnasium_env(tmp_path, capsys):
    code = main(
        ["tabular", "sarsa", "CliffWalking-v1", "--episodes", "200", "--alpha", "0.5", "--out", str(tmp_path)]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert (tmp_path / "CliffWalking-v1-sarsa-values.png").exists()
    assert (tmp_path / "CliffWalking-v1-sarsa-curve.png").exists()
    assert "sarsa on CliffWalking-v1 (gamma=1.0)" in out and "G" in out


def test_cli_prediction_on_taxi_without_grid(tmp_path, capsys):
    code = main(
        ["tabular", "td0", "Taxi-v4", "--episodes", "20", "--max-steps", "200", "--out", str(tmp_path)]
    )
    assert code == 0
    assert (tmp_path / "Taxi-v4-td0-values.png").exists()
    assert "RMS error against the exact V_pi" in capsys.readouterr().out


def test_cli_list_and_errors(tmp_path, capsys):
    assert main(["tabular", "--list"]) == 0
    listing = capsys.readouterr().out
    for name in ALGORITHMS:
        assert name in listing
    assert main(["tabular", "nope", "seed001"]) == 2
    assert "unknown algorithm 'nope'" in capsys.readouterr().out
    assert main(["tabular", "td0", "NoSuchEnv-v0", "--out", str(tmp_path)]) == 2
    assert "unknown problem 'NoSuchEnv-v0'" in capsys.readouterr().out
    assert main(["tabular", "td0", "seed001", "--gamma", "1.5", "--out", str(tmp_path)]) == 2
    assert "gamma must lie in [0, 1]" in capsys.readouterr().out


def test_run_algorithm_unknown_name():
    with pytest.raises(ValueError, match="unknown algorithm 'dqn'"):
        run_algorithm("dqn", make_problem("seed001"))
