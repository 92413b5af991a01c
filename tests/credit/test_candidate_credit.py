"""shape_grpo and wta: a hand-computed batch, a slow loop reference over every option, GRPO as the K=1
special case, unparsable candidates, padding, and bad input."""

from __future__ import annotations

import itertools
import math
import statistics

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from credo.credit import CreditBatch, compute_credit, grpo_advantages
from credo.credit.candidate_credit import winners
from credo.credit.games import AdditiveGame, FunctionGame, SetGame
from credo.credit.set_utilities import max_utility
from credo.credit.shapley import shapley_exact

EPS = 1e-6


def _hand_batch(**overrides) -> CreditBatch:
    """One prompt, G = 2 responses, K = 2 candidates, T = 7 tokens.

    row 0: tokens 0..6 all response; candidate 0 on [1, 3), candidate 1 on [4, 6); scores 0.9, 0.3.
    row 1: tokens 0..4 response, 5..6 padding; candidate 0 on [0, 2) scores 0.5; candidate 1
           unparsable (span -1, score 0).
    """
    fields = dict(
        rewards=torch.tensor([0.9, 0.5], dtype=torch.float64),
        response_mask=torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0]], dtype=torch.bool),
        group_size=2,
        candidate_scores=torch.tensor([[0.9, 0.3], [0.5, 0.0]], dtype=torch.float64),
        candidate_spans=torch.tensor([[[1, 3], [4, 6]], [[0, 2], [-1, -1]]]),
    )
    fields.update(overrides)
    return CreditBatch(**fields)


def test_shape_grpo_hand_computed_default() -> None:
    result = compute_credit("shape_grpo", _hand_batch())
    # phi row 0 (sorted 0.3, 0.9): 0.3/2 = 0.15 for candidate 1; 0.15 + (0.9 - 0.3)/1 = 0.75 for candidate 0.
    # phi row 1: candidate 1 is out of the game, candidate 0 alone gets 0.5.
    torch.testing.assert_close(
        result.info["phi"], torch.tensor([[0.75, 0.15], [0.5, 0.0]], dtype=torch.float64)
    )
    # candidate stream, pooled over the group's 3 present candidates: 0.75, 0.15, 0.5
    mean = (0.75 + 0.15 + 0.5) / 3
    std = math.sqrt(((0.75 - mean) ** 2 + (0.15 - mean) ** 2 + (0.5 - mean) ** 2) / 2)
    a0, a1, b0 = ((x - mean) / (std + EPS) for x in (0.75, 0.15, 0.5))
    # set stream, GRPO on R = (0.9, 0.5): mean 0.7, Bessel std sqrt(0.08) -> +-0.2 / (sqrt(0.08) + eps)
    out = 0.2 / (math.sqrt(0.08) + EPS)
    expected = torch.tensor(
        [[out, a0, a0, out, a1, a1, out], [b0, b0, -out, -out, -out, 0.0, 0.0]], dtype=torch.float64
    )
    torch.testing.assert_close(result.advantages, expected, rtol=0, atol=1e-12)
    assert result.info["candidate_token_counts"].tolist() == [[2, 2], [2, 0]]
    assert result.info["present_candidates"].tolist() == [2, 1]
    assert float(result.info["candidate_tokens_mean"]) == 2.0
    assert float(result.info["candidate_tokens_max"]) == 2.0
    assert float(result.info["unparsable_fraction"]) == 0.25
    # numbers as literals too, so a change in the formulas above cannot hide a change in the code
    assert result.advantages[0].tolist() == pytest.approx(
        [0.70711, 0.94010, 0.94010, 0.70711, -1.05070, -1.05070, 0.70711], abs=1e-4
    )


def test_shape_grpo_hand_computed_responses_zero_outside_length_normalized() -> None:
    result = compute_credit(
        "shape_grpo", _hand_batch(), normalize="responses", outside="zero", length_normalize=True
    )
    sigma = math.sqrt(0.08) + EPS  # std of the set rewards (0.9, 0.5), mean 0.7
    a0, a1, b0 = (0.75 - 0.7) / sigma, (0.15 - 0.7) / sigma, (0.5 - 0.7) / sigma
    expected = torch.tensor(
        [[0, a0 / 2, a0 / 2, 0, a1 / 2, a1 / 2, 0], [b0 / 2, b0 / 2, 0, 0, 0, 0, 0]], dtype=torch.float64
    )
    torch.testing.assert_close(result.advantages, expected, rtol=0, atol=1e-12)


