"""Input checks shared by the credit layer: each error names the argument and what was wrong."""

from __future__ import annotations

import collections.abc
import numbers
import types
import typing
from collections.abc import Callable
from typing import Any

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


def _asserts_on_device(value: Tensor) -> bool:
    """Whether a check on ``value`` is done by a device-side assert (CUDA) instead of on the host."""
    return value.device.type == "cuda"


def check_all_finite_or(value: Tensor, diagnose: Callable[[], None], message: str) -> None:
    """Check that ``value`` is all finite without a device->host sync where that is possible.

    On the CPU: ``diagnose()`` runs when some entry is NaN/inf (it raises the precise error).
    On CUDA: an asynchronous device-side assert (``torch._assert_async``) with ``message``; nothing
    waits for the GPU, so a hot loop keeps its kernels queued. A failure surfaces at a later sync as a
    CUDA error that ends the process's CUDA context, so this is for inputs that are finite unless
    something is badly wrong (the cheap check of a result, not validation of user input).
    """
    ok = torch.isfinite(value).all()
    if _asserts_on_device(value):
        torch._assert_async(ok, message)
        return
    if not bool(ok):
        diagnose()


def check_same_shape(reference_name: str, reference: Tensor, **others: Tensor | None) -> None:
    for name, value in others.items():
        if value is not None and value.shape != reference.shape:
            raise ValueError(
                f"{name} must have the shape of {reference_name} {tuple(reference.shape)}, "
                f"got {tuple(value.shape)}"
            )


def check_real(name: str, value: object) -> float:
    """A real number (a 1-element tensor counts); a TypeError naming ``name`` otherwise."""
    if isinstance(value, Tensor) and value.numel() == 1 and value.dtype != torch.bool:
        return float(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    return float(value)


def check_eps(name: str, value: object) -> None:
    """A finite number ``>= 0`` (an ``eps`` added to a denominator)."""
    if not 0.0 <= check_real(name, value) < float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_gamma(name: str, value: float) -> None:
    if not 0.0 <= check_real(name, value) <= 1.0:
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


# ------------------------------------------------------------------------------------------------------
# Values against type annotations: one checker for estimator options (registry.bind_options) and for
# the trainer's typed config (credo.llm.config), so both accept and describe values the same way.


def describe_annotation(annotation: Any) -> str:
    """``annotation`` in words, for an error message."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_annotation(a) for a in typing.get_args(annotation))
    if origin is collections.abc.Callable or annotation is collections.abc.Callable:
        return "a callable"
    if origin is list:
        return "a list"
    if origin is dict:
        return "a mapping"
    return _NAMES.get(annotation, str(annotation))


def _as_float(value: Any) -> tuple[bool, Any]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return True, float(value)
    if isinstance(value, str):  # YAML 1.1 reads "1e-5" (no dot) as a string
        try:
            return True, float(value)
        except ValueError:
            return False, value
    return False, value


def _as_union(value: Any, annotation: Any) -> tuple[bool, Any]:
    for option in typing.get_args(annotation):
        ok, converted = check_annotation(value, option)
        if ok:
            return True, converted
    return False, value


def _as_list(value: Any, annotation: Any) -> tuple[bool, Any]:
    if not isinstance(value, list):
        return False, value
    (inner,) = typing.get_args(annotation) or (Any,)
    checked = [check_annotation(v, inner) for v in value]
    return all(ok for ok, _ in checked), [v for _, v in checked]


_NAMES: dict[Any, str] = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    type(None): "null",
}
_SIMPLE: dict[Any, Callable[[Any], bool]] = {
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    str: lambda v: isinstance(v, str),
    type(None): lambda v: v is None,
    Any: lambda v: True,
}


def check_annotation(value: Any, annotation: Any) -> tuple[bool, Any]:
    """``(fits, value)``: whether ``value`` fits ``annotation`` and the value to use (a number written
    as a string, such as YAML's ``1e-5``, as a float; an int where a float is expected, as a float).

    Checked: ``Literal``, unions (``X | None``), ``bool``, ``int``, ``float``, ``str``, ``None``,
    ``Any``, ``list[X]``, ``dict``, callables; anything else (tensors, classes) fits unchecked.
    """
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return value in typing.get_args(annotation), value
    if origin in (typing.Union, types.UnionType):
        return _as_union(value, annotation)
    if origin is list or annotation is list:
        return _as_list(value, annotation)
    if origin is dict or annotation is dict:
        return isinstance(value, dict), dict(value) if isinstance(value, dict) else value
    if origin is collections.abc.Callable or annotation is collections.abc.Callable:
        return callable(value), value
    if annotation is float:
        return _as_float(value)
    simple = _SIMPLE.get(annotation)
    return (True, value) if simple is None else (simple(value), value)
