"""Candidate-level credit for answers made of K candidates: ShapE-GRPO and winner-takes-all.

An LLM answers a prompt with a *set* of K candidates (recommendations, ideas, code suggestions); the
set gets one reward. GRPO puts that reward on every token, so weak candidates free-ride on a strong
one. ShapE-GRPO (arXiv:2603.29871) splits the set reward into per-candidate Shapley
values phi_k of the set utility (the batch's game, :class:`credo.credit.games.SetGame`; by default
the max game v(S) = max_{k in S} r_k, :func:`credo.credit.shapley.shapley_max`) and gives candidate
k's tokens phi_k. Winner-takes-all
(``"wta"``), the paper's other baseline, gives the set reward to the best candidate's tokens only.

Both estimators share one pipeline (:func:`candidate_token_advantages`):

1. raw credits: ``c[b, k]`` per candidate (phi_k, or R on the winner for wta) and ``R[b]`` per
   response (the set reward, plus the sum of ``token_rewards`` when given, as the ``"grpo"``
   estimator counts them);
2. normalisation across the G responses of each prompt (option ``normalize``):

   * ``"candidates"`` (default): two streams, each normalised as GRPO normalises rewards. Candidate
     credits are centred (and, with ``scale``, divided by the std) with the statistics of all present
     candidates of the prompt's G responses pooled (up to G*K values); the set reward is centred and
     scaled with the statistics of the G set rewards (exactly GRPO's advantage). Each candidate is
     compared with the other candidates proposed for the same prompt, the set with the other sets,
     and the two streams may be on different scales (sum_k phi_k = max_k r_k while R may carry
     other reward terms or weights).
   * ``"responses"``: every raw credit x (phi_k and R alike) becomes (x - mean_G R) / (std_G R + eps),
     the statistics of the G set rewards only. With ``scale`` a group whose G set rewards are all
     equal gets advantage 0 on every token (no signal, as in GRPO; dividing phi - mean by eps would
     explode); without ``scale`` nothing is special-cased.
   * ``"none"``: the raw credits.

   Standard deviations are Bessel-corrected (as :func:`credo.credit.grpo_advantages`); with ``scale``
   a stream whose group has one value, or all values equal, gets exactly 0 (also with ``eps=0``).
3. tokens: candidate k's span gets its advantage (divided by its token count with
   ``length_normalize``, so that in a token-sum loss every candidate weighs the same whatever its
   length); response tokens outside every span (explanations, separators) get, by ``outside``:
   ``"set_reward"`` (default) the set stream's advantage, ``"zero"`` 0 (no gradient), ``"mean_phi"``
   the mean advantage of the row's present candidates; padding gets 0.

Unparsable candidates have span ``-1`` and must have score 0 (ValueError otherwise). They are left
out of the game (:meth:`SetGame.restrict`): they get no credit, and the present candidates share
v(N) among themselves, so a 2-candidate answer to a K=4 prompt is a 2-player game.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from credo.credit._checks import check_finite, check_tensor, float_dtype
from credo.credit.games import MaxGame, SetGame, ShapleyMethod
from credo.credit.groups import GroupStats, group_stats
from credo.credit.registry import CreditBatch, CreditResult, group_ids_of, register_estimator
from credo.credit.tokens import credit_by_owner, sequence_rewards, span_index_map, span_token_counts

Outside = Literal["set_reward", "zero", "mean_phi"]
Normalize = Literal["candidates", "responses", "none"]
SetRewardMode = Literal["rewards", "utility", "check"]
Ties = Literal["first", "all"]
OUTSIDE_MODES = ("set_reward", "zero", "mean_phi")
NORMALIZE_MODES = ("candidates", "responses", "none")
SET_REWARD_MODES = ("rewards", "utility", "check")
TIE_MODES = ("first", "all")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def check_candidates(batch: CreditBatch) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Validate ``candidate_scores`` and ``candidate_spans`` against the batch (once per estimator call).

    Returns:
        ``(scores [B, K] float, spans [B, K, 2] long, present [B, K] bool, owner [B, T] long)``; a
        candidate is present when it has a token span; ``owner`` is :func:`span_index_map` (the
        candidate each token belongs to, -1 outside every span).
    """
    scores, spans, mask = batch.candidate_scores, batch.candidate_spans, batch.response_mask
    if scores is None or spans is None:
        raise ValueError("candidate credit needs batch.candidate_scores and batch.candidate_spans")
    check_tensor("candidate_scores", scores)
    check_tensor("candidate_spans", spans)
    B = mask.shape[0]
    if scores.dim() != 2 or scores.shape[0] != B:
        raise ValueError(f"candidate_scores must be [B, K]=[{B}, K], got shape {tuple(scores.shape)}")
    if scores.dtype == torch.bool or scores.is_complex():
        raise TypeError(f"candidate_scores must be a real tensor, got dtype {scores.dtype}")
    check_finite("candidate_scores", scores)
    if spans.dim() != 3 or spans.shape[0] != B or spans.shape[2] != 2:
        raise ValueError(f"candidate_spans must be [B, K, 2]=[{B}, K, 2], got shape {tuple(spans.shape)}")
    if spans.shape[1] != scores.shape[1]:
        raise ValueError(
            f"candidate_spans has K={spans.shape[1]} candidates per row but candidate_scores has "
            f"K={scores.shape[1]}"
        )
    try:
        owner = span_index_map(spans, mask)  # disjoint, inside [0, T], on response tokens
    except (ValueError, TypeError) as error:
        raise type(error)(f"candidate_spans: {error}") from error
    present = spans[..., 0] >= 0
    stray = ~present & (scores != 0)
    if bool(stray.any()):
        b, k = (int(i) for i in torch.nonzero(stray)[0])
        raise ValueError(
            f"candidate_scores[{b}, {k}] = {float(scores[b, k])} but candidate {k} of row {b} has no "
            "span (-1): an unparsable candidate must score 0"
        )
    return scores.to(float_dtype(scores)), spans.long(), present, owner