def test_shape_grpo_hand_computed_unnormalized_mean_phi() -> None:
    result = compute_credit("shape_grpo", _hand_batch(), normalize="none", outside="mean_phi")
    m0, m1 = (0.75 + 0.15) / 2, 0.5  # row 1 averages over its one present candidate
    expected = torch.tensor(
        [[m0, 0.75, 0.75, m0, 0.15, 0.15, m0], [0.5, 0.5, m1, m1, m1, 0, 0]], dtype=torch.float64
    )
    torch.testing.assert_close(result.advantages, expected, rtol=0, atol=1e-15)


def test_wta_hand_computed() -> None:
    result = compute_credit("wta", _hand_batch(), normalize="none")
    # row 0: candidate 0 wins and gets R = 0.9, candidate 1 gets 0; row 1: candidate 0 gets 0.5
    expected = torch.tensor(
        [[0.9, 0.9, 0.9, 0.9, 0.0, 0.0, 0.9], [0.5, 0.5, 0.5, 0.5, 0.5, 0, 0]], dtype=torch.float64
    )
    torch.testing.assert_close(result.advantages, expected, rtol=0, atol=0)
    assert result.info["winners"].tolist() == [[True, False], [True, False]]


# ---------------------------------------------------------------------------------------------------
# slow loop reference over all options


