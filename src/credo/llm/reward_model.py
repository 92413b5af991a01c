"""Reward models from preferences: the Bradley-Terry and Plackett-Luce losses, a causal LM with a
scalar head, its training from JSONL preference data (:mod:`credo.llm.preferences`), and its use as a
reward function of the trainer.

* :func:`bradley_terry_loss`: ``mean_n -log sigmoid(c_n - r_n - m_n)`` (``softplus(-(c - r - m))``,
  stable for any gap); the gradient in ``c_n`` is ``-sigmoid(r_n + m_n - c_n) / N``.
* :func:`plackett_luce_loss`: scores ``[N, K]`` of K answers listed best first; the ranking's
  negative log-likelihood ``mean_n -sum_i log softmax(s[n, i:])[0]`` (K = 2 is Bradley-Terry).
* :class:`RewardModel`: any Hugging Face causal LM's body with a linear head on the hidden state of
  the last token (an EOS appended to every text, right padding), ``score(texts) -> [N]``,
  ``save(dir)`` / ``RewardModel.load(dir)``, ``as_reward_function()`` -> ``fn(prompts, completions,
  **meta) -> list[float]`` scoring ``prompt + completion``.
* :func:`train_reward_model` with a :class:`RewardModelConfig` (YAML via :func:`load_rm_config`),
  evaluated by pairwise accuracy on held-out records.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
import yaml
from torch import Tensor, nn

from credo.llm.config import (
    ModelConfig,
    config_from_dict,
    merge_config_dicts,
    parse_overrides,
    resolve_device,
)
from credo.llm.models import load_policy, seed_everything
from credo.llm.preferences import PreferencePair, Ranking, Record, load_preferences, to_pairs
from credo.llm.tiny import context_length, load_tokenizer, save_tokenizer

_T = TypeVar("_T")
_HEAD_FILE = "reward_head.pt"
_META_FILE = "credo_reward_model.json"


# ------------------------------------------------------------------------------------------ losses


def bradley_terry_loss(
    chosen_scores: Tensor, rejected_scores: Tensor, margin: Tensor | float | None = None
) -> Tensor:
    """Mean over N of ``-log sigmoid(chosen - rejected - margin)`` (``margin``: None, a number or
    ``[N]``), computed as ``softplus(rejected + margin - chosen)``."""
    if chosen_scores.dim() != 1 or rejected_scores.shape != chosen_scores.shape:
        raise ValueError(
            "bradley_terry_loss needs chosen_scores and rejected_scores of one shape [N], got "
            f"{tuple(chosen_scores.shape)} and {tuple(rejected_scores.shape)}"
        )
    if chosen_scores.numel() == 0:
        raise ValueError("bradley_terry_loss needs at least one pair (N >= 1)")
    gap = chosen_scores - rejected_scores
    if margin is not None:
        if isinstance(margin, Tensor) and margin.dim() > 0 and margin.shape != chosen_scores.shape:
            raise ValueError(
                f"margin must be a number or of shape [N]={tuple(chosen_scores.shape)}, got {tuple(margin.shape)}"
            )
        gap = gap - margin
    return nn.functional.softplus(-gap).mean()


def plackett_luce_loss(scores: Tensor) -> Tensor:
    """Mean over N of the Plackett-Luce negative log-likelihood of the order of ``scores [N, K]``
    (column 0 the best answer): ``-sum_{i<K} (s_i - logsumexp(s_i, ..., s_{K-1}))``."""
    if scores.dim() != 2 or scores.shape[0] == 0 or scores.shape[1] < 2:
        raise ValueError(
            f"plackett_luce_loss needs scores of shape [N, K] with N >= 1, K >= 2, got {tuple(scores.shape)}"
        )
    # logsumexp of every suffix: a reversed cumulative logsumexp.
    suffix = torch.logcumsumexp(scores.flip(-1), dim=-1).flip(-1)
    return (suffix - scores).sum(-1).mean()


# ------------------------------------------------------------------------------------ the model


class RewardModel(nn.Module):
    """A causal LM's body plus ``head: Linear(hidden, 1)`` on the last token of each text."""

    def __init__(self, backbone: Any, tokenizer: Any) -> None:
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        hidden = backbone.config.hidden_size
        self.head = nn.Linear(hidden, 1)
        nn.init.normal_(self.head.weight, std=1.0 / math.sqrt(hidden))
        nn.init.zeros_(self.head.bias)
        self.head.to(device=next(backbone.parameters()).device)

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    def encode(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Right-padded ``(input_ids, attention_mask)`` of each text plus EOS, cut from the left to
        the model's context length."""
        if not texts:
            raise ValueError("no texts to score")
        eos = self.tokenizer.eos_token_id
        limit = context_length(self.backbone)
        rows = [[*self.tokenizer(t, add_special_tokens=False)["input_ids"], eos][-limit:] for t in texts]
        T = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
        ids = torch.full((len(rows), T), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), T), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return ids.to(self.device), mask.to(self.device)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Scores ``[N]``: the head on the hidden state of the last non-pad token of each row."""
        body = self.backbone.base_model
        hidden = body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        last = (attention_mask.long() * positions).argmax(-1)
        h = hidden[torch.arange(input_ids.shape[0], device=input_ids.device), last]
        return self.head(h.to(self.head.weight.dtype)).squeeze(-1)

    def score_texts(self, texts: Sequence[str]) -> Tensor:
        """Scores ``[N]`` with gradients (for training)."""
        return self(*self.encode(texts))

    @torch.no_grad()
    def score(self, texts: Sequence[str], batch_size: int = 64) -> Tensor:
        """Scores ``[N]`` (no gradients, eval mode, on the CPU)."""
        was_training = self.training
        self.eval()
        try:
            parts = [
                self.score_texts(texts[i : i + batch_size]).float().cpu()
                for i in range(0, len(texts), batch_size)
            ]
        finally:
            self.train(was_training)
        return torch.cat(parts)

    def as_reward_function(
        self, batch_size: int = 64, name: str = "reward_model"
    ) -> Callable[..., list[float]]:
        """A completion reward function for the trainer: the score of ``prompt + completion``."""

        def reward_model(prompts: list[str], completions: list[str], **meta: Any) -> list[float]:
            texts = [p + c for p, c in zip(prompts, completions, strict=True)]
            return self.score(texts, batch_size).tolist()

        reward_model.__name__ = name
        return reward_model

    def save(self, path: str | os.PathLike[str]) -> Path:
        """The backbone (``save_pretrained``), tokenizer, head weights and a marker file in ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(path)
        save_tokenizer(self.tokenizer, path)
        torch.save(self.head.state_dict(), path / _HEAD_FILE)
        (path / _META_FILE).write_text(json.dumps({"kind": "outcome", "head": _HEAD_FILE}))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> RewardModel:
        path = Path(path)
        if not (path / _META_FILE).is_file():
            raise ValueError(f"{str(path)!r} is not a saved credo reward model (no {_META_FILE})")
        from transformers import AutoModelForCausalLM

        backbone = AutoModelForCausalLM.from_pretrained(path).to(device)
        model = cls(backbone, load_tokenizer(path))
        model.head.load_state_dict(torch.load(path / _HEAD_FILE, map_location=device, weights_only=True))
        model.eval()
        return model


