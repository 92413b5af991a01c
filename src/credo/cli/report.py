"""Reports of multi-seed comparisons: curves with a band over seeds (PNG), a Markdown table with
final values and steps-to-threshold, and a plain statement of which differences are within seed
noise.

Input is a list of metric records (dicts), one per evaluation, each holding at least ``estimator``,
``seed``, ``step`` and the metric values, as ``credo compare`` writes them to JSONL.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL file of metric records."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def curves(records: Iterable[dict[str, Any]], metric: str) -> dict[str, dict[int, dict[int, float]]]:
    """``estimator -> seed -> step -> value`` for one metric (records without it are skipped)."""
    out: dict[str, dict[int, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        if metric in r and r[metric] is not None:
            out[str(r["estimator"])][int(r["seed"])][int(r["step"])] = float(r[metric])
    return out


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


@dataclass(frozen=True)
class Summary:
    """One estimator's result on one metric, over seeds."""

    estimator: str
    final_mean: float
    final_std: float
    n_seeds: int
    steps_to_threshold: list[int | None]  # per seed: first eval step reaching the threshold


def summarize(
    records: Iterable[dict[str, Any]], metric: str, threshold: float | None = None
) -> list[Summary]:
    """Final value (at each seed's last evaluated step) and steps-to-threshold, per estimator."""
    result = []
    for estimator, by_seed in sorted(curves(records, metric).items()):
        finals, reached = [], []
        for _, by_step in sorted(by_seed.items()):
            steps = sorted(by_step)
            finals.append(by_step[steps[-1]])
            hit = None if threshold is None else next((s for s in steps if by_step[s] >= threshold), None)
            reached.append(hit)
        mean, std = _mean_std(finals)
        result.append(Summary(estimator, mean, std, len(finals), reached))
    return result


def difference_verdict(a: Summary, b: Summary) -> str:
    """Whether ``a`` and ``b`` differ by more than seed noise: |diff| against twice the standard error
    of the difference of means (Welch). With one seed each there is no noise estimate."""
    diff = a.final_mean - b.final_mean
    if a.n_seeds < 2 or b.n_seeds < 2:
        return f"{a.estimator} - {b.estimator} = {diff:+.4f} (one seed: no estimate of seed noise)"
    se = math.sqrt(a.final_std**2 / a.n_seeds + b.final_std**2 / b.n_seeds)
    if se == 0.0 and diff == 0.0:
        return f"{a.estimator} and {b.estimator} are identical"
    within = abs(diff) <= 2.0 * se
    verdict = "within seed noise" if within else "larger than seed noise"
    return f"{a.estimator} - {b.estimator} = {diff:+.4f} (2 x s.e. = {2 * se:.4f}): {verdict}"


def plot_curves(
    records: Sequence[dict[str, Any]], metrics: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    """One panel per metric: the mean over seeds per estimator, with a min-max band over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for estimator, by_seed in sorted(curves(records, metric).items()):
            steps = sorted({s for by_step in by_seed.values() for s in by_step})
            rows = [[by_step[s] for by_step in by_seed.values() if s in by_step] for s in steps]
            mean = [sum(r) / len(r) for r in rows]
            line = ax.plot(steps, mean, label=f"{estimator} ({len(by_seed)} seeds)")[0]
            ax.fill_between(
                steps, [min(r) for r in rows], [max(r) for r in rows], alpha=0.2, color=line.get_color()
            )
        ax.set_title(metric)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def markdown_report(
    records: Sequence[dict[str, Any]],
    metrics: Sequence[str],
    primary: str,
    threshold: float | None,
    config: dict[str, Any],
    plot_name: str,
    reference: str | None = None,
) -> str:
    """The Markdown report: configuration, final table, steps-to-threshold, noise verdicts."""
    lines = ["# Comparison report", "", f"![curves]({plot_name})", "", "## Configuration", "", "```yaml"]
    lines += [f"{k}: {v}" for k, v in config.items()]
    lines += [
        "```",
        "",
        "## Final held-out values (mean ± std over seeds, at each seed's last evaluation)",
        "",
    ]
    summaries = {
        m: {s.estimator: s for s in summarize(records, m, threshold if m == primary else None)}
        for m in metrics
    }
    estimators = sorted({e for by in summaries.values() for e in by})
    lines.append("| estimator | " + " | ".join(metrics) + " |")
    lines.append("|---" * (len(metrics) + 1) + "|")
    for e in estimators:
        cells = []
        for m in metrics:
            s = summaries[m].get(e)
            cells.append("n/a" if s is None else f"{s.final_mean:.4f} ± {s.final_std:.4f}")
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    if threshold is not None:
        lines += ["", f"## Steps to reach {primary} >= {threshold}", ""]
        lines.append("| estimator | per seed | mean over seeds that reached it |")
        lines.append("|---|---|---|")
        for e in estimators:
            s = summaries[primary].get(e)
            if s is None:
                continue
            per_seed = ", ".join("never" if x is None else str(x) for x in s.steps_to_threshold)
            hit = [x for x in s.steps_to_threshold if x is not None]
            mean = (
                f"{sum(hit) / len(hit):.1f} ({len(hit)}/{len(s.steps_to_threshold)} seeds)"
                if hit
                else "never"
            )
            lines.append(f"| {e} | {per_seed} | {mean} |")
    if reference is not None and reference in summaries[primary]:
        lines += ["", f"## Differences from {reference} on {primary}", ""]
        ref = summaries[primary][reference]
        for e in estimators:
            if e != reference and e in summaries[primary]:
                lines.append(f"- {difference_verdict(summaries[primary][e], ref)}")
    return "\n".join(lines) + "\n"