def _reference(batch: CreditBatch, name: str, outside: str, normalize: str, scale: bool, length: bool):
    B, K = batch.candidate_scores.shape
    T = batch.response_mask.shape[1]
    G = batch.group_size
    credit = [[0.0] * K for _ in range(B)]
    present = [[int(batch.candidate_spans[b, k, 0]) >= 0 for k in range(K)] for b in range(B)]
    R = [float(batch.rewards[b]) for b in range(B)]
    for b in range(B):
        keep = [k for k in range(K) if present[b][k]]
        scores = batch.candidate_scores[b, keep].double()
        if not keep:
            continue
        if name == "shape_grpo":
            phi = shapley_exact(max_utility(scores), len(keep)).tolist()
            for k, p in zip(keep, phi):
                credit[b][k] = p
        else:
            best = max(keep, key=lambda k: (float(batch.candidate_scores[b, k]), -k))
            credit[b][best] = R[b]
    groups = [list(range(g * G, g * G + G)) for g in range(B // G)]

    def stats(values: list[float]) -> tuple[float, float]:
        mean = sum(values) / len(values) if values else 0.0
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return mean, std

    cand_adv = [[0.0] * K for _ in range(B)]
    set_adv = [0.0] * B
    for rows in groups:
        r_mean, r_std = stats([R[b] for b in rows])
        pool = [credit[b][k] for b in rows for k in range(K) if present[b][k]]
        c_mean, c_std = stats(pool)
        for b in rows:
            for k in range(K):
                if not present[b][k]:
                    continue
                x = credit[b][k]
                if normalize == "candidates":
                    cand_adv[b][k] = (x - c_mean) / (c_std + EPS) if scale else x - c_mean
                elif normalize == "responses":
                    if scale:
                        cand_adv[b][k] = 0.0 if r_std == 0 else (x - r_mean) / (r_std + EPS)
                    else:
                        cand_adv[b][k] = x - r_mean
                else:
                    cand_adv[b][k] = x
            if normalize == "none":
                set_adv[b] = R[b]
            elif scale:
                set_adv[b] = 0.0 if r_std == 0 else (R[b] - r_mean) / (r_std + EPS)
            else:
                set_adv[b] = R[b] - r_mean
    out = torch.zeros(B, T, dtype=torch.float64)
    for b in range(B):
        n_present = sum(present[b])
        if outside == "set_reward":
            default = set_adv[b]
        elif outside == "zero":
            default = 0.0
        else:
            default = sum(cand_adv[b]) / max(n_present, 1)
        for t in range(T):
            if not batch.response_mask[b, t]:
                continue
            value = default
            for k in range(K):
                start, end = (int(x) for x in batch.candidate_spans[b, k])
                if present[b][k] and start <= t < end:
                    value = cand_adv[b][k] / (end - start) if length else cand_adv[b][k]
            out[b, t] = value
    return out


def _random_batch(seed: int, N: int = 3, G: int = 4, K: int = 4, T: int = 20) -> CreditBatch:
    generator = torch.Generator().manual_seed(seed)
    B = N * G
    lengths = torch.randint(T // 2, T + 1, (B,), generator=generator)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    spans = torch.full((B, K, 2), -1, dtype=torch.long)
    scores = torch.zeros(B, K, dtype=torch.float64)
    for b in range(B):
        cursor = int(torch.randint(0, 2, (1,), generator=generator))
        for k in range(K):
            width = int(torch.randint(1, 4, (1,), generator=generator))
            parsable = bool(torch.rand(1, generator=generator) < 0.8)
            if parsable and cursor + width <= int(lengths[b]):
                spans[b, k] = torch.tensor([cursor, cursor + width])
                # ties, zeros and negatives
                scores[b, k] = float(torch.randint(-2, 5, (1,), generator=generator)) / 4
                cursor += width + int(torch.randint(0, 3, (1,), generator=generator))
    scores[0, :] = 0.0  # an all-zero set
    present = spans[..., 0] >= 0
    best = torch.where(present, scores, -torch.inf).amax(dim=1)
    rewards = torch.where(present.any(dim=1), best, torch.zeros_like(best))
    return CreditBatch(
        rewards=rewards,
        response_mask=mask,
        group_size=G,
        candidate_scores=scores,
        candidate_spans=spans,
    )


@pytest.mark.parametrize("name", ["shape_grpo", "wta"])
@pytest.mark.parametrize("normalize", ["candidates", "responses", "none"])
def test_estimators_match_loop_reference(name: str, normalize: str) -> None:
    for seed in range(3):
        batch = _random_batch(seed)
        for outside, scale, length in itertools.product(
            ["set_reward", "zero", "mean_phi"], [True, False], [False, True]
        ):
            result = compute_credit(
                name, batch, outside=outside, normalize=normalize, scale=scale, length_normalize=length
            )
            expected = _reference(batch, name, outside, normalize, scale, length)
            torch.testing.assert_close(result.advantages, expected, rtol=1e-9, atol=1e-9)
            assert bool((result.advantages[~batch.response_mask] == 0).all())


def _replace(batch: CreditBatch, **fields) -> CreditBatch:
    return CreditBatch(**{**batch.__dict__, **fields})


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 10**6),
    st.integers(1, 3),
    st.integers(2, 4),
    st.integers(1, 5),
    st.floats(0.1, 10.0),
    st.randoms(use_true_random=False),
)
def test_estimator_invariants(seed: int, N: int, G: int, K: int, factor: float, rng) -> None:
    batch = _random_batch(seed, N=N, G=G, K=K)
    present = batch.candidate_spans[..., 0] >= 0
    # token-level efficiency: raw phi spread over each span sums back to the set utility max_k r_k
    raw = compute_credit("shape_grpo", batch, normalize="none", outside="zero", length_normalize=True)
    torch.testing.assert_close(raw.advantages.sum(dim=1), batch.rewards, rtol=0, atol=1e-12)
    # pooled candidate advantages sum to 0 in each group; the set stream is GRPO's advantage
    for name in ("shape_grpo", "wta"):
        result = compute_credit(name, batch)
        per_group = (result.info["candidate_advantages"] * present).sum(dim=1).reshape(N, G).sum(dim=1)
        torch.testing.assert_close(per_group, torch.zeros(N, dtype=torch.float64), rtol=0, atol=1e-9)
        torch.testing.assert_close(
            result.info["outside_advantages"], grpo_advantages(batch.rewards.reshape(N, G)).reshape(-1)
        )
    # scale invariance (eps = 0): multiplying every score and reward by a > 0 changes nothing
    scaled = _replace(batch, candidate_scores=batch.candidate_scores * factor, rewards=batch.rewards * factor)
    for normalize in ("candidates", "responses"):
        torch.testing.assert_close(
            compute_credit("shape_grpo", scaled, normalize=normalize, eps=0.0).advantages,
            compute_credit("shape_grpo", batch, normalize=normalize, eps=0.0).advantages,
            rtol=1e-9,
            atol=1e-9,
        )
    # relabelling the candidates (scores and spans together) changes no token's advantage
    perm = list(range(K))
    rng.shuffle(perm)
    p = torch.tensor(perm)
    relabelled = _replace(
        batch, candidate_scores=batch.candidate_scores[:, p], candidate_spans=batch.candidate_spans[:, p]
    )
    for name, options in (("shape_grpo", {}), ("wta", {"ties": "all"})):
        torch.testing.assert_close(
            compute_credit(name, relabelled, **options).advantages,
            compute_credit(name, batch, **options).advantages,
            rtol=0,
            atol=1e-12,
        )


def test_set_reward_modes() -> None:
    batch = _random_batch(5)
    for mode in ("rewards", "utility", "check"):
        result = compute_credit("shape_grpo", batch, set_reward=mode)
        torch.testing.assert_close(result.info["set_rewards"], batch.rewards)
        torch.testing.assert_close(result.info["phi"].sum(dim=1), batch.rewards)  # efficiency
    shifted = CreditBatch(**{**batch.__dict__, "rewards": batch.rewards + 1.0})
    with pytest.raises(ValueError, match=r"rewards\[0\].*set utility"):
        compute_credit("shape_grpo", shifted, set_reward="check")
    with pytest.raises(ValueError, match="rewards"):
        compute_credit("wta", shifted, set_reward="check")
    # 'rewards' puts the given R on outside tokens; 'utility' ignores it
    as_given = compute_credit("shape_grpo", shifted, normalize="none")
    recomputed = compute_credit("shape_grpo", shifted, normalize="none", set_reward="utility")
    torch.testing.assert_close(as_given.info["set_rewards"], batch.rewards + 1.0)
    torch.testing.assert_close(recomputed.info["set_rewards"], batch.rewards)


def test_token_rewards_join_the_set_reward() -> None:
    batch = _hand_batch()
    token_rewards = torch.full((2, 7), -0.01, dtype=torch.float64)
    result = compute_credit("shape_grpo", CreditBatch(**{**batch.__dict__, "token_rewards": token_rewards}))
    # R = reward + sum of token rewards over response tokens: 0.9 - 0.07 and 0.5 - 0.05
    torch.testing.assert_close(result.info["set_rewards"], torch.tensor([0.83, 0.45], dtype=torch.float64))


# ---------------------------------------------------------------------------------------------------
# special cases and semantics


@pytest.mark.parametrize("normalize", ["candidates", "responses"])
def test_one_candidate_spanning_the_response_is_grpo(normalize: str) -> None:
    generator = torch.Generator().manual_seed(3)
    B, T = 8, 6
    lengths = torch.randint(2, T + 1, (B,), generator=generator)
    mask = torch.arange(T)[None] < lengths[:, None]
    scores = torch.rand((B, 1), generator=generator, dtype=torch.float64)
    spans = torch.stack([torch.zeros(B, dtype=torch.long), lengths], dim=1)[:, None, :]
    batch = CreditBatch(
        rewards=scores[:, 0],
        response_mask=mask,
        group_size=4,
        candidate_scores=scores,
        candidate_spans=spans,
    )
    grpo = compute_credit("grpo", batch).advantages
    torch.testing.assert_close(compute_credit("shape_grpo", batch, normalize=normalize).advantages, grpo)
    torch.testing.assert_close(compute_credit("wta", batch, normalize=normalize).advantages, grpo)


def test_free_riders_lose_their_credit() -> None:
    """A winning set (1, 0, 0) and a losing set (0, 0, 0): under GRPO the two losers of the winning
    set get positive advantage; under ShapE-GRPO they get the same negative advantage as every loser."""
    spans = torch.tensor([[0, 2], [2, 4], [4, 6]])
    batch = CreditBatch(
        rewards=torch.tensor([1.0, 0.0]),
        response_mask=torch.ones(2, 6, dtype=torch.bool),
        group_size=2,
        candidate_scores=torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]),
        candidate_spans=spans.expand(2, 3, 2).clone(),
    )
    grpo = compute_credit("grpo", batch).advantages
    shape = compute_credit("shape_grpo", batch).advantages
    assert float(grpo[0, 3]) > 0 and float(shape[0, 3]) < 0
    assert float(shape[0, 0]) > 0
    torch.testing.assert_close(shape[0, 2:], shape[1, 2:])  # losers are losers, whichever set they are in


