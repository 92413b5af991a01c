"""Reports of multi-seed comparisons: curves with a band over seeds (PNG, one panel per metric), Markdown
tables of the final values and of the means over evaluation points (mean ± std over seeds),
steps-to-threshold, and paired differences from a reference estimator per seed with a plain statement
of whether each is within seed noise.

Input is a list of metric records (dicts), one per evaluation, each holding at least ``estimator``,
``seed``, ``step`` and the metric values, as ``credo compare`` writes them to JSONL.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
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
    """One estimator's result on one metric, over seeds.

    ``final_*``: the value at each seed's last evaluation; ``points_*``: each seed's mean over its
    evaluation points (the area under the evaluated curve divided by the number of points, which
    rewards getting there early as well as getting there). Per seed: ``finals``, ``point_means`` and
    ``last_steps`` (seed -> value), for paired comparisons.
    """

    estimator: str
    final_mean: float
    final_std: float
    n_seeds: int
    steps_to_threshold: list[int | None]  # per seed: first eval step reaching the threshold
    points_mean: float = 0.0
    points_std: float = 0.0
    finals: dict[int, float] = field(default_factory=dict)
    point_means: dict[int, float] = field(default_factory=dict)
    last_steps: dict[int, int] = field(default_factory=dict)


def summarize(
    records: Iterable[dict[str, Any]], metric: str, threshold: float | None = None
) -> list[Summary]:
    """Final value (at each seed's last evaluated step), mean over evaluation points and
    steps-to-threshold, per estimator."""
    result = []
    for estimator, by_seed in sorted(curves(records, metric).items()):
        finals, point_means, last_steps, reached = {}, {}, {}, []
        for seed, by_step in sorted(by_seed.items()):
            steps = sorted(by_step)
            finals[seed] = by_step[steps[-1]]
            point_means[seed] = sum(by_step.values()) / len(by_step)
            last_steps[seed] = steps[-1]
            hit = None if threshold is None else next((s for s in steps if by_step[s] >= threshold), None)
            reached.append(hit)
        mean, std = _mean_std(list(finals.values()))
        p_mean, p_std = _mean_std(list(point_means.values()))
        result.append(
            Summary(
                estimator, mean, std, len(finals), reached, p_mean, p_std, finals, point_means, last_steps
            )
        )
    return result


def difference_verdict(a: Summary, b: Summary) -> str:
    """Whether ``a`` and ``b`` differ by more than seed noise, unpaired: |diff| against twice the
    standard error of the difference of means (Welch). With one seed each there is no noise estimate.
    (The report pairs seeds instead: :func:`paired_difference`.)"""
    diff = a.final_mean - b.final_mean
    if a.n_seeds < 2 or b.n_seeds < 2:
        return f"{a.estimator} - {b.estimator} = {diff:+.4f} (one seed: no estimate of seed noise)"
    se = math.sqrt(a.final_std**2 / a.n_seeds + b.final_std**2 / b.n_seeds)
    if se == 0.0 and diff == 0.0:
        return f"{a.estimator} and {b.estimator} are identical"
    within = abs(diff) <= 2.0 * se
    verdict = "within seed noise" if within else "larger than seed noise"
    return f"{a.estimator} - {b.estimator} = {diff:+.4f} (2 x s.e. = {2 * se:.4f}): {verdict}"


# Two-sided 95% quantiles of Student's t, by degrees of freedom (2.0 beyond the table).
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042)  # fmt: skip


def t95(dof: int) -> float:
    """The two-sided 95% quantile of Student's t with ``dof`` degrees of freedom (>= 1)."""
    return _T95[dof - 1] if dof <= len(_T95) else 2.0


@dataclass(frozen=True)
class Paired:
    """``estimator - reference`` per seed (on the seeds both have) and what seed noise allows.

    ``verdict``: ``"within seed noise"`` when the 95% t-interval of the mean difference holds 0,
    ``"larger than seed noise"`` when it does not, ``"identical"`` when every difference is 0 and
    ``"one seed"`` when there is no estimate of the noise.
    """

    estimator: str
    reference: str
    quantity: str  # "final" or "mean over points"
    diffs: dict[int, float]
    mean: float
    std: float
    half_width: float  # of the 95% interval of the mean difference (nan with one seed)
    verdict: str
    same_steps: bool  # both runs of every pair were last evaluated at the same step


def paired_difference(a: Summary, ref: Summary, quantity: str = "final") -> Paired | None:
    """Paired seeds: seed ``s`` of ``a`` and of ``ref`` share the start, the prompts and the sampling
    stream, so the per-seed differences cancel what the seed does to both. ``quantity`` is
    ``"final"`` or ``"mean over points"``. None when the two share no seed."""
    values_a, values_ref = (a.finals, ref.finals) if quantity == "final" else (a.point_means, ref.point_means)
    seeds = sorted(set(values_a) & set(values_ref))
    if not seeds:
        return None
    diffs = {s: values_a[s] - values_ref[s] for s in seeds}
    mean, std = _mean_std(list(diffs.values()))
    same_steps = all(a.last_steps.get(s) == ref.last_steps.get(s) for s in seeds)
    if len(seeds) < 2:
        half, verdict = float("nan"), "one seed"
    elif all(d == 0.0 for d in diffs.values()):
        half, verdict = 0.0, "identical"
    else:
        half = t95(len(seeds) - 1) * std / math.sqrt(len(seeds))
        verdict = "within seed noise" if abs(mean) <= half else "larger than seed noise"
    return Paired(a.estimator, ref.estimator, quantity, diffs, mean, std, half, verdict, same_steps)


def paired_sentence(p: Paired, metric: str) -> str:
    """One plain sentence: the per-seed differences, their mean and std, and what they say."""
    per_seed = ", ".join(f"{d:+.4f}" for d in p.diffs.values())
    n = len(p.diffs)
    spread = f" ± {p.std:.4f} (mean ± std over {n} paired seeds)" if n > 1 else ""
    head = f"{p.estimator} - {p.reference}, {p.quantity} {metric}: per seed {per_seed}; mean {p.mean:+.4f}{spread}"
    if p.verdict == "one seed":
        tail = "one seed: no estimate of seed noise, so no verdict"
    elif p.verdict == "identical":
        tail = f"identical on every seed: {p.estimator} and {p.reference} do the same here"
    elif p.verdict == "within seed noise":
        tail = (
            f"95% interval ±{p.half_width:.4f}: within seed noise, these seeds cannot tell "
            f"{p.estimator} from {p.reference}"
        )
    else:
        side = "higher" if p.mean > 0 else "lower"
        tail = (
            f"95% interval ±{p.half_width:.4f}: larger than seed noise, {p.estimator} is {side} than "
            f"{p.reference}"
        )
    note = (
        ""
        if p.same_steps
        else " (some runs are unfinished: the pairs were last evaluated at different steps)"
    )
    return f"{head}; {tail}{note}."


def plot_curves(
    records: Sequence[dict[str, Any]],
    metrics: Sequence[str],
    path: str | Path,
    title: str = "",
    columns: int = 3,
) -> Path:
    """One panel per metric (``columns`` to a row): the mean over seeds per estimator, with a min-max
    band over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = max(1, min(columns, len(metrics)))
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax, metric in zip(flat, metrics):
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
    for ax in flat[len(metrics) :]:
        ax.set_visible(False)
    flat[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _value_table(
    summaries: dict[str, dict[str, Summary]], metrics: Sequence[str], estimators: list[str], final: bool
) -> list[str]:
    lines = ["| estimator | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for e in estimators:
        cells = []
        for m in metrics:
            s = summaries[m].get(e)
            if s is None:
                cells.append("n/a")
            else:
                mean, std = (s.final_mean, s.final_std) if final else (s.points_mean, s.points_std)
                cells.append(f"{mean:.4f} ± {std:.4f}")
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    return lines


def _threshold_table(by_estimator: dict[str, Summary], estimators: list[str]) -> list[str]:
    lines = ["| estimator | per seed | mean over seeds that reached it |", "|---|---|---|"]
    for e in estimators:
        s = by_estimator.get(e)
        if s is None:
            continue
        per_seed = ", ".join("never" if x is None else str(x) for x in s.steps_to_threshold)
        hit = [x for x in s.steps_to_threshold if x is not None]
        n = len(s.steps_to_threshold)
        mean = f"{sum(hit) / len(hit):.1f} ({len(hit)}/{n} seeds)" if hit else "never"
        lines.append(f"| {e} | {per_seed} | {mean} |")
    return lines


def _paired_section(by_estimator: dict[str, Summary], reference: str, primary: str) -> list[str]:
    ref = by_estimator[reference]
    lines = [
        f"Seed s of every estimator starts from the same weights, takes the same prompts in the same "
        f"order and draws from the same random stream at each step as seed s of {reference} (so at "
        f"step 0 both sample the same completions): each seed gives one paired difference (estimator "
        f"- {reference}), free of what the seed does to both. Below: the differences per seed, their "
        f"mean ± std over seeds, and whether the mean is within seed noise (a 95% t-interval of the "
        f"mean difference holds 0) or larger than it.",
        "",
    ]
    for e, s in sorted(by_estimator.items()):
        if e == reference:
            continue
        for quantity in ("final", "mean over points"):
            paired = paired_difference(s, ref, quantity)
            if paired is not None:
                lines.append(f"- {paired_sentence(paired, primary)}")
    return lines


def markdown_report(
    records: Sequence[dict[str, Any]],
    metrics: Sequence[str],
    primary: str,
    threshold: float | None,
    config: dict[str, Any],
    plot_name: str,
    reference: str | None = None,
) -> str:
    """The Markdown report: configuration; final values and means over evaluation points (mean ± std
    over seeds); steps-to-threshold; paired differences from ``reference`` on ``primary``."""
    lines = ["# Comparison report", "", f"![curves]({plot_name})", "", "## Configuration", "", "```yaml"]
    lines += [f"{k}: {v}" for k, v in config.items()]
    lines += ["```", ""]
    summaries = {
        m: {s.estimator: s for s in summarize(records, m, threshold if m == primary else None)}
        for m in metrics
    }
    estimators = sorted({e for by in summaries.values() for e in by})
    lines += ["## Final held-out values (mean ± std over seeds, at each seed's last evaluation)", ""]
    lines += _value_table(summaries, metrics, estimators, final=True)
    lines += [
        "",
        "## Mean over evaluation points (each seed's area under the curve / number of points; "
        "mean ± std over seeds)",
        "",
    ]
    lines += _value_table(summaries, metrics, estimators, final=False)
    if threshold is not None:
        lines += ["", f"## Steps to reach {primary} >= {threshold}", ""]
        lines += _threshold_table(summaries[primary], estimators)
    if reference is not None and reference in summaries[primary]:
        lines += ["", f"## Paired differences from {reference} on {primary}", ""]
        lines += _paired_section(summaries[primary], reference, primary)
    return "\n".join(lines) + "\n"
