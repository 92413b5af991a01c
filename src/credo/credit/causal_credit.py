"""Causal candidate credit: per-slot advantages from counterfactual set values, on any set game.

An LLM answers a prompt with a numbered list of K candidate slots, written one after the other; the
answer's set of candidates gets a value v(S) (a :class:`~credo.credit.games.SetGame`:
``batch.candidate_game``, or ``MaxGame(batch.candidate_scores)`` when it is None). ShapE-GRPO
(arXiv:2603.29871) gives each candidate its Shapley share of v: a fair *division* of the set value,
but not the *causal effect* of the decision that wrote the candidate, which is what a policy gradient
needs. The estimators here credit each slot's decision (write candidate k, or stop) with the return
of the answer compared against a baseline made from the prompt, the answer's own prefix and the
OTHER responses to the same prompt, so they are unbiased estimators of the gradient of
J = E[v(answer)] (``set_splice``, ``set_rtg``) or a low-variance biased one (``set_coma``).

Notation. B rows, prompt-major groups of G responses (``group_ids`` or ``group_size``; every group must
have the same size G >= 2). Response g has slots 0..K-1 in order; m_g = (index of its last slot with
a span) + 1, 0 if none. Slots < m_g are the answer's candidates (a slot < m_g without a span is an
unparsable candidate that stays in the game, scored as the game scores it); slot m_g is the END of
the answer (the decision to stop; when m_g = K it is a virtual slot K). c_{g,<k}: the candidates of g
in slots < k (< min(k, m_g)); c_{g,>=k}: those in slots k..m_g-1; v_g = v(c_g) = v(c_{g,<m_g}); g'
ranges over the other G-1 responses of the prompt. Counterfactual sets mixing two responses are
valued by :meth:`SetGame.splice` with the row of g as context (its per-prompt game parameters);
``batch.rewards`` is not read: the reward credited is the game's v (add other reward terms with
another estimator).

===============  ==========================================================================  ========
estimator        A_{g,k}, k = 0..m_g                                                         bias
===============  ==========================================================================  ========
``set_splice``   v_g - mean_{g'} v(c_{g,<k} ∪ c_{g',>=k})                                    unbiased
``set_rtg``      [v_g - v(c_{g,<k})] - mean_{g'} [v_{g'} - v(c_{g',<k})]                     unbiased
``set_coma``     [v(c_{g,<=k}) - v(c_{g,<k})] - mean_{c'} [v(c_{g,<k} ∪ {c'}) - v(c_{g,<k})]  myopic
===============  ==========================================================================  ========

Which to use (a first guess, to be confirmed by experiments):

===================================================  ===========================================
set utility                                          estimator
===================================================  ===========================================
max-type (the user picks one: MaxGame), redundancy   ``set_splice``: the baseline knows what this
                                                     prefix already secured (max(M_{<k}, T'_{>=k}))
general (coverage, additive bonus, sums of games)    ``set_rtg``: a reward-to-go with a per-slot
                                                     group baseline, Rank-GRPO's principle
few samples, noisy rewards (variance dominates)      ``set_coma``: one-step marginals, biased
===================================================  ===========================================

Why splice and rtg are unbiased. The answer is generated slot by slot; the policy gradient is
sum_k E[A_k grad log pi(a_k | x, c_{<k})], a_k the decision at slot k (its separator and span
tokens, or the stop). Write A_k = Y_k - b_k. If E[Y_k | x, c_{<=k}] is the return of the answer given
its first k decisions and b_k depends only on the prompt x, the prefix c_{g,<k} and the OTHER
responses (sampled independently of a_k given x), then E[b_k grad log pi(a_k | .)] = E[b_k
E[grad log pi(a_k | .) | x, c_{<k}, others]] = 0, and the estimate is unbiased. Splice: Y = v_g,
b = the others' tails spliced onto the own prefix. Rtg: Y = v_g - v(c_{g,<k}) (v(c_{g,<k}) is itself a
function of the history, so a valid baseline term), b = the others' reward-to-go at slot k. Coma's
baseline satisfies the condition too, but its Y is the one-step marginal v(c_{<=k}) - v(c_{<k}),
whose expectation is not the return: it ignores how a_k changes the later candidates' marginals (a
strong first pick makes later picks worthless under a max), so it optimises a different, myopic
objective: biased w.r.t. J, lower variance. ``scale=True`` divides by a group statistic that depends
on the response itself, a small bias as in GRPO; the unbiasedness is for ``scale=False``.

Tokens. Candidate k's span tokens get A_{g,k}; a response token outside every span after the span of
slot a (the last span ending at or before it) gets A_{g,a+1}: separators begin the next slot (the
next candidate, an unparsable one, or the end), so the tokens after the last span (EOS) get
A_{g,m_g}; tokens before the first span get RLOO's credit v_g - mean_{g'} v_{g'} (the preamble: no
slot decided yet; set_splice and set_rtg have A_{g,0} equal to it); in a row with no span (m_g = 0)
every token is the end and gets A_{g,0}. Padding gets 0.

Numerics: every mean over the other responses is taken of differences (mean_{g'} (Y_g - Y_{g'}),
not Y_g - mean_{g'} Y_{g'}), so a group of identical answers gets exactly 0 whatever G.

Scale. With ``scale=True`` every advantage of a group (slot, end and preamble values) is divided by
the Bessel-corrected std of the group's slot advantages {A_{g,k}: k = 0..m_g, the G responses}; the
preamble RLOO values are NOT in the pool (they equal A_{g,0} for splice and rtg, and leaving them out
keeps the statistic independent of the token layout). A group whose pool has zero spread gets exactly
0 on every token (as GRPO). ``scale=False``: the raw formulas.

References: ShapE-GRPO, arXiv:2603.29871 (Shapley division, the contrast); Rank-GRPO (reward-to-go
per rank with a per-rank group baseline) for ``set_rtg``; COMA, Foerster et al. 2018 (counterfactual
baseline marginalising one agent's action) for ``set_coma``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from credo.credit.candidate_credit import check_candidates
from credo.credit.games import MaxGame, SetGame
from credo.credit.groups import group_stats
from credo.credit.registry import CreditBatch, CreditResult, group_ids_of, register_estimator

__all__ = ["set_coma_estimator", "set_rtg_estimator", "set_splice_estimator"]


@dataclass(frozen=True)
class _Setup:
    """What every causal estimator needs, for B rows of K slots."""

    game: SetGame
    spans: Tensor  # [B, K, 2] long
    has_span: Tensor  # [B, K] bool
    owner: Tensor  # [B, T] long, the slot whose span holds each token, -1 outside every span
    lengths: Tensor  # [B] long, m_g
    others: Tensor  # [B, G-1] long, the other rows of each row's group
    group: Tensor  # [B] long, dense group index 0..N-1
    prefix_values: Tensor  # [B, K+1], v(c_{g,<k}) for k = 0..K
    values: Tensor  # [B], v_g


def _check_options(scale: bool, eps: float) -> None:
    if not isinstance(scale, bool):
        raise TypeError(f"scale must be a bool, got {scale!r}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")


def _group_layout(batch: CreditBatch, device: torch.device) -> tuple[Tensor, Tensor]:
    """``(others [B, G-1], group [B])``: the other rows of each row's group, and a dense group index."""
    ids = group_ids_of(batch).to(device)
    B = batch.batch_size
    if ids.shape != (B,) or ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ValueError(f"group_ids must be a [B]=[{B}] integer tensor, got {tuple(ids.shape)} {ids.dtype}")
    ids = ids.long()
    if bool((ids < 0).any()):
        raise ValueError("group_ids must be non-negative")
    sizes = torch.bincount(ids)
    sizes = sizes[sizes > 0]
    G = int(sizes[0])
    if bool((sizes != G).any()):
        raise ValueError(
            f"causal candidate credit needs groups of equal size; got sizes {sorted(set(sizes.tolist()))}"
        )
    if G < 2:
        raise ValueError("causal candidate credit needs at least 2 responses per prompt (G >= 2)")
    order = torch.argsort(ids, stable=True)
    pos = torch.empty_like(order)
    pos[order] = torch.arange(B, device=device)
    group, index = pos // G, pos % G
    members = order.view(-1, G)  # [N, G] rows of each group
    table = torch.tensor([[o for o in range(G) if o != i] for i in range(G)], dtype=torch.long, device=device)
    others = members[group[:, None], table[index]]  # [B, G-1]
    return others, group


