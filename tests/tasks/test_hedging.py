"""The hedging recommendation task (``choice="logit"``, ``baseline="popular"``): K good, distinct items
beat one, the demo policy leaves headroom below the oracle, the popular list is normalised to about 0
per item, the game's Shapley values sum to the set reward, and bad options are named.

Measured on 200 eval prompts (seed 0; K = 3, ``popular_k`` = 10), mean set rewards:

=======================================  ==========  ===========  =====  =======  ===================
task, options                            oracle (K)  oracle's #1  demo   popular  popular: item score
=======================================  ==========  ===========  =====  =======  ===================
synthetic, max, no baseline (today)      1.000       1.000        0.835  0.428    0.221
synthetic, logit, popular, tau = 0.1     1.360       1.354        1.082  0.495    0.006
synthetic, logit, popular, tau = 0.3     1.469       1.357        1.162  0.648    0.006
MovieLens, max, no baseline (today)      0.998       0.998        0.922  0.924    0.811
MovieLens, logit, popular, tau = 0.1     1.184       1.145        0.819  0.855    0.290
MovieLens, logit, popular, tau = 0.3     1.364       1.152        0.925  0.952    0.290
=======================================  ==========  ===========  =====  =======  ===================

"popular" is the K most popular unseen items (by quality on the synthetic catalogue, by number of
ratings on MovieLens); its items score about 0 on average on the synthetic catalogue, but its *set*
reward is that of its best item, well above 0 (and on MovieLens above the demo policy's: the most-rated
titles include near-universal favourites such as The Shawshank Redemption).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from credo.credit.games import AdditiveGame, LogSumExpGame, MaxGame, SumGame
from credo.tasks import SyntheticRecommendation, make_task
from credo.tasks.recommendation import CatalogueRecommendation


def list_reward(task: CatalogueRecommendation, prompt, items: list[int]) -> float:
    answer = task.format_answer(prompt, [task.item_names[i] for i in items])
    return task.score_completion(prompt, answer).set_reward


def policy_rewards(task: CatalogueRecommendation, n: int = 200) -> dict[str, np.ndarray]:
    """Per-prompt set rewards of the oracle's K items, the oracle's best item alone, the demo
    policy, the popular list, and the popular list's mean item score."""
    rng = random.Random(0)
    out: dict[str, list[float]] = {"oracle": [], "one": [], "demo": [], "popular": [], "popular_item": []}
    for p in task.prompts("eval", n, seed=0):
        best = task.best_items(p)
        popular = task.popular_items(p, task.k)
        out["oracle"].append(list_reward(task, p, best))
        out["one"].append(list_reward(task, p, best[:1]))
        demo = task.demo_candidates(p, rng)
        out["demo"].append(task.score_completion(p, task.format_answer(p, demo)).set_reward)
        out["popular"].append(list_reward(task, p, popular))
        out["popular_item"].append(float(task.item_scores(p)[popular].mean()))
    return {key: np.array(values) for key, values in out.items()}


def hedging(**options: object) -> SyntheticRecommendation:
    """The synthetic catalogue with ``choice="logit", baseline="popular"`` unless ``options`` say otherwise."""
    task = make_task("synthetic_recommendation", k=3, **{"choice": "logit", "baseline": "popular", **options})
    assert isinstance(task, SyntheticRecommendation)
    return task


def test_hedging_pays_and_leaves_headroom_on_the_synthetic_catalogue() -> None:
    sharp, soft = policy_rewards(hedging()), policy_rewards(hedging(temperature=0.3))
    means = {key: round(float(v.mean()), 3) for key, v in sharp.items()}
    assert means == pytest.approx(
        {"oracle": 1.360, "one": 1.354, "demo": 1.082, "popular": 0.495, "popular_item": 0.006}, abs=2e-3
    )
    # (a) hedging pays: K good distinct items beat the best one alone on every prompt, by more at a
    # higher temperature (at most tau log K; the oracle's items are far apart in utility here)
    for r, tau in ((sharp, 0.1), (soft, 0.3)):
        gain = r["oracle"] - r["one"]
        assert (gain > 0).all() and (gain <= tau * np.log(3) + 1e-9).all()
    assert (soft["oracle"] - soft["one"]).mean() > 0.1 > 0.01 > (sharp["oracle"] - sharp["one"]).mean()
    # ... while with the max choice the best item alone is worth the whole list
    plain = policy_rewards(hedging(choice="max"), n=50)
    np.testing.assert_array_equal(plain["oracle"], plain["one"])
    # (b) headroom: the demo policy (the SFT data) is well below the oracle
    for r in (sharp, soft):
        assert r["demo"].mean() < r["oracle"].mean() - 0.25
        assert (r["demo"] <= r["oracle"] + 1e-9).all()
    # (c) the baseline: popular items score about 0 (the outside option) on average; the popular
    # list's set reward (its best item's) stays far below the demo policy's and the oracle's
    assert abs(sharp["popular_item"].mean()) < 0.05
    assert sharp["popular"].mean() < 0.5 * sharp["demo"].mean()
    assert soft["popular"].mean() < 0.6 * soft["demo"].mean()


def test_popular_baseline_formula() -> None:
    task = hedging()
    raw_task = make_task("synthetic_recommendation", k=3)
    for p in task.prompts("train", 20, seed=1):
        raw = raw_task.utilities(p)
        pop = raw[task.popular_items(p)].mean()  # the 10 most popular unseen items
        best = raw[task.best_items(p)].mean()  # the oracle's K
        np.testing.assert_allclose(task.item_scores(p), (raw - pop) / (best - pop))
        assert task.item_scores(p)[task.popular_items(p)].mean() == pytest.approx(0.0, abs=1e-12)
        assert task.item_scores(p)[task.best_items(p)].mean() == pytest.approx(1.0)
        assert not set(task.popular_items(p)) & set(p.meta["liked"])
    order = task.popularity_order()  # by quality, ties in catalogue order
    assert (np.diff(task.item_quality[order]) <= 0).all()
    assert task.score_range == (-np.inf, np.inf) and raw_task.score_range == (0.0, 1.0)


