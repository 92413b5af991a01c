"""CredoGRPOTrainer on a tiny model, CPU: one process, and two processes under ``torchrun`` (gloo)
(skipped without TRL: ``pip install 'credo[trl]'``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from trl import GRPOConfig  # noqa: E402

from credo.credit.registry import CreditBatch, compute_credit  # noqa: E402
from credo.integrations.trl import CredoGRPOTrainer, stack_candidate_rows  # noqa: E402
from credo.llm.tiny import build_char_tokenizer, build_tiny_model, tiny_model_config  # noqa: E402

from .trl_rewards import SPANS, G, chunk_reward, length_reward  # noqa: E402


def expected_credit(
    tokenizer: Any, output: dict[str, Any], estimator: str, options: dict[str, Any]
) -> torch.Tensor:
    """compute_credit on TRL's batch, the rewards recomputed from the completion tokens: one character per
    token, special tokens (which the model may sample mid-completion) decoding to nothing."""
    ids, mask = output["completion_ids"], output["completion_mask"].bool()
    special = set(tokenizer.all_special_ids)
    texts, rows = [], []
    for row, m in zip(ids, mask):
        kept = row[m].tolist()
        char_token = [t for t, i in enumerate(kept) if i not in special]  # character c is token char_token[c]
        text = tokenizer.decode(kept, skip_special_tokens=True)
        assert len(text) == len(char_token)
        (cand,) = chunk_reward([""], [text])
        spans = [(-1, -1) if s is None else (char_token[s[0]], char_token[s[1] - 1] + 1) for s in cand.spans]
        texts.append(text)
        rows.append(([float(x) for x in cand.scores], spans, None))
    candidates = chunk_reward([""] * len(texts), texts)
    scores, spans, _ = stack_candidate_rows(rows, "cpu")
    rewards = torch.tensor([c.set_reward for c in candidates]) + 0.5 * torch.tensor(length_reward([], texts))
    batch = CreditBatch(
        rewards=rewards, response_mask=mask, group_size=G, candidate_scores=scores, candidate_spans=spans
    )
    return compute_credit(estimator, batch, **options).advantages


def make_trainer(tmp_path: Any, **credit: Any) -> tuple[CredoGRPOTrainer, Any]:
    tokenizer = build_char_tokenizer()
    model = build_tiny_model(
        tiny_model_config(vocab_size=len(tokenizer), hidden_size=32, num_heads=2), seed=0
    )
    dataset = datasets.Dataset.from_dict({"prompt": ["abc: ", "xyz: ", "List: ", "Go: "] * 2})
    args = GRPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2 * G,
        num_generations=G,
        max_completion_length=8,
        max_steps=2,
        learning_rate=1e-3,
        reward_weights=[1.0, 0.5],
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        seed=0,
    )
    trainer = CredoGRPOTrainer(
        model=model,
        reward_funcs=[chunk_reward, length_reward],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        **credit,
    )
    return trainer, tokenizer


def test_trains_two_steps_with_shape_grpo_token_advantages(tmp_path: Any) -> None:
    options = {"normalize": "none"}
    trainer, tokenizer = make_trainer(tmp_path, credit_estimator="shape_grpo", credit_options=options)
    generated: list[dict[str, Any]] = []
    loss_inputs: list[dict[str, Any]] = []
    generate, compute_loss = trainer._generate_and_score_completions, trainer._compute_loss

    def record_generate(inputs: Any) -> dict[str, Any]:
        output = generate(inputs)
        generated.append({k: v.detach().clone() for k, v in output.items() if torch.is_tensor(v)})
        return output

    def record_loss(model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        loss_inputs.append({k: v.detach().clone() for k, v in inputs.items() if torch.is_tensor(v)})
        return compute_loss(model, inputs)

    trainer._generate_and_score_completions = record_generate
    trainer._compute_loss = record_loss
    trainer.train()

    assert trainer.state.global_step == 2
    assert len(generated) == 2 and len(loss_inputs) >= 2
    split_credit = False
    for output in generated:
        advantages = output["advantages"]
        assert advantages.shape == output["completion_ids"].shape  # [B, T]
        expected = expected_credit(tokenizer, output, "shape_grpo", options)
        torch.testing.assert_close(advantages, expected.float(), atol=1e-6, rtol=1e-6)
        assert torch.all(advantages[~output["completion_mask"].bool()] == 0)
        for row in advantages:  # tokens of different candidate spans get different advantages
            if len(row) >= 6 and len({round(float(row[a]), 6) for a, _ in SPANS}) > 1:
                split_credit = True
    assert split_credit
    # the loss got [B, T] advantages: each row is a row of a generation batch (TRL shuffles the rows)
    for inputs in loss_inputs:
        assert inputs["advantages"].dim() == 2
        pool = {
            tuple(ids.tolist()): adv
            for output in generated
            for ids, adv in zip(output["completion_ids"], output["advantages"])
        }
        for ids, adv in zip(inputs["completion_ids"], inputs["advantages"]):
            torch.testing.assert_close(adv, pool[tuple(ids.tolist())])


def test_wrong_credit_option_fails_at_construction(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="credit_options key 'normalise'"):
        make_trainer(tmp_path, credit_estimator="shape_grpo", credit_options={"normalise": True})


def test_candidate_estimator_without_candidate_function_fails(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="candidate_reward"):
        CredoGRPOTrainer(model=None, reward_funcs=[length_reward], credit_estimator="wta")


def test_critic_estimator_is_refused() -> None:
    with pytest.raises(ValueError, match="values"):
        CredoGRPOTrainer(model=None, reward_funcs=[length_reward], credit_estimator="gae")


def run_worker(out: Path, processes: int) -> list[dict[str, Any]]:
    """``trl_ddp_worker.py`` on ``processes`` CPU processes; what each process saved, in rank order."""
    out.mkdir(parents=True)
    worker = str(Path(__file__).with_name("trl_ddp_worker.py"))
    if processes == 1:
        command = [sys.executable, worker, str(out)]
    else:
        torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
        if not Path(torchrun).exists():
            pytest.skip("torchrun not found")
        command = [torchrun, "--nproc_per_node", str(processes), "--master_port", "29533", worker, str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = [torch.load(out / f"rank{r}.pt") for r in range(processes)]
    assert [s["rank"] for s in saved] == list(range(processes))
    assert all(s["world"] == processes and s["steps"] == 2 for s in saved)
    return saved


def global_batch(saved: list[dict[str, Any]], step: int) -> dict[str, torch.Tensor]:
    """The processes' rows of one generation batch, in process order, padded to the longest completion."""
    outputs = [s["generated"][step] for s in saved]
    T = max(o["completion_ids"].shape[1] for o in outputs)
    return {
        key: torch.cat([torch.nn.functional.pad(o[key], (0, T - o[key].shape[1])) for o in outputs], dim=0)
        for key in ("completion_ids", "completion_mask", "advantages")
    }


