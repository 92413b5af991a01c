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

Candidate estimators (``shape_grpo``, ``wta``, ``set_splice``, ``set_rtg``, ``set_coma``) are
registered as ``credo_<name>`` too. They need per-candidate scores and token spans, which stock verl
0.9.1 does not pass to an estimator (only ``gdpo`` receives ``non_tensor_batch``). The route:

1. :func:`candidate_reward_for_verl` turns a credo ``@candidate_reward`` function into verl's custom
   reward function; its dict's extra keys ``candidate_scores`` and ``candidate_char_spans`` become
   ``reward_extra_info`` and (legacy trainer) ``data.non_tensor_batch`` arrays ``[B, K]``/``[B, K, 2]``;
2. :func:`patch_compute_advantage` wraps ``verl.trainer.ppo.ray_trainer.compute_advantage`` (and the
   modules that imported it by name) so that a credo candidate estimator also gets
   ``non_tensor_batch`` and ``batch``; every other estimator is delegated unchanged. With
   ``CREDO_VERL_PATCH=1`` in the environment, :func:`register` applies it in each process;
3. the estimator maps the character spans to response-token spans with the tokenizer's offsets
   (:func:`configure` once per process, or ``+algorithm.credo_tokenizer=<name or path>``), decoding
   ``batch["responses"]`` as verl's reward manager does.

Candidate games (``CandidateScores.game``) cannot travel through verl's extra info: the verl path uses
the estimators' default (the max game of the scores) and refuses a function that gives one.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from credo.credit import ESTIMATORS
from credo.credit.registry import CreditBatch, bind_options, compute_credit
from credo.credit.reward_types import CandidateScores
from credo.llm.rollout import char_spans_to_token_spans, completion_token_offsets

logger = logging.getLogger(__name__)

PREFIX = "credo_"
_OUTCOME_FIELDS = frozenset({"token_rewards"})
_CANDIDATE_FIELDS = frozenset({"candidate_scores", "candidate_spans"})
SCORES_KEY = "candidate_scores"
SPANS_KEY = "candidate_char_spans"
_TOKENIZER: dict[str, Any] = {}


def outcome_estimators() -> list[str]:
    """The credo estimators verl can call: those needing nothing beyond rewards (and token rewards)."""
    return sorted(name for name, spec in ESTIMATORS.items() if set(spec.requires) <= _OUTCOME_FIELDS)


def candidate_estimators() -> list[str]:
    """The credo estimators that need per-candidate scores and spans (and nothing else verl lacks)."""
    return sorted(
        name
        for name, spec in ESTIMATORS.items()
        if _CANDIDATE_FIELDS <= set(spec.requires) <= _CANDIDATE_FIELDS | _OUTCOME_FIELDS
    )


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
        return _advantages_and_returns(name, batch, config, token_level_rewards.dtype)

    adv_estimator.__name__ = f"{PREFIX}{name}"
    adv_estimator.__doc__ = f"credo estimator {name!r} as a verl advantage estimator."
    return adv_estimator