def _check_slot_order(spans: Tensor, has_span: Tensor) -> None:
    """Slots are written in order: each present span must start after every earlier slot's span."""
    start, end = spans[..., 0], spans[..., 1]
    running_end = torch.where(has_span, end, torch.full_like(end, -1)).cummax(dim=1).values
    before = torch.cat([torch.full_like(end[:, :1], -1), running_end[:, :-1]], dim=1)
    bad = has_span & (start < before)
    if bool(bad.any()):
        b, k = (int(i) for i in torch.nonzero(bad)[0])
        raise ValueError(
            f"candidate_spans of row {b}: slot {k}'s span starts before an earlier slot's span; causal "
            "credit needs the slots' spans in slot order (slot k is written after slot k-1)"
        )


def _setup(batch: CreditBatch) -> _Setup:
    scores, spans, has_span, owner = check_candidates(batch)
    B, K = has_span.shape
    if K < 1:
        raise ValueError("causal candidate credit needs K >= 1 candidate slots")
    _check_slot_order(spans, has_span)
    game = batch.candidate_game if batch.candidate_game is not None else MaxGame(scores)
    if not isinstance(game, SetGame):
        raise TypeError(f"candidate_game must be a SetGame, got {type(game).__name__}")
    if game.batch_size != B or game.num_players != K:
        raise ValueError(
            f"candidate_game has {game.batch_size} games of {game.num_players} slots; the batch has B={B} "
            f"rows of K={K} candidate slots"
        )
    device = game.device
    spans, has_span, owner = spans.to(device), has_span.to(device), owner.to(device)
    others, group = _group_layout(batch, device)
    slot = torch.arange(K, device=device)
    lengths = ((slot + 1) * has_span).amax(dim=1)  # m_g
    ks = torch.arange(K + 1, device=device)
    prefixes = (slot[None, None, :] < ks[None, :, None]) & (slot[None, None, :] < lengths[:, None, None])
    prefix_values = game.value(prefixes)  # [B, K+1]
    values = prefix_values.gather(1, lengths[:, None])[:, 0]
    return _Setup(game, spans, has_span, owner, lengths, others, group, prefix_values, values)