def test_game_validity_count_bonus_and_shapley() -> None:
    task = hedging(count_bonus=0.3)
    prompt = task.prompt_from_text("Liked: apple, pear, rain. Recommend 3:")
    scores = task.item_scores(prompt)
    worst = int(np.argmin(np.where([i in prompt.meta["liked"] for i in range(task.n_items)], np.inf, scores)))
    best = task.best_items(prompt)
    assert scores[worst] < 0  # a valid candidate can score below the outside option
    # a valid but bad item, a liked item (invalid), a repeat (invalid), an unknown name (invalid)
    names = [task.item_names[best[0]], task.item_names[worst], "apple", task.item_names[best[0]]]
    assert task.candidate_items(prompt, [*names, "banana"]) == [best[0], worst, None, None, None]
    s = task.score_completion(prompt, task.format_answer(prompt, [names[0], names[1], "apple"]))
    assert s.scores == pytest.approx([scores[best[0]], scores[worst], 0.0])
    assert isinstance(s.game, SumGame)
    logit, bonus = s.game.parts
    assert isinstance(logit, LogSumExpGame) and isinstance(bonus, AdditiveGame)
    assert logit.temperature == 0.1 and logit.present.tolist() == [[True, True, False]]
    u0, u1 = scores[best[0]], scores[worst]
    expected = 0.1 * np.log(1 + np.exp(u0 / 0.1) + np.exp(u1 / 0.1)) + 0.3 * 2 / 3
    assert s.set_reward == pytest.approx(expected)
    # (d) the game's Shapley values sum to the set reward; the invalid candidate gets 0
    phi = s.game.shapley()[0]
    assert float(phi.sum()) == pytest.approx(s.set_reward, abs=1e-12)
    assert float(phi[2]) == 0.0 and float(phi[1]) > 0.0  # even a bad item adds a little (monotone)
    torch.testing.assert_close(phi, s.game.shapley("exact")[0])
    # the max choice on the normalised scale: max(0, max_k r_k), every slot present
    m = hedging(choice="max").score_completion(prompt, task.format_answer(prompt, [names[1]]))
    assert isinstance(m.game, MaxGame) and m.set_reward == 0.0 and m.scores[0] < 0


def test_default_options_are_unchanged() -> None:
    default = make_task("synthetic_recommendation", k=3)
    explicit = make_task("synthetic_recommendation", k=3, choice="max", baseline="none", temperature=0.5)
    rng_a, rng_b = random.Random(0), random.Random(0)
    for p in default.prompts("train", 30, seed=0):
        answer = default.format_answer(p, default.demo_candidates(p, rng_a))
        assert answer == explicit.format_answer(p, explicit.demo_candidates(p, rng_b))
        a, b = default.score_completion(p, answer), explicit.score_completion(p, answer)
        assert isinstance(a.game, MaxGame) and a.scores == b.scores and a.set_reward == b.set_reward
        np.testing.assert_array_equal(default.item_scores(p), default.utilities(p))


@pytest.mark.parametrize(
    ("option", "value", "error", "match"),
    [
        ("choice", "softmax", ValueError, "choice must be one of \\('max', 'logit'\\), got 'softmax'"),
        ("baseline", "mean", ValueError, "baseline must be one of \\('none', 'popular'\\), got 'mean'"),
        ("temperature", 0.0, ValueError, "temperature must be a finite float > 0, got 0.0"),
        ("temperature", -1.0, ValueError, "temperature must be a finite float > 0"),
        ("temperature", float("inf"), ValueError, "temperature must be a finite float > 0"),
        ("temperature", "hot", TypeError, "temperature must be a float > 0, got str"),
        ("popular_k", 0, ValueError, "popular_k must be an int >= 1, got 0"),
        ("popular_k", 2.5, ValueError, "popular_k must be an int >= 1"),
    ],
)
def test_bad_options_are_named(option: str, value: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        make_task("synthetic_recommendation", k=3, **{option: value})


# ----- MovieLens ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def movielens(tmp_path_factory: pytest.TempPathFactory) -> CatalogueRecommendation:
    return make_task(  # type: ignore[return-value]
        "recommendation", k=3, choice="logit", baseline="popular", cache_dir=tmp_path_factory.mktemp("mf")
    )


def test_hedging_on_movielens(movielens: CatalogueRecommendation) -> None:
    r = policy_rewards(movielens)
    means = {key: round(float(v.mean()), 3) for key, v in r.items()}
    assert means == pytest.approx(
        {"oracle": 1.184, "one": 1.145, "demo": 0.819, "popular": 0.855, "popular_item": 0.290}, abs=2e-3
    )
    gain = r["oracle"] - r["one"]
    assert (gain > 0).all() and gain.mean() > 0.03  # hedging pays
    assert r["demo"].mean() < r["oracle"].mean() - 0.3  # headroom
    assert r["popular"].mean() < r["oracle"].mean() - 0.3  # hits do not saturate the reward
    p = movielens.prompts("eval", 1, seed=0)[0]
    s = movielens.score_completion(
        p, movielens.format_answer(p, movielens.demo_candidates(p, random.Random(0)))
    )
    assert isinstance(s.game, LogSumExpGame)
    assert float(s.game.shapley().sum()) == pytest.approx(s.set_reward, abs=1e-12)
