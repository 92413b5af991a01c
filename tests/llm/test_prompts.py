"""The seeded prompt order: a function of (seed, step), whatever order the steps are asked in."""

from __future__ import annotations

from credo.llm.prompts import PromptOrder


def test_prompt_order_is_a_function_of_the_step_in_any_order() -> None:
    prompts = [f"p{i}" for i in range(5)]
    forward = PromptOrder(prompts, seed=3, per_step=2)
    steps = list(range(12))  # 24 positions: almost 5 passes over the 5 prompts
    expected = {s: forward.for_step(s) for s in steps}
    backward = PromptOrder(prompts, seed=3, per_step=2)
    # later epochs first, then earlier ones: the cache must not evict what it is asked for
    assert {s: backward.for_step(s) for s in reversed(steps)} == expected
    jumpy = PromptOrder(prompts, seed=3, per_step=2)
    assert [jumpy.for_step(s) for s in (11, 0, 7, 1, 11)] == [expected[s] for s in (11, 0, 7, 1, 11)]
    assert len(set(expected[0] + expected[1] + [expected[2][0]])) == 5  # one pass holds every prompt once
    assert len(forward._permutations) <= 2
