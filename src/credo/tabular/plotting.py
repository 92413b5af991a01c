"""Matplotlib PNGs: a value function with its greedy policy, and a learning curve (Agg backend)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from credo.tabular._checks import as_float_array
from credo.tabular.gridworld import GridLayout


def _figure(width: float, height: float):  # -> matplotlib.figure.Figure
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def plot_values(
    values: ArrayLike,
    path: str | Path,
    *,
    layout: GridLayout | None = None,
    policy: ArrayLike | None = None,
    title: str = "state values",
    annotate: bool | None = None,
) -> Path:
    """Save a heat map of ``values [S]`` with the greedy arrows of ``policy [S, A]`` as a PNG.

    Args:
        values: ``[S]`` state values.
        path: where to write the PNG (folders are created).
        layout: grid positions of the states; without one the states are laid out row by row in a
            near-square block and the greedy action is drawn as a number.
        policy: ``[S, A]``; every action within 1e-9 of a state's best gets an arrow.
        title: the figure title.
        annotate: write each value in its cell (default: when the grid has at most 400 cells).
    """
    v = as_float_array("values", values, 1)
    pi = None if policy is None else as_float_array("policy", policy, 2)
    if pi is not None and pi.shape[0] != v.shape[0]:
        raise ValueError(f"policy must have {v.shape[0]} rows like values, got shape {pi.shape}")
    if layout is None:
        layout = _row_by_row_layout(v.shape[0])
        show_arrows = False
        title = f"{title}\n(no grid: states in index order, row by row)"
    else:
        show_arrows = pi is not None
    grid = layout.value_grid(v)
    for row, col in layout.walls:
        grid[row, col] = np.nan
    rows, cols = layout.shape
    fig = _figure(min(2.0 + 0.75 * cols, 16.0), min(1.2 + 0.75 * rows, 14.0))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", origin="upper")
    fig.colorbar(image, ax=ax, shrink=0.8, label="V(s)")
    for row, col in layout.walls:
        ax.add_patch(_rectangle(row, col, "dimgray"))
    if annotate is None:
        annotate = rows * cols <= 400
    if annotate:
        _annotate_values(ax, grid, v, layout)
    if show_arrows and pi is not None:
        _draw_greedy_arrows(ax, pi, layout)
    elif pi is not None and annotate:
        _label_greedy_actions(ax, pi, layout)
    ax.set_xticks(range(cols) if cols <= 30 else [])
    ax.set_yticks(range(rows) if rows <= 30 else [])
    ax.set_title(title)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def _row_by_row_layout(n_states: int) -> GridLayout:
    """States laid out in index order, row by row, in a near-square block (no actions)."""
    cols = math.ceil(math.sqrt(n_states))
    rows = math.ceil(n_states / cols)
    cells = np.array([(s // cols, s % cols) for s in range(n_states)], dtype=np.int64)
    return GridLayout((rows, cols), cells, ())


def _annotate_values(ax, grid: np.ndarray, v: np.ndarray, layout: GridLayout) -> None:
    """Write each state's value (under its marker, if any) in its cell, white on dark cells."""
    span = np.nanmax(grid) - np.nanmin(grid) if np.isfinite(grid).any() else 1.0
    for state, (row, col) in enumerate(layout.cells.tolist()):
        if (row, col) in layout.walls:
            continue
        dark = (grid[row, col] - np.nanmin(grid)) < 0.5 * span
        label = f"{v[state]:.2f}"
        marker = layout.markers.get((row, col))
        if marker:
            label = f"{marker}\n{label}"
        ax.text(col, row + 0.3, label, ha="center", va="center", fontsize=7,
                color="white" if dark else "black")  # fmt: skip


def _draw_greedy_arrows(ax, pi: np.ndarray, layout: GridLayout) -> None:
    """An arrow for every action within 1e-9 of the best, in every non-terminal, non-wall cell."""
    rows, cols = layout.shape
    xs, ys, us, ws = [], [], [], []
    for state, (row, col) in enumerate(layout.cells.tolist()):
        if (row, col) in layout.terminal_cells or (row, col) in layout.walls:
            continue
        best = np.flatnonzero(pi[state] >= pi[state].max() - 1e-9)
        for action in best:
            drow, dcol = layout.action_vectors[action]
            xs.append(col)
            ys.append(row - 0.05)
            us.append(0.32 * dcol)
            ws.append(0.32 * drow)
    if xs:
        ax.quiver(xs, ys, us, ws, angles="xy", scale_units="xy", scale=1, color="crimson",
                  width=0.006 if max(rows, cols) <= 20 else 0.002)  # fmt: skip


def _label_greedy_actions(ax, pi: np.ndarray, layout: GridLayout) -> None:
    """Write each state's greedy action as ``a<index>`` (when there are no action vectors to draw)."""
    for state, (row, col) in enumerate(layout.cells.tolist()):
        ax.text(col, row - 0.25, f"a{int(pi[state].argmax())}", ha="center", fontsize=6, color="crimson")


def _rectangle(row: int, col: int, color: str):  # -> matplotlib.patches.Rectangle
    from matplotlib.patches import Rectangle

    return Rectangle((col - 0.5, row - 0.5), 1.0, 1.0, color=color)


def plot_learning_curve(
    curve: ArrayLike,
    path: str | Path,
    *,
    title: str = "learning curve",
    xlabel: str = "episode",
    ylabel: str = "episode return",
    window: int | None = None,
    reference: float | None = None,
    reference_label: str = "optimal",
    log_scale: bool = False,
) -> Path:
    """Save ``curve [N]`` (e.g. episode returns) as a PNG, with a moving average and a reference line.

    Args:
        curve: ``[N]`` numbers per episode (or per sweep).
        path: where to write the PNG.
        window: moving-average window (default: N // 20, at least 1; 1 draws no average).
        reference: a horizontal line (e.g. the optimal expected return).
        log_scale: log y axis (for DP residuals).
    """
    y = as_float_array("curve", curve, 1)
    fig = _figure(7.0, 3.8)
    ax = fig.add_subplot()
    x = np.arange(1, y.shape[0] + 1)
    ax.plot(x, y, color="tab:blue", alpha=0.35 if y.shape[0] > 50 else 1.0, lw=0.8, label=ylabel)
    window = max(1, y.shape[0] // 20) if window is None else int(window)
    if 1 < window <= y.shape[0]:
        average = np.convolve(y, np.ones(window) / window, mode="valid")
        ax.plot(x[window - 1 :], average, color="tab:blue", lw=2.0, label=f"moving average ({window})")
    if reference is not None:
        ax.axhline(reference, color="tab:red", ls="--", lw=1.2, label=f"{reference_label} ({reference:.3g})")
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
