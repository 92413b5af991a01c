"""Input checks for the tabular layer (NumPy): each error names the argument and what was wrong."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import ArrayLike, NDArray

# Absolute tolerance for "this row of probabilities sums to 1".
PROBABILITY_ATOL = 1e-8


def as_float_array(name: str, value: ArrayLike, ndim: int | tuple[int, ...]) -> NDArray[np.float64]:
    """``value`` as a finite float64 array with ``ndim`` dimensions (one of them, when a tuple)."""
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be an array of numbers, got {type(value).__name__}")
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be an array of numbers ({error})") from error
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if array.ndim not in allowed:
        want = " or ".join(f"{d}-D" for d in allowed)
        raise ValueError(f"{name} must be {want}, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds {int((~np.isfinite(array)).sum())} NaN/inf value(s)")
    return array


def check_gamma(name: str, value: float) -> float:
    """A discount factor in [0, 1], as a float."""
    if isinstance(value, str | bool):
        raise TypeError(f"{name} must be a number in [0, 1], got {type(value).__name__} {value!r}")
    try:
        gamma = float(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be a number in [0, 1], got {value!r}") from error
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return gamma


def check_step_size(name: str, value: float) -> float:
    """A constant step size in (0, 1]: above 1 each update overshoots its target, and tabular values
    diverge (to 1e200 and beyond, then NaN) instead of learning."""
    number = check_positive(name, value)
    if number > 1.0:
        raise ValueError(
            f"{name} must be in (0, 1], got {value}: a step size above 1 overshoots every update and "
            "the values diverge"
        )
    return number


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    if isinstance(value, str | bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    number = float(value)
    if not np.isfinite(number) or number < 0.0 or (number == 0.0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return number


def check_probability(name: str, value: float) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return number


def check_count(name: str, value: int, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_distribution_rows(
    name: str, probabilities: NDArray[np.float64], rows: NDArray[np.bool_] | None = None
) -> None:
    """Every row along the last axis is a probability distribution (where ``rows`` is True).

    Args:
        name: the argument's name, for the error message.
        probabilities: ``[..., N]`` array.
        rows: ``[...]`` bool, which rows to check for summing to 1 (negatives are rejected everywhere).
    """
    if np.any(probabilities < 0.0):
        where = np.argwhere(probabilities < 0.0)[0]
        raise ValueError(
            f"{name} holds negative probabilities, e.g. {name}[{', '.join(map(str, where))}] = "
            f"{probabilities[tuple(where)]:.6g}"
        )
    sums = probabilities.sum(axis=-1)
    bad = np.abs(sums - 1.0) > PROBABILITY_ATOL
    if rows is not None:
        bad &= rows
    if np.any(bad):
        where = np.argwhere(bad)[0]
        raise ValueError(
            f"{name} rows must sum to 1; {int(bad.sum())} do not, e.g. the row at "
            f"[{', '.join(map(str, where))}] sums to {sums[tuple(where)]:.6g}"
        )


def check_policy(name: str, policy: ArrayLike, n_states: int, n_actions: int) -> NDArray[np.float64]:
    """A stochastic policy ``pi(a|s)`` as a ``[S, A]`` float64 array whose rows sum to 1."""
    array = as_float_array(name, policy, 2)
    if array.shape != (n_states, n_actions):
        raise ValueError(
            f"{name} must have shape [S, A] = ({n_states}, {n_actions}) (pi(a|s)), got {array.shape}"
        )
    check_distribution_rows(name, array)
    return array


def check_values(name: str, values: ArrayLike, n_states: int) -> NDArray[np.float64]:
    array = as_float_array(name, values, 1)
    if array.shape != (n_states,):
        raise ValueError(f"{name} must have shape [S] = ({n_states},), got {array.shape}")
    return array


def check_q(name: str, q: ArrayLike, n_states: int | None = None) -> NDArray[np.float64]:
    array = as_float_array(name, q, 2)
    if n_states is not None and array.shape[0] != n_states:
        raise ValueError(f"{name} must have shape [S, A] with S = {n_states}, got {array.shape}")
    return array


def check_state_indices(name: str, states: Iterable[int] | NDArray, n_states: int) -> NDArray[np.bool_]:
    """A set of state indices (or a ``[S]`` bool mask) as a ``[S]`` bool mask."""
    array = np.asarray(list(states) if not isinstance(states, np.ndarray) else states)
    if array.dtype == np.bool_:
        if array.shape != (n_states,):
            raise ValueError(f"{name} as a bool mask must have shape ({n_states},), got {array.shape}")
        return array.copy()
    if array.size == 0:
        return np.zeros(n_states, dtype=bool)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold integer state indices, got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D list of state indices, got shape {array.shape}")
    if array.min() < 0 or array.max() >= n_states:
        raise ValueError(f"{name} must hold state indices in [0, {n_states}), got {array.tolist()}")
    mask = np.zeros(n_states, dtype=bool)
    mask[array] = True
    return mask
