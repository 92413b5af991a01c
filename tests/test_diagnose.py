"""``credo diagnose``: the gradient-quality metrics, the meter on the exact tabular bed (unbiased estimators
within noise, biased ones caught, noise falling with the budget), the CLI on the bed and on a tiny LM,
and one-line errors naming the bad argument."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from credo.cli.diagnose import DEFAULT_ESTIMATORS, LMBench, parse_estimators, policy_gradients
from credo.cli.main import main
from credo.cli.train import resolve_config_path
from credo.cli.wiring import build_trainer
from credo.credit.gradient_quality import (
    cosine,
    gradient_bias,
    half_batch_agreement,
    reference_alignment,
    token_advantage_variance,
)
from credo.llm.config import load_config
from credo.llm.losses import micro_batch_loss
from credo.llm.tiny import save_tokenizer
from credo.tabular.set_policy import default_bed, measure_gradient_quality

# ------------------------------------------------------------------------------------------------
# the pure metrics


def test_cosine_and_agreement_on_known_vectors() -> None:
    a = torch.tensor([1.0, 0.0, 0.0])
    assert cosine(a, torch.tensor([2.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert cosine(a, torch.tensor([0.0, 3.0, 0.0])) == pytest.approx(0.0)
    assert cosine(a, torch.tensor([-1.0, 1.0, 0.0])) == pytest.approx(-(0.5**0.5))
    assert cosine(a, torch.zeros(3)) == 0.0  # no direction
    grads = torch.tensor([[1.0, 0.0], [1.0, 2.0], [0.0, 1.0], [0.0, 1.0]])  # halves: [1, 1] and [0, 1]
    assert half_batch_agreement(grads) == pytest.approx(0.5**0.5)
    shuffled = half_batch_agreement(grads, torch.Generator().manual_seed(0))
    assert -1.0 <= shuffled <= 1.0
    assert reference_alignment(grads, torch.tensor([1.0, 2.0])) == pytest.approx(
        cosine(torch.tensor([0.5, 1.0]), torch.tensor([1.0, 2.0]))
    )
    with pytest.raises(ValueError, match="even number of groups"):
        half_batch_agreement(grads[:3])
    adv = torch.tensor([[1.0, 3.0, 99.0], [2.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert token_advantage_variance(adv, mask) == pytest.approx(1.0)  # var of [1, 3, 2]


def test_gradient_bias_separates_scale_and_direction() -> None:
    g = torch.Generator().manual_seed(0)
    reference = torch.tensor([1.0, 2.0, -1.0, 0.5], dtype=torch.float64)
    noise = 0.3 * torch.randn(4000, 4, generator=g, dtype=torch.float64)
    unbiased = gradient_bias(reference + noise, reference)
    assert unbiased.bias < 2.5 * unbiased.noise and abs(unbiased.scale - 1) < 0.02
    assert 0.3 < unbiased.mean_z2 < 3.0
    shrunk = gradient_bias(0.75 * reference + noise, reference)  # Dr.GRPO-like: right direction, short
    assert shrunk.bias > 10 * shrunk.noise and abs(shrunk.scale - 0.75) < 0.02
    assert shrunk.direction_bias < 3 * shrunk.direction_noise
    tilted = gradient_bias(3.0 * reference + torch.tensor([0.0, 0.0, 0.0, 1.0]) + noise, reference)
    assert tilted.direction_bias > 10 * tilted.direction_noise  # a tilt no step size undoes
    with pytest.raises(ValueError, match="at least 2"):
        gradient_bias(reference[None], reference)


# ------------------------------------------------------------------------------------------------
# the meter on the exact bed


def _by_name(results) -> dict[str, dict]:
    return {r.estimator + ("/raw" if r.options else ""): r.summary() for r in results}


def test_bed_unbiased_estimators_within_noise_and_biased_ones_caught() -> None:
    bed = default_bed("max")
    theta = bed.init_theta(seed=0)
    estimators = {
        "rloo": {},
        "set_splice": {"scale": False},
        "set_rtg": {"scale": False},
        "dr_grpo": {},  # the group mean includes the response itself: E[g] = (G-1)/G grad J
        "shape_grpo": {},  # Shapley shares of the set value: a different direction
    }
    rows = {
        r.estimator: r.summary() for r in measure_gradient_quality(bed, theta, estimators, 16, 4, 300, seed=1)
    }
    for name in ("rloo", "set_splice", "set_rtg"):
        r = rows[name]
        assert r["reference_cosine"] > 0.6, (name, r)
        assert r["bias"] < 2.0 * r["noise"], (name, r)  # an unbiased estimator's bias is about `noise`
        assert abs(r["scale"] - 1.0) < 3 * r["noise"], (name, r)
    dr = rows["dr_grpo"]
    assert dr["bias"] > 4 * dr["noise"] and abs(dr["scale"] - 0.75) < 0.05, dr
    assert dr["direction_bias"] < 3 * dr["direction_noise"], dr  # shorter, not tilted
    shape = rows["shape_grpo"]
    assert shape["direction_bias"] > 5 * shape["direction_noise"], shape
    assert shape["reference_cosine"] < rows["set_splice"]["reference_cosine"] - 0.03, (
        shape,
        rows["set_splice"],
    )
    # the same samples for every estimator: rloo and dr_grpo differ by a constant factor per group
    assert rows["rloo"]["half_cosine"] == pytest.approx(rows["dr_grpo"]["half_cosine"], abs=1e-9)


def test_half_batch_agreement_grows_with_the_budget() -> None:
    bed = default_bed("max")
    theta = bed.init_theta(seed=0)
    estimators = {name: {} for name in DEFAULT_ESTIMATORS}
    small = {
        r.estimator: r.summary() for r in measure_gradient_quality(bed, theta, estimators, 64, 4, 4, seed=2)
    }
    large = {
        r.estimator: r.summary() for r in measure_gradient_quality(bed, theta, estimators, 1024, 4, 4, seed=3)
    }
    for name in DEFAULT_ESTIMATORS:
        assert large[name]["half_cosine"] > small[name]["half_cosine"] + 0.05, (
            name,
            small[name],
            large[name],
        )
        assert large[name]["half_cosine"] > 0.9, (name, large[name])
        assert large[name]["reference_cosine"] > small[name]["reference_cosine"], name


# ------------------------------------------------------------------------------------------------
# the command on the bed, and its errors


def test_cli_tabular_writes_json_markdown_and_png(tmp_path: Path, capsys) -> None:
    out = tmp_path / "diag"
    args = ["diagnose", "tabular", "--groups", "8", "--repeats", "20", "--out", str(out)]
    assert main([*args, "--options", "set_rtg:scale=false"]) == 0
    printed = capsys.readouterr().out
    assert "| set_splice | defaults |" in printed and "| set_rtg | scale=False |" in printed
    report = json.loads((out / "diagnose.json").read_text())
    assert [r["estimator"] for r in report["results"]] == list(DEFAULT_ESTIMATORS)
    assert report["settings"]["groups"] == 8 and report["settings"]["repeats"] == 20
    for r in report["results"]:
        assert -1.0 <= r["half_cosine"] <= 1.0 and -1.0 <= r["reference_cosine"] <= 1.0
        assert r["noise"] > 0 and r["advantage_variance"] >= 0
    assert "| estimator |" in (out / "diagnose.md").read_text()
    assert (out / "diagnose.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--estimators", "rloo,nope"], "--estimators: unknown estimator 'nope'"),
        (["--groups", "7"], "--groups: must be even"),
        (["--group-size", "1"], "--group-size"),
        (["--repeats", "0"], "--repeats"),
        (["--game", "chess"], "--game"),
        (["--estimators", "rloo,gae"], "--estimators: 'gae' needs values"),
        (
            ["--options", "set_rtg:nope=1"],
            "--options 'set_rtg:nope=1': estimator 'set_rtg' has no option 'nope'",
        ),
        (["--options", "set_rtg:scale=3"], "--options 'set_rtg:scale=3'"),
        (["--estimators", "rloo", "--options", "set_rtg:scale=false"], "is not among --estimators"),
        (["--options", "set_rtg"], "name:key=value"),
    ],
)
def test_cli_bad_arguments_are_named_in_one_line(
    extra: list[str], named: str, tmp_path: Path, capsys
) -> None:
    assert main(["diagnose", "tabular", "--out", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert named in err and "\n" not in err, err
    assert not (tmp_path / "diagnose.json").exists()


def test_cli_lm_odd_prompts_fail_before_any_model_is_built(tmp_path: Path, capsys) -> None:
    code = main(["diagnose", "lm", "synthetic_rec_shape_grpo", "--prompts", "3", "--out", str(tmp_path)])
    assert code == 2
    assert "--prompts: must be even" in capsys.readouterr().err
    assert main(["diagnose", "lm", "no_such_config", "--out", str(tmp_path)]) == 2
    assert "no_such_config" in capsys.readouterr().err


def test_parse_estimators_binds_typed_options() -> None:
    parsed = parse_estimators("grpo, shape_grpo", ["shape_grpo:normalize=responses", "grpo:eps=1e-4"])
    assert parsed == {"grpo": {"eps": 1e-4}, "shape_grpo": {"normalize": "responses"}}


# ------------------------------------------------------------------------------------------------
# a language model (the tiny model of the shipped synthetic recommendation config, on the CPU)

TINY = ["--sft.steps", "0", "--rollout.max_new_tokens", "16", "--task.num_prompts", "8"]


def test_lm_policy_gradient_equals_the_trainers_loss_gradient() -> None:
    """``policy_gradients`` (one forward pass shared by several advantage tensors) is minus the gradient
    of the trainer's ``micro_batch_loss`` with the pg loss, for each advantage tensor."""
    config = load_config(
        resolve_config_path("synthetic_rec_shape_grpo"),
        {
            "sft": {"steps": 0},
            "precision": "fp32",
            "output_dir": None,
            "checkpoint_every": 0,
            "rollout": {"prompts_per_step": 2, "group_size": 2, "max_new_tokens": 12},
            "optim": {"micro_batch_size": 3},
        },
    )
    trainer = build_trainer(config)
    bench = LMBench(trainer, seed=0)
    batch, _ = bench.sample(0)
    g = torch.Generator().manual_seed(0)
    device = batch.completion_mask.device
    advantages = [torch.randn(batch.completion_mask.shape, generator=g).to(device) for _ in range(2)]
    normalizer = bench.normalizer([batch.completion_mask])
    ours = policy_gradients(
        bench.model, bench.params, batch, advantages, normalizer, 1.0, 3, trainer.autocast
    )
    for adv, grad in zip(advantages, ours, strict=True):
        bench.model.zero_grad(set_to_none=True)
        loss, _ = micro_batch_loss(bench.model, batch, adv, None, normalizer, config)
        loss.backward()
        expected = torch.cat([p.grad.reshape(-1) for p in bench.params])
        # equal up to float reassociation (micro-batches of 3 rows here, one pass there; TF32 on a GPU)
        assert cosine(grad, -expected) > 1 - 1e-6
        assert abs(float(grad.norm() / expected.norm()) - 1) < 1e-3
    assert cosine(ours[0], ours[1]) < 0.9  # different credit, different gradient


