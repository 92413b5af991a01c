from __future__ import annotations

from pathlib import Path

from credo.cli.report import difference_verdict, markdown_report, plot_curves, summarize


def _records() -> list[dict]:
    rows = []
    for seed in range(3):
        for step in (0, 10, 20):
            rows.append(
                {"estimator": "fast", "seed": seed, "step": step, "utility": 0.5 + 0.02 * step + 0.001 * seed}
            )
            rows.append(
                {"estimator": "slow", "seed": seed, "step": step, "utility": 0.5 + 0.01 * step - 0.001 * seed}
            )
    return rows


def test_summary_final_values_and_steps_to_threshold() -> None:
    by = {s.estimator: s for s in summarize(_records(), "utility", threshold=0.65)}
    assert abs(by["fast"].final_mean - 0.901) < 1e-9
    assert by["fast"].steps_to_threshold == [10, 10, 10]
    assert by["slow"].steps_to_threshold == [20, 20, 20]
    assert "larger than seed noise" in difference_verdict(by["fast"], by["slow"])


def test_noise_verdict_when_seeds_overlap() -> None:
    rows = [
        {"estimator": e, "seed": s, "step": 5, "m": v}
        for e, vals in {"a": [1.0, 2.0, 3.0], "b": [1.5, 2.5, 2.0]}.items()
        for s, v in enumerate(vals)
    ]
    a, b = summarize(rows, "m")
    assert "within seed noise" in difference_verdict(a, b)


def test_plot_and_markdown(tmp_path: Path) -> None:
    png = plot_curves(_records(), ["utility"], tmp_path / "curves.png")
    assert png.stat().st_size > 5000
    md = markdown_report(
        _records(), ["utility"], "utility", 0.65, {"steps": 20}, "curves.png", reference="slow"
    )
    assert "| fast | 0.9010 ± 0.0010 |" in md
    assert "fast - slow" in md and "larger than seed noise" in md