def load_reward_function(path: str | os.PathLike[str], device: str = "cpu") -> Callable[..., list[float]]:
    """A saved reward model as a completion reward function."""
    return RewardModel.load(path, device).as_reward_function()


def pairwise_accuracy(model: RewardModel, pairs: Sequence[PreferencePair], batch_size: int = 64) -> float:
    """Share of pairs with score(chosen) > score(rejected) (a tie counts one half)."""
    if not pairs:
        raise ValueError("pairwise_accuracy needs at least one pair")
    chosen = model.score([p.prompt + p.chosen for p in pairs], batch_size)
    rejected = model.score([p.prompt + p.rejected for p in pairs], batch_size)
    return float(((chosen > rejected).float() + 0.5 * (chosen == rejected).float()).mean())


# ---------------------------------------------------------------------------------- the config


@dataclass
class RMDataConfig:
    """``train_path``: JSONL preferences (schema in :mod:`credo.llm.preferences`). Held-out records:
    ``eval_path``, or else the last ``eval_fraction`` of the shuffled training records.
    ``rankings``: ``"pairs"`` (expand each ranking to its pairs, Bradley-Terry) or ``"listwise"``
    (Plackett-Luce on whole rankings). ``margin_per_point``: margin per rating point for rating data."""

    train_path: str = ""
    eval_path: str | None = None
    eval_fraction: float = 0.2
    rankings: Literal["pairs", "listwise"] = "pairs"
    margin_per_point: float = 0.0


