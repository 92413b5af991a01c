"""set_splice, set_rtg, set_coma: every token against a slow loop reference (Python sets, plain max /
coverage), the exact gradient of a tabular set policy (unbiasedness, and a biased estimator that fails
the same check), and properties (A_{g,0} = RLOO, relabelling, scale invariance)."""

from __future__ import annotations

import statistics

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from credo.credit import ESTIMATORS, CreditBatch, compute_credit, rloo_advantages
from credo.credit.games import AdditiveGame, CoverageGame, MaxGame, SetGame

from .set_policy_bed import SetPolicyBed, gradient_check

NAMES = ("set_splice", "set_rtg", "set_coma")
KINDS = ("max", "max_bonus", "coverage")
EPS = 1e-6
BONUS = 0.1
C = 3  # coverage topics

# ------------------------------------------------------------------------------------------------
# batches from token layouts: one character per token
#   'p' preamble, 's' separator, 'x' text of an unparsable candidate, 'e' end (EOS, closing text),
#   a digit k: a token of slot k's span, '.' padding.
# A slot below the last digit with no digit of its own is unparsable (no span, score 0).


def parse_layout(rows: list[str]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(response_mask [B, T], spans [B, K, 2], K)`` from layout strings (K = 1 + largest digit)."""
    T = max(len(r) for r in rows)
    K = 1 + max((int(ch) for r in rows for ch in r if ch.isdigit()), default=0)
    mask = torch.zeros(len(rows), T, dtype=torch.bool)
    spans = torch.full((len(rows), K, 2), -1, dtype=torch.long)
    for b, row in enumerate(rows):
        for t, ch in enumerate(row):
            mask[b, t] = ch != "."
        for k in range(K):
            where = [t for t, ch in enumerate(row) if ch == str(k)]
            if where:
                assert where == list(range(where[0], where[-1] + 1)), row
                spans[b, k] = torch.tensor([where[0], where[-1] + 1])
    return mask, spans, K


def make_batch(
    rows: list[str],
    scores: list[list[float]],
    G: int,
    kind: str = "max",
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> tuple[CreditBatch, dict]:
    """A batch and the plain-Python parameters of its game (``present``: every slot is a player)."""
    mask, spans, K = parse_layout(rows)
    B = len(rows)
    score_t = torch.zeros(B, K, dtype=dtype)
    for b, row_scores in enumerate(scores):
        score_t[b, : len(row_scores)] = torch.tensor(row_scores[:K], dtype=dtype)
    score_t = torch.where(spans[..., 0] >= 0, score_t, torch.zeros((), dtype=dtype))
    g = torch.Generator().manual_seed(seed)
    params: dict = {"kind": kind, "scores": score_t.tolist(), "present": [[True] * K for _ in range(B)]}
    game: SetGame
    if kind == "max":
        game = MaxGame(score_t)
    elif kind == "max_bonus":
        bonus = BONUS * (score_t > 0).to(dtype)
        params["bonus"] = bonus.tolist()
        game = MaxGame(score_t) + AdditiveGame(bonus)
    else:
        covers = torch.rand(B, K, C, generator=g) < 0.5
        weights = torch.rand(B, C, generator=g, dtype=torch.float64).to(dtype)  # differs within a group:
        params["covers"] = covers.tolist()  # the context of a splice must be the row being credited
        params["weights"] = weights.tolist()
        game = CoverageGame(covers, weights)
    batch = CreditBatch(
        rewards=game.grand_value(),
        response_mask=mask,
        group_size=G,
        candidate_scores=score_t,
        candidate_spans=spans,
        candidate_game=game,
    )
    return batch, params


def random_rows(
    n_rows: int, K: int, seed: int, levels: tuple[float, ...] = (0.1, 0.4, 0.4, 0.8)
) -> tuple[list[str], list[list[float]]]:
    """Random layouts: stopped answers, unparsable middle slots, preambles, separators, padding, ties."""
    g = torch.Generator().manual_seed(seed)

    def rand(n: int) -> int:
        return int(torch.randint(n, (1,), generator=g))

    rows, scores = [], []
    for _ in range(n_rows):
        m = rand(K + 1)
        text = "p" * rand(3)
        row_scores = []
        for k in range(m):
            if k:
                text += "s" * rand(3)
            unparsable = k < m - 1 and rand(4) == 0
            if unparsable:
                text += "x" * rand(3)
                row_scores.append(0.0)
            else:
                text += str(k) * (1 + rand(2))
                row_scores.append(levels[rand(len(levels))])
        text += "e" * rand(3)
        if not text:
            text = "e"
        rows.append(text)
        scores.append(row_scores)
    T = max(len(r) for r in rows) + 1
    return [r + "." * (T - len(r)) for r in rows], scores


# ------------------------------------------------------------------------------------------------
# the slow reference: loops over rows, slots and other responses, v on Python lists of (row, slot)


def ref_value(params: dict, ctx: int, members: list[tuple[int, int]]) -> float:
    members = [(r, j) for r, j in members if params["present"][r][j]]
    kind = params["kind"]
    if kind in ("max", "max_bonus"):
        value = max((params["scores"][r][j] for r, j in members), default=0.0)
        if kind == "max_bonus":
            value += sum(params["bonus"][r][j] for r, j in members)
        return value
    return sum(
        params["weights"][ctx][c] for c in range(C) if any(params["covers"][r][j][c] for r, j in members)
    )


def ref_advantages(name: str, batch: CreditBatch, params: dict, scale: bool, eps: float = EPS):
    mask = batch.response_mask.tolist()
    spans = batch.candidate_spans.tolist()
    B, T, K, G = len(mask), len(mask[0]), len(spans[0]), batch.group_size
    m = [max([k + 1 for k in range(K) if spans[b][k][0] >= 0], default=0) for b in range(B)]

    def cands(b: int, lo: int, hi: int) -> list[tuple[int, int]]:
        return [(b, j) for j in range(lo, min(hi, m[b]))]

    def V(ctx: int, members: list[tuple[int, int]]) -> float:
        return ref_value(params, ctx, members)

    v = [V(b, cands(b, 0, K)) for b in range(B)]
    A: list[list[float]] = []
    rloo = []
    for b in range(B):
        start = b // G * G
        others = [o for o in range(start, start + G) if o != b]
        rloo.append(statistics.fmean(v[b] - v[o] for o in others))
        row = []
        for k in range(m[b] + 1):
            if name == "set_splice":
                a = statistics.fmean(v[b] - V(b, cands(b, 0, k) + cands(o, k, K)) for o in others)
            elif name == "set_rtg":
                mine = v[b] - V(b, cands(b, 0, k))
                a = statistics.fmean(mine - (v[o] - V(o, cands(o, 0, k))) for o in others)
            else:
                before = V(b, cands(b, 0, k))
                own = V(b, cands(b, 0, k + 1)) - before if k < m[b] else 0.0
                pool = [(o, j) for o in others for j in range(m[o])]
                # own - mean_{c'} gain(c'), written as the mean of the differences
                a = (
                    statistics.fmean(own - (V(b, [*cands(b, 0, k), c]) - before) for c in pool)
                    if pool
                    else own
                )
            row.append(a)
        A.append(row)
    if scale:
        for start in range(0, B, G):
            group = range(start, start + G)
            sd = statistics.stdev([a for b in group for a in A[b]])
            for b in group:
                A[b] = [0.0 if sd == 0 else a / (sd + eps) for a in A[b]]
                rloo[b] = 0.0 if sd == 0 else rloo[b] / (sd + eps)
    out = [[0.0] * T for _ in range(B)]
    for b in range(B):
        for t in range(T):
            if not mask[b][t]:
                continue
            inside = [k for k in range(K) if spans[b][k][0] <= t < spans[b][k][1]]
            ended = [k for k in range(K) if 0 <= spans[b][k][1] <= t]
            if inside:
                out[b][t] = A[b][inside[0]]
            elif ended:
                out[b][t] = A[b][max(ended) + 1]
            elif m[b] == 0:
                out[b][t] = A[b][0]
            else:
                out[b][t] = rloo[b]
    cand = [[A[b][k] if k <= m[b] else 0.0 for k in range(K)] for b in range(B)]
    end = [A[b][m[b]] for b in range(B)]
    return (
        torch.tensor(out, dtype=torch.float64),
        torch.tensor(cand, dtype=torch.float64),
        torch.tensor(end, dtype=torch.float64),
        m,
    )


# G = 3, K = 3: a group with a full answer, an unparsable middle slot with tied scores and a stopped
# answer; a zero-spread group (the same single candidate everywhere); a group with an empty answer and
# an answer without end tokens.
HAND_ROWS = [
    "p0s1s2e..",
    "0sxs2ee..",
    "pp0e.....",
    "0ee......",
    "p0e......",
    "00e......",
    "ee.......",
    "0s1e.....",
    "0s11s2...",
]
HAND_SCORES = [[0.5, 0.9, 0.5], [0.9, 0.0, 0.9], [0.5], [0.4], [0.4], [0.4], [], [0.3, 0.6], [0.6, 0.6, 0.1]]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("scale", [False, True])
def test_hand_batch_against_reference(name: str, kind: str, scale: bool) -> None:
    batch, params = make_batch(HAND_ROWS, HAND_SCORES, G=3, kind=kind, seed=1)
    result = compute_credit(name, batch, scale=scale)
    expected, cand, end, m = ref_advantages(name, batch, params, scale)
    torch.testing.assert_close(result.advantages, expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(result.info["candidate_advantages"], cand, rtol=0, atol=1e-10)
    torch.testing.assert_close(result.info["end_advantages"], end, rtol=0, atol=1e-10)
    assert result.info["answer_lengths"].tolist() == m == [3, 3, 1, 1, 1, 1, 0, 2, 3]


@pytest.mark.parametrize("name", NAMES)
def test_zero_spread_group_gets_exactly_zero(name: str) -> None:
    batch, _ = make_batch(HAND_ROWS, HAND_SCORES, G=3, kind="max")
    for eps in (EPS, 0.0):
        result = compute_credit(name, batch, scale=True, eps=eps)
        assert torch.equal(result.advantages[3:6], torch.zeros_like(result.advantages[3:6]))
        assert bool(result.advantages[:3].abs().sum() > 0)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_layouts_against_reference(name: str, kind: str, seed: int) -> None:
    G = 2 + seed
    rows, scores = random_rows(3 * G, K=4, seed=10 + seed)
    batch, params = make_batch(rows, scores, G=G, kind=kind, seed=seed)
    for scale in (False, True):
        result = compute_credit(name, batch, scale=scale)
        expected, cand, end, _ = ref_advantages(name, batch, params, scale)
        torch.testing.assert_close(result.advantages, expected, rtol=0, atol=1e-10)
        torch.testing.assert_close(result.info["candidate_advantages"], cand, rtol=0, atol=1e-10)
        torch.testing.assert_close(result.info["end_advantages"], end, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_game_present_is_honoured(name: str) -> None:
    """An unparsable slot the game leaves out (present False) is a null player, in every splice."""
    batch, params = make_batch(HAND_ROWS, HAND_SCORES, G=3, kind="max")
    has_span = batch.candidate_spans[..., 0] >= 0
    scores = batch.candidate_scores - 1.0  # negative scores: an absent slot's 0 would otherwise win
    scores = torch.where(has_span, scores, torch.zeros_like(scores))
    game = MaxGame(scores, has_span)
    batch = CreditBatch(**{**batch.__dict__, "candidate_scores": scores, "candidate_game": game})
    params = {**params, "scores": scores.tolist(), "present": has_span.tolist()}
    for scale in (False, True):
        expected, *_ = ref_advantages(name, batch, params, scale)
        torch.testing.assert_close(
            compute_credit(name, batch, scale=scale).advantages, expected, rtol=0, atol=1e-10
        )


@pytest.mark.parametrize("name", NAMES)
def test_default_game_is_max_of_scores(name: str) -> None:
    batch, _ = make_batch(HAND_ROWS, HAND_SCORES, G=3, kind="max")
    without = CreditBatch(**{**batch.__dict__, "candidate_game": None})
    torch.testing.assert_close(
        compute_credit(name, without).advantages, compute_credit(name, batch).advantages, rtol=0, atol=0
    )


@pytest.mark.parametrize("name", NAMES)
def test_group_ids_in_any_row_order(name: str) -> None:
    batch, _ = make_batch(HAND_ROWS, HAND_SCORES, G=3, kind="coverage", seed=3)
    perm = torch.tensor([4, 0, 8, 2, 6, 1, 3, 7, 5])
    rows = perm[:, None].expand(-1, 3)
    game = batch.candidate_game.splice(rows, torch.arange(3).expand(9, 3), perm)
    shuffled = CreditBatch(
        rewards=batch.rewards[perm],
        response_mask=batch.response_mask[perm],
        group_ids=(perm // 3) * 7 + 2,  # any non-negative labels
        candidate_scores=batch.candidate_scores[perm],
        candidate_spans=batch.candidate_spans[perm],
        candidate_game=game,
    )
    for scale in (False, True):
        torch.testing.assert_close(
            compute_credit(name, shuffled, scale=scale).advantages,
            compute_credit(name, batch, scale=scale).advantages[perm],
            rtol=0,
            atol=1e-12,
        )


def test_registered_with_their_requirements() -> None:
    for name in NAMES:
        spec = ESTIMATORS[name]
        assert spec.requires == ("candidate_scores", "candidate_spans")
        assert spec.needs_groups and spec.min_group_size == 2


def test_float32_inputs() -> None:
    batch, _ = make_batch(HAND_ROWS, HAND_SCORES, G=3, kind="max", dtype=torch.float32)
    for name in NAMES:
        adv = compute_credit(name, batch).advantages
        assert adv.dtype == torch.float32 and bool(torch.isfinite(adv).all())


def test_bad_inputs() -> None:
    batch, _ = make_batch(HAND_ROWS, HAND_SCORES, G=3, kind="max")
    ids = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2])
    with pytest.raises(ValueError, match="equal size"):
        compute_credit("set_rtg", CreditBatch(**{**batch.__dict__, "group_size": None, "group_ids": ids}))
    swapped = batch.candidate_spans.clone()
    swapped[0, [0, 1]] = swapped[0, [1, 0]]
    with pytest.raises(ValueError, match="slot order"):
        compute_credit("set_splice", CreditBatch(**{**batch.__dict__, "candidate_spans": swapped}))
    small = MaxGame(batch.candidate_scores[:, :2])
    with pytest.raises(ValueError, match="candidate_game"):
        compute_credit("set_coma", CreditBatch(**{**batch.__dict__, "candidate_game": small}))
    stray = batch.candidate_scores.clone()
    stray[1, 1] = 0.3  # slot 1 of row 1 has no span
    with pytest.raises(ValueError, match="unparsable"):
        compute_credit("set_rtg", CreditBatch(**{**batch.__dict__, "candidate_scores": stray}))
    with pytest.raises(ValueError, match="eps"):
        compute_credit("set_rtg", batch, eps=-1.0)
    with pytest.raises(TypeError, match="scale"):
        compute_credit("set_rtg", batch, scale=1)


# ------------------------------------------------------------------------------------------------
# the exact test bed: E[sum_t A_t grad log pi(a_t)] against the exact gradient of J = E[v]

UTILITIES = torch.tensor([[0.9, 0.6, 0.3, 0.1], [0.2, 0.8, 0.7, 0.4]], dtype=torch.float64)
TOPICS = torch.tensor([[1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1]], dtype=torch.bool)
TOPIC_WEIGHTS = torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.3, 0.5]], dtype=torch.float64)
BED_GROUPS, BED_G = 20_000, 4
Z_LIMIT = 4.0  # |mean - exact| < 4 standard errors on every one of the 55 components


@pytest.mark.parametrize("game", ["max", "max_bonus", "coverage"])
def test_unbiased_against_exact_gradient(game: str) -> None:
    bed = SetPolicyBed(UTILITIES, num_slots=3, game=game, topics=TOPICS, topic_weights=TOPIC_WEIGHTS)
    theta = bed.init_theta(seed=0)
    exact = bed.exact_gradient(theta)
    samples = bed.sample(theta, BED_GROUPS, BED_G, torch.Generator().manual_seed(1))
    batch = bed.batch_of(samples)
    for b in range(50):  # the library's game values the answers as the bed's plain v does
        items = tuple(int(a) for a in samples.actions[b] if 0 <= a < bed.stop)
        assert abs(bed.value(int(samples.user[b]), items) - float(batch.rewards[b])) < 1e-9
    checks = {}
    for name, options in [
        ("rloo", {}),
        ("set_splice", {"scale": False}),
        ("set_rtg", {"scale": False}),
        ("dr_grpo", {}),  # mean over the group INCLUDING the response: E = (G-1)/G grad J
        ("set_coma", {"scale": False}),
        ("shape_grpo", {"scale": False}),
    ]:
        advantages = compute_credit(name, batch, **options).advantages
        checks[name] = gradient_check(bed.group_gradients(theta, samples, advantages), exact)
        print(game, name, {k: round(v, 4) for k, v in checks[name].items()})
    for name in ("rloo", "set_splice", "set_rtg"):
        assert checks[name]["max_abs_z"] < Z_LIMIT, (name, checks[name])
    # the same check can fail: dr_grpo's self-inclusive mean shrinks the gradient by (G-1)/G
    assert checks["dr_grpo"]["max_abs_z"] > 3 * Z_LIMIT, checks["dr_grpo"]
    assert abs(checks["dr_grpo"]["projection"] - (BED_G - 1) / BED_G) < 0.03


def test_bed_exact_gradient_matches_finite_differences() -> None:
    bed = SetPolicyBed(UTILITIES, num_slots=2, game="max_bonus")
    theta = bed.init_theta(seed=3)
    grad = bed.exact_gradient(theta)
    h = 1e-6
    for i in (0, 7, bed.num_params - 1):
        e = torch.zeros_like(theta)
        e[i] = h
        fd = (bed.exact_objective(theta + e) - bed.exact_objective(theta - e)) / (2 * h)
        assert abs(float(fd) - float(grad[i])) < 1e-7


# ------------------------------------------------------------------------------------------------
# properties


@st.composite
def max_batches(draw):
    G = draw(st.integers(2, 4))
    N = draw(st.integers(1, 3))
    K = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 10_000))
    rows, scores = random_rows(N * G, K, seed, levels=(0.0, 0.2, 0.5, 0.5, 1.0, -0.3))
    return make_batch(rows, scores, G=G, kind="max")[0]


@settings(max_examples=40, deadline=None)
@given(batch=max_batches())
def test_first_slot_is_rloo_for_splice_and_rtg(batch: CreditBatch) -> None:
    spans = batch.candidate_spans
    m = ((torch.arange(spans.shape[1]) + 1) * (spans[..., 0] >= 0)).amax(dim=1)
    prefix = torch.arange(spans.shape[1])[None, :] < m[:, None]
    v = MaxGame(batch.candidate_scores).value(prefix[:, None, :])[:, 0]
    rloo = rloo_advantages(v.view(-1, batch.group_size)).reshape(-1)
    for name in ("set_splice", "set_rtg"):
        result = compute_credit(name, batch, scale=False)
        torch.testing.assert_close(result.info["candidate_advantages"][:, 0], rloo, rtol=0, atol=1e-12)
        torch.testing.assert_close(result.info["preamble_advantages"], rloo, rtol=0, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(batch=max_batches(), data=st.data())
def test_invariant_to_relabelling_responses(batch: CreditBatch, data: st.DataObject) -> None:
    G, B = batch.group_size, batch.batch_size
    perm = torch.cat([start + torch.tensor(data.draw(st.permutations(range(G)))) for start in range(0, B, G)])
    permuted = CreditBatch(
        rewards=batch.rewards[perm],
        response_mask=batch.response_mask[perm],
        group_size=G,
        candidate_scores=batch.candidate_scores[perm],
        candidate_spans=batch.candidate_spans[perm],
    )
    for name in NAMES:
        for scale in (False, True):
            torch.testing.assert_close(
                compute_credit(name, permuted, scale=scale).advantages,
                compute_credit(name, batch, scale=scale).advantages[perm],
                rtol=1e-9,
                atol=1e-9,
            )


@settings(max_examples=30, deadline=None)
@given(batch=max_batches(), factor=st.floats(0.05, 20.0))
def test_scaled_output_invariant_to_scaling_v(batch: CreditBatch, factor: float) -> None:
    scaled = CreditBatch(
        **{**batch.__dict__, "candidate_scores": batch.candidate_scores * factor, "candidate_game": None}
    )
    plain = CreditBatch(**{**batch.__dict__, "candidate_game": None})
    for name in NAMES:
        torch.testing.assert_close(
            compute_credit(name, scaled, scale=True, eps=0.0).advantages,
            compute_credit(name, plain, scale=True, eps=0.0).advantages,
            rtol=1e-8,
            atol=1e-8,
        )