def _rloo(setup: _Setup) -> Tensor:
    """``[B]`` v_g - mean_{g' != g} v_{g'}."""
    return (setup.values[:, None] - setup.values[setup.others]).mean(dim=1)


def _finish(batch: CreditBatch, setup: _Setup, raw: Tensor, scale: bool, eps: float) -> CreditResult:
    """Mask ``raw [B, K+1]`` to slots 0..m_g, scale per group, and spread onto tokens."""
    B, K = setup.has_span.shape
    device, dtype = raw.device, raw.dtype
    zero = torch.zeros((), dtype=dtype, device=device)
    valid = torch.arange(K + 1, device=device)[None, :] <= setup.lengths[:, None]  # [B, K+1]
    adv = torch.where(valid, raw, zero)
    preamble = _rloo(setup).to(dtype)
    std = torch.zeros(B, dtype=dtype, device=device)
    if scale:
        rows = torch.arange(B, device=device)[:, None].expand(B, K + 1)[valid]
        stats = group_stats(adv[valid], setup.group[rows])
        std = std.scatter(0, rows, stats.std.to(dtype))  # every entry of a row holds its group's std
        spread = std > 0
        divisor = torch.where(spread, std + eps, torch.ones_like(std))
        adv = torch.where(spread[:, None], adv / divisor[:, None], zero)
        preamble = torch.where(spread, preamble / divisor, zero)

    mask = batch.response_mask.to(device).bool()
    T = mask.shape[1]
    owner = setup.owner
    slot = torch.arange(K, device=device)
    ends = torch.where(setup.has_span, setup.spans[..., 1], torch.full_like(slot[None, :], T))
    marker = torch.zeros((B, T + 1), dtype=torch.long, device=device)
    marker.scatter_reduce_(1, ends, (slot[None, :] + 1) * setup.has_span, reduce="amax")
    after = marker[:, :T].cummax(dim=1).values  # (slot of the last span ended at or before t) + 1
    token_slot = torch.where(owner >= 0, owner, after)
    is_preamble = (owner < 0) & (after == 0) & (setup.lengths[:, None] > 0)
    credit = adv.gather(1, token_slot)
    credit = torch.where(is_preamble, preamble[:, None], credit)
    advantages = torch.where(mask, credit, zero)
    info = {
        "candidate_advantages": adv[:, :K],
        "end_advantages": adv.gather(1, setup.lengths[:, None])[:, 0],
        "answer_lengths": setup.lengths,
        "preamble_advantages": preamble,
        "set_values": setup.values,
        "group_std": std,
    }
    return CreditResult(advantages=advantages, info=info)