@dataclass
class RMTrainConfig:
    """AdamW for ``steps`` steps on ``batch_size`` random pairs (and, listwise, rankings) a step.
    ``use_margin``: use the data's margins in the Bradley-Terry loss."""

    steps: int = 200
    lr: float = 1e-3
    batch_size: int = 32
    use_margin: bool = True
    max_grad_norm: float = 1.0
    seed: int = 0


@dataclass
class RewardModelConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: RMDataConfig = field(default_factory=RMDataConfig)
    train: RMTrainConfig = field(default_factory=RMTrainConfig)
    output_dir: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"


def validate_rm_config(config: RewardModelConfig) -> None:
    if not config.data.train_path:
        raise ValueError("config key 'data.train_path' is required (a JSONL preference file)")
    if not 0.0 <= config.data.eval_fraction < 1.0:
        raise ValueError(
            f"config key 'data.eval_fraction' must be in [0, 1), got {config.data.eval_fraction}"
        )
    if config.data.margin_per_point < 0:
        raise ValueError(
            f"config key 'data.margin_per_point' must be >= 0, got {config.data.margin_per_point}"
        )
    for key in ("steps", "batch_size", "lr"):
        if getattr(config.train, key) <= 0:
            raise ValueError(f"config key 'train.{key}' must be > 0, got {getattr(config.train, key)}")
    for key, value in (("data.rankings", config.data.rankings), ("device", config.device)):
        choices = {"data.rankings": ("pairs", "listwise"), "device": ("auto", "cpu", "cuda")}[key]
        if value not in choices:
            raise ValueError(f"config key {key!r} must be one of {choices}, got {value!r}")