def test_duplicate_winners_share_credit() -> None:
    """Both sets hit (R = 1), so GRPO has no signal. ShapE-GRPO still ranks candidates: a unique winner
    gets more than each of two winners that duplicate each other's value, and they get more than a loser."""
    batch = CreditBatch(
        rewards=torch.tensor([1.0, 1.0]),
        response_mask=torch.ones(2, 4, dtype=torch.bool),
        group_size=2,
        candidate_scores=torch.tensor([[1.0, 1.0], [1.0, 0.0]]),
        candidate_spans=torch.tensor([[[0, 2], [2, 4]], [[0, 2], [2, 4]]]),
    )
    assert bool((compute_credit("grpo", batch).advantages == 0).all())
    cand = compute_credit("shape_grpo", batch).info["candidate_advantages"]
    assert float(cand[1, 0]) > float(cand[0, 0]) == float(cand[0, 1]) > float(cand[1, 1])
    # normalize='responses' with equal set rewards: no signal at all (as GRPO)
    assert bool((compute_credit("shape_grpo", batch, normalize="responses").advantages == 0).all())


def test_unparsable_candidates_and_empty_rows() -> None:
    batch = CreditBatch(
        rewards=torch.tensor([0.0, 0.7, 0.2, 0.0]),
        response_mask=torch.ones(4, 5, dtype=torch.bool),
        group_size=2,
        candidate_scores=torch.tensor([[0.0, 0.0], [0.7, 0.0], [0.2, 0.0], [0.0, 0.0]]),
        candidate_spans=torch.tensor(
            [[[-1, -1], [-1, -1]], [[1, 3], [-1, -1]], [[0, 1], [-1, -1]], [[-1, -1], [-1, -1]]]
        ),
    )
    result = compute_credit("shape_grpo", batch, normalize="none")
    torch.testing.assert_close(result.info["phi"], torch.tensor([[0, 0], [0.7, 0], [0.2, 0], [0, 0]]))
    # row 0 parsed nothing: every token is outside and gets R = 0
    assert result.advantages[0].tolist() == [0.0] * 5
    normalised = compute_credit("shape_grpo", batch)
    # group 0 has one present candidate: its pooled std is 0, so it gets 0
    assert float(normalised.info["candidate_advantages"][1, 0]) == 0.0
    nothing = CreditBatch(**{**batch.__dict__, "candidate_spans": torch.full((4, 2, 2), -1)})
    nothing = CreditBatch(**{**nothing.__dict__, "candidate_scores": torch.zeros(4, 2)})
    grpo = compute_credit("grpo", nothing).advantages
    torch.testing.assert_close(compute_credit("shape_grpo", nothing).advantages, grpo)