@pytest.mark.slow
def test_two_processes_give_the_global_batch_credit(tmp_path: Path) -> None:
    """Two CPU processes (torchrun, gloo), 12 completions per generation batch in groups of 4, 6 per process
    (so group 1 has two rows on each process): the union of the processes' ``[B_local, T]`` advantages is
    ``compute_credit("shape_grpo")`` on the gathered batch (atol 1e-6), the loss gets those rows, and one
    process with the same global batch (generation depends only on the global row and step) gets the same
    advantages (atol 1e-6, rtol 0: same float32 arithmetic on the same batch)."""
    from credo.llm.tiny import build_char_tokenizer

    tokenizer = build_char_tokenizer()
    two = run_worker(tmp_path / "two", 2)
    one = run_worker(tmp_path / "one", 1)
    split_credit = False
    for step in range(2):
        batch = global_batch(two, step)
        assert batch["completion_ids"].shape[0] == 12
        assert [s["generated"][step]["advantages"].shape[0] for s in two] == [6, 6]
        expected = expected_credit(tokenizer, batch, "shape_grpo", {"normalize": "none"})
        torch.testing.assert_close(batch["advantages"], expected.float(), atol=1e-6, rtol=1e-6)
        assert torch.all(batch["advantages"][~batch["completion_mask"].bool()] == 0)
        alone = global_batch(one, step)
        T = alone["completion_ids"].shape[1]
        assert torch.equal(alone["completion_ids"], batch["completion_ids"][:, :T])
        torch.testing.assert_close(alone["advantages"], batch["advantages"][:, :T], atol=1e-6, rtol=0)
        split_credit |= any(
            len({round(float(row[a]), 6) for a, _ in SPANS}) > 1 for row in batch["advantages"]
        )
    assert split_credit
    for saved in two:  # each process's loss got rows of its own generation batches
        pool: dict[tuple[int, ...], list[torch.Tensor]] = {}
        for output in saved["generated"]:
            for ids, mask, adv in zip(
                output["completion_ids"], output["completion_mask"], output["advantages"]
            ):
                pool.setdefault(tuple(ids[mask.bool()].tolist()), []).append(adv[mask.bool()])
        assert len(saved["loss_inputs"]) >= 2
        for inputs in saved["loss_inputs"]:
            assert inputs["advantages"].dim() == 2
            for ids, mask, adv in zip(
                inputs["completion_ids"], inputs["completion_mask"], inputs["advantages"]
            ):
                key = tuple(ids[mask.bool()].tolist())
                assert any(torch.allclose(adv[mask.bool()], a, atol=1e-6) for a in pool[key])