@register_estimator(
    "set_splice", requires=("candidate_scores", "candidate_spans"), needs_groups=True, min_group_size=2
)
def set_splice_estimator(batch: CreditBatch, *, scale: bool = True, eps: float = 1e-6) -> CreditResult:
    """Splice baseline: slot k is compared with the other responses' tails spliced onto its prefix.

        A_{g,k} = v_g - 1/(G-1) sum_{g' != g} v(c_{g,<k} ∪ c_{g',>=k}),   k = 0..m_g

    (for the max game: v_g - mean_{g'} max(M_{g,<k}, T_{g',>=k}), M the prefix's best score and T the
    tail's). c_{g',>=k} are the candidates of g' in slots k..m_{g'}-1 (empty when g' stopped before
    k); the spliced set is valued in g's game (:meth:`SetGame.splice` with g as context). A_{g,0} is
    RLOO's v_g - mean_{g'} v_{g'}; A_{g,m_g} compares stopping with continuing as the others did
    (0 when m_g = K).

    Unbiased (``scale=False``): the baseline depends only on the prompt, g's prefix c_{g,<k} and the
    other responses, which are independent of g's decision at slot k, so its expected score-function
    term is zero; E[v_g | c_{g,<=k}] is the return of that decision (module docstring). It removes
    what the prefix already secured, so under a max with redundancy a slot after a strong candidate
    gets little credit either way (ShapE-GRPO, arXiv:2603.29871, divides v instead).

    Costs B (G-1) (K+1) game values of K slots. Tokens and ``scale``: module docstring. Info:
    ``candidate_advantages [B, K]`` (A_{g,k}, 0 for k > m_g), ``end_advantages [B]`` (A_{g,m_g}),
    ``answer_lengths [B]`` (m_g), ``preamble_advantages [B]``, ``set_values [B]`` (v_g),
    ``group_std [B]`` (the divisor's std, 0 without ``scale``).
    """
    _check_options(scale, eps)
    setup = _setup(batch)
    B, K = setup.has_span.shape
    device = setup.values.device
    others = setup.others
    n_other = others.shape[1]
    slot = torch.arange(K, device=device)
    ks = torch.arange(K + 1, device=device)
    own = slot[None, :] < setup.lengths[:, None]  # [B, K] slots of g's answer
    from_prefix = slot[None, None, None, :] < ks[None, None, :, None]  # [1, 1, K+1, K]
    rows = torch.where(
        from_prefix, torch.arange(B, device=device)[:, None, None, None], others[:, :, None, None]
    )  # [B, G-1, K+1, K]
    used = torch.where(from_prefix, own[:, None, None, :], own[others][:, :, None, :])
    slots = torch.where(used, slot, torch.full_like(slot, -1))
    context = torch.arange(B, device=device)[:, None, None].expand(B, n_other, K + 1)
    spliced = setup.game.splice(rows.reshape(-1, K), slots.reshape(-1, K), context.reshape(-1))
    spliced_values = spliced.grand_value().view(B, n_other, K + 1)
    raw = (setup.values[:, None, None] - spliced_values).mean(dim=1)
    return _finish(batch, setup, raw, scale, eps)


@register_estimator(
    "set_rtg", requires=("candidate_scores", "candidate_spans"), needs_groups=True, min_group_size=2
)
def set_rtg_estimator(batch: CreditBatch, *, scale: bool = True, eps: float = 1e-6) -> CreditResult:
    """Reward-to-go with a per-slot group baseline (the principle of Rank-GRPO).

        A_{g,k} = [v_g - v(c_{g,<k})] - 1/(G-1) sum_{g' != g} [v_{g'} - v(c_{g',<k})],   k = 0..m_g

    The return of slot k is what the answer gained from slot k on; the baseline is the other
    responses' gain from their own slot k on (0 for a g' that stopped before k). A_{g,0} is RLOO's
    v_g - mean_{g'} v_{g'}.

    Unbiased (``scale=False``): v(c_{g,<k}) is a function of the history before slot k and the
    others' reward-to-go is independent of g's decision at k, so both baseline terms have zero
    expected score-function term (module docstring). Works for any game (only prefix values: B (K+1)
    game values). Rank-GRPO's principle for ranked lists: credit each rank with the return from that
    rank on, against the group's responses at the same rank.

    Tokens and ``scale``: module docstring. Info: as ``"set_splice"``.
    """
    _check_options(scale, eps)
    setup = _setup(batch)
    to_go = setup.values[:, None] - setup.prefix_values  # [B, K+1]
    raw = (to_go[:, None, :] - to_go[setup.others]).mean(dim=1)
    return _finish(batch, setup, raw, scale, eps)