def candidate_game(batch: CreditBatch, scores: Tensor, present: Tensor) -> SetGame:
    """The batch's set game with only the ``present`` candidates in it: ``batch.candidate_game``, or
    the max game of ``scores`` when the batch has none."""
    game = batch.candidate_game
    if game is None:
        return MaxGame(scores, present)
    if not isinstance(game, SetGame):
        raise TypeError(f"candidate_game must be a SetGame, got {type(game).__name__}")
    if (game.batch_size, game.num_players) != tuple(scores.shape):
        raise ValueError(
            f"candidate_game has {game.batch_size} games of {game.num_players} players; candidate_scores "
            f"is {tuple(scores.shape)}"
        )
    return game.to(scores.device).restrict(present)


def _set_reward(
    batch: CreditBatch, utility_value: Tensor, mode: str, dtype: torch.dtype, atol: float
) -> Tensor:
    """``[B]`` the set reward R (plus the sum of token rewards, when the batch has them)."""
    _choice("set_reward", mode, SET_REWARD_MODES)
    rewards = batch.rewards
    check_tensor("rewards", rewards)
    check_finite("rewards", rewards)
    if mode == "check":
        gap = (rewards.to(dtype) - utility_value).abs()
        bad = gap > atol * (1 + utility_value.abs())
        if bool(bad.any()):
            b = int(torch.nonzero(bad)[0])
            raise ValueError(
                f"rewards[{b}] = {float(rewards[b])} is not the set utility v(N) = {float(utility_value[b])} "
                "of candidate_scores; pass set_reward='rewards' to use the rewards as given, or "
                "set_reward='utility' to use v(N)"
            )
    base = rewards.to(dtype) if mode == "rewards" else utility_value
    if batch.token_rewards is None:
        return base
    return sequence_rewards(base, batch.response_mask, batch.token_rewards).to(dtype)


