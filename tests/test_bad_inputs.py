"""Bad inputs at public entry points: each must fail with a named error, not silently or deep inside
torch, numpy or pandas. One row per input: (callable, args, expected exception, regex of the message,
which names the argument)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from credo.credit import CreditBatch, compute_credit
from credo.credit.games import AdditiveGame, MaxGame
from credo.credit.groups import grpo_advantages, reinforce_pp_advantages, rloo_advantages
from credo.credit.returns import discounted_returns, gae, reward_to_go
from credo.credit.shapley import shapley_max
from credo.credit.tokens import expand_to_tokens, spans_to_token_credit
from credo.llm.config import load_config
from credo.tabular.control import q_learning, sarsa
from credo.tabular.envs import make_problem
from credo.tabular.prediction import td0
from credo.tasks import make_task
from credo.tasks.countdown import UnsafeExpressionError, safe_eval
from credo.tasks.recommendation.ratings import load_ratings

NAN = float("nan")


def _batch(rewards: Any = (1.0, 0.0, 0.5, 0.2), T: int = 3, **extra: Any) -> CreditBatch:
    r = torch.as_tensor(rewards, dtype=torch.float32)
    return CreditBatch(
        rewards=r, response_mask=torch.ones(len(r), T, dtype=torch.bool), group_size=2, **extra
    )


def _candidate_batch(**extra: Any) -> CreditBatch:
    scores = torch.tensor([[0.1, 0.9], [0.5, 0.2], [0.3, 0.3], [0.7, 0.0]])
    spans = torch.tensor([[[0, 2], [2, 4]]] * 4)
    fields = {"candidate_scores": scores, "candidate_spans": spans, **extra}
    return CreditBatch(
        rewards=scores.max(dim=1).values,
        response_mask=torch.ones(4, 4, dtype=torch.bool),
        group_size=2,
        **fields,
    )


def _rows3(x: float = 1.0) -> torch.Tensor:
    return torch.full((2, 3), x)


def _config(**data: Any) -> Any:
    return load_config(None, data)


def _garbage_csv(tmp: Path) -> Path:
    path = tmp / "garbage.csv"
    path.write_bytes(bytes(range(256)) * 8 + b"\x00\xff\xfe\n\x81\x82")
    return path


def _grid() -> Any:
    return make_problem("sutton_barto_3_5").env


def _long_expression() -> str:
    return "(" * 3000 + "1" + ")" * 3000


T2 = torch.ones(2, 3)
MASK = torch.ones(2, 3, dtype=torch.bool)

# (id, callable, args, kwargs, exception, message regex)
ROWS: list[tuple[str, Callable[..., Any], tuple[Any, ...], dict[str, Any], type[BaseException], str]] = [
    # credo.credit: estimator options
    ("grpo negative eps", compute_credit, ("grpo", _batch()), {"eps": -1.0}, ValueError, r"eps"),
    (
        "shape_grpo negative eps",
        compute_credit,
        ("shape_grpo", _candidate_batch()),
        {"eps": -0.1},
        ValueError,
        r"eps",
    ),
    ("wta negative eps", compute_credit, ("wta", _candidate_batch()), {"eps": -0.1}, ValueError, r"eps"),
    (
        "reinforce_pp negative eps",
        compute_credit,
        ("reinforce_pp", _batch()),
        {"eps": -1e-3},
        ValueError,
        r"eps",
    ),
    ("grpo string eps", compute_credit, ("grpo", _batch()), {"eps": "small"}, TypeError, r"eps"),
    (
        "grpo unknown option",
        compute_credit,
        ("grpo", _batch()),
        {"epsilon": 0.1},
        (TypeError, ValueError),
        r"epsilon",
    ),
    ("unknown estimator", compute_credit, ("nope", _batch()), {}, (KeyError, ValueError), r"nope"),
    (
        "gae string gamma",
        compute_credit,
        ("gae", _batch(values=torch.zeros(4, 3))),
        {"gamma": "0.9"},
        TypeError,
        r"gamma",
    ),
    (
        "gae gamma > 1",
        compute_credit,
        ("gae", _batch(values=torch.zeros(4, 3))),
        {"gamma": 1.5},
        ValueError,
        r"gamma",
    ),
    (
        "grpo_advantages negative eps",
        grpo_advantages,
        (torch.tensor([[1.0, 0.0]]),),
        {"eps": -1.0},
        ValueError,
        r"eps",
    ),
    (
        "reinforce_pp_advantages negative eps",
        reinforce_pp_advantages,
        (torch.tensor([[1.0, 0.0]]),),
        {"eps": -1.0},
        ValueError,
        r"eps",
    ),
    # credo.credit: batches
    (
        "empty batch",
        compute_credit,
        ("grpo", _batch(rewards=())),
        {},
        ValueError,
        r"empty|no completions|batch",
    ),
    (
        "NaN rewards",
        compute_credit,
        ("grpo", _batch(rewards=(1.0, NAN, 0.0, 0.0))),
        {},
        ValueError,
        r"rewards.*NaN",
    ),
    (
        "inf rewards",
        compute_credit,
        ("rloo", _batch(rewards=(1.0, float("inf"), 0.0, 0.0))),
        {},
        ValueError,
        r"rewards.*NaN/inf",
    ),
    (
        "rewards vs mask rows",
        compute_credit,
        ("grpo", CreditBatch(rewards=torch.ones(4), response_mask=MASK, group_size=2)),
        {},
        ValueError,
        r"rewards|response_mask",
    ),
    (
        "batch not a multiple of group",
        compute_credit,
        (
            "grpo",
            CreditBatch(
                rewards=torch.ones(3), response_mask=torch.ones(3, 2, dtype=torch.bool), group_size=2
            ),
        ),
        {},
        ValueError,
        r"group",
    ),
    ("gae without values", compute_credit, ("gae", _batch()), {}, ValueError, r"values"),
    (
        "values wrong shape",
        compute_credit,
        ("gae", _batch(values=torch.zeros(4, 5))),
        {},
        ValueError,
        r"values",
    ),
    (
        "shape_grpo without scores",
        compute_credit,
        ("shape_grpo", _batch()),
        {},
        ValueError,
        r"candidate_scores",
    ),
    (
        "spans past the end",
        compute_credit,
        ("shape_grpo", _candidate_batch(candidate_spans=torch.tensor([[[0, 2], [2, 9]]] * 4))),
        {},
        ValueError,
        r"span",
    ),
    (
        "spans reversed",
        compute_credit,
        ("shape_grpo", _candidate_batch(candidate_spans=torch.tensor([[[2, 0], [2, 4]]] * 4))),
        {},
        ValueError,
        r"span",
    ),
    (
        "spans wrong shape",
        compute_credit,
        ("shape_grpo", _candidate_batch(candidate_spans=torch.zeros(4, 2, dtype=torch.long))),
        {},
        ValueError,
        r"span",
    ),
    (
        "scores NaN",
        compute_credit,
        (
            "shape_grpo",
            _candidate_batch(candidate_scores=torch.tensor([[NAN, 0.9], [0.5, 0.2], [0.3, 0.3], [0.7, 0.0]])),
        ),
        {},
        ValueError,
        r"candidate_scores|scores",
    ),
    (
        "mask not 0/1",
        compute_credit,
        ("grpo", CreditBatch(rewards=torch.ones(2), response_mask=torch.full((2, 3), 2.0), group_size=2)),
        {},
        ValueError,
        r"response_mask|mask",
    ),
    # credo.credit: returns
    ("discounted_returns string gamma", discounted_returns, (T2, None, "0.9"), {}, TypeError, r"gamma"),
    ("discounted_returns gamma > 1", discounted_returns, (T2, None, 1.1), {}, ValueError, r"gamma"),
    ("discounted_returns NaN gamma", discounted_returns, (T2, None, NAN), {}, ValueError, r"gamma"),
    (
        "discounted_returns list rewards",
        discounted_returns,
        ([1.0, 2.0], None, 0.9),
        {},
        TypeError,
        r"rewards",
    ),
    (
        "discounted_returns NaN rewards",
        discounted_returns,
        (torch.tensor([[1.0, NAN]]), None, 0.9),
        {},
        ValueError,
        r"rewards",
    ),
    (
        "discounted_returns mask shape",
        discounted_returns,
        (T2, None, 0.9),
        {"mask": torch.ones(2, 4, dtype=torch.bool)},
        ValueError,
        r"mask",
    ),
    ("reward_to_go string gamma", reward_to_go, (T2,), {"gamma": "1"}, TypeError, r"gamma"),
    ("gae string gamma", gae, (T2, T2, T2, None, None, "0.99", 0.95), {}, TypeError, r"gamma"),
    ("gae string lam", gae, (T2, T2, T2, None, None, 0.99, "0.95"), {}, TypeError, r"lam"),
    ("gae negative lam", gae, (T2, T2, T2, None, None, 0.99, -0.5), {}, ValueError, r"lam"),
    ("gae values shape", gae, (T2, torch.ones(2, 4), T2, None, None, 0.99, 0.95), {}, ValueError, r"values"),
    # credo.credit: groups, tokens, shapley
    ("grpo_advantages NaN", grpo_advantages, (torch.tensor([[1.0, NAN]]),), {}, ValueError, r"rewards"),
    (
        "rloo_advantages single",
        rloo_advantages,
        (torch.tensor([[1.0]]),),
        {},
        ValueError,
        r"rloo|at least 2|group",
    ),
    (
        "expand_to_tokens rows",
        expand_to_tokens,
        (torch.ones(3), MASK),
        {},
        ValueError,
        r"credit|response_mask",
    ),
    (
        "spans_to_token_credit spans",
        spans_to_token_credit,
        (torch.ones(2, 2), torch.ones(2, 2), MASK, torch.zeros(2)),
        {},
        ValueError,
        r"spans",
    ),
    ("shapley_max 0-d", shapley_max, (torch.tensor(1.0),), {}, ValueError, r"scores"),
    # credo.credit.games
    ("MaxGame 1-d scores", MaxGame, (torch.ones(3),), {}, ValueError, r"scores"),
    ("MaxGame NaN scores", MaxGame, (torch.tensor([[1.0, NAN]]),), {}, ValueError, r"scores"),
    ("MaxGame list scores", MaxGame, ([[1.0, 2.0]],), {}, TypeError, r"scores"),
    (
        "MaxGame present shape",
        MaxGame,
        (torch.ones(2, 3),),
        {"present": torch.ones(2, 4, dtype=torch.bool)},
        ValueError,
        r"present",
    ),
    (
        "AdditiveGame bool scores",
        AdditiveGame,
        (torch.ones(2, 3, dtype=torch.bool),),
        {},
        TypeError,
        r"weights",
    ),
    # credo.llm config
    ("negative top_k", _config, (), {"rollout": {"top_k": -1}}, ValueError, r"rollout\.top_k"),
    ("zero top_k", _config, (), {"rollout": {"top_k": 0}}, ValueError, r"rollout\.top_k"),
    ("unknown key", _config, (), {"optim": {"learning_rate": 1e-3}}, ValueError, r"optim\.learning_rate"),
    ("unknown section", _config, (), {"optimizer": {}}, ValueError, r"optimizer"),
    ("bad Literal", _config, (), {"precision": "fp64"}, ValueError, r"precision"),
    ("bad loss Literal", _config, (), {"loss": {"policy_loss": "dpo"}}, ValueError, r"loss\.policy_loss"),
    ("wrong type", _config, (), {"steps": "many"}, TypeError, r"steps"),
    ("bool for int", _config, (), {"rollout": {"group_size": True}}, TypeError, r"rollout\.group_size"),
    ("negative lr", _config, (), {"optim": {"lr": -1e-3}}, ValueError, r"optim\.lr"),
    ("temperature zero", _config, (), {"rollout": {"temperature": 0}}, ValueError, r"rollout\.temperature"),
    ("unknown rollout key", _config, (), {"rollout": {"top_p": 0.9}}, ValueError, r"rollout\.top_p"),
    ("resume string", _config, (), {"resume": "yes please"}, TypeError, r"resume"),
    (
        "unknown estimator config",
        _config,
        (),
        {"credit": {"estimator": "grpoo"}},
        ValueError,
        r"credit\.estimator",
    ),
    (
        "negative eps option",
        _config,
        (),
        {"credit": {"estimator": "grpo", "options": {"eps": "small"}}},
        ValueError,
        r"credit\.options\.eps",
    ),
    # credo.tasks
    ("unknown task", make_task, ("recomendation",), {}, ValueError, r"recomendation"),
    ("k=0", make_task, ("countdown",), {"k": 0}, ValueError, r"\bk\b"),
    ("k string", make_task, ("countdown",), {"k": "3"}, TypeError, r"\bk\b"),
    ("unknown task option", make_task, ("countdown",), {"kk": 3}, TypeError, r"kk"),
    ("countdown n_numbers", make_task, ("countdown",), {"n_numbers": 9}, ValueError, r"n_numbers"),
    ("countdown max_chars", make_task, ("countdown",), {"max_chars": 0}, ValueError, r"max_chars"),
    (
        "countdown deep parentheses",
        safe_eval,
        (_long_expression(),),
        {"max_chars": 10**6, "max_nodes": 10**6},
        UnsafeExpressionError,
        r"expression",
    ),
    (
        "countdown raised limits",
        safe_eval,
        ("+".join(["1"] * 2000),),
        {"max_chars": 10**6, "max_nodes": 10**6},
        UnsafeExpressionError,
        r"expression",
    ),
    ("ratings garbage bytes", "garbage_csv", (), {}, ValueError, r"garbage\.csv"),
    ("ratings missing file", load_ratings, ("/nonexistent/ratings.csv",), {}, ValueError, r"ratings.csv"),
    ("ratings wrong type", load_ratings, (42,), {}, TypeError, r"ratings"),
    # credo.tabular
    (
        "td0 diverging alpha",
        lambda: td0(_grid(), np.full((25, 4), 0.25), n_episodes=50, alpha=2.0, seed=0),
        (),
        {},
        ValueError,
        r"alpha",
    ),
    (
        "q_learning diverging alpha",
        lambda: q_learning(_grid(), n_episodes=100, alpha=1.5, seed=0),
        (),
        {},
        ValueError,
        r"alpha",
    ),
    ("sarsa negative alpha", lambda: sarsa(_grid(), n_episodes=1, alpha=-0.1), (), {}, ValueError, r"alpha"),
    ("sarsa gamma > 1", lambda: sarsa(_grid(), n_episodes=1, gamma=1.5), (), {}, ValueError, r"gamma"),
    ("sarsa string gamma", lambda: sarsa(_grid(), n_episodes=1, gamma="0.9"), (), {}, TypeError, r"gamma"),
    (
        "td0 string alpha",
        lambda: td0(_grid(), np.full((25, 4), 0.25), n_episodes=1, alpha="0.1"),
        (),
        {},
        TypeError,
        r"alpha",
    ),
    (
        "q_learning zero episodes",
        lambda: q_learning(_grid(), n_episodes=0),
        (),
        {},
        ValueError,
        r"n_episodes",
    ),
]


@pytest.mark.parametrize(
    ("fn", "args", "kwargs", "error", "pattern"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_bad_input_gives_a_named_error(
    fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], error: Any, pattern: str, tmp_path: Path
) -> None:
    if fn == "garbage_csv":
        fn, args = load_ratings, (_garbage_csv(tmp_path),)
    with pytest.raises(error, match=pattern):
        fn(*args, **kwargs)


def test_the_table_is_long_enough() -> None:
    assert len(ROWS) >= 40