def load_rm_config(
    path: str | os.PathLike[str] | None = None, overrides: list[str] | dict[str, Any] | None = None
) -> RewardModelConfig:
    """A :class:`RewardModelConfig` from YAML plus ``--key value`` overrides (errors name the key)."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"config file {str(path)!r} does not exist")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise TypeError(f"config file {str(path)!r} must hold a mapping at the top level")
    if overrides:
        extra = parse_overrides(overrides) if isinstance(overrides, list) else overrides
        data = merge_config_dicts(data, extra)
    config: RewardModelConfig = config_from_dict(data, RewardModelConfig)
    validate_rm_config(config)
    return config


# -------------------------------------------------------------------------------- training


@dataclass
class RMTrainResult:
    model: RewardModel
    losses: list[float]
    eval_accuracy: float | None
    train_accuracy: float
    num_train_pairs: int
    num_eval_pairs: int


def split_records(records: Sequence[_T], eval_fraction: float, seed: int) -> tuple[list[_T], list[_T]]:
    """Shuffled records split into (train, held-out); held-out gets ``round(eval_fraction * n)``."""
    shuffled = list(records)
    random.Random(seed).shuffle(shuffled)
    n_eval = round(eval_fraction * len(shuffled))
    return shuffled[: len(shuffled) - n_eval], shuffled[len(shuffled) - n_eval :]


def _pair_loss(model: RewardModel, pairs: Sequence[PreferencePair], use_margin: bool) -> Tensor:
    texts = [p.prompt + p.chosen for p in pairs] + [p.prompt + p.rejected for p in pairs]
    scores = model.score_texts(texts)
    chosen, rejected = scores[: len(pairs)], scores[len(pairs) :]
    margin = None
    if use_margin and any(p.margin for p in pairs):
        margin = torch.tensor([p.margin or 0.0 for p in pairs], device=scores.device, dtype=scores.dtype)
    return bradley_terry_loss(chosen, rejected, margin)


def _ranking_loss(model: RewardModel, rankings: Sequence[Ranking]) -> Tensor:
    k = len(rankings[0].ranking)
    scores = model.score_texts([r.prompt + a for r in rankings for a in r.ranking])
    return plackett_luce_loss(scores.view(len(rankings), k))


def _training_items(
    records: Sequence[Record], config: RewardModelConfig
) -> tuple[list[PreferencePair], dict[int, list[Ranking]]]:
    """Pairs for Bradley-Terry and (listwise) rankings grouped by length K for Plackett-Luce."""
    if config.data.rankings == "pairs":
        return to_pairs(records, config.data.margin_per_point), {}
    rest = [r for r in records if not isinstance(r, Ranking)]
    groups: dict[int, list[Ranking]] = {}
    for r in records:
        if isinstance(r, Ranking):
            groups.setdefault(len(r.ranking), []).append(r)
    return to_pairs(rest, config.data.margin_per_point), groups


def train_reward_model(
    config: RewardModelConfig, backbone: Any = None, tokenizer: Any = None, progress: bool = False
) -> RMTrainResult:
    """Train a reward model on ``config.data`` (pairs: Bradley-Terry; listwise rankings: plus
    Plackett-Luce), report held-out pairwise accuracy, save to ``config.output_dir`` if set."""
    validate_rm_config(config)
    tc = config.train
    seed_everything(tc.seed)
    records = load_preferences(config.data.train_path)
    if config.data.eval_path:
        train_records, eval_records = records, load_preferences(config.data.eval_path)
    else:
        train_records, eval_records = split_records(records, config.data.eval_fraction, tc.seed)
    pairs, ranking_groups = _training_items(train_records, config)
    if not pairs and not ranking_groups:
        raise ValueError(f"{config.data.train_path!r}: no training pairs (ratings all equal per prompt?)")
    eval_pairs = to_pairs(eval_records, config.data.margin_per_point)

    device = resolve_device(config.device)
    backbone, tokenizer = load_policy(config.model, device, "fp32", backbone, tokenizer)
    model = RewardModel(backbone, tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=0.0)
    rng = random.Random(tc.seed)
    model.train()
    losses = []
    for _ in range(tc.steps):
        loss = torch.zeros((), device=device)
        if pairs:
            loss = loss + _pair_loss(model, [rng.choice(pairs) for _ in range(tc.batch_size)], tc.use_margin)
        if ranking_groups:
            group = ranking_groups[rng.choice(sorted(ranking_groups))]
            loss = loss + _ranking_loss(model, [rng.choice(group) for _ in range(tc.batch_size)])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.max_grad_norm)
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    all_train_pairs = to_pairs(train_records, config.data.margin_per_point)
    result = RMTrainResult(
        model=model,
        losses=losses,
        eval_accuracy=pairwise_accuracy(model, eval_pairs) if eval_pairs else None,
        train_accuracy=pairwise_accuracy(model, all_train_pairs[:2048]),
        num_train_pairs=len(all_train_pairs),
        num_eval_pairs=len(eval_pairs),
    )
    if config.output_dir:
        model.save(config.output_dir)
        summary = {k: v for k, v in vars(result).items() if k not in ("model", "losses")}
        summary["final_loss"] = losses[-1]
        (Path(config.output_dir) / "rm_metrics.json").write_text(json.dumps(summary, indent=2))
    return result
