"""``CredoGRPOTrainer``: TRL's ``GRPOTrainer`` with advantages from any credo estimator.

A TRL user changes three things in their script (``docs/integrations.md``)::

    from credo.integrations.trl import CredoGRPOTrainer

    trainer = CredoGRPOTrainer(
        model=model,
        reward_funcs=[my_candidate_reward, format_reward],  # credo @candidate_reward functions allowed
        args=GRPOConfig(...),
        train_dataset=dataset,
        credit_estimator="shape_grpo",  # any name of credo.credit.ESTIMATORS without critic values
        credit_options={"normalize": True},  # checked now: a wrong key fails here, naming it
    )

How it works (the override TRL's maintainers point to, ``_generate_and_score_completions``):

1. TRL generates, scores and builds its batch as usual. A candidate reward function (decorated with
   :func:`credo.credit.reward_types.candidate_reward`) is wrapped: TRL sees its set rewards (one float
   per completion), while the wrapper keeps the :class:`~credo.credit.reward_types.CandidateScores`
   of this process's completions.
2. The outcome reward of each completion is TRL's weighted sum of its reward functions
   (``args.reward_weights``), over every process (TRL gathers them itself). The candidates' character
   spans become token spans on TRL's ``completion_ids`` through the tokenizer's offset mapping (as
   :func:`credo.llm.rewards.compute_rewards` does); each process's candidates are gathered
   (``gather_object``) and its completion mask gathered (padded to the longest completion).
3. One :class:`~credo.credit.registry.CreditBatch` over the whole generation batch (group size
   ``num_generations``; TRL orders completions prompt-major across processes) goes to
   :func:`~credo.credit.registry.compute_credit`; this process's rows (and its completion length) of
   the ``[B, T]`` advantages replace TRL's ``[B]`` ones. TRL 1.16's ``_compute_loss`` takes ``[B, T]``
   advantages as they are.

Limits: plain-text prompts (a conversational completion is a list of messages, and candidate spans
need the completion's text); completion-level and candidate reward functions (not ``@token_reward``);
estimators without critic values (not ``gae``). Completions every reward function scored None get a
zero advantage (as in TRL). TRL's completions table still logs its own scalar advantages. The
multi-process path (gather, slice) is tested on 2 CPU processes (``tests/integrations/test_trl.py``).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from credo.credit import ESTIMATORS  # noqa: F401  (importing credo.credit registers every estimator)
from credo.credit.games import SetGame, cat_games
from credo.credit.registry import CreditBatch, CreditResult, bind_options, compute_credit, get_estimator
from credo.credit.reward_types import CandidateScores
from credo.llm.rollout import char_spans_to_token_spans, completion_token_offsets

TESTED_TRL_VERSIONS: tuple[tuple[int, int], ...] = ((1, 16),)
"""The TRL minor versions this module was tested with (``_generate_and_score_completions`` and
``_compute_loss`` are private, so another minor version is refused rather than trusted)."""

_SUPPORTED_FIELDS = frozenset({"candidate_scores", "candidate_spans"})


def _require_trl() -> Any:
    """The ``trl`` module, or an ImportError saying which versions to install."""
    wanted = " or ".join(f"{a}.{b}.*" for a, b in TESTED_TRL_VERSIONS)
    try:
        module = importlib.import_module("trl")
    except ImportError as error:
        raise ImportError(
            f"credo.integrations.trl needs TRL {wanted}: pip install 'credo[trl]' ({error})"
        ) from error
    parts = str(getattr(module, "__version__", "0.0")).split(".")
    try:
        version = (int(parts[0]), int(parts[1]))
    except (IndexError, ValueError):
        version = (0, 0)
    if version not in TESTED_TRL_VERSIONS:
        raise ImportError(
            f"credo.integrations.trl is tested with TRL {wanted}, found TRL {module.__version__}: "
            "pip install 'credo[trl]'"
        )
    return module


_trl = _require_trl()
_GRPOTrainer: type = _trl.GRPOTrainer
gather_object = importlib.import_module("accelerate.utils").gather_object  # accelerate: a TRL dependency


def is_candidate_reward(fn: Any) -> bool:
    """True for a function decorated with ``@candidate_reward``."""
    return getattr(fn, "reward_kind", "completion") == "candidates"


def _check_reward_funcs(funcs: Sequence[Any], estimator: str) -> None:
    """Raise a ValueError for what the trainer cannot take: token rewards, two candidate functions, a
    candidate estimator without a candidate function, or an estimator needing critic values."""
    spec = get_estimator(estimator)
    missing = set(spec.requires) - _SUPPORTED_FIELDS
    if missing:
        raise ValueError(
            f"credit_estimator {estimator!r} needs {', '.join(sorted(missing))}, which CredoGRPOTrainer "
            "does not provide (it has no critic); pick an outcome or candidate estimator"
        )
    kinds = [getattr(fn, "reward_kind", "completion") for fn in funcs]
    if "tokens" in kinds:
        raise ValueError("CredoGRPOTrainer does not take @token_reward functions yet")
    if kinds.count("candidates") > 1:
        raise ValueError("CredoGRPOTrainer takes at most one @candidate_reward function")
    if set(spec.requires) & _SUPPORTED_FIELDS and "candidates" not in kinds:
        raise ValueError(
            f"credit_estimator {estimator!r} needs per-candidate scores: put a @candidate_reward "
            "function among reward_funcs"
        )


def candidate_token_rows(
    tokenizer: Any,
    completion_ids: Tensor,
    completion_mask: Tensor,
    completions: Sequence[str],
    candidates: Sequence[CandidateScores],
) -> list[tuple[list[float], list[tuple[int, int]], SetGame | None]]:
    """Per completion: its candidate scores, their token spans on the completion axis (``(-1, -1)``
    for a candidate without one) and its one-row game (on the CPU) or None.

    ``completion_ids``/``completion_mask`` are TRL's right-padded ``[B, T]`` completion tensors, so the
    ``k``-th token kept by the mask is at position ``k``."""
    offsets = completion_token_offsets(tokenizer, completion_ids, completion_mask.bool(), completions)
    rows = []
    for cand, row_offsets in zip(candidates, offsets, strict=True):
        spans = [
            (-1, -1) if span is None else span
            for span in char_spans_to_token_spans(list(cand.spans), row_offsets)
        ]
        game = None if cand.game is None else cand.game.to("cpu")
        rows.append(([float(s) for s in cand.scores], spans, game))
    return rows


def stack_candidate_rows(
    rows: Sequence[tuple[list[float], list[tuple[int, int]], SetGame | None]], device: torch.device | str
) -> tuple[Tensor, Tensor, SetGame | None]:
    """``[B, K]`` scores, ``[B, K, 2]`` spans (K the most candidates of any row, missing ones scored 0
    with span ``-1``) and the stacked game (None unless every row has one)."""
    B = len(rows)
    K = max((len(scores) for scores, _, _ in rows), default=0)
    if K == 0:
        raise ValueError("the candidate reward function returned no candidates at all")
    scores_t = torch.zeros(B, K, dtype=torch.float32)
    spans_t = torch.full((B, K, 2), -1, dtype=torch.long)
    for b, (scores, spans, _) in enumerate(rows):
        if scores:
            scores_t[b, : len(scores)] = torch.tensor(scores, dtype=torch.float32)
            spans_t[b, : len(spans)] = torch.tensor(spans, dtype=torch.long)
    games = [game for _, _, game in rows]
    game = None
    if any(g is not None for g in games):
        if any(g is None or g.num_players != K for g in games):
            raise ValueError(
                f"the candidate reward function must give every completion a game of K={K} players"
            )
        game = cat_games(games).to(device)  # type: ignore[arg-type]
    return scores_t.to(device), spans_t.to(device), game


class CredoGRPOTrainer(_GRPOTrainer):
    """A ``trl.GRPOTrainer`` whose ``[B, T]`` advantages come from credo estimator ``credit_estimator``
    (options ``credit_options``, checked at construction with
    :func:`~credo.credit.registry.bind_options`). Every other argument is ``GRPOTrainer``'s."""

    def __init__(
        self,
        model: Any,
        reward_funcs: Any,
        *args: Any,
        credit_estimator: str = "shape_grpo",
        credit_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        funcs = list(reward_funcs) if isinstance(reward_funcs, list | tuple) else [reward_funcs]
        _check_reward_funcs(funcs, credit_estimator)
        self.credit_estimator = credit_estimator
        try:
            self.credit_options = bind_options(credit_estimator, dict(credit_options or {}))
        except ValueError as error:  # bind_options names a config key; here it is an argument
            message = str(error).replace("config key 'credit.options.", "credit_options key '")
            raise ValueError(message) from None
        self._credo_candidates: tuple[list[str], list[CandidateScores]] | None = None
        self._credo_rewards_per_func: Tensor | None = None
        self.last_credit: tuple[CreditBatch, CreditResult] | None = None
        funcs = [self._wrap_candidate_reward(fn) if is_candidate_reward(fn) else fn for fn in funcs]
        super().__init__(model, funcs, *args, **kwargs)

    def _wrap_candidate_reward(self, fn: Callable[..., Any]) -> Callable[..., list[float]]:
        """TRL sees the set rewards; the candidates of this process's completions are kept."""

        @functools.wraps(fn)
        def set_rewards(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
            if not all(isinstance(c, str) for c in completions):
                raise TypeError(
                    "credo candidate reward functions need plain-text completions in CredoGRPOTrainer "
                    "(conversational prompts are not supported)"
                )
            out = list(fn(prompts, completions, **kwargs))
            if len(out) != len(completions) or not all(isinstance(c, CandidateScores) for c in out):
                raise TypeError(
                    f"candidate reward function {getattr(fn, '__name__', fn)!r} must return one "
                    f"CandidateScores per completion ({len(completions)})"
                )
            self._credo_candidates = (list(completions), out)
            return [float(c.set_reward) for c in out]

        return set_rewards

    def _calculate_rewards(
        self, inputs: Any, prompts: Any, completions: Any, completion_ids_list: Any
    ) -> Tensor:
        self._credo_candidates = None
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._credo_rewards_per_func = rewards_per_func  # [B_all, F], every process's completions
        return rewards_per_func

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)
        output["advantages"] = self._credo_advantages(output["completion_ids"], output["completion_mask"])
        return output

    def _gather_rows(self, x: Tensor) -> Tensor:
        """Every process's ``[B, T]`` rows, padded with zeros to the longest T."""
        x = self.accelerator.pad_across_processes(x, dim=1, pad_index=0)
        return self.accelerator.gather(x)

    def _credo_advantages(self, completion_ids: Tensor, completion_mask: Tensor) -> Tensor:
        """This process's ``[B, T]`` advantages from the estimator run on the whole generation batch."""
        assert self._credo_rewards_per_func is not None, "TRL did not call _calculate_rewards"
        device = completion_ids.device
        B, T = completion_mask.shape
        rewards_per_func = self._credo_rewards_per_func
        rewards = (rewards_per_func * self.reward_weights.to(device).unsqueeze(0)).nansum(dim=1)
        unscorable = torch.isnan(rewards_per_func).all(dim=1)
        mask = self._gather_rows(completion_mask.long()).bool()
        scores = spans = game = None
        if self._credo_candidates is not None:
            texts, candidates = self._credo_candidates
            tokenizer = getattr(self.processing_class, "tokenizer", self.processing_class)
            local = candidate_token_rows(tokenizer, completion_ids, completion_mask, texts, candidates)
            rows = gather_object(local)  # every process's rows, in process order
            scores, spans, game = stack_candidate_rows(rows, device)
        group_size = self.num_generations if self.model.training else self.num_generations_eval
        batch = CreditBatch(
            rewards=rewards.float(),
            response_mask=mask,
            group_size=group_size,
            candidate_scores=scores,
            candidate_spans=spans,
            candidate_game=game,
        )
        result = compute_credit(self.credit_estimator, batch, **self.credit_options)
        self.last_credit = (batch, result)
        advantages = result.advantages.masked_fill(unscorable.unsqueeze(1), 0.0)
        start = self.accelerator.process_index * B
        return advantages[start : start + B, :T].to(device=device, dtype=torch.float32)