@register_estimator(
    "set_coma", requires=("candidate_scores", "candidate_spans"), needs_groups=True, min_group_size=2
)
def set_coma_estimator(batch: CreditBatch, *, scale: bool = True, eps: float = 1e-6) -> CreditResult:
    """COMA-style counterfactual marginal: slot k's candidate against the other responses' candidates.

        A_{g,k} = [v(c_{g,<=k}) - v(c_{g,<k})] - mean_{c'} [v(c_{g,<k} ∪ {c'}) - v(c_{g,<k})],  k = 0..m_g

    c' ranges over the candidate slots of the other responses (slots < m_{g'} of every g' != g,
    unparsable ones included; the mean is 0 when there is none). At the end slot,
    v(c_{g,<=m_g}) := v(c_{g,<m_g}) (stopping adds nothing), so A_{g,m_g} = -(the mean gain one more
    candidate would have brought). Each counterfactual is valued in g's game with K+1 slots (the
    prefix and c').

    Biased w.r.t. J = E[v], lower variance: the baseline depends only on the prompt, c_{g,<k} and the
    other responses (zero expected score-function term, as COMA's), but the 'return' is the myopic
    one-step marginal, not the return of the decision: it ignores how candidate k changes the value
    of later candidates, so it follows the gradient of a different objective (greedy set building).
    COMA: Foerster et al. 2018, "Counterfactual Multi-Agent Policy Gradients" (arXiv:1705.08926).

    Costs B (G-1) K (K+1) game values of K+1 slots. Tokens and ``scale``: module docstring (the
    preamble gets RLOO's credit, which here differs from A_{g,0}). Info: as ``"set_splice"``.
    """
    _check_options(scale, eps)
    setup = _setup(batch)
    B, K = setup.has_span.shape
    device = setup.values.device
    others = setup.others
    n_other = others.shape[1]
    vpre = setup.prefix_values
    own_gain = torch.cat([vpre[:, 1:] - vpre[:, :-1], torch.zeros_like(vpre[:, :1])], dim=1)  # [B, K+1]

    # counterfactual games [B, G-1 (g'), K (slot j of g'), K+1 (k), K+1 (new slot s)]
    s = torch.arange(K + 1, device=device)
    ks = torch.arange(K + 1, device=device)
    j = torch.arange(K, device=device)
    is_new = (s == K)[None, None, None, None, :]
    rows = torch.where(
        is_new, others[:, :, None, None, None], torch.arange(B, device=device)[:, None, None, None, None]
    ).expand(B, n_other, K, K + 1, K + 1)
    prefix = (s[None, :] < ks[:, None]) & (s[None, None, :] < setup.lengths[:, None, None])  # [B, K+1, K+1]
    own_slots = torch.where(prefix, s, torch.full_like(s, -1))  # [B, K+1 (k), K+1 (s)]
    slots = torch.where(is_new, j[None, None, :, None, None], own_slots[:, None, None, :, :])
    slots = slots.expand(B, n_other, K, K + 1, K + 1)
    context = torch.arange(B, device=device)[:, None, None, None].expand(B, n_other, K, K + 1)
    spliced = setup.game.splice(
        slots=slots.reshape(-1, K + 1), rows=rows.reshape(-1, K + 1), context=context.reshape(-1)
    )
    gains = spliced.grand_value().view(B, n_other, K, K + 1) - vpre[:, None, None, :]
    pool = (j[None, :] < setup.lengths[:, None])[others]  # [B, G-1, K] the others' candidate slots
    zero = torch.zeros((), dtype=gains.dtype, device=device)
    excess = torch.where(pool[..., None], own_gain[:, None, None, :] - gains, zero).sum(dim=(1, 2))
    count = pool.sum(dim=(1, 2))  # [B]
    raw = torch.where((count > 0)[:, None], excess / count.clamp(min=1)[:, None].to(gains.dtype), own_gain)
    return _finish(batch, setup, raw, scale, eps)
