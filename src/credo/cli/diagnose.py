"""``credo diagnose``: which credit gives the better policy gradient for the same samples?

A gradient-quality meter for credit estimators at a FIXED policy: no training, no learning curves.
One batch of N prompts x G answers is sampled, and every estimator turns the SAME samples into
advantages and a policy-gradient estimate (an equal budget; the differences come from the credit
alone). Per estimator:

* half-batch cos: the cosine between the gradients of the two halves of the prompts (independent
  estimates of the same expected gradient: higher = less noise; scale free);
* cos to reference: the cosine between the full estimate and a reference gradient (noise and bias in
  direction): the EXACT gradient of J on the tabular bed; on a language model the gradient of an
  unbiased estimator (``rloo``) on an independent batch ``--reference-factor`` (8) times larger;
* adv. var: the variance of the advantages over the response tokens;
* on the bed also the bias of the expected gradient (from the R repeats pooled): ``scale`` (its length
  along grad J: 1 when unbiased, 0.75 for Dr.GRPO at G = 4), ``bias`` ``|E g - grad J| / |grad J|``,
  ``dir. bias`` (the part orthogonal to grad J relative to the part along it: the bias that no step
  size can undo) and ``noise`` (the bias that chance alone shows).

    credo diagnose tabular [--game max] [--groups 16] [--group-size 4] [--repeats 400]
                           [--estimators grpo,rloo,...] [--options set_rtg:scale=false] [--seed 0]
                           [--out runs/diagnose]
    credo diagnose lm CONFIG [--model-dir DIR] [--prompts 16] [--group-size G] [--repeats 3]
                           [--reference-factor 8] [--estimators ...] [--options ...] [--seed 0]
                           [--out DIR] [--key value ...]   (train-config overrides, as `credo train`)

``lm`` builds the trainer of CONFIG (``credo.cli.wiring.build_trainer``), runs its SFT warm-up, or
loads a saved start with ``--model-dir`` (such as a comparison's ``runs/x/start``), samples with the
trainer's sampler, scores with its reward functions, and takes the gradient of the policy term
``-sum A log pi`` with the trainer's loss aggregation over the policy's trainable parameters (the
KL-in-loss and entropy terms do not depend on the credit and are left out; a KL penalty in the reward
is part of the credit, as in training). Writes ``diagnose.json``, ``diagnose.md`` and
``diagnose.png`` into ``--out`` and prints the table (``docs/diagnose.md``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM

from credo.cli.errors import UsageError, config_errors
from credo.cli.train import resolve_config_path
from credo.cli.wiring import build_trainer
from credo.credit import ESTIMATORS, CreditBatch, compute_credit, get_estimator, kl_reward_penalty
from credo.credit.gradient_quality import cosine, token_advantage_variance
from credo.credit.registry import bind_options
from credo.llm.config import load_config, merge_config_dicts, parse_overrides
from credo.llm.losses import LossNormalizer, aggregate, batch_normalizer, policy_gradient_loss
from credo.llm.models import seed_everything, step_seed
from credo.llm.prompts import prompt_meta, prompt_text
from credo.llm.rewards import compute_rewards, credit_batch
from credo.llm.rollout import RolloutBatch, completion_logits, sequence_logprobs, token_logprobs_from_logits
from credo.llm.tiny import load_tokenizer
from credo.tabular.set_policy import GAMES, default_bed, measure_gradient_quality

DEFAULT_ESTIMATORS = ("grpo", "rloo", "shape_grpo", "set_splice", "set_rtg", "set_coma")
BED_FIELDS = {"candidate_scores", "candidate_spans", "candidate_game"}  # what the tabular bed's batch has


# ----------------------------------------------------------------------------------------------------
# arguments


def parse_estimators(names: str, options: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """``"a,b,c"`` and ``["name:key=value", ...]`` -> ``{name: options}``, checked against the registry
    (:func:`~credo.credit.registry.bind_options`); a :class:`UsageError` naming the argument otherwise."""
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    if not chosen:
        raise UsageError("--estimators: give at least one estimator name")
    for name in chosen:
        if name not in ESTIMATORS:
            raise UsageError(
                f"--estimators: unknown estimator {name!r}; known: {', '.join(sorted(ESTIMATORS))}"
            )
    if len(set(chosen)) != len(chosen):
        raise UsageError(f"--estimators: an estimator is named twice in {names!r}")
    result: dict[str, dict[str, Any]] = {name: {} for name in chosen}
    for spec in options:
        name, sep, assignment = spec.partition(":")
        key, eq, raw = assignment.partition("=")
        if not sep or not eq or not key.strip():
            raise UsageError(f"--options {spec!r}: write it as name:key=value (e.g. set_rtg:scale=false)")
        name, key = name.strip(), key.strip()
        if name not in result:
            raise UsageError(f"--options {spec!r}: estimator {name!r} is not among --estimators ({names})")
        value = yaml.safe_load(raw) if raw.strip() else raw
        try:
            result[name].update(bind_options(name, {key: value}))
        except ValueError as error:  # "config key 'credit.options.k': <why>": keep the why
            raise UsageError(f"--options {spec!r}: {str(error).split(': ', 1)[-1]}") from None
    return result


def _check_budget(
    groups_flag: str, groups: int, group_size: int, estimators: dict[str, dict[str, Any]]
) -> None:
    if groups < 2 or groups % 2:
        raise UsageError(
            f"{groups_flag}: must be even and >= 2 (two independent halves of N/2), got {groups}"
        )
    for name in estimators:
        spec = get_estimator(name)
        if group_size < spec.min_group_size:
            raise UsageError(
                f"--group-size: estimator {name!r} needs at least {spec.min_group_size} answers per prompt, "
                f"got {group_size}"
            )


def _positive(flag: str, value: int) -> None:
    if value < 1:
        raise UsageError(f"{flag}: must be >= 1, got {value}")


# ----------------------------------------------------------------------------------------------------
# the tabular bed


def diagnose_tabular(args: argparse.Namespace) -> dict[str, Any]:
    estimators = parse_estimators(args.estimators, args.options or [])
    _check_budget("--groups", args.groups, args.group_size, estimators)
    _positive("--repeats", args.repeats)
    if args.game not in GAMES:
        raise UsageError(f"--game: must be one of {', '.join(GAMES)}, got {args.game!r}")
    for name in estimators:
        missing = sorted(set(get_estimator(name).requires) - BED_FIELDS)
        if missing:
            raise UsageError(
                f"--estimators: {name!r} needs {', '.join(missing)}, which the tabular bed has not"
            )
    bed = default_bed(args.game)
    theta = bed.init_theta(seed=args.seed)
    started = time.perf_counter()
    results = measure_gradient_quality(
        bed, theta, estimators, args.groups, args.group_size, args.repeats, seed=args.seed, progress=True
    )
    settings = {
        "mode": "tabular",
        "game": args.game,
        "users": bed.num_users,
        "items": bed.num_items,
        "slots": bed.num_slots,
        "parameters": bed.num_params,
        "groups": args.groups,
        "group_size": args.group_size,
        "repeats": args.repeats,
        "seed": args.seed,
        "reference": "exact gradient of J (enumeration)",
        "wall_time_s": round(time.perf_counter() - started, 2),
    }
    return {"settings": settings, "results": [r.summary() for r in results]}


# ----------------------------------------------------------------------------------------------------
# a language model


def _flat_gradient(parts: Sequence[Tensor | None], params: Sequence[Tensor]) -> Tensor:
    return torch.cat(
        [
            (torch.zeros_like(p, dtype=torch.float32) if g is None else g.float()).reshape(-1)
            for g, p in zip(parts, params, strict=True)
        ]
    )


def policy_gradients(
    model: Any,
    params: Sequence[Tensor],
    batch: RolloutBatch,
    advantages: Sequence[Tensor],
    normalizer: LossNormalizer,
    temperature: float,
    micro_batch_size: int,
    precision: Callable[[], Any],
) -> list[Tensor]:
    """The flattened policy gradients ``grad sum_t A_t log pi(y_t)`` (aggregated with ``normalizer``),
    one per advantage tensor ``[B, L]`` of ``advantages``, over the rows of ``batch``: one forward pass
    per micro-batch shared by all of them. Float32 vectors over ``params``, the ascent direction."""
    device = batch.completion_ids.device
    grads = [
        torch.zeros(sum(p.numel() for p in params), dtype=torch.float32, device=device) for _ in advantages
    ]
    for idx in torch.arange(batch.batch_size, device=device).split(micro_batch_size):
        mb = batch.rows(idx)
        with precision():
            logits = completion_logits(
                model, (mb.prompt_ids, mb.prompt_mask, mb.completion_ids, mb.completion_mask)
            )
        logp = token_logprobs_from_logits(logits, mb.completion_ids, temperature)
        for e, adv in enumerate(advantages):
            adv_mb = adv.to(device)[idx].float()
            loss = aggregate(policy_gradient_loss(logp, adv_mb), mb.completion_mask, normalizer)
            parts = torch.autograd.grad(loss, params, retain_graph=e < len(advantages) - 1, allow_unused=True)
            grads[e] -= _flat_gradient(parts, params)
    return grads


class LMBench:
    """A trainer's policy at a fixed state, with what one rollout batch needs: its sampler, rewards,
    KL penalty and loss settings."""

    def __init__(self, trainer: Any, seed: int) -> None:
        self.trainer = trainer
        self.config = trainer.config
        self.seed = seed
        self.model = trainer.unwrapped_model
        self.params = [p for p in self.model.parameters() if p.requires_grad]

    def sample(self, step: int) -> tuple[RolloutBatch, CreditBatch]:
        """The rollout of the prompts of training step ``step`` (seeded by ``seed`` and ``step``), scored
        as :meth:`Trainer.step` scores it: rewards, the KL penalty in the reward, the credit batch."""
        trainer, cfg = self.trainer, self.config
        lc = cfg.loss
        seed_everything(step_seed(self.seed, step, 0))
        prompts = trainer.prompts_for_step(step)
        batch = trainer.sampler.sample([prompt_text(p) for p in prompts])
        batch.meta = prompt_meta(prompts, cfg.rollout.group_size)
        scored = compute_rewards(trainer.reward_fns, batch, trainer.tokenizer)
        token_rewards = scored.token_rewards
        if trainer.reference is not None and lc.kl_beta > 0 and lc.kl_mode == "reward":
            with torch.no_grad():
                batch.ref_logprobs = sequence_logprobs(
                    trainer.reference, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                    batch.completion_mask, cfg.rollout.temperature, cfg.optim.micro_batch_size, trainer.autocast,
                )  # fmt: skip
            penalty = kl_reward_penalty(batch.logprobs, batch.ref_logprobs, lc.kl_beta, lc.kl_kind)
            token_rewards = penalty if token_rewards is None else token_rewards + penalty
        return batch, credit_batch(scored, batch, token_rewards)

    def gradients(
        self, batch: RolloutBatch, advantages: Sequence[Tensor], rows: Tensor, normalizer: LossNormalizer
    ) -> list[Tensor]:
        cfg = self.config
        return policy_gradients(
            self.model, self.params, batch.rows(rows), [a[rows] for a in advantages], normalizer,
            cfg.rollout.temperature, cfg.optim.micro_batch_size, self.trainer.autocast,
        )  # fmt: skip

    def normalizer(self, masks: Sequence[Tensor]) -> LossNormalizer:
        tokens = float(sum(float(m.sum()) for m in masks))
        rows = float(sum(m.shape[0] for m in masks))
        return batch_normalizer(self.config.loss.aggregation, masks[0], 1, tokens, rows)


def _check_fields(name: str, batch: CreditBatch) -> None:
    missing = [f for f in get_estimator(name).requires if getattr(batch, f) is None]
    if missing:
        raise UsageError(
            f"--estimators: {name!r} needs batch.{', batch.'.join(missing)}, which this config's rewards do not "
            "give (an estimator that needs a critic's values cannot be diagnosed here)"
        )


def _lm_config(args: argparse.Namespace, overrides: list[str]) -> Any:
    """The train config of CONFIG with the overrides, and what diagnose needs: no output folder (never
    resume from, or write to, a training run's folder), N prompts per batch, G answers per prompt."""
    forced: dict[str, Any] = {
        "output_dir": None,
        "checkpoint_every": 0,
        "seed": args.seed,
        "rollout": {"prompts_per_step": args.prompts},
    }
    if args.group_size is not None:
        forced["rollout"]["group_size"] = args.group_size
    with config_errors(f"CONFIG {args.config!r}"):  # the file, and the line or key at fault
        extra = merge_config_dicts(parse_overrides(overrides), forced)
        return load_config(resolve_config_path(args.config), extra)


def _lm_trainer(config: Any, model_dir: str | None) -> Any:
    """The config's trainer: after its SFT warm-up, or starting from the model saved in ``model_dir``."""
    if model_dir is None:
        trainer = build_trainer(config)
        trainer.warm_up()
        return trainer
    start = Path(model_dir)
    if not (start / "config.json").exists():
        raise UsageError(f"--model-dir: {str(start)!r} holds no saved model (config.json)")
    config.sft.steps = 0  # the saved start is already warmed up
    model, tokenizer = AutoModelForCausalLM.from_pretrained(start), load_tokenizer(start)
    return build_trainer(config, model=model, tokenizer=tokenizer)


def diagnose_lm(args: argparse.Namespace, overrides: list[str]) -> dict[str, Any]:
    estimators = parse_estimators(args.estimators, args.options or [])
    _positive("--prompts", args.prompts)
    _positive("--repeats", args.repeats)
    _positive("--reference-factor", args.reference_factor)
    if args.reference_estimator not in ESTIMATORS:
        raise UsageError(f"--reference-estimator: unknown estimator {args.reference_estimator!r}")
    for name in [*estimators, args.reference_estimator]:
        if "values" in get_estimator(name).requires:
            raise UsageError(f"--estimators: {name!r} needs a critic's values, which diagnose does not train")
    started = time.perf_counter()
    config = _lm_config(args, overrides)
    G = config.rollout.group_size
    _check_budget("--prompts", args.prompts, G, {**estimators, args.reference_estimator: {}})
    trainer = _lm_trainer(config, args.model_dir)
    bench = LMBench(trainer, args.seed)
    N, R, F = args.prompts, args.repeats, args.reference_factor
    names = list(estimators)
    records: dict[str, dict[str, list[float]]] = {
        n: {"half": [], "ref": [], "var": [], "norm": []} for n in names
    }
    # sampling in training-step order (the prompt order is a function of the step): the R measured
    # batches (steps 0 .. R-1), then the reference's F further batches of N prompts (steps R .. R+F-1)
    with tqdm(total=2 * (R + F), desc="diagnose", unit="batch") as bar:
        measured = []
        for r in range(R):
            batch, credit_batch = bench.sample(r)
            for name in names:
                _check_fields(name, credit_batch)
            advantages = [compute_credit(n, credit_batch, **estimators[n]).advantages.float() for n in names]
            measured.append((batch, advantages))
            bar.update(1)
        chunks = []
        for j in range(F):
            batch, credit_batch = bench.sample(R + j)
            _check_fields(args.reference_estimator, credit_batch)
            chunks.append((batch, compute_credit(args.reference_estimator, credit_batch).advantages.float()))
            bar.update(1)
        # the reference gradient: one normaliser over its F batches, so the parts add up
        ref_norm = bench.normalizer([b.completion_mask for b, _ in chunks])
        ref_parts = []
        for b, a in chunks:
            ref_parts.append(
                bench.gradients(b, [a], torch.arange(b.batch_size, device=a.device), ref_norm)[0]
            )
            bar.update(1)
        reference = torch.stack(ref_parts).sum(dim=0)
        half_f = F // 2
        ref_self = (
            cosine(torch.stack(ref_parts[:half_f]).sum(0), torch.stack(ref_parts[half_f:]).sum(0))
            if F >= 2
            else None
        )
        del ref_parts, chunks
        # each measured batch: every estimator's gradient on its two halves of N/2 prompts
        for batch, advantages in measured:
            rows = torch.arange(batch.batch_size, device=batch.completion_ids.device)
            first, second = rows[: N // 2 * G], rows[N // 2 * G :]
            normalizer = bench.normalizer([batch.completion_mask])
            grads_a = bench.gradients(batch, advantages, first, normalizer)
            grads_b = bench.gradients(batch, advantages, second, normalizer)
            for name, adv, ga, gb in zip(names, advantages, grads_a, grads_b, strict=True):
                rec = records[name]
                rec["half"].append(cosine(ga, gb))
                rec["ref"].append(cosine(ga + gb, reference))
                rec["var"].append(token_advantage_variance(adv, batch.completion_mask))
                rec["norm"].append(float((ga + gb).norm()))
            del grads_a, grads_b
            bar.update(1)
    results = []
    for name in names:
        rec = records[name]
        half, half_sd = _mean_std(rec["half"])
        ref, ref_sd = _mean_std(rec["ref"])
        results.append(
            {
                "estimator": name,
                "options": estimators[name],
                "half_cosine": half,
                "half_cosine_std": half_sd,
                "reference_cosine": ref,
                "reference_cosine_std": ref_sd,
                "advantage_variance": _mean_std(rec["var"])[0],
                "gradient_norm": _mean_std(rec["norm"])[0],
            }
        )
    cfg = trainer.config
    settings = {
        "mode": "lm",
        "config": args.config,
        "model_dir": args.model_dir,
        "overrides": " ".join(overrides) or None,
        "estimator_of_config": cfg.credit.estimator,
        "prompts": N,
        "group_size": G,
        "repeats": R,
        "reference": f"{args.reference_estimator} on {F} independent batches of {N} prompts x {G}",
        "reference_self_cosine": ref_self,
        "aggregation": cfg.loss.aggregation,
        "parameters": sum(p.numel() for p in bench.params),
        "device": str(trainer.device),
        "seed": args.seed,
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    if all(v == 0.0 for rec in records.values() for v in rec["norm"]):
        settings["warning"] = (
            "every advantage was zero: each group's answers got equal rewards (no signal at this policy "
            "state; a longer warm-up, or a GPU run with --precision fp32, may help)"
        )
    trainer.close()
    return {"settings": settings, "results": results}


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


# ----------------------------------------------------------------------------------------------------
# outputs


def _options_text(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items()) or "defaults"


def _num(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def markdown_table(report: dict[str, Any]) -> str:
    """The results as a Markdown table (columns by mode)."""
    tabular = report["settings"]["mode"] == "tabular"
    ref = "cos to exact grad J" if tabular else "cos to reference"
    head = ["estimator", "options", "half-batch cos", ref, "adv. var"]
    head += ["scale", "bias", "dir. bias", "noise"] if tabular else ["grad norm"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in report["results"]:
        cells = [
            r["estimator"],
            _options_text(r["options"]),
            f"{_num(r['half_cosine'])} ± {_num(r['half_cosine_std'])}",
            f"{_num(r['reference_cosine'])} ± {_num(r['reference_cosine_std'])}",
            _num(r["advantage_variance"]),
        ]
        if tabular:
            cells += [_num(r.get("scale")), _num(r.get("bias")), _num(r.get("direction_bias"))]
            cells += [f"{_num(r.get('noise'))} / {_num(r.get('direction_noise'))}"]
        else:
            cells += [f"{r['gradient_norm']:.3g}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _settings_text(settings: dict[str, Any]) -> str:
    return "\n".join(f"- {k}: {v}" for k, v in settings.items())


def _markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    title = "tabular set policy" if s["mode"] == "tabular" else f"language model ({s['config']})"
    notes = (
        "half-batch cos: cosine between the gradients of two independent halves of the prompts (higher = "
        "less noise), mean ± sd over the repeats. cos to reference: the full batch's gradient against the "
        "reference. adv. var: per-token advantage variance."
    )
    if s["mode"] == "lm":
        notes += (
            " reference_self_cosine: the cosine between the reference's two halves (how much of the "
            "reference is signal: with a noisy reference every cos to reference is small)."
        )
    if s["mode"] == "tabular":
        notes += (
            " scale, bias, dir. bias: the expected gradient against grad J (1, 0, 0 when unbiased); noise: "
            "the bias / dir. bias that chance alone shows with these samples."
        )
    return (
        f"# credo diagnose: {title}\n\n{_settings_text(s)}\n\n{markdown_table(report)}\n{notes}\n"
        "\n![gradient quality](diagnose.png)\n"
    )


def plot_report(report: dict[str, Any], path: Path) -> Path:
    """Bars per estimator: half-batch cos and cos to the reference (error bars: sd over repeats); on the
    bed also the direction bias against its noise level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["results"]
    tabular = report["settings"]["mode"] == "tabular"
    names = [r["estimator"] + ("*" if r["options"] else "") for r in rows]
    x = range(len(rows))
    panels = 3 if tabular else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 3.6), squeeze=False)
    specs = [
        ("half_cosine", "half-batch cos (noise)"),
        ("reference_cosine", "cos to exact grad J" if tabular else "cos to reference"),
    ]
    for ax, (key, title) in zip(axes[0], specs, strict=False):
        ax.bar(x, [r[key] for r in rows], yerr=[r[key + "_std"] for r in rows], capsize=3, color="tab:blue")
        ax.set_title(title)
        ax.set_ylim(min(0.0, *(r[key] for r in rows)), 1.0)
    if tabular:
        ax = axes[0][2]
        values = [r.get("direction_bias", math.nan) for r in rows]
        ax.bar(x, [v if math.isfinite(v) else 0.0 for v in values], color="tab:red")
        ax.plot(x, [r.get("direction_noise", math.nan) for r in rows], "k_", markersize=14, label="noise")
        ax.set_title("direction bias of E[g]")
        ax.legend(fontsize=8)
    for ax in axes[0]:
        ax.set_xticks(list(x))
        ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    s = report["settings"]
    budget = f"N={s.get('groups', s.get('prompts'))} x G={s['group_size']}, R={s['repeats']}"
    fig.suptitle(f"credo diagnose {s['mode']}: {budget}  (* = options set)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    return x


def write_report(report: dict[str, Any], out: Path) -> dict[str, Path]:
    """``diagnose.json``, ``diagnose.md`` and ``diagnose.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "diagnose.json", "markdown": out / "diagnose.md", "plot": out / "diagnose.png"}
    paths["json"].write_text(json.dumps(_jsonable(report), indent=2) + "\n")
    paths["markdown"].write_text(_markdown(report))
    plot_report(report, paths["plot"])
    return paths


# ----------------------------------------------------------------------------------------------------
# the command


def _add_common(parser: argparse.ArgumentParser, default_out: str) -> None:
    parser.add_argument(
        "--estimators",
        default=",".join(DEFAULT_ESTIMATORS),
        help=f"comma-separated credit estimators (default {','.join(DEFAULT_ESTIMATORS)})",
    )
    parser.add_argument(
        "--options",
        action="append",
        metavar="NAME:KEY=VALUE",
        help="an estimator option (repeatable), e.g. set_rtg:scale=false; default: the registry's defaults",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the policy state and the samples")
    parser.add_argument("--out", default=default_out, help=f"output folder (default {default_out})")


def _add_lm_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-dir", help="a saved starting policy (e.g. a comparison's runs/x/start): no SFT"
    )
    parser.add_argument("--prompts", type=int, default=16, help="N, prompts per batch, even (default 16)")
    parser.add_argument("--group-size", type=int, help="G, answers per prompt (default: the config's)")
    parser.add_argument("--repeats", type=int, default=3, help="R, independent batches (default 3)")
    parser.add_argument(
        "--reference-factor", type=int, default=8, help="the reference batch is this many times N (default 8)"
    )
    parser.add_argument("--reference-estimator", default="rloo", help="the unbiased reference (default rloo)")
    _add_common(parser, "runs/diagnose-lm")


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "diagnose",
        help="measure the gradient quality of credit estimators at a fixed policy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    modes = parser.add_subparsers(dest="mode", required=True, metavar="{tabular,lm}")
    tab = modes.add_parser("tabular", help="on the exact tabular set-policy bed (CPU, seconds)")
    tab.add_argument("--game", default="max", help=f"the bed's set utility: {', '.join(GAMES)} (default max)")
    tab.add_argument("--groups", type=int, default=16, help="N, prompts per batch, even (default 16)")
    tab.add_argument("--group-size", type=int, default=4, help="G, answers per prompt (default 4)")
    tab.add_argument("--repeats", type=int, default=400, help="R, independent batches (default 400)")
    _add_common(tab, "runs/diagnose")
    tab.set_defaults(func=run, overrides=[])
    lm = modes.add_parser("lm", help="on a language model: a train config's policy after its warm-up")
    lm.add_argument("config", help="a train YAML file, or the name of a shipped train config")
    _add_lm_flags(lm)
    lm.add_argument("overrides", nargs=argparse.REMAINDER, help="train-config overrides: --key value")
    lm.set_defaults(func=run)


def _split_lm_flags(args: argparse.Namespace) -> list[str]:
    """Flags written after CONFIG land among the overrides: take this command's own back out."""
    own = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    _add_lm_flags(own)
    own.set_defaults(**{k: v for k, v in vars(args).items() if k != "overrides"})
    parsed, rest = own.parse_known_args(list(args.overrides or []))
    for key, value in vars(parsed).items():
        setattr(args, key, value)
    return rest


def run(args: argparse.Namespace) -> int:
    try:
        if args.mode == "tabular":
            report = diagnose_tabular(args)
        else:
            overrides = _split_lm_flags(args)
            report = diagnose_lm(args, overrides)
    except UsageError as error:
        print(f"credo diagnose {args.mode}: error: {error}", file=sys.stderr)
        return 2
    paths = write_report(report, Path(args.out))
    print(markdown_table(report))
    if "warning" in report["settings"]:
        print(f"warning: {report['settings']['warning']}", file=sys.stderr)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0