def _require_pairs(stats: GroupStats) -> None:
    if stats.count.numel() and float(stats.count.min()) < 2:
        raise ValueError("candidate credit needs at least 2 responses per prompt (G >= 2); a group has one")


def _standardise(stats: GroupStats, scale: bool, eps: float) -> Tensor:
    """GRPO's normalisation of one stream: centred / (std + eps), exactly 0 where the std is 0
    (so ``eps=0`` is allowed), or only centred without ``scale``."""
    if not scale:
        return stats.centred
    spread = stats.std > 0
    return torch.where(spread, stats.centred / (stats.std + eps), torch.zeros_like(stats.centred))


def candidate_token_advantages(
    candidate_credit: Tensor,
    set_reward: Tensor,
    present: Tensor,
    spans: Tensor,
    response_mask: Tensor,
    group_ids: Tensor,
    outside: Outside = "set_reward",
    normalize: Normalize = "candidates",
    scale: bool = True,
    length_normalize: bool = False,
    eps: float = 1e-6,
    owner: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Normalise candidate and set credits across each prompt's G responses and put them on tokens.

    See the module docstring for the modes.

    Args:
        candidate_credit: ``[B, K]`` raw credit of each candidate (0 where absent).
        set_reward: ``[B]`` raw set-level credit R of each response.
        present: ``[B, K]`` bool, the candidate has a span. spans: ``[B, K, 2]`` long.
        response_mask: ``[B, T]`` bool. group_ids: ``[B]`` long prompt index of each row.
        owner: ``[B, T]`` the spans' :func:`span_index_map` when the caller has checked them already.

    Returns:
        ``(advantages [B, T], candidate_advantages [B, K], outside_advantages [B])``.
    """
    _choice("outside", outside, OUTSIDE_MODES)
    _choice("normalize", normalize, NORMALIZE_MODES)
    dtype = candidate_credit.dtype
    zeros_bk = torch.zeros_like(candidate_credit)
    if normalize == "candidates":
        cand_adv = zeros_bk
        if bool(present.any()):
            row_of = torch.arange(present.shape[0], device=present.device)[:, None].expand_as(present)
            pooled = group_stats(candidate_credit[present], group_ids[row_of[present]])
            cand_adv = zeros_bk.masked_scatter(present, _standardise(pooled, scale, eps).to(dtype))
        set_stats = group_stats(set_reward, group_ids)
        _require_pairs(set_stats)
        set_adv = _standardise(set_stats, scale, eps).to(dtype)  # GRPO's advantage of R
    elif normalize == "responses":
        stats = group_stats(set_reward, group_ids)
        _require_pairs(stats)
        mean = (set_reward - stats.centred).to(dtype)  # [B] mean_G R of the row's group
        cand_adv = torch.where(present, candidate_credit - mean[:, None], zeros_bk)
        set_adv = stats.centred.to(dtype)
        if scale:
            no_signal = stats.std == 0
            divisor = (stats.std + eps).to(dtype)
            cand_adv = torch.where(no_signal[:, None], zeros_bk, cand_adv / divisor[:, None])
            set_adv = torch.where(no_signal, torch.zeros_like(set_adv), set_adv / divisor)
    else:
        cand_adv = torch.where(present, candidate_credit, zeros_bk)
        set_adv = set_reward.to(dtype)
    n_present = present.sum(dim=1)
    if outside == "set_reward":
        outside_adv = set_adv
    elif outside == "zero":
        outside_adv = torch.zeros_like(set_adv)
    else:
        outside_adv = cand_adv.sum(dim=1) / n_present.clamp(min=1).to(dtype)
    counts = span_token_counts(spans)
    token_cand = cand_adv / counts.clamp(min=1).to(dtype) if length_normalize else cand_adv
    if owner is None:
        owner = span_index_map(spans, response_mask)
    advantages = credit_by_owner(token_cand, owner, response_mask, outside_adv)
    return advantages, cand_adv, outside_adv


def _common_options(
    outside: str, normalize: str, set_reward: str, scale: bool, length_normalize: bool, eps: float
) -> None:
    """Options checked again at call time (configs bind them at load; Python callers come here)."""
    _choice("outside", outside, OUTSIDE_MODES)
    _choice("normalize", normalize, NORMALIZE_MODES)
    _choice("set_reward", set_reward, SET_REWARD_MODES)
    for name, flag in (("scale", scale), ("length_normalize", length_normalize)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {flag!r}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")


def _result(
    batch: CreditBatch,
    advantages: Tensor,
    candidate_credit: Tensor,
    cand_adv: Tensor,
    outside_adv: Tensor,
    set_reward: Tensor,
    spans: Tensor,
    present: Tensor,
    extra: dict[str, Any],
) -> CreditResult:
    counts = span_token_counts(spans)
    present_counts = counts[present].to(candidate_credit.dtype)
    empty = torch.zeros((), dtype=candidate_credit.dtype, device=counts.device)
    info: dict[str, Any] = {
        "candidate_token_counts": counts,
        "candidate_tokens_mean": present_counts.mean() if present_counts.numel() else empty,
        "candidate_tokens_max": present_counts.max() if present_counts.numel() else empty,
        "unparsable_fraction": 1.0 - present.to(candidate_credit.dtype).mean(),
        "candidate_credit": candidate_credit,
        "candidate_advantages": cand_adv,
        "outside_advantages": outside_adv,
        "set_rewards": set_reward,
        "present_candidates": present.sum(dim=1),
    }
    info.update(extra)
    return CreditResult(advantages=advantages, info=info)


@register_estimator(
    "shape_grpo", requires=("candidate_scores", "candidate_spans"), needs_groups=True, min_group_size=2
)
def shape_grpo_estimator(
    batch: CreditBatch,
    shapley: ShapleyMethod = "auto",
    outside: Outside = "set_reward",
    normalize: Normalize = "candidates",
    scale: bool = True,
    length_normalize: bool = False,
    set_reward: SetRewardMode = "rewards",
    eps: float = 1e-6,
    atol: float = 1e-5,
) -> CreditResult:
    """ShapE-GRPO: each candidate's tokens get its Shapley share of the set utility (arXiv:2603.29871).

        phi_k = Shapley value of candidate k in the batch's game v (batch.candidate_game; default the
                max game v(S) = max_{k in S} r_k of candidate_scores r)

    then normalised across each prompt's G responses and spread onto tokens (module docstring).
    Efficiency holds by construction: sum_k phi_k = v(N), whatever the game.

    Options (defaults first):
        shapley: how the game's Shapley values are computed: ``"auto"`` (closed form where the game
            has one, exact enumeration for small K, permutation sampling beyond) | ``"closed"`` |
            ``"exact"`` | ``"permutation"`` (:meth:`credo.credit.games.SetGame.shapley`).
        outside: ``"set_reward"`` | ``"zero"`` | ``"mean_phi"``: what tokens outside every candidate get.
        normalize: ``"candidates"`` | ``"responses"`` | ``"none"``; scale: divide by the std (True).
        length_normalize: divide each candidate's token advantage by its token count (False).
        set_reward: where R comes from: ``"rewards"`` (``batch.rewards`` as given, default: the
            trainer's reward may carry weights and other terms), ``"utility"`` (v(N) of the game),
            ``"check"`` (v(N), and ``batch.rewards`` must equal it within ``atol`` relative).
            ``token_rewards`` (e.g. a KL penalty) are added to R in every mode, as ``"grpo"`` does.

    Info: ``phi`` and ``candidate_credit`` ``[B, K]``, ``candidate_token_counts`` ``[B, K]``,
    ``candidate_advantages`` ``[B, K]``, ``outside_advantages`` ``[B]``, ``set_rewards`` ``[B]``,
    ``present_candidates`` ``[B]``; 0-d: ``candidate_tokens_mean`` and ``candidate_tokens_max``
    (over present candidates, the lengths a token-mean loss weighs by), ``unparsable_fraction``.
    """
    _common_options(outside, normalize, set_reward, scale, length_normalize, eps)
    scores, spans, present, owner = check_candidates(batch)
    phi = candidate_game(batch, scores, present).shapley(shapley).to(scores.dtype)
    R = _set_reward(batch, phi.sum(dim=1), set_reward, phi.dtype, atol)
    advantages, cand_adv, outside_adv = candidate_token_advantages(
        phi, R, present, spans, batch.response_mask, group_ids_of(batch),
        outside=outside, normalize=normalize, scale=scale, length_normalize=length_normalize, eps=eps,
        owner=owner,
    )  # fmt: skip
    return _result(batch, advantages, phi, cand_adv, outside_adv, R, spans, present, {"phi": phi})


def winners(scores: Tensor, present: Tensor, ties: Ties = "first") -> Tensor:
    """``[B, K]`` bool: the best present candidate of each row (all tied best ones with ``ties="all"``,
    the lowest index among them with ``"first"``). A row with no present candidate has no winner."""
    _choice("ties", ties, TIE_MODES)
    key = torch.where(present, scores, torch.full_like(scores, -torch.inf))
    best = key.amax(dim=1, keepdim=True)
    is_best = present & (key == best)
    if ties == "all":
        return is_best
    first = is_best.to(torch.int8).argmax(dim=1, keepdim=True)
    one_hot = torch.zeros_like(is_best).scatter_(1, first, True)
    return one_hot & is_best


@register_estimator(
    "wta", requires=("candidate_scores", "candidate_spans"), needs_groups=True, min_group_size=2
)
def wta_estimator(
    batch: CreditBatch,
    outside: Outside = "set_reward",
    normalize: Normalize = "candidates",
    scale: bool = True,
    length_normalize: bool = False,
    set_reward: SetRewardMode = "rewards",
    ties: Ties = "first",
    eps: float = 1e-6,
    atol: float = 1e-5,
) -> CreditResult:
    """Winner-takes-all: only the best candidate's tokens get the set reward R (ShapE-GRPO's baseline).

        c_k = R * [k = argmax_j r_j],   other candidates 0

    then the same normalisation and token spreading as ``"shape_grpo"`` (same options; v(N) for
    ``set_reward="utility"|"check"`` is max_k r_k). ``ties``: ``"first"`` (the lowest index wins) or
    ``"all"`` (every tied best candidate gets R).

    Info: ``winners`` ``[B, K]`` bool, and the keys listed by ``"shape_grpo"`` (without ``phi``).
    """
    _common_options(outside, normalize, set_reward, scale, length_normalize, eps)
    _choice("ties", ties, TIE_MODES)
    scores, spans, present, owner = check_candidates(batch)
    best = winners(scores, present, ties)
    v_full = torch.where(present, scores, torch.full_like(scores, -torch.inf)).amax(dim=1)
    v_full = torch.where(present.any(dim=1), v_full, torch.zeros_like(v_full))  # max_k r_k, 0 if none
    R = _set_reward(batch, v_full, set_reward, scores.dtype, atol)
    credit = torch.where(best, R[:, None].expand_as(scores), torch.zeros_like(scores))
    advantages, cand_adv, outside_adv = candidate_token_advantages(
        credit, R, present, spans, batch.response_mask, group_ids_of(batch),
        outside=outside, normalize=normalize, scale=scale, length_normalize=length_normalize, eps=eps,
        owner=owner,
    )  # fmt: skip
    return _result(batch, advantages, credit, cand_adv, outside_adv, R, spans, present, {"winners": best})
