"""Input checks shared by the credit layer: each error names the argument and what was wrong."""

from __future__ import annotations

import torch
from torch import Tensor


def check_tensor(name: str, value: object) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_finite(name: str, value: Tensor, mask: Tensor | None = None) -> None:
    """Raise if ``value`` holds NaN or inf (only where ``mask`` is True, when given)."""
    bad = ~torch.isfinite(value)
    if mask is not None:
        bad = bad & mask
    if bool(bad.any()):
        count = int(bad.sum())
        raise ValueError(f"{name} holds {count} NaN/inf value(s); credit needs finite inputs")


def check_same_shape(reference_name: str, reference: Tensor, **others: Tensor | None) -> None:
    for name, value in others.items():
        if value is not None and value.shape != reference.shape:
            raise ValueError(
                f"{name} must have the shape of {reference_name} {tuple(reference.shape)}, "
                f"got {tuple(value.shape)}"
            )


def check_gamma(name: str, value: float) -> None:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")


def as_bool(name: str, value: Tensor) -> Tensor:
    """A 0/1 or bool tensor as bool; anything else is an error."""
    if value.dtype == torch.bool:
        return value
    if value.is_floating_point() or value.dtype in (
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.uint8,
    ):
        if bool(((value != 0) & (value != 1)).any()):
            raise ValueError(f"{name} must hold only 0/1 (or bool) values")
        return value != 0
    raise TypeError(f"{name} must be a bool or 0/1 tensor, got dtype {value.dtype}")


def float_dtype(*tensors: Tensor) -> torch.dtype:
    """The computation dtype: float64 if any input is float64, else float32 (half types upcast)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