def _advantages_and_returns(
    name: str, batch: CreditBatch, config: Any, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """credo's estimator ``name`` on ``batch`` as verl wants it: ``(advantages, returns)`` (the
    advantages stand in for the returns of estimators without a critic)."""
    result = compute_credit(name, batch, **_config_options(name, config))
    advantages = result.advantages.to(dtype)
    returns = advantages if result.returns is None else result.returns.to(advantages.dtype)
    return advantages, returns


def candidate_reward_for_verl(
    fn: Callable[..., Any], max_candidates: int | None = None
) -> Callable[..., dict]:
    """verl's custom reward function around a credo ``@candidate_reward`` function ``fn``.

    The result is called by verl's reward manager as ``compute_score(data_source, solution_str,
    ground_truth, extra_info=None, **kwargs)`` and calls ``fn([prompt], [solution_str],
    data_source=[...], ground_truth=[...], extra_info=[...])`` (``prompt`` is ``extra_info["prompt"]``
    when the data set puts it there, else ``""``). It returns ``{"score": set_reward,
    "candidate_scores": [K floats], "candidate_char_spans": [[start, end] or [-1, -1], ...]}``; verl
    keeps every key of the dict as ``reward_extra_info`` and stacks each key over the batch with
    ``np.array``, so K must be the same for every sample: give ``max_candidates`` to pad (score 0, span
    ``[-1, -1]``, as credo's own trainer pads) when it varies. Point verl at it with
    ``reward.custom_reward_function.path=<file>`` and ``.name=<the wrapped function's name>``.
    """
    if getattr(fn, "reward_kind", "completion") != "candidates":
        raise TypeError(f"candidate_reward_for_verl needs a @candidate_reward function, got {fn!r}")
    if max_candidates is not None and max_candidates < 1:
        raise ValueError(f"max_candidates must be a positive int, got {max_candidates!r}")

    def compute_score(
        data_source: Any, solution_str: str, ground_truth: Any, extra_info: Any = None, **kwargs: Any
    ) -> dict[str, Any]:
        info = extra_info if isinstance(extra_info, dict) else {}
        out = fn(
            [str(info.get("prompt", ""))],
            [solution_str],
            data_source=[data_source],
            ground_truth=[ground_truth],
            extra_info=[extra_info],
        )
        if len(out) != 1 or not isinstance(out[0], CandidateScores):
            raise TypeError(f"{fn!r} must return one CandidateScores per completion, got {out!r}")
        cand = out[0]
        if cand.game is not None:
            raise ValueError(
                "candidate_reward_for_verl: a CandidateScores.game cannot pass through verl's extra info; "
                "the verl route uses the max game of the scores (return game=None)"
            )
        scores = [float(s) for s in cand.scores]
        spans = [[-1, -1] if span is None else [int(span[0]), int(span[1])] for span in cand.spans]
        if max_candidates is not None:
            if len(scores) > max_candidates:
                raise ValueError(f"{len(scores)} candidates but max_candidates={max_candidates}")
            pad = max_candidates - len(scores)
            scores += [0.0] * pad
            spans += [[-1, -1]] * pad
        return {"score": float(cand.set_reward), SCORES_KEY: scores, SPANS_KEY: spans}

    compute_score.__name__ = f"{getattr(fn, '__name__', 'candidate_reward')}_for_verl"
    compute_score.__doc__ = f"verl custom reward function around credo's {fn!r}."
    return compute_score


def configure(tokenizer: Any) -> None:
    """Give this process's credo candidate estimators the policy's tokenizer (to map character spans
    to token spans). Without it they load ``algorithm.credo_tokenizer`` with ``AutoTokenizer``."""
    _TOKENIZER["tokenizer"] = tokenizer


def _tokenizer(config: Any) -> Any:
    if "tokenizer" in _TOKENIZER:
        return _TOKENIZER["tokenizer"]
    getter = getattr(config, "get", None)
    name = getter("credo_tokenizer", None) if callable(getter) else getattr(config, "credo_tokenizer", None)
    if not name:
        raise ValueError(
            "credo's verl candidate estimators need the policy tokenizer: call "
            "credo.integrations.verl.configure(tokenizer) in the driver process, or set "
            "+algorithm.credo_tokenizer=<name or path>"
        )
    transformers = importlib.import_module("transformers")
    _TOKENIZER["tokenizer"] = transformers.AutoTokenizer.from_pretrained(str(name))
    return _TOKENIZER["tokenizer"]


def _rows(values: Any, name: str) -> list[Any]:
    if values is None:
        raise ValueError(
            f"credo candidate estimators need non_tensor_batch[{name!r}]: use candidate_reward_for_verl as "
            "the custom reward function"
        )
    return [np.asarray(v).tolist() for v in values]


def candidate_credit_batch(
    token_level_rewards: Tensor,
    response_mask: Tensor,
    index: Any,
    non_tensor_batch: Any,
    batch: Any,
    tokenizer: Any,
) -> CreditBatch:
    """The :class:`CreditBatch` of a verl batch whose reward function was :func:`candidate_reward_for_verl`:
    ``[B, K]`` scores and ``[B, K, 2]`` token spans on the response axis (``-1`` where a candidate has
    no span or no token under it). The response text is ``batch["responses"]`` decoded up to the
    response part of ``attention_mask`` with ``skip_special_tokens=True``, as verl's reward manager
    decodes it, so the character spans index the same string."""
    mask = response_mask.bool()
    B = mask.shape[0]
    scores_rows = _rows(non_tensor_batch.get(SCORES_KEY), SCORES_KEY)
    spans_rows = _rows(non_tensor_batch.get(SPANS_KEY), SPANS_KEY)
    if len(scores_rows) != B or len(spans_rows) != B:
        raise ValueError(f"candidate extra info has {len(scores_rows)} rows, the batch {B}")
    responses = batch["responses"].cpu()
    attention = (
        batch["attention_mask"][:, -responses.shape[-1] :]
        if "attention_mask" in batch.keys()  # noqa: SIM118 (a TensorDict or a dict)
        else mask
    )
    valid = attention.bool().cpu()
    texts = [tokenizer.decode(ids[m].tolist(), skip_special_tokens=True) for ids, m in zip(responses, valid)]
    offsets = completion_token_offsets(tokenizer, responses, valid, texts)
    K = max((len(row) for row in scores_rows), default=0)
    if K == 0:
        raise ValueError("the candidate reward function returned no candidates at all")
    scores_t = torch.zeros(B, K, dtype=torch.float32)
    spans_t = torch.full((B, K, 2), -1, dtype=torch.long)
    for b, (scores, spans) in enumerate(zip(scores_rows, spans_rows)):
        char_spans = [None if int(s) < 0 else (int(s), int(e)) for s, e in spans]
        token_spans = char_spans_to_token_spans(char_spans, offsets[b])
        for k, (score, span) in enumerate(zip(scores, token_spans)):
            scores_t[b, k] = float(score)
            if span is not None:
                spans_t[b, k] = torch.tensor(span)
    device = mask.device
    return CreditBatch(
        rewards=token_level_rewards.float().sum(dim=-1),
        response_mask=mask,
        group_ids=None if index is None else group_ids_from_uids(index, device),
        candidate_scores=scores_t.to(device),
        candidate_spans=spans_t.to(device),
    )


def make_candidate_adv_estimator(name: str) -> Callable[..., tuple[Tensor, Tensor]]:
    """verl's estimator signature around candidate estimator ``name``; it needs the ``non_tensor_batch``
    and ``batch`` keywords, which :func:`patch_compute_advantage` passes."""

    def adv_estimator(
        token_level_rewards: Tensor,
        response_mask: Tensor,
        index: Any = None,
        config: Any = None,
        non_tensor_batch: Any = None,
        batch: Any = None,
        **kwargs: Any,
    ) -> tuple[Tensor, Tensor]:
        if non_tensor_batch is None or batch is None:
            raise RuntimeError(
                f"{PREFIX}{name} needs verl's non_tensor_batch, which stock verl passes only to gdpo: call "
                "credo.integrations.verl.patch_compute_advantage() (or set CREDO_VERL_PATCH=1) first"
            )
        credit_batch = candidate_credit_batch(
            token_level_rewards, response_mask, index, non_tensor_batch, batch, _tokenizer(config)
        )
        return _advantages_and_returns(name, credit_batch, config, token_level_rewards.dtype)

    adv_estimator.__name__ = f"{PREFIX}{name}"
    adv_estimator.__doc__ = f"credo candidate estimator {name!r} as a verl advantage estimator."
    adv_estimator.credo_candidate = True  # type: ignore[attr-defined]
    return adv_estimator


_PATCH_MODULES = (
    "verl.trainer.ppo.ray_trainer",
    "verl.trainer.ppo.v1.utils",
    "verl.experimental.separation.ray_trainer",
)


def patch_compute_advantage() -> list[str]:
    """Make verl 0.9.1's ``compute_advantage`` pass ``non_tensor_batch`` and ``batch`` to credo's
    candidate estimators (as it does for ``gdpo``); returns the modules patched.

    Replaces ``compute_advantage`` in ``verl.trainer.ppo.ray_trainer`` and in the modules of
    ``_PATCH_MODULES`` already imported that bound it by name. The wrapper handles only
    ``adv_estimator=credo_<candidate estimator>`` and hands every other call to verl's function
    unchanged. Idempotent. Call it in the process that computes advantages (the driver): set
    ``CREDO_VERL_PATCH=1`` and the plugin entry point does it in every process."""
    ray_trainer = importlib.import_module("verl.trainer.ppo.ray_trainer")
    original = ray_trainer.compute_advantage
    if getattr(original, "credo_patched", False):
        wrapper = original
    else:
        core_algos = importlib.import_module("verl.trainer.ppo.core_algos")

        def wrapper(data: Any, adv_estimator: Any, *args: Any, config: Any = None, **kwargs: Any) -> Any:
            name = str(getattr(adv_estimator, "value", adv_estimator))
            fn = core_algos.ADV_ESTIMATOR_REGISTRY.get(name)
            if not getattr(fn, "credo_candidate", False):
                return original(data, adv_estimator, *args, config=config, **kwargs)
            if "response_mask" not in data.batch.keys():  # noqa: SIM118 (a TensorDict)
                data.batch["response_mask"] = ray_trainer.compute_response_mask(data)
            advantages, returns = fn(
                token_level_rewards=data.batch["token_level_rewards"],
                response_mask=data.batch["response_mask"],
                index=data.non_tensor_batch.get("uid"),
                config=config,
                non_tensor_batch=data.non_tensor_batch,
                batch=data.batch,
            )
            data.batch["advantages"] = advantages
            data.batch["returns"] = returns
            return data

        wrapper.credo_patched = True  # type: ignore[attr-defined]
        wrapper.__wrapped__ = original  # type: ignore[attr-defined]
        wrapper.__doc__ = original.__doc__
    patched = []
    for module_name in _PATCH_MODULES:
        module = sys.modules.get(module_name)
        if module is not None and getattr(module, "compute_advantage", None) in (original, wrapper):
            module.compute_advantage = wrapper
            patched.append(module_name)
    return patched


def register() -> list[str]:
    """Register every outcome and candidate estimator of credo with verl as ``credo_<name>``; returns
    the names (outcome estimators first). With ``CREDO_VERL_PATCH=1`` also :func:`patch_compute_advantage`.

    Raises (after a WARNING log line, since verl itself only logs plugin failures at DEBUG) when
    verl's ``core_algos`` cannot be imported."""
    try:
        core_algos = importlib.import_module("verl.trainer.ppo.core_algos")
    except Exception as error:
        logger.warning("credo's verl plugin could not import verl.trainer.ppo.core_algos: %r", error)
        raise ImportError(f"credo.integrations.verl needs verl (tested with 0.9.1): {error}") from error
    names = []
    makers = [(n, make_adv_estimator) for n in outcome_estimators()]
    makers += [(n, make_candidate_adv_estimator) for n in candidate_estimators()]
    for name, make in makers:
        registered = f"{PREFIX}{name}"
        existing = core_algos.ADV_ESTIMATOR_REGISTRY.get(registered)
        if existing is None or getattr(existing, "__module__", "") != __name__:
            core_algos.ADV_ESTIMATOR_REGISTRY.pop(registered, None)
            core_algos.register_adv_est(registered)(make(name))
        names.append(registered)
    if os.environ.get("CREDO_VERL_PATCH", "") not in ("", "0"):
        try:
            patch_compute_advantage()
        except Exception as error:
            logger.warning("credo's verl plugin could not patch compute_advantage: %r", error)
            raise
    return names


# verl's plugin loader only imports the entry point (``ep.load()``), it does not call it: register now.
REGISTERED: list[str] = register()
