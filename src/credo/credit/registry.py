"""One registry of credit estimators, looked up by name.

Every estimator has the same call shape::

    estimator(batch: CreditBatch, **options) -> CreditResult

so configs and the trainer pick an estimator by name and never branch on it. ``CreditBatch`` carries
everything any estimator may need; each estimator states which optional fields it requires, and
``compute_credit`` checks them before calling it, naming what is missing.

Batch layout: ``B = N * G`` rows, prompt-major (rows ``n*G .. n*G+G-1`` are the G completions of
prompt ``n``), unless ``group_ids`` gives an explicit group index per row.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from credo.credit._checks import check_annotation, describe_annotation
from credo.credit.games import SetGame


@dataclass(frozen=True)
class CreditBatch:
    """The inputs of a credit estimator, for B completions of T tokens each.

    Attributes:
        rewards: ``[B]`` outcome reward of each completion (the set reward for set-level tasks).
        response_mask: ``[B, T]`` bool, True on completion tokens (False on prompt and padding).
        group_size: G, completions per prompt, rows prompt-major. Needed by group estimators unless
            ``group_ids`` is given.
        group_ids: ``[B]`` long, explicit group index per row (groups may differ in size).
        token_rewards: ``[B, T]`` per-token rewards added to the outcome, for example the KL penalty
            ``-beta * kl`` of the seed's REINFORCE/RLOO examples, or per-step rewards.
        values: ``[B, T]`` critic values V(s_t) on completion tokens (for ``"gae"``).
        candidate_scores: ``[B, K]`` per-candidate scores (for ``"shape_grpo"``, ``"wta"``).
        candidate_spans: ``[B, K, 2]`` long, ``[start, end)`` token span of each candidate in the row
            (same token axis as ``response_mask``); ``-1`` marks a candidate with no span.
        candidate_game: the set utility of each row as a :class:`~credo.credit.games.SetGame` over its
            K candidate slots (default for candidate estimators: ``MaxGame(candidate_scores)``).
    """

    rewards: Tensor
    response_mask: Tensor
    group_size: int | None = None
    group_ids: Tensor | None = None
    token_rewards: Tensor | None = None
    values: Tensor | None = None
    candidate_scores: Tensor | None = None
    candidate_spans: Tensor | None = None
    candidate_game: SetGame | None = None

    @property
    def batch_size(self) -> int:
        return int(self.response_mask.shape[0])


@dataclass
class CreditResult:
    """What an estimator returns.

    Attributes:
        advantages: ``[B, T]`` token-level advantages, zero where ``response_mask`` is False.
        returns: ``[B, T]`` value targets where the estimator has them (``"gae"``), else None.
        info: scalars or tensors worth logging (for example per-candidate token counts).
    """

    advantages: Tensor
    returns: Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)


EstimatorFn = Callable[..., CreditResult]


@dataclass(frozen=True)
class EstimatorSpec:
    """A registered estimator: its function, the optional batch fields it needs, the smallest group
    (completions per prompt) and batch (completions in all) it works with, and its doc."""

    name: str
    fn: EstimatorFn
    requires: tuple[str, ...] = ()
    needs_groups: bool = False
    min_group_size: int = 1
    min_batch_size: int = 1
    description: str = ""


ESTIMATORS: dict[str, EstimatorSpec] = {}


def register_estimator(
    name: str,
    *,
    requires: tuple[str, ...] = (),
    needs_groups: bool = False,
    min_group_size: int = 1,
    min_batch_size: int = 1,
) -> Callable[[EstimatorFn], EstimatorFn]:
    """Decorator: register ``fn(batch, **options) -> CreditResult`` under ``name``."""

    def decorate(fn: EstimatorFn) -> EstimatorFn:
        if name in ESTIMATORS:
            raise ValueError(f"estimator {name!r} is already registered")
        doc = (fn.__doc__ or "").strip().splitlines()
        ESTIMATORS[name] = EstimatorSpec(
            name=name,
            fn=fn,
            requires=requires,
            needs_groups=needs_groups,
            min_group_size=min_group_size,
            min_batch_size=min_batch_size,
            description=doc[0] if doc else "",
        )
        return fn

    return decorate


def get_estimator(name: str) -> EstimatorSpec:
    """The registered estimator called ``name``; a KeyError listing the known names otherwise."""
    try:
        return ESTIMATORS[name]
    except KeyError:
        known = ", ".join(sorted(ESTIMATORS))
        raise KeyError(f"unknown credit estimator {name!r}; known estimators: {known}") from None


def estimator_options(name: str) -> dict[str, inspect.Parameter]:
    """The keyword options of estimator ``name``: its function's parameters after ``batch``, with their
    annotations resolved (``typing.get_type_hints``) where possible."""
    fn = get_estimator(name).fn
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an annotation that does not resolve: keep it unchecked
        hints = {}
    params = list(inspect.signature(fn).parameters.values())[1:]
    return {
        p.name: p.replace(annotation=hints.get(p.name, inspect.Parameter.empty))
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }


def bind_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Check ``options`` against the keyword parameters of estimator ``name``; returns them (numbers
    written as strings, such as YAML's ``1e-5``, as floats).

    Every key must be a parameter of the estimator's function (after ``batch``); a value must fit the
    parameter's annotation where that is a ``Literal``, ``bool``, ``int``, ``float`` (an int is
    accepted), ``str``, or a union of those (other annotations are not checked; an estimator taking
    ``**options`` accepts any further key unchecked). Raises a ValueError naming the config key
    ``credit.options.<key>``, so a config fails when loaded, not at the first training step.
    """
    params = estimator_options(name)
    fn_params = inspect.signature(get_estimator(name).fn).parameters.values()
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in fn_params)  # takes **options
    bound: dict[str, Any] = {}
    for key, value in options.items():
        where = f"config key 'credit.options.{key}'"
        if key not in params and open_ended:
            bound[key] = value
            continue
        if key not in params:
            known = ", ".join(params) or "none"
            close = difflib.get_close_matches(str(key), list(params), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{where}: estimator {name!r} has no option {key!r}; its options: {known}{hint}")
        annotation = params[key].annotation
        ok, bound[key] = (
            (True, value) if annotation is inspect.Parameter.empty else check_annotation(value, annotation)
        )
        if not ok:
            raise ValueError(
                f"{where}: estimator {name!r} option {key!r} must be {describe_annotation(annotation)}; got {value!r}"
            )
    return bound


def group_ids_of(batch: CreditBatch) -> Tensor:
    """``[B]`` long group index of each row, from ``group_ids`` or the prompt-major ``group_size``."""
    B = batch.batch_size
    if batch.group_ids is not None:
        return batch.group_ids
    if batch.group_size is None:
        raise ValueError("this estimator needs groups: pass group_size (G) or group_ids")
    if batch.group_size < 1 or B % batch.group_size != 0:
        raise ValueError(f"group_size={batch.group_size} does not divide the batch size B={B}")
    return torch.arange(B, device=batch.response_mask.device) // batch.group_size


def check_batch(spec: EstimatorSpec, batch: CreditBatch) -> None:
    """Raise a ValueError naming each problem of ``batch`` for estimator ``spec``."""
    mask = batch.response_mask
    if mask.dim() != 2:
        raise ValueError(f"response_mask must be [B, T], got shape {tuple(mask.shape)}")
    B, T = mask.shape
    if B == 0:
        raise ValueError("the batch is empty: response_mask and rewards hold no completions (B = 0)")
    if batch.rewards.shape != (B,):
        raise ValueError(f"rewards must be [B]=[{B}], got shape {tuple(batch.rewards.shape)}")
    for name in spec.requires:
        if getattr(batch, name) is None:
            raise ValueError(f"estimator {spec.name!r} needs batch.{name}, which is None")
    for name in ("token_rewards", "values"):
        value = getattr(batch, name)
        if value is not None and value.shape != (B, T):
            raise ValueError(f"{name} must be [B, T]=[{B}, {T}], got shape {tuple(value.shape)}")
    if spec.needs_groups:
        ids = group_ids_of(batch)
        if ids.shape != (B,):
            raise ValueError(f"group_ids must be [B]=[{B}], got shape {tuple(ids.shape)}")
        sizes = torch.bincount(ids)
        smallest = int(sizes[sizes > 0].min())
        if smallest < spec.min_group_size:
            raise ValueError(
                f"estimator {spec.name!r} needs at least {spec.min_group_size} completions per group "
                f"(G >= {spec.min_group_size}); the smallest group has {smallest}"
            )


def compute_credit(name: str, batch: CreditBatch, **options: Any) -> CreditResult:
    """Look up estimator ``name``, check ``batch`` against what it needs, and run it."""
    spec = get_estimator(name)
    check_batch(spec, batch)
    return spec.fn(batch, **options)
