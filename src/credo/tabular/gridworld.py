"""Grid worlds as finite MDPs, and text rendering of values and greedy policies on a grid.

A :class:`GridWorld` is a rectangle of cells. The agent moves up, down, left or right (seed 001's four
actions, in that order). The rules, in the order they apply to a move from cell ``c`` with action ``a``:

1. a **terminal** cell is absorbing (value 0); the episode ends on arriving there;
2. a **teleport** cell sends every action to its fixed target with its fixed reward (Sutton & Barto's
   A -> A' and B -> B', Example 3.5); nothing else is paid on that move;
3. otherwise the agent goes in direction ``a`` with probability ``1 - slip`` and in each of the two
   perpendicular directions with probability ``slip / 2``; a move into a wall or off the grid leaves it
   where it is and adds ``bump_reward``;
4. the reward of a move is ``step_reward + cell_rewards.get(next_cell, 0) (+ bump_reward)``: reward
   cells pay on *arrival*, including when a bump leaves the agent on one.

States are the non-wall cells, numbered row by row. :meth:`GridWorld.to_mdp` gives a sparse
:class:`~credo.tabular.mdp.FiniteMDP` (at most three successors per action), so a 100x100 grid is cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from credo.tabular._checks import as_float_array, check_gamma, check_probability
from credo.tabular.mdp import FiniteMDP

Cell = tuple[int, int]
FloatArray = NDArray[np.float64]

# Seed 001's four actions, in the order its grid world uses: up, down, left, right (row, col deltas).
GRID_ACTIONS: tuple[Cell, ...] = ((-1, 0), (1, 0), (0, -1), (0, 1))
GRID_ACTION_NAMES: tuple[str, ...] = ("up", "down", "left", "right")
_ARROWS = {(-1, 0): "↑", (1, 0): "↓", (0, -1): "←", (0, 1): "→"}
_ASCII_ARROWS = {(-1, 0): "^", (1, 0): "v", (0, -1): "<", (0, 1): ">"}


@dataclass(frozen=True)
class GridLayout:
    """Where each state of an MDP sits on a grid, for rendering and plotting.

    Attributes:
        shape: ``(rows, cols)``.
        cells: ``[S, 2]`` int ``(row, col)`` of each state.
        action_vectors: ``(drow, dcol)`` of each action (the arrow drawn for it).
        walls: cells that are not states.
        markers: short labels drawn on cells (e.g. ``"G"``, ``"H"``, ``"+1"``).
        terminal_cells: cells of terminal states (no arrow is drawn there).
    """

    shape: tuple[int, int]
    cells: NDArray[np.int64]
    action_vectors: tuple[Cell, ...]
    walls: frozenset[Cell] = frozenset()
    markers: Mapping[Cell, str] = field(default_factory=dict)
    terminal_cells: frozenset[Cell] = frozenset()

    @property
    def n_states(self) -> int:
        return int(self.cells.shape[0])

    def value_grid(self, values: ArrayLike) -> FloatArray:
        """``[rows, cols]`` array of ``values [S]`` (NaN on walls)."""
        v = as_float_array("values", values, 1)
        if v.shape != (self.n_states,):
            raise ValueError(f"values must have shape ({self.n_states},), got {v.shape}")
        grid = np.full(self.shape, np.nan)
        grid[self.cells[:, 0], self.cells[:, 1]] = v
        return grid

    def render_values(self, values: ArrayLike, *, decimals: int = 2) -> str:
        """The values as a text table, one row per grid row (walls ``#``)."""
        grid = self.value_grid(values)
        width = max(6, decimals + 5)
        lines = []
        for row in range(self.shape[0]):
            parts = []
            for col in range(self.shape[1]):
                if (row, col) in self.walls:
                    parts.append("#" * (width - 1))
                else:
                    parts.append(f"{grid[row, col]:.{decimals}f}")
            lines.append(" ".join(part.rjust(width) for part in parts))
        return "\n".join(lines)

    def render_policy(self, policy: ArrayLike, *, ascii_only: bool = False, atol: float = 1e-9) -> str:
        """Arrows of every action a policy takes with (near-)highest probability, one cell per state.

        Args:
            policy: ``[S, A]``; ties show several arrows (``"↑→"``).
            ascii_only: use ``^ v < >`` instead of unicode arrows.
            atol: probabilities within ``atol`` of a row's maximum count as tied.
        """
        pi = as_float_array("policy", policy, 2)
        if pi.shape != (self.n_states, len(self.action_vectors)):
            raise ValueError(
                f"policy must have shape ({self.n_states}, {len(self.action_vectors)}), got {pi.shape}"
            )
        symbols = _ASCII_ARROWS if ascii_only else _ARROWS
        text = np.full(self.shape, "", dtype=object)
        for row, col in self.walls:
            text[row, col] = "#"
        for state, (row, col) in enumerate(self.cells.tolist()):
            cell = (row, col)
            if cell in self.walls:
                continue
            if cell in self.terminal_cells:
                text[row, col] = self.markers.get(cell, "T")
                continue
            best = np.flatnonzero(pi[state] >= pi[state].max() - atol)
            text[row, col] = "".join(symbols[self.action_vectors[a]] for a in best)
        width = max(4, max(len(str(t)) for t in text.reshape(-1)) + 1)
        return "\n".join(" ".join(str(t).center(width) for t in line) for line in text)


class GridWorld:
    """A rectangular grid world (see the module docstring for the rules).

    Args:
        height, width: grid size in cells.
        walls: cells that are blocked (not states).
        terminals: absorbing cells where the episode ends (value 0).
        cell_rewards: reward paid on arriving at a cell.
        teleports: ``{cell: (target_cell, reward)}``: every action from ``cell`` jumps to
            ``target_cell`` and pays ``reward``.
        step_reward: reward added to every move (e.g. -1 per step).
        bump_reward: reward added when a move hits a wall or the edge (the agent stays).
        slip: probability of moving perpendicular to the chosen direction (split evenly).
        gamma: discount of the MDP.
        start: the start cell of sampled episodes (None: uniform over non-terminal cells).
        name: a label for plots and messages.
    """

    actions: tuple[Cell, ...] = GRID_ACTIONS
    action_names: tuple[str, ...] = GRID_ACTION_NAMES

    def __init__(
        self,
        height: int,
        width: int,
        *,
        walls: Iterable[Cell] = (),
        terminals: Iterable[Cell] = (),
        cell_rewards: Mapping[Cell, float] | None = None,
        teleports: Mapping[Cell, tuple[Cell, float]] | None = None,
        step_reward: float = 0.0,
        bump_reward: float = 0.0,
        slip: float = 0.0,
        gamma: float = 0.9,
        start: Cell | None = (0, 0),
        name: str = "gridworld",
    ) -> None:
        if isinstance(height, bool) or not isinstance(height, int) or height < 1:
            raise ValueError(f"height must be an int >= 1, got {height!r}")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be an int >= 1, got {width!r}")
        self.height, self.width, self.name = height, width, name
        self.walls = frozenset(self._cell("walls", c) for c in walls)
        self.terminals = frozenset(self._open_cell("terminals", c) for c in terminals)
        self.cell_rewards = {
            self._open_cell("cell_rewards", c): float(r) for c, r in (cell_rewards or {}).items()
        }
        self.teleports: dict[Cell, tuple[Cell, float]] = {}
        for cell, (target, reward) in (teleports or {}).items():
            source = self._open_cell("teleports", cell)
            if source in self.terminals:
                raise ValueError(f"teleports: cell {source} is also terminal")
            self.teleports[source] = (self._open_cell("teleports target", target), float(reward))
        self.step_reward = float(step_reward)
        self.bump_reward = float(bump_reward)
        self.slip = check_probability("slip", slip)
        self.gamma = check_gamma("gamma", gamma)
        self.start = None if start is None else self._open_cell("start", start)
        if self.start is not None and self.start in self.terminals:
            raise ValueError(f"start {self.start} is a terminal cell")
        self.cells: list[Cell] = [
            (r, c) for r in range(height) for c in range(width) if (r, c) not in self.walls
        ]
        if not self.cells:
            raise ValueError("walls cover every cell: the grid has no states")
        self.state_of: dict[Cell, int] = {cell: i for i, cell in enumerate(self.cells)}
        self._mdp: FiniteMDP | None = None

    # ------------------------------------------------------------------ cells and states

    def _cell(self, name: str, cell: Cell) -> Cell:
        try:
            row, col = (int(x) for x in cell)
        except (TypeError, ValueError) as error:
            raise TypeError(f"{name}: a cell is a (row, col) pair of ints, got {cell!r}") from error
        if not (0 <= row < self.height and 0 <= col < self.width):
            raise ValueError(f"{name}: cell {(row, col)} lies outside the {self.height}x{self.width} grid")
        return (row, col)

    def _open_cell(self, name: str, cell: Cell) -> Cell:
        checked = self._cell(name, cell)
        if checked in self.walls:
            raise ValueError(f"{name}: cell {checked} is a wall")
        return checked

    @property
    def n_states(self) -> int:
        return len(self.cells)

    def state(self, cell: Cell) -> int:
        """The state index of a (non-wall) cell."""
        return self.state_of[self._open_cell("cell", cell)]

    def _move(self, cell: Cell, delta: Cell) -> tuple[Cell, bool]:
        row, col = cell[0] + delta[0], cell[1] + delta[1]
        if not (0 <= row < self.height and 0 <= col < self.width) or (row, col) in self.walls:
            return cell, True
        return (row, col), False

    def outcomes(self, cell: Cell, action: int) -> list[tuple[float, Cell, float]]:
        """``[(probability, next_cell, reward), ...]`` of taking ``action`` in ``cell`` (the model)."""
        if cell in self.terminals:
            return [(1.0, cell, 0.0)]
        if cell in self.teleports:
            target, reward = self.teleports[cell]
            return [(1.0, target, reward)]
        delta = self.actions[action]
        perpendicular = [(delta[1], delta[0]), (-delta[1], -delta[0])]
        moves = [(1.0 - self.slip, delta)] + [(self.slip / 2.0, d) for d in perpendicular]
        result = []
        for probability, direction in moves:
            if probability == 0.0:
                continue
            next_cell, bumped = self._move(cell, direction)
            reward = self.step_reward + self.cell_rewards.get(next_cell, 0.0)
            if bumped:
                reward += self.bump_reward
            result.append((probability, next_cell, reward))
        return result

    # ------------------------------------------------------------------ as an MDP

    def to_mdp(self) -> FiniteMDP:
        """The grid world as a sparse :class:`FiniteMDP` (built once, then cached)."""
        if self._mdp is None:
            n_actions = len(self.actions)
            width = 1 if self.slip == 0.0 else 3
            next_states = np.zeros((self.n_states, n_actions, width), dtype=np.int64)
            probs = np.zeros((self.n_states, n_actions, width))
            rewards = np.zeros((self.n_states, n_actions, width))
            for state, cell in enumerate(self.cells):
                for action in range(n_actions):
                    for k, (p, next_cell, r) in enumerate(self.outcomes(cell, action)):
                        next_states[state, action, k] = self.state_of[next_cell]
                        probs[state, action, k] = p
                        rewards[state, action, k] = r
                    next_states[state, action, len(self.outcomes(cell, action)) :] = state
            initial = None
            if self.start is not None:
                initial = np.zeros(self.n_states)
                initial[self.state_of[self.start]] = 1.0
            self._mdp = FiniteMDP.from_successors(
                next_states,
                probs,
                rewards,
                self.gamma,
                [self.state_of[c] for c in sorted(self.terminals)],
                initial_distribution=initial,
                state_labels=[f"{r},{c}" for r, c in self.cells],
                action_labels=list(self.action_names),
            )
        return self._mdp

    @property
    def layout(self) -> GridLayout:
        markers: dict[Cell, str] = {}
        for cell, reward in self.cell_rewards.items():
            markers[cell] = f"{reward:+g}"
        for cell in self.teleports:
            markers[cell] = "tp"
        for cell in self.terminals:
            markers.setdefault(cell, "T")
        if self.start is not None:
            markers.setdefault(self.start, "S")
        return GridLayout(
            shape=(self.height, self.width),
            cells=np.asarray(self.cells, dtype=np.int64),
            action_vectors=self.actions,
            walls=self.walls,
            markers=markers,
            terminal_cells=self.terminals,
        )

    def render_values(self, values: ArrayLike, *, decimals: int = 2) -> str:
        """Values ``[S]`` as a text grid."""
        return self.layout.render_values(values, decimals=decimals)

    def render_policy(self, policy: ArrayLike, *, ascii_only: bool = False) -> str:
        """Greedy arrows of ``policy [S, A]`` as a text grid."""
        return self.layout.render_policy(policy, ascii_only=ascii_only)

    def __repr__(self) -> str:
        return (
            f"GridWorld({self.name!r}, {self.height}x{self.width}, walls={len(self.walls)}, "
            f"terminals={sorted(self.terminals)}, slip={self.slip}, gamma={self.gamma})"
        )


# ---------------------------------------------------------------------- presets


def seed001_gridworld() -> GridWorld:
    """Seed 001's grid world: four actions, deterministic moves, gamma 0.9, evaluated under the
    uniform 0.25 policy; a triangle pays -1 and the circle +1.

    The seed's figures did not survive, so the details come from the grid world its lecture is drawn
    from (the policy-iteration example of "파이썬과 케라스로 배우는 강화학습", Lee et al., 2017):
    a 5x5 grid, triangles at (1, 2) and (2, 1), the circle at (2, 2); the reward of a move is the
    reward of the cell it ends in (also when a move off the grid leaves the agent on a triangle); the
    circle is terminal (its value is fixed at 0); the start is (0, 0). Cells are ``(row, col)``.
    """
    return GridWorld(
        5,
        5,
        terminals=[(2, 2)],
        cell_rewards={(1, 2): -1.0, (2, 1): -1.0, (2, 2): 1.0},
        gamma=0.9,
        start=(0, 0),
        name="seed001",
    )


def sutton_barto_gridworld() -> GridWorld:
    """Sutton & Barto (2018) Example 3.5 / Figure 3.2: 5x5, A=(0,1) -> A'=(4,1) pays +10,
    B=(0,3) -> B'=(2,3) pays +5, moves off the grid pay -1 and stay, gamma 0.9, no terminal state."""
    return GridWorld(
        5,
        5,
        teleports={(0, 1): ((4, 1), 10.0), (0, 3): ((2, 3), 5.0)},
        bump_reward=-1.0,
        gamma=0.9,
        start=None,
        name="sutton_barto_3_5",
    )


def dyna_maze(slip: float = 0.0) -> GridWorld:
    """Sutton & Barto (2018) Figure 8.2's maze: 6x9, start (2, 0), goal (0, 8) pays +1, gamma 0.95."""
    return GridWorld(
        6,
        9,
        walls=[(1, 2), (2, 2), (3, 2), (4, 5), (0, 7), (1, 7), (2, 7)],
        terminals=[(0, 8)],
        cell_rewards={(0, 8): 1.0},
        slip=slip,
        gamma=0.95,
        start=(2, 0),
        name="dyna_maze" if slip == 0.0 else "slippery_maze",
    )


GRID_PRESETS: dict[str, Callable[[], GridWorld]] = {
    "seed001": seed001_gridworld,
    "sutton_barto_3_5": sutton_barto_gridworld,
    "dyna_maze": dyna_maze,
    "slippery_maze": lambda: dyna_maze(slip=0.2),
}


def make_gridworld(name: str) -> GridWorld:
    """A preset grid world by name (see ``GRID_PRESETS``)."""
    try:
        return GRID_PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown grid world preset {name!r}; known: {sorted(GRID_PRESETS)}") from None
