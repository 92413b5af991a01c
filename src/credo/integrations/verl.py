"""credo's outcome estimators inside verl, as advantage estimators ``credo_<name>``.

verl imports every entry point of the group ``verl.plugins`` in each process (``verl/__init__.py``);
credo's ``pyproject.toml`` declares ``credo = "credo.integrations.verl:register"``, so with credo
installed next to verl (tested: verl 0.9.1, CPU) ``algorithm.adv_estimator=credo_grpo`` (or
``credo_rloo``, ``credo_dr_grpo``, ``credo_reinforce``, ``credo_reinforce_pp``) selects credo's
estimator. Options: ``algorithm.credo_options`` in the verl config when it has one (a dict, checked
with :func:`~credo.credit.registry.bind_options`), else the estimator's defaults.

Each registered function maps verl's call ``(token_level_rewards [B, T], response_mask [B, T],
index, config)`` to a :class:`~credo.credit.registry.CreditBatch`: ``rewards =
token_level_rewards.sum(-1)``, group ids from the prompt uids ``index``; it returns ``(advantages,
returns)`` (the advantages as returns where the estimator has none, as verl's ``grpo`` does).

verl's loader imports the entry point without calling it, so importing this module registers the
estimators (:data:`REGISTERED`); :func:`register` may be called again (it is idempotent). verl logs a
plugin that fails to import at DEBUG level only, so :func:`register` logs its own failure at WARNING
and raises.

Not built: candidate estimators (``shape_grpo``, ``wta``, ``set_*``) need per-candidate scores and
token spans, which stock verl does not pass to an estimator (only ``gdpo`` receives
``non_tensor_batch``). ``docs/integrations.md`` gives the smallest patch.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from credo.credit import ESTIMATORS
from credo.credit.registry import CreditBatch, bind_options, compute_credit

logger = logging.getLogger(__name__)

PREFIX = "credo_"
_OUTCOME_FIELDS = frozenset({"token_rewards"})


def outcome_estimators() -> list[str]:
    """The credo estimators verl can call: those needing nothing beyond rewards (and token rewards)."""
    return sorted(name for name, spec in ESTIMATORS.items() if set(spec.requires) <= _OUTCOME_FIELDS)


def group_ids_from_uids(index: Any, device: torch.device | str) -> Tensor:
    """``[B]`` long group ids: rows with the same prompt uid share an id (numbered by first appearance)."""
    uids = np.asarray(index, dtype=object)
    first: dict[Any, int] = {}
    ids = [first.setdefault(uid, len(first)) for uid in uids.tolist()]
    return torch.tensor(ids, dtype=torch.long, device=device)


def _config_options(name: str, config: Any) -> dict[str, Any]:
    """``config.credo_options`` (a dict or an OmegaConf node), bound to estimator ``name``; {} without."""
    if config is None:
        return {}
    getter = getattr(config, "get", None)
    options = getter("credo_options", None) if callable(getter) else getattr(config, "credo_options", None)
    if not options:
        return {}
    return bind_options(name, {str(k): v for k, v in dict(options).items()})


def make_adv_estimator(name: str) -> Callable[..., tuple[Tensor, Tensor]]:
    """verl's estimator signature around credo estimator ``name``."""

    def adv_estimator(
        token_level_rewards: Tensor,
        response_mask: Tensor,
        index: Any = None,
        config: Any = None,
        **kwargs: Any,
    ) -> tuple[Tensor, Tensor]:
        mask = response_mask.bool()
        group_ids = None if index is None else group_ids_from_uids(index, mask.device)
        batch = CreditBatch(
            rewards=token_level_rewards.float().sum(dim=-1), response_mask=mask, group_ids=group_ids
        )
        result = compute_credit(name, batch, **_config_options(name, config))
        advantages = result.advantages.to(token_level_rewards.dtype)
        returns = advantages if result.returns is None else result.returns.to(advantages.dtype)
        return advantages, returns

    adv_estimator.__name__ = f"{PREFIX}{name}"
    adv_estimator.__doc__ = f"credo estimator {name!r} as a verl advantage estimator."
    return adv_estimator


def register() -> list[str]:
    """Register every outcome estimator of credo with verl as ``credo_<name>``; returns the names.

    Raises (after a WARNING log line, since verl itself only logs plugin failures at DEBUG) when
    verl's ``core_algos`` cannot be imported."""
    try:
        core_algos = importlib.import_module("verl.trainer.ppo.core_algos")
    except Exception as error:
        logger.warning("credo's verl plugin could not import verl.trainer.ppo.core_algos: %r", error)
        raise ImportError(f"credo.integrations.verl needs verl (tested with 0.9.1): {error}") from error
    names = []
    for name in outcome_estimators():
        registered = f"{PREFIX}{name}"
        existing = core_algos.ADV_ESTIMATOR_REGISTRY.get(registered)
        if existing is None or getattr(existing, "__module__", "") != __name__:
            core_algos.ADV_ESTIMATOR_REGISTRY.pop(registered, None)
            core_algos.register_adv_est(registered)(make_adv_estimator(name))
        names.append(registered)
    return names


# verl's plugin loader only imports the entry point (``ep.load()``), it does not call it: register now.
REGISTERED: list[str] = register()
