from __future__ import annotations

from pathlib import Path

from credo.cli.report import (
    difference_verdict,
    markdown_report,
    paired_difference,
    paired_sentence,
    plot_curves,
    summarize,
)


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


def _finals(values: dict[str, list[float]], step: int = 5) -> list[dict]:
    return [
        {"estimator": e, "seed": s, "step": step, "m": v}
        for e, vals in values.items()
        for s, v in enumerate(vals)
    ]


def test_summary_final_values_and_steps_to_threshold() -> None:
    by = {s.estimator: s for s in summarize(_records(), "utility", threshold=0.65)}
    assert abs(by["fast"].final_mean - 0.901) < 1e-9
    assert by["fast"].steps_to_threshold == [10, 10, 10]
    assert by["slow"].steps_to_threshold == [20, 20, 20]
    assert "larger than seed noise" in difference_verdict(by["fast"], by["slow"])


def test_mean_over_evaluation_points() -> None:
    by = {s.estimator: s for s in summarize(_records(), "utility")}
    # fast, seed s: 0.5, 0.7, 0.9 (+0.001 s) -> 0.7 + 0.001 s; slow: 0.5, 0.6, 0.7 (-0.001 s)
    assert all(abs(by["fast"].point_means[s] - (0.7 + 0.001 * s)) < 1e-12 for s in range(3))
    assert abs(by["fast"].points_mean - 0.701) < 1e-12 and abs(by["fast"].points_std - 0.001) < 1e-12
    assert abs(by["slow"].points_mean - 0.599) < 1e-12
    assert by["slow"].last_steps == {0: 20, 1: 20, 2: 20}


def test_noise_verdict_when_seeds_overlap() -> None:
    a, b = summarize(_finals({"a": [1.0, 2.0, 3.0], "b": [1.5, 2.5, 2.0]}), "m")
    assert "within seed noise" in difference_verdict(a, b)


def test_paired_differences_per_seed() -> None:
    by = {s.estimator: s for s in summarize(_records(), "utility")}
    final = paired_difference(by["fast"], by["slow"], "final")
    assert final is not None and final.verdict == "larger than seed noise"
    # fast - slow per seed: 0.9 + 0.001 s - (0.7 - 0.001 s) = 0.2 + 0.002 s
    assert all(abs(final.diffs[s] - (0.2 + 0.002 * s)) < 1e-12 for s in range(3))
    assert abs(final.mean - 0.202) < 1e-12 and abs(final.std - 0.002) < 1e-12
    assert abs(final.half_width - 4.303 * 0.002 / 3**0.5) < 1e-9  # t(2 dof) x s.e.
    points = paired_difference(by["fast"], by["slow"], "mean over points")
    assert points is not None and abs(points.mean - 0.102) < 1e-12
    assert "fast is higher than slow" in paired_sentence(final, "utility")

    # Seed effects shared by both estimators cancel in the pairs: a steady gap of 0.1 is larger than
    # the noise although the seeds spread the values by 1.0 ...
    a, b = summarize(_finals({"a": [1.1, 2.1, 3.15], "b": [1.0, 2.0, 3.0]}), "m")
    assert paired_difference(a, b).verdict == "larger than seed noise"
    assert "within seed noise" in difference_verdict(a, b)  # ... where the unpaired test sees none
    # ... differences that change sign are within it
    a, b = summarize(_finals({"a": [1.1, 1.9, 3.05], "b": [1.0, 2.0, 3.0]}), "m")
    paired = paired_difference(a, b)
    assert paired.verdict == "within seed noise"
    assert "these seeds cannot tell a from b" in paired_sentence(paired, "m")
    a, b = summarize(_finals({"a": [1.0, 2.0], "b": [1.0, 2.0]}), "m")
    assert paired_difference(a, b).verdict == "identical"
    a, b = summarize(_finals({"a": [1.0], "b": [2.0]}), "m")
    assert "no estimate of seed noise" in paired_sentence(paired_difference(a, b), "m")
    # only the seeds both have are paired; none in common: no comparison
    a, b = summarize(
        [
            {"estimator": "a", "seed": 0, "step": 1, "m": 1.0},
            {"estimator": "b", "seed": 1, "step": 1, "m": 1.0},
        ],
        "m",
    )
    assert paired_difference(a, b) is None


def test_plot_and_markdown(tmp_path: Path) -> None:
    png = plot_curves(_records(), ["utility"], tmp_path / "curves.png")
    assert png.stat().st_size > 5000
    records = [{**r, "early_stop": 0.1 * r["seed"], "kl": 0.0} for r in _records()]
    png = plot_curves(records, ["utility", "early_stop", "kl", "utility"], tmp_path / "four.png", columns=3)
    assert png.stat().st_size > 5000
    md = markdown_report(
        records, ["utility", "early_stop"], "utility", 0.65, {"steps": 20}, "curves.png", reference="slow"
    )
    final, points = md.split("## Mean over evaluation points")
    assert "| fast | 0.9010 ± 0.0010 | 0.1000 ± 0.1000 |" in final
    assert "| fast | 0.7010 ± 0.0010 | 0.1000 ± 0.1000 |" in points
    assert "## Paired differences from slow on utility" in md
    assert "- fast - slow, final utility: per seed +0.2000, +0.2020, +0.2040; mean +0.2020 ± 0.0020" in md
    assert "- fast - slow, mean over points utility: per seed" in md
    assert "larger than seed noise, fast is higher than slow" in md
    assert "| fast | 10, 10, 10 | 10.0 (3/3 seeds) |" in md
