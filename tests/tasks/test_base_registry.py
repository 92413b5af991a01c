"""The SetTask protocol shared by every task, the max coalition utility, and the registry."""

from __future__ import annotations

import itertools
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from credo.tasks import TASKS, make_task
from credo.tasks.base import SetScoring, SetTask
from credo.tasks.parsing import parse_numbered_list

FAST_TASKS = {
    "synthetic_recommendation": {},
    "countdown": {},
    "brainstorm": {},
    "brainstorm_themes": {"mode": "themes"},
    "semantic_brainstorm": {"embed": "letters"},
}


def letter_embedding(texts: list[str]) -> list[list[float]]:
    return [[float(t.count(ch)) for ch in "abcdefghijklmnopqrstuvwxyz"] for t in texts]


def build(name: str, k: int = 3) -> SetTask:
    kwargs = dict(FAST_TASKS[name])
    if kwargs.get("embed") == "letters":
        kwargs["embed"] = letter_embedding
    return make_task(name.replace("_themes", ""), k=k, **kwargs)


@pytest.mark.parametrize("name", sorted(FAST_TASKS))
@pytest.mark.parametrize("k", [1, 3, 4])
def test_protocol(name: str, k: int) -> None:
    task = build(name, k)
    assert task.k == k and task.name in TASKS
    prompts = task.prompts("train", 8, seed=0)
    assert len(prompts) == 8 and prompts == task.prompts("train", 8, seed=0)
    assert task.prompts("eval", 0) == []
    rng = random.Random(0)
    for p in prompts:
        assert len(p.text) <= 120
        assert task.prompt_from_text(p.text) == p
        demo = task.demo_candidates(p, rng)
        assert len(demo) == k
        answer = task.format_answer(p, demo)
        assert len(answer) <= 150
        assert parse_numbered_list(answer, k).candidates == tuple(d.strip() for d in demo)
        scoring = task.score_completion(p, answer)
        assert isinstance(scoring, SetScoring) and scoring.parsed_ok
        assert len(scoring.scores) == len(scoring.candidates) == len(scoring.char_spans) == k
        lo, hi = task.score_range
        assert all(lo <= s <= hi for s in scoring.scores)
        assert scoring.scores == tuple(task.score_candidates(p, demo))
        for c, span in zip(scoring.candidates, scoring.char_spans):
            assert span is not None and answer[span[0] : span[1]] == c
        game = task.game(p, scoring.candidates, scoring.scores)
        assert game is scoring.game or (game.batch_size, game.num_players) == (1, k)
        masks = torch.tensor(list(itertools.product([False, True], repeat=k)), dtype=torch.bool)
        values = game.value(masks)[0]
        assert values.shape == (2**k,)
        # efficiency: the game's Shapley values sum to the set reward
        assert float(scoring.game.shapley().sum()) == pytest.approx(scoring.set_reward, abs=1e-9)
        assert values[-1].item() == pytest.approx(scoring.set_reward, abs=1e-6)
        assert values[0].item() == 0.0
        # monotone: adding a candidate never lowers the utility (max, coverage, facility location)
        for i, j in itertools.product(range(2**k), repeat=2):
            if bool((masks[i] <= masks[j]).all()):
                assert values[i] <= values[j] + 1e-6
        # padding: a garbled answer still returns K scores, zero for the missing ones
        garbled = task.score_completion(p, "1. " + demo[0])
        assert len(garbled.scores) == k and garbled.parsed_ok == (k == 1)
        assert all(s == 0.0 and sp is None for s, sp in zip(garbled.scores[1:], garbled.char_spans[1:]))
    pairs = task.sft_pairs(4, seed=1)
    assert len(pairs) == 4 and all(isinstance(a, str) and a.startswith("1. ") for _, a in pairs)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6))
def test_default_game_is_the_max_game(scores: list[float]) -> None:
    task = build("synthetic_recommendation", len(scores))
    prompt = task.prompts("train", 1)[0]
    game = SetTask.game(task, prompt, [""] * len(scores), scores)
    K = len(scores)
    masks = torch.tensor(list(itertools.product([False, True], repeat=K)), dtype=torch.bool)
    for mask, v in zip(masks, game.value(masks)[0]):
        expected = max((s for s, m in zip(scores, mask) if m), default=0.0)
        assert v.item() == pytest.approx(expected, abs=1e-12)


def test_reward_function_for_the_trainer() -> None:
    from credo.llm.rewards import CandidateScores, as_weighted_rewards

    task = make_task("synthetic_recommendation", k=2)
    prompts = task.prompts("train", 2, seed=0)
    fn = task.reward_function()
    assert as_weighted_rewards(fn)[0].kind == "candidates"
    best = [task.item_names[i] for i in task.best_items(prompts[0])]
    out = fn([p.text for p in prompts], [task.format_answer(prompts[0], best), "junk"])
    assert all(isinstance(o, CandidateScores) for o in out)
    assert out[0].set_reward == pytest.approx(1.0) and out[1].set_reward == 0.0
    assert out[1].spans[1] is None


def test_registry_errors() -> None:
    assert set(TASKS) == {
        "recommendation",
        "synthetic_recommendation",
        "countdown",
        "brainstorm",
        "semantic_brainstorm",
    }
    with pytest.raises(ValueError, match="unknown task name 'chess'"):
        make_task("chess")
    with pytest.raises(TypeError, match=r"task 'countdown'.*unexpected keyword argument 'colour'"):
        make_task("countdown", colour="red")
    for name in FAST_TASKS:
        with pytest.raises(ValueError, match="k must be >= 1"):
            build(name, 0)
    with pytest.raises(TypeError, match="k must be an int"):
        make_task("countdown", k=2.5)
    task = make_task("countdown")
    with pytest.raises(ValueError, match="split must be one of"):
        task.prompts("test", 3)
    with pytest.raises(ValueError, match="n must be >= 0"):
        task.prompts("train", -1)
    with pytest.raises(TypeError, match="prompt must be a TaskPrompt"):
        task.score_completion("Numbers: 1 2. Target: 3. Give 3:", "1. 1+2")  # type: ignore[arg-type]