def test_cli_lm_end_to_end_on_the_tiny_model(tmp_path: Path, capsys) -> None:
    out = tmp_path / "lm"
    args = ["diagnose", "lm", "synthetic_rec_shape_grpo", "--prompts", "2", "--group-size", "4"]
    args += ["--repeats", "2", "--reference-factor", "2", "--estimators", "grpo,rloo,set_splice"]
    assert main([*args, "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "| set_splice | defaults |" in printed
    report = json.loads((out / "diagnose.json").read_text())
    s = report["settings"]
    assert (s["mode"], s["prompts"], s["group_size"], s["repeats"]) == ("lm", 2, 4, 2)
    assert s["parameters"] > 1000 and s["reference"].startswith("rloo on 2 independent batches")
    assert [r["estimator"] for r in report["results"]] == ["grpo", "rloo", "set_splice"]
    for r in report["results"]:
        assert math.isfinite(r["half_cosine"]) and math.isfinite(r["reference_cosine"])
        assert r["advantage_variance"] >= 0 and r["gradient_norm"] >= 0
    assert "cos to reference" in (out / "diagnose.md").read_text()
    assert (out / "diagnose.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_lm_from_a_saved_start(tmp_path: Path, capsys) -> None:
    """``--model-dir``: a start saved as ``credo compare`` saves it (model and tokenizer), no warm-up."""
    config = load_config(resolve_config_path("synthetic_rec_shape_grpo"), {"sft": {"steps": 0}})
    trainer = build_trainer(config)
    start = tmp_path / "start"
    trainer.unwrapped_model.save_pretrained(start)
    save_tokenizer(trainer.tokenizer, start)
    out = tmp_path / "lm"
    args = ["diagnose", "lm", "synthetic_rec_shape_grpo", "--model-dir", str(start), "--prompts", "2"]
    args += ["--group-size", "2", "--repeats", "1", "--reference-factor", "1", "--estimators", "rloo"]
    assert main([*args, "--out", str(out), "--sft.steps", "500", *TINY[2:]]) == 0  # 500: never run
    report = json.loads((out / "diagnose.json").read_text())
    assert report["settings"]["model_dir"] == str(start)
    assert report["settings"]["reference_self_cosine"] is None  # one reference batch: no halves
    assert main([*args[:3], "--model-dir", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "--model-dir" in capsys.readouterr().err
