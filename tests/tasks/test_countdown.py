"""Countdown: the safe evaluator, number-use checks, scoring, generation and the solver."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credo.tasks.countdown import Countdown, UnsafeExpressionError, expression_numbers, safe_eval, solve


@pytest.mark.parametrize(
    ("expression", "value"),
    [("1+2", 3), ("2*(3+4)", 14), ("10/4", Fraction(5, 2)), ("(25-5)/4*3", 15), (" 7 ", 7), ("8-10", -2)],
)
def test_safe_eval_arithmetic(expression: str, value: Fraction) -> None:
    assert safe_eval(expression) == value


@pytest.mark.parametrize(
    "expression",
    [
        "x+1",  # names
        "abs(3)",  # calls
        "(1).real",  # attributes
        "__import__('os').system('true')",
        "2**10",  # powers
        "9**9**9**9",  # huge powers
        "2^3",  # xor
        "7//2",
        "7%2",
        "-3+5",  # unary minus
        "1.5*2",  # floats
        "[1, 2]",
        "1 if 1 else 2",
        "1<2",
        "'a'",
        "1/0",
        "1/(2-2)",
        "",
        "1+",
        "(" * 40 + "1" + ")" * 40,  # longer than 64 characters
        "+".join(["1"] * 40),  # too many nodes / too long
    ],
)
def test_safe_eval_rejects(expression: str) -> None:
    with pytest.raises(UnsafeExpressionError):
        safe_eval(expression)


def test_magnitude_guard() -> None:
    big = "*".join(["99"] * 8)  # 99**8 ~ 9.2e15 > 1e12
    with pytest.raises(UnsafeExpressionError, match="exceeds"):
        safe_eval(big)
    assert safe_eval(big, max_abs=10**20) == 99**8
    with pytest.raises(UnsafeExpressionError, match="nodes"):
        safe_eval("1+2+3+4", max_nodes=5)
    with pytest.raises(TypeError, match="expression must be a str"):
        safe_eval(3)  # type: ignore[arg-type]


def test_expression_numbers() -> None:
    assert expression_numbers("25*3+(7-2)") == [25, 3, 7, 2]


@pytest.fixture
def task() -> Countdown:
    return Countdown(k=3)


def test_scores_hand_made(task: Countdown) -> None:
    prompt = task.make_prompt([3, 7, 25, 2], 81)
    assert prompt.text == "Numbers: 3 7 25 2. Target: 81. Give 3:"
    cands = [
        "25*3+7-2+1",  # 1 is not given -> 0
        "25*3+7-2",  # 80: near miss
        "3*25+7-2+2",  # 2 used twice -> 0
        "(25+2)*3",  # exact
        "(25+2)*3",  # repeat -> 0
        "( 25 + 2 ) * 3 = 81",  # repeat after removing spaces and the '= value'
        "25x3+7-2+2-2",  # 'x' read as '*', but 2 used three times -> 0
        "abs(81)",  # unsafe -> 0
        "",
        "3*7",  # 21: far miss, graded
        "25*7*3",  # 525 > 2*81: score 0 (clipped)
    ]
    scores = task.score_candidates(prompt, cands)
    assert scores[0] == 0.0
    assert scores[1] == pytest.approx(0.5 * (1 - 1 / 81))
    assert scores[2] == 0.0
    assert scores[3] == 1.0
    assert scores[4] == 0.0 and scores[5] == 0.0
    assert scores[6] == 0.0 and scores[7] == 0.0 and scores[8] == 0.0
    assert scores[9] == pytest.approx(0.5 * (1 - 60 / 81))
    assert scores[10] == 0.0
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_score_completion_and_set_utility(task: Countdown) -> None:
    prompt = task.make_prompt([3, 7, 25, 2], 81)
    good = task.score_completion(prompt, "1. 25*3+7-2\n2. (25+2)*3\n3. 3*7")
    assert good.parsed_ok and good.set_reward == 1.0
    assert good.scores[1] == 1.0 and good.scores[0] < 0.5
    bad = task.score_completion(prompt, "1. 2*2*2\n2. foo\n3. 3/0")
    assert bad.scores == (0.0, 0.0, 0.0) and bad.set_reward == 0.0
    short = task.score_completion(prompt, "1. (25+2)*3")
    assert not short.parsed_ok and short.scores == (1.0, 0.0, 0.0) and short.char_spans[1:] == (None, None)
    assert short.set_reward == 1.0
    empty = task.score_completion(prompt, "")
    assert empty.set_reward == 0.0 and empty.candidates == ("", "", "")


def test_prompts_solvable_split_and_roundtrip(task: Countdown) -> None:
    train = task.prompts("train", 30, seed=1)
    evals = task.prompts("eval", 30, seed=1)
    assert train == task.prompts("train", 30, seed=1)
    for p in train + evals:
        numbers, target = p.meta["numbers"], p.meta["target"]
        lo, hi = task.target_range
        assert lo <= target <= hi and len(numbers) == task.n_numbers
        solutions = solve(numbers, target)
        assert solutions, p.text
        assert all(task.candidate_score(p, s) == 1.0 for s in solutions)
        assert task.prompt_from_text(p.text) == p
    assert {task.split_of(p.meta["numbers"], p.meta["target"]) for p in evals} == {"eval"}
    assert not {p.text for p in train} & {p.text for p in evals}


def test_demo_candidates_mix(task: Countdown) -> None:
    rng = random.Random(0)
    scores = []
    for p in task.prompts("train", 40, seed=0):
        cands = task.demo_candidates(p, rng)
        assert len(cands) == task.k
        scores += task.score_candidates(p, cands)
    assert 0.15 < sum(s == 1.0 for s in scores) / len(scores) < 0.8  # good and poor candidates
    pairs = task.sft_pairs(5, seed=0)
    assert all(a.startswith("1. ") for _, a in pairs)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=2, max_size=4), st.integers(1, 60))
def test_solver_solutions_are_correct(numbers: list[int], target: int) -> None:
    task = Countdown(k=1)
    prompt = task.make_prompt(numbers, target)
    for s in solve(numbers, target):
        assert safe_eval(s) == target
        assert task.evaluate(prompt, s) == target


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="k must be >= 1"):
        Countdown(k=0)
    with pytest.raises(ValueError, match="n_numbers"):
        Countdown(n_numbers=1)
    with pytest.raises(ValueError, match="target_range"):
        Countdown(target_range=(5, 1))
    with pytest.raises(ValueError, match="numbers must be positive ints"):
        Countdown().make_prompt([0, 2], 5)
    with pytest.raises(ValueError, match="not a prompt of 'countdown'"):
        Countdown().prompt_from_text("Numbers: 1 2. Target: 3. Give 9:")
