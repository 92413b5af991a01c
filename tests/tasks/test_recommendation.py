"""Recommendation tasks: title matching, matrix factorisation, the synthetic catalogue, ratings CSVs,
and MovieLens itself (one slower module-scoped fixture)."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from credo.tasks.recommendation import (
    MovieLensRecommendation,
    SyntheticRecommendation,
    fit_matrix_factorisation,
    load_ratings,
    normalise_title,
    shorten_title,
)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("The Matrix (1999)", "Matrix, The"),
        ("matrix!", "MATRIX"),
        ("Matrix 1999", "matrix"),
        ("Amélie", "Amelie"),
        ("Beauty & the Beast", "beauty and the beast"),
        ("  Toy   Story ", "Toy Story (1995)"),
    ],
)
def test_normalise_title_equal(a: str, b: str) -> None:
    assert normalise_title(a) == normalise_title(b) != ""


def test_normalise_title_distinct() -> None:
    assert normalise_title("Toy Story 2") != normalise_title("Toy Story")
    assert normalise_title("1984") == "1984"  # a title that is a year stays


def test_shorten_title() -> None:
    forms = shorten_title("Star Wars: Episode V - The Empire Strikes Back", 24)
    assert forms[0] == "Star Wars" and "The Empire Strikes Back" in forms
    assert shorten_title("Seven (a.k.a. Se7en)", 24)[0] == "Seven"
    assert shorten_title("Shawshank Redemption, The", 24)[0] == "Shawshank Redemption"
    assert all(len(f) <= 10 for f in shorten_title("Raiders of the Lost Ark (Indiana Jones)", 10))
    with pytest.raises(ValueError, match="max_chars"):
        shorten_title("x", 2)


def test_matrix_factorisation_recovers_low_rank_ratings() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items, R = 60, 40, 3
    P, Q = rng.normal(size=(n_users, R)), rng.normal(size=(n_items, R))
    bu, bi = rng.normal(0, 0.5, n_users), rng.normal(0, 0.5, n_items)
    users, items = np.meshgrid(np.arange(n_users), np.arange(n_items), indexing="ij")
    users, items = users.ravel(), items.ravel()
    truth = 3.0 + bu[users] + bi[items] + np.einsum("nr,nr->n", P[users], Q[items])
    observed = rng.random(len(truth)) < 0.6
    ratings = truth + rng.normal(0, 0.1, len(truth))
    model = fit_matrix_factorisation(
        users[observed], items[observed], ratings[observed], n_users, n_items, rank=3, reg=0.01, n_iters=30
    )
    held_out = ~observed
    rmse = np.sqrt(np.mean((model.predict(users[held_out], items[held_out]) - truth[held_out]) ** 2))
    baseline = np.sqrt(np.mean((ratings[observed].mean() - truth[held_out]) ** 2))
    assert rmse < 0.1 * baseline
    assert model.predict_matrix(np.arange(n_items)).shape == (n_users, n_items)
    with pytest.raises(ValueError, match="out of range"):
        fit_matrix_factorisation(np.array([0]), np.array([5]), np.array([1.0]), 1, 2)


# ----- synthetic ---------------------------------------------------------------------------------
@pytest.fixture
def synthetic() -> SyntheticRecommendation:
    return SyntheticRecommendation(k=3)


def test_synthetic_utility_structure(synthetic: SyntheticRecommendation) -> None:
    prompt = synthetic.prompt_from_text("Liked: apple, pear, rain. Recommend 3:")
    assert prompt.meta["liked"] == (0, 1, 30)
    u = synthetic.utilities(prompt)
    fruit = [i for i in range(synthetic.n_items) if synthetic.item_category[i] == 0 and i not in (0, 1)]
    weather = [i for i in range(synthetic.n_items) if synthetic.item_category[i] == 6 and i != 30]
    other = [i for i in range(synthetic.n_items) if synthetic.item_category[i] not in (0, 6)]
    assert max(u[i] for i in fruit) == pytest.approx(1.0)  # the best unseen item scores 1
    assert min(u[i] for i in fruit) > max(u[i] for i in other)
    assert min(u[i] for i in weather) > max(u[i] for i in other)
    assert (u >= 0).all() and (u <= 1 + 1e-12).all()
    best = synthetic.best_items(prompt)
    assert all(synthetic.item_category[i] == 0 for i in best)
    assert synthetic.utilities(prompt)[best[0]] == pytest.approx(1.0)


def test_synthetic_scores_hand_made(synthetic: SyntheticRecommendation) -> None:
    prompt = synthetic.prompt_from_text("Liked: apple, pear, rain. Recommend 3:")
    u = synthetic.utilities(prompt)
    best = [synthetic.item_names[i] for i in synthetic.best_items(prompt)]
    good = synthetic.score_completion(prompt, synthetic.format_answer(prompt, best))
    assert good.parsed_ok and good.set_reward == pytest.approx(1.0)
    assert list(good.scores) == pytest.approx([u[synthetic.match(b)] for b in best])
    # case, punctuation and an article are tolerated; repeats, liked items and unknown names score 0
    messy = synthetic.score_completion(prompt, f"1. {best[0].upper()}!\n2. the {best[0]}\n3. apple")
    assert messy.scores == (pytest.approx(1.0), 0.0, 0.0)
    unknown = synthetic.score_completion(prompt, "1. banana\n2. zzz\n3. ")
    assert unknown.scores == (0.0, 0.0, 0.0) and unknown.set_reward == 0.0 and not unknown.parsed_ok
    bad = synthetic.score_completion(prompt, "1. ruby\n2. jazz\n3. ski")
    assert 0 < bad.set_reward < 0.3
    empty = synthetic.score_completion(prompt, "")
    assert empty.scores == (0.0, 0.0, 0.0) and empty.char_spans == (None, None, None)


def test_synthetic_splits_and_prompts(synthetic: SyntheticRecommendation) -> None:
    train = {p.text for p in synthetic.prompts("train", 300, seed=0)}
    evals = {p.text for p in synthetic.prompts("eval", 300, seed=0)}
    assert train and evals and not train & evals
    assert max(len(t) for t in train | evals) <= 60
    for p in synthetic.prompts("eval", 20, seed=3):
        assert synthetic.prompt_from_text(p.text) == p
    with pytest.raises(ValueError, match="not a prompt"):
        synthetic.prompt_from_text("Liked: banana. Recommend 3:")


def test_synthetic_demo_is_a_mix(synthetic: SyntheticRecommendation) -> None:
    rng = random.Random(0)
    rewards = []
    for p in synthetic.prompts("train", 200, seed=0):
        cands = synthetic.demo_candidates(p, rng)
        assert len(set(cands)) == 3
        rewards.append(synthetic.score_completion(p, synthetic.format_answer(p, cands)).set_reward)
    rewards_a = np.array(rewards)
    assert 0.3 < (rewards_a == 1.0).mean() < 0.9  # room for RL to improve
    assert rewards_a.mean() > 0.5
    answers = [a for _, a in synthetic.sft_pairs(50, seed=0)]
    assert max(len(a) for a in answers) <= 40


def test_synthetic_bad_arguments() -> None:
    with pytest.raises(ValueError, match="k must be >= 1"):
        SyntheticRecommendation(k=0)
    with pytest.raises(ValueError, match="n_categories"):
        SyntheticRecommendation(n_categories=1)
    with pytest.raises(ValueError, match="n_secondary"):
        SyntheticRecommendation(n_primary=1, n_secondary=1)


# ----- your own ratings --------------------------------------------------------------------------
def small_ratings() -> pd.DataFrame:
    """8 users, 10 movies, two taste groups (movies 0-4 vs 5-9)."""
    rows = []
    titles = [f"Movie {chr(65 + i)}" for i in range(10)]
    for u in range(8):
        for m in range(10):
            fan = (u < 4) == (m < 5)
            rows.append({"userId": 100 + u, "movieId": m, "rating": 5.0 if fan else 1.0, "title": titles[m],
                         "genres": "Drama"})  # fmt: skip
    return pd.DataFrame(rows)


def test_custom_ratings_csv(tmp_path) -> None:
    path = tmp_path / "ratings.csv"
    small_ratings().to_csv(path, index=False)
    task = MovieLensRecommendation(
        k=2,
        ratings=path,
        n_items=10,
        n_liked=2,
        cache_dir=tmp_path / "cache",
        good_pool=2,
        eval_fraction=0.25,
    )
    assert sorted(task.item_names) == [f"Movie {chr(65 + i)}" for i in range(10)]
    assert len(task.users_by_split["eval"]) == 2 and len(task.users_by_split["train"]) == 6
    assert not set(task.users_by_split["eval"]) & set(task.users_by_split["train"])
    assert list((tmp_path / "cache" / "recommendation").glob("mf_*.npz"))
    for p in task.prompts("train", 10, seed=0):
        group_a = p.meta["user_id"] < 104
        liked = p.meta["liked"]
        assert all((task.movie_ids[i] < 5) == group_a for i in liked)
        same = [
            task.item_names[i] for i in range(10) if (task.movie_ids[i] < 5) == group_a and i not in liked
        ]
        other = [task.item_names[i] for i in range(10) if (task.movie_ids[i] < 5) != group_a]
        s = task.score_completion(p, f"1. {same[0]}\n2. {other[0]}")
        assert s.scores[0] > 0.8 and s.scores[1] < 0.2
        assert task.score_candidates(p, [task.item_names[liked[0]]]) == [0.0]
        assert task.prompt_from_text(p.text) == p
    again = MovieLensRecommendation(
        k=2,
        ratings=path,
        n_items=10,
        n_liked=2,
        cache_dir=tmp_path / "cache",
        good_pool=2,
        eval_fraction=0.25,
    )
    np.testing.assert_array_equal(again.utility_matrix, task.utility_matrix)


def test_ratings_columns_errors(tmp_path) -> None:
    path = tmp_path / "bad.csv"
    small_ratings().drop(columns=["title"]).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['title'\]"):
        load_ratings(path)
    df = small_ratings()
    df["rating"] = df["rating"].astype(object)
    df.loc[3, "rating"] = "five"
    with pytest.raises(ValueError, match="'rating' must hold finite numbers"):
        load_ratings(df)
    with pytest.raises(ValueError, match="no such CSV file"):
        load_ratings(tmp_path / "nope.csv")
    with pytest.raises(TypeError, match="ratings must be"):
        load_ratings(42)
    with pytest.raises(ValueError, match="score_scale"):
        MovieLensRecommendation(ratings=small_ratings(), score_scale="stars", cache_dir=False)
    with pytest.raises(ValueError, match="k must be >= 1"):
        MovieLensRecommendation(k=0, ratings=small_ratings(), cache_dir=False)


# ----- MovieLens ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def movielens(tmp_path_factory: pytest.TempPathFactory) -> MovieLensRecommendation:
    return MovieLensRecommendation(k=3, cache_dir=tmp_path_factory.mktemp("credo_cache"))


def test_movielens_catalogue_and_users(movielens: MovieLensRecommendation) -> None:
    assert movielens.n_items == 300
    assert max(len(n) for n in movielens.item_names) <= 24
    keys = [normalise_title(n) for n in movielens.item_names]
    assert len(set(keys)) == len(keys)
    assert "Forrest Gump" in movielens.item_names and "The Empire Strikes Back" in movielens.item_names
    train, evals = movielens.users_by_split["train"], movielens.users_by_split["eval"]
    assert not set(train) & set(evals) and len(train) > 3 * len(evals) > 0
    u = movielens.utility_matrix
    assert u.shape == (671, 300)
    np.testing.assert_allclose(u.min(axis=1), 0.0)
    np.testing.assert_allclose(u.max(axis=1), 1.0)


def test_movielens_prompts_and_scores(movielens: MovieLensRecommendation) -> None:
    prompts = movielens.prompts("eval", 20, seed=0)
    assert {p.meta["user"] for p in prompts} <= set(movielens.users_by_split["eval"])
    assert max(len(p.text) for p in prompts) <= 120
    rng = random.Random(0)
    for p in prompts:
        best = [movielens.item_names[i] for i in movielens.best_items(p)]
        s = movielens.score_completion(p, movielens.format_answer(p, best))
        assert s.parsed_ok and s.set_reward == pytest.approx(max(s.scores))
        assert s.set_reward >= max(movielens.score_candidates(p, movielens.demo_candidates(p, rng)))
        liked_title = movielens.item_names[p.meta["liked"][0]]
        assert movielens.score_candidates(p, [liked_title, "Not A Real Movie", best[0], best[0]])[:2] == [
            0,
            0,
        ]
        assert movielens.score_candidates(p, [best[0], best[0]])[1] == 0.0
    # the full title and the year are accepted
    p = prompts[0]
    i = movielens.item_names.index("The Empire Strikes Back")
    full = movielens.score_candidates(p, ["Star Wars: Episode V - The Empire Strikes Back (1980)"])
    assert full == [0.0 if i in p.meta["liked"] else pytest.approx(movielens.utilities(p)[i])]


@pytest.mark.parametrize("scale", ["rating", "percentile"])
def test_score_scales(scale: str) -> None:
    task = MovieLensRecommendation(
        k=2,
        ratings=small_ratings(),
        n_items=10,
        n_liked=2,
        score_scale=scale,
        like_threshold=None,
        cache_dir=False,
    )
    u = task.utility_matrix
    assert (u >= 0).all() and (u <= 1).all()
    pred = task.predicted_ratings
    lower = pred[:, :, None] < pred[:, None, :]  # every scale keeps the user's ranking (ties allowed)
    assert (u[:, :, None] <= u[:, None, :] + 1e-12)[lower].all()
    if scale == "percentile":
        np.testing.assert_allclose(np.sort(u, axis=1), np.tile(np.linspace(0, 1, 10), (8, 1)))
    else:
        np.testing.assert_allclose(u, np.clip((task.predicted_ratings - 1.0) / 4.0, 0, 1))
