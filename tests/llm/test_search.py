from __future__ import annotations

import time
from typing import Any

import pytest
import torch

from credo.cli.main import main
from credo.llm.search import (
    best_of_n,
    dvts,
    prm_beam_search,
    sample_steps,
    synthetic_search_setup,
    synthetic_step_is_correct,
    synthetic_steps_true_reward,
)

PROMPT = "Steps:\n"


def test_true_reward_of_the_step_task() -> None:
    assert synthetic_step_is_correct("bacd") and not synthetic_step_is_correct("bcde")
    assert not synthetic_step_is_correct("abc") and not synthetic_step_is_correct("Abcd")
    assert synthetic_steps_true_reward(PROMPT, "bacd\n\nbcde") == 0.5
    assert synthetic_steps_true_reward(PROMPT, "") == 0.0


@pytest.mark.slow
def test_prm_beam_search_beats_sampling_at_equal_budget(tokenizer: Any) -> None:
    start = time.perf_counter()
    policy, prm = synthetic_search_setup(tokenizer, seed=0)
    steps = sample_steps(policy, tokenizer, [PROMPT], 4, max_step_tokens=8)[0]
    assert all(s.finished or s.text.endswith("\n\n") for s in steps)
    torch.manual_seed(1)
    runs, beam, tree, sampled, bon, calls = 30, 0.0, 0.0, [], 0.0, []
    for _ in range(runs):
        b = prm_beam_search(
            policy, tokenizer, prm, PROMPT, beam_width=2, expansions=2, max_steps=5, max_step_tokens=8
        )
        d = dvts(policy, tokenizer, prm, PROMPT, subtrees=2, expansions=2, max_steps=5, max_step_tokens=8)
        calls.append((b.generator_calls, b.scorer_calls, d.generator_calls, d.scorer_calls))
        beam += synthetic_steps_true_reward(PROMPT, b.completion)
        tree += synthetic_steps_true_reward(PROMPT, d.completion)
        # plain sampling with the same number of generator calls: a random pick among them has the
        # mean true reward of all of them
        n = b.generator_calls
        r = best_of_n(policy, tokenizer, PROMPT, n, prm.as_reward_function(how="min"), max_new_tokens=32)
        sampled += [synthetic_steps_true_reward(PROMPT, c) for c, _ in r.candidates]
        bon += synthetic_steps_true_reward(PROMPT, r.completion)
    plain = sum(sampled) / len(sampled)
    print(
        f"true reward over {runs} runs: sampling {plain:.3f} ({len(sampled)} samples), "
        f"best-of-n {bon / runs:.3f}, beam {beam / runs:.3f}, dvts {tree / runs:.3f}; "
        f"calls {calls[:3]}; {time.perf_counter() - start:.1f}s"
    )
    assert beam / runs > plain + 0.2


def test_prm_search_cli_prints_reward_and_calls_per_method(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["prm", "search", "--runs", "2", "--method", "sample", "beam", "dvts", "--max-steps", "3"]) == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:2] == ["method", "true"]
    rows = {line.split()[0]: [float(x) for x in line.split()[1:]] for line in lines[1:]}
    assert set(rows) == {"sample", "beam", "dvts"}
    assert rows["sample"][1:] == [1.0, 0.0]  # one generator call, no scorer
    assert rows["beam"][1] == rows["beam"][2] > 1  # one PRM call per sampled step