def test_explicit_group_ids_and_uneven_groups() -> None:
    batch = _random_batch(7, N=2, G=3)
    ids = torch.tensor([0, 1, 0, 1, 1, 0])
    explicit = CreditBatch(**{**batch.__dict__, "group_size": None, "group_ids": ids})
    order = ids.argsort(stable=True)
    sorted_batch = CreditBatch(
        rewards=batch.rewards[order],
        response_mask=batch.response_mask[order],
        group_size=3,
        candidate_scores=batch.candidate_scores[order],
        candidate_spans=batch.candidate_spans[order],
    )
    a = compute_credit("shape_grpo", explicit).advantages
    b = compute_credit("shape_grpo", sorted_batch).advantages
    torch.testing.assert_close(a[order], b, rtol=0, atol=1e-12)


def test_other_games() -> None:
    """Any game in batch.candidate_game: additive, a black-box function, forced Shapley methods."""
    batch = _hand_batch()
    scores = batch.candidate_scores

    def with_game(game: SetGame) -> CreditBatch:
        return CreditBatch(**{**batch.__dict__, "candidate_game": game})

    additive = compute_credit("shape_grpo", with_game(AdditiveGame(scores)), normalize="none")
    assert additive.info["phi"].tolist() == [[0.9, 0.3], [0.5, 0.0]]

    def least(features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:  # the min game
        picked = torch.where(masks, features[:, None, :], torch.full((), torch.inf, dtype=features.dtype))
        return torch.where(masks.any(-1), picked.amin(-1), torch.zeros((), dtype=features.dtype))

    minimum = compute_credit("shape_grpo", with_game(FunctionGame(scores, least)), normalize="none")
    torch.testing.assert_close(minimum.info["phi"][0].sum(), torch.tensor(0.3, dtype=torch.float64))
    exact = compute_credit("shape_grpo", batch, normalize="none", shapley="exact")
    torch.testing.assert_close(
        exact.info["phi"], compute_credit("shape_grpo", batch, normalize="none").info["phi"]
    )
    with pytest.raises(ValueError, match="method must be one of"):
        compute_credit("shape_grpo", batch, shapley="median")


def test_wta_ties() -> None:
    scores = torch.tensor([[0.5, 1.0, 1.0], [-1.0, -2.0, -1.0]])
    present = torch.tensor([[True, True, True], [False, True, True]])
    assert winners(scores, present, "first").tolist() == [[False, True, False], [False, False, True]]
    assert winners(scores, present, "all").tolist() == [[False, True, True], [False, False, True]]


def test_estimators_on_device(device: torch.device) -> None:
    batch = _random_batch(9)
    moved = CreditBatch(
        **{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.__dict__.items()}
    )
    for name in ("shape_grpo", "wta"):
        on_device = compute_credit(name, moved).advantages
        assert on_device.device.type == device.type
        torch.testing.assert_close(on_device.cpu(), compute_credit(name, batch).advantages)


# ---------------------------------------------------------------------------------------------------
# bad input


def test_bad_input_names_the_argument() -> None:
    batch = _hand_batch()

    def with_(**fields):
        return CreditBatch(**{**batch.__dict__, **fields})

    with pytest.raises(ValueError, match=r"candidate_spans has K=3.*candidate_scores has K=2"):
        compute_credit("shape_grpo", with_(candidate_spans=torch.tensor([[[0, 1], [1, 2], [2, 3]]] * 2)))
    with pytest.raises(ValueError, match=r"candidate_spans.*overlap"):
        compute_credit(
            "shape_grpo", with_(candidate_spans=torch.tensor([[[1, 4], [3, 6]], [[0, 2], [-1, -1]]]))
        )
    with pytest.raises(ValueError, match=r"candidate_spans.*past the sequence end"):
        compute_credit("wta", with_(candidate_spans=torch.tensor([[[1, 3], [4, 9]], [[0, 2], [-1, -1]]])))
    with pytest.raises(ValueError, match=r"candidate_spans.*outside response_mask"):
        compute_credit(
            "shape_grpo", with_(candidate_spans=torch.tensor([[[1, 3], [4, 6]], [[0, 6], [-1, -1]]]))
        )
    with pytest.raises(ValueError, match=r"candidate_scores.*NaN"):
        compute_credit("shape_grpo", with_(candidate_scores=torch.tensor([[0.9, float("nan")], [0.5, 0.0]])))
    with pytest.raises(ValueError, match=r"candidate_scores\[1, 1\].*no span"):
        compute_credit("shape_grpo", with_(candidate_scores=torch.tensor([[0.9, 0.3], [0.5, 0.2]])))
    with pytest.raises(ValueError, match="candidate_scores must be"):
        compute_credit("shape_grpo", with_(candidate_scores=torch.zeros(3, 2)))
    with pytest.raises(TypeError, match=r"candidate_spans.*integer"):
        compute_credit("shape_grpo", with_(candidate_spans=batch.candidate_spans.float()))
    with pytest.raises(ValueError, match=r"needs batch\.candidate_scores"):
        compute_credit("shape_grpo", with_(candidate_scores=None))
    with pytest.raises(ValueError, match="outside"):
        compute_credit("shape_grpo", batch, outside="half")
    with pytest.raises(ValueError, match="normalize"):
        compute_credit("wta", batch, normalize="batch")
    with pytest.raises(ValueError, match="set_reward"):
        compute_credit("shape_grpo", batch, set_reward="max")
    with pytest.raises(ValueError, match="ties"):
        compute_credit("wta", batch, ties="random")
    with pytest.raises(TypeError, match="scale"):
        compute_credit("shape_grpo", batch, scale="yes")
    with pytest.raises(ValueError, match="G >= 2"):
        compute_credit("shape_grpo", with_(group_size=1))
