"""A tabular set policy with an exact gradient: the test bed of set-valued credit, and its gradient meter.

A tabular policy writes a list of items slot by slot, a hidden user values the set, and J(theta) =
E[v] and its gradient are known exactly by enumerating every answer. Sampled groups of answers become
a :class:`~credo.credit.CreditBatch` with one token per slot action (the stop included) and candidate
spans of length 1, so the REINFORCE estimate sum_t A_t grad log pi(a_t) of any credit estimator can be
compared with the exact gradient (``tests/credit/test_causal_credit.py``: unbiasedness of
``set_splice`` and ``set_rtg``), and :func:`measure_gradient_quality` meters the estimators' gradients
at a fixed policy (``credo diagnose tabular``, ``docs/diagnose.md``).

The policy: I items, K slots; at slot k the action is an item or STOP (index I), drawn from
softmax(theta_slot[u, k] + theta_prev[prev]) where u is the user (the prompt) and prev is the previous
slot's item (I for "no previous item"). After K items the answer stops by force (no stop token).
Items may repeat. theta is one flat vector: theta_slot [U, K, I+1] then theta_prev [I+1, I+1].

Games (the set utility v, for user u and picked items S):
  * ``"max"``: max_{i in S} util[u, i] (0 for the empty answer);
  * ``"max_bonus"``: the max plus, per picked item, ``bonus`` if util > ``bonus_threshold`` and
    minus ``cost`` (a count bonus with a length cost, so stopping matters);
  * ``"coverage"``: sum_c topic_weights[u, c] [some i in S covers topic c].
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from credo.credit import CreditBatch, compute_credit
from credo.credit.games import AdditiveGame, CoverageGame, MaxGame, SetGame
from credo.credit.gradient_quality import (
    gradient_bias,
    half_batch_agreement,
    reference_alignment,
    token_advantage_variance,
)
from credo.threads import one_thread

__all__ = [
    "DEFAULT_TOPICS",
    "DEFAULT_TOPIC_WEIGHTS",
    "DEFAULT_UTILITIES",
    "GAMES",
    "EstimatorQuality",
    "Samples",
    "SetPolicyBed",
    "default_bed",
    "gradient_check",
    "measure_gradient_quality",
]

GAMES = ("max", "max_bonus", "coverage")


@dataclass(frozen=True)
class SetPolicyBed:
    utilities: Tensor  # [U, I] float64
    num_slots: int  # K
    game: str = "max"
    topics: Tensor | None = None  # [I, C] bool, for "coverage"
    topic_weights: Tensor | None = None  # [U, C] float64, for "coverage"
    bonus: float = 0.3
    bonus_threshold: float = 0.5
    cost: float = 0.1

    def __post_init__(self) -> None:
        if self.game not in GAMES:
            raise ValueError(f"game must be one of {GAMES}")
        if self.game == "coverage" and (self.topics is None or self.topic_weights is None):
            raise ValueError("the coverage game needs topics and topic_weights")

    # -- shapes ------------------------------------------------------------------------------------
    @property
    def num_users(self) -> int:
        return int(self.utilities.shape[0])

    @property
    def num_items(self) -> int:
        return int(self.utilities.shape[1])

    @property
    def stop(self) -> int:
        return self.num_items

    @property
    def num_params(self) -> int:
        U, K, A = self.num_users, self.num_slots, self.num_items + 1
        return U * K * A + A * A

    def split(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        U, K, A = self.num_users, self.num_slots, self.num_items + 1
        return theta[: U * K * A].view(U, K, A), theta[U * K * A :].view(A, A)

    def logits(self, theta: Tensor, user: Tensor, slot: Tensor, prev: Tensor) -> Tensor:
        """``[..., I+1]`` action logits at the states (user, slot, prev)."""
        theta_slot, theta_prev = self.split(theta)
        return theta_slot[user, slot] + theta_prev[prev]

    def init_theta(self, seed: int = 0, scale: float = 0.7) -> Tensor:
        g = torch.Generator().manual_seed(seed)
        return scale * torch.randn(self.num_params, generator=g, dtype=torch.float64)

    # -- the set utility, plainly ------------------------------------------------------------------
    def value(self, user: int, items: tuple[int, ...]) -> float:
        util = [float(self.utilities[user, i]) for i in items]
        if self.game == "coverage":
            assert self.topics is not None and self.topic_weights is not None
            C = self.topics.shape[1]
            return sum(
                float(self.topic_weights[user, c])
                for c in range(C)
                if any(bool(self.topics[i, c]) for i in items)
            )
        best = max(util, default=0.0)
        if self.game == "max":
            return best
        return best + sum((self.bonus if u > self.bonus_threshold else 0.0) - self.cost for u in util)

    # -- exact objective ---------------------------------------------------------------------------
    def answers(self) -> list[tuple[int, ...]]:
        """Every answer: item sequences of length 0..K."""
        return [
            seq
            for m in range(self.num_slots + 1)
            for seq in itertools.product(range(self.num_items), repeat=m)
        ]

    def exact_objective(self, theta: Tensor) -> Tensor:
        """J(theta) = mean_u sum_answers pi(answer | u) v(u, answer), by enumeration (differentiable)."""
        K, stop = self.num_slots, self.stop
        total = torch.zeros((), dtype=theta.dtype)
        for user in range(self.num_users):
            for seq in self.answers():
                logp = torch.zeros((), dtype=theta.dtype)
                prev = stop
                for k, item in enumerate(seq):
                    logp = logp + torch.log_softmax(self.logits(theta, user, k, prev), -1)[item]
                    prev = item
                if len(seq) < K:
                    logp = logp + torch.log_softmax(self.logits(theta, user, len(seq), prev), -1)[stop]
                total = total + logp.exp() * self.value(user, seq)
        return total / self.num_users

    def exact_gradient(self, theta: Tensor) -> Tensor:
        theta = theta.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.exact_objective(theta), theta)
        return grad

    # -- sampling ----------------------------------------------------------------------------------
    def sample(self, theta: Tensor, n_groups: int, group_size: int, generator: torch.Generator) -> Samples:
        """``n_groups`` prompts (users drawn uniformly), ``group_size`` answers each, prompt-major."""
        K, stop = self.num_slots, self.stop
        users = torch.randint(self.num_users, (n_groups,), generator=generator)
        user = users.repeat_interleave(group_size)  # [B]
        B = user.shape[0]
        actions = torch.full((B, K), -1, dtype=torch.long)
        prevs = torch.full((B, K), stop, dtype=torch.long)
        active = torch.ones(B, dtype=torch.bool)
        prev = torch.full((B,), stop, dtype=torch.long)
        for k in range(K):
            probs = torch.softmax(self.logits(theta, user, torch.full_like(user, k), prev), -1)
            action = torch.multinomial(probs, 1, generator=generator)[:, 0]
            actions[:, k] = torch.where(active, action, actions[:, k])
            prevs[:, k] = prev
            picked = active & (action != stop)
            prev = torch.where(picked, action, prev)
            active = picked
        return Samples(users=users, user=user, actions=actions, prevs=prevs, group_size=group_size, stop=stop)

    def game_of(self, samples: Samples) -> tuple[SetGame, Tensor]:
        """The batch's game (present = the picked slots) and the candidate scores (util, 0 elsewhere)."""
        picked = samples.picked
        items = torch.where(picked, samples.actions, 0)
        zero = torch.zeros((), dtype=self.utilities.dtype)
        scores = torch.where(picked, self.utilities[samples.user[:, None], items], zero)
        if self.game == "max":
            return MaxGame(scores, picked), scores
        if self.game == "max_bonus":
            bonus = (scores > self.bonus_threshold).to(scores.dtype) * self.bonus - self.cost
            return MaxGame(scores, picked) + AdditiveGame(torch.where(picked, bonus, zero), picked), scores
        assert self.topics is not None and self.topic_weights is not None
        covers = self.topics[items] & picked[..., None]
        return CoverageGame(covers, self.topic_weights[samples.user], picked), scores

    def batch_of(self, samples: Samples) -> CreditBatch:
        """One token per slot action (items and the stop), candidate spans of length 1."""
        K = self.num_slots
        game, scores = self.game_of(samples)
        picked = samples.picked
        slot = torch.arange(K)
        spans = torch.where(picked[..., None], torch.stack([slot, slot + 1], -1), torch.full((K, 2), -1))
        return CreditBatch(
            rewards=game.grand_value(),
            response_mask=samples.actions >= 0,
            group_size=samples.group_size,
            candidate_scores=scores,
            candidate_spans=spans,
            candidate_game=game,
        )

    def group_gradients(self, theta: Tensor, samples: Samples, advantages: Tensor) -> Tensor:
        """``[N, P]`` per-group REINFORCE estimates (1/G) sum_g sum_t A_{g,t} grad log pi(a_{g,t}).

        grad of log softmax(z)[a] w.r.t. the logits z is onehot(a) - softmax(z); each logit row is
        theta_slot[u, k] + theta_prev[prev], so both blocks get that vector.
        """
        U, K, A = self.num_users, self.num_slots, self.num_items + 1
        B, G = samples.actions.shape[0], samples.group_size
        N = B // G
        token = samples.actions >= 0  # [B, K]
        user = samples.user[:, None].expand(B, K)
        slot = torch.arange(K)[None, :].expand(B, K)
        probs = torch.softmax(self.logits(theta, user, slot, samples.prevs), -1)  # [B, K, A]
        onehot = torch.nn.functional.one_hot(samples.actions.clamp(min=0), A).to(probs.dtype)
        contrib = torch.where(token[..., None], advantages[..., None] * (onehot - probs), 0.0) / G
        group = torch.arange(B)[:, None].expand(B, K) // G
        col = torch.arange(A)
        slot_index = ((user * K + slot) * A)[..., None] + col  # [B, K, A]
        prev_index = U * K * A + (samples.prevs * A)[..., None] + col
        out = torch.zeros(N * self.num_params, dtype=probs.dtype)
        base = (group * self.num_params)[..., None]
        out.index_add_(0, (base + slot_index).reshape(-1), contrib.reshape(-1))
        out.index_add_(0, (base + prev_index).reshape(-1), contrib.reshape(-1))
        return out.view(N, self.num_params)


@dataclass(frozen=True)
class Samples:
    users: Tensor  # [N] the user of each group
    user: Tensor  # [B] the user of each row
    actions: Tensor  # [B, K] action at each slot (item, or stop = I), -1 after the answer ended
    prevs: Tensor  # [B, K] the previous item at each slot (I for none)
    group_size: int
    stop: int  # the stop action's index, I

    @property
    def picked(self) -> Tensor:
        """``[B, K]`` bool: the slot holds an item (not the stop, not past the end)."""
        return (self.actions >= 0) & (self.actions != self.stop)


def gradient_check(estimates: Tensor, exact: Tensor) -> dict[str, float]:
    """Compare per-group estimates ``[N, P]`` with ``exact [P]``: z-scores of the mean (standard errors
    from the N per-group estimates), and the norms (:func:`credo.credit.gradient_quality.gradient_bias`)."""
    check = gradient_bias(estimates, exact)
    exact_norm = float(exact.norm())
    return {
        "exact_norm": exact_norm,
        "mean_norm": float(estimates.mean(dim=0).norm()),
        "bias_norm": check.bias * exact_norm,
        "se_norm": check.noise * exact_norm,
        "max_abs_z": check.max_abs_z,
        "mean_z2": check.mean_z2,
        "projection": check.scale,  # 1 for an unbiased estimator
    }


# ------------------------------------------------------------------------------------------------
# the default bed and the gradient meter

DEFAULT_UTILITIES = torch.tensor([[0.9, 0.6, 0.3, 0.1], [0.2, 0.8, 0.7, 0.4]], dtype=torch.float64)
DEFAULT_TOPICS = torch.tensor([[1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1]], dtype=torch.bool)
DEFAULT_TOPIC_WEIGHTS = torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.3, 0.5]], dtype=torch.float64)


def default_bed(game: str = "max", num_slots: int = 3) -> SetPolicyBed:
    """The bed of the tests: 2 users, 4 items (:data:`DEFAULT_UTILITIES`), K = 3 slots, 55 parameters."""
    return SetPolicyBed(
        DEFAULT_UTILITIES,
        num_slots=num_slots,
        game=game,
        topics=DEFAULT_TOPICS,
        topic_weights=DEFAULT_TOPIC_WEIGHTS,
    )


@dataclass
class EstimatorQuality:
    """The gradient quality of one estimator at a fixed policy (:func:`measure_gradient_quality`).

    ``half_cosine`` and ``exact_cosine``: one value per repeat (their mean and standard deviation are
    properties); ``advantage_variance``: the mean over repeats of the per-token advantage variance;
    ``bias``: :class:`~credo.credit.gradient_quality.GradientBias` of all repeats' per-group estimates
    pooled (R x N of them) against the exact gradient.
    """

    estimator: str
    options: dict[str, Any]
    half_cosine: list[float] = field(default_factory=list)
    exact_cosine: list[float] = field(default_factory=list)
    advantage_variance: list[float] = field(default_factory=list)
    bias: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def _mean_std(values: list[float]) -> tuple[float, float]:
        t = torch.tensor(values, dtype=torch.float64)
        return float(t.mean()), float(t.std()) if len(values) > 1 else 0.0

    def summary(self) -> dict[str, Any]:
        """A flat JSON-ready record: means and standard deviations over the repeats, and the bias."""
        half, half_sd = self._mean_std(self.half_cosine)
        exact, exact_sd = self._mean_std(self.exact_cosine)
        return {
            "estimator": self.estimator,
            "options": dict(self.options),
            "half_cosine": half,
            "half_cosine_std": half_sd,
            "reference_cosine": exact,
            "reference_cosine_std": exact_sd,
            "advantage_variance": self._mean_std(self.advantage_variance)[0],
            **self.bias,
        }


def measure_gradient_quality(
    bed: SetPolicyBed,
    theta: Tensor,
    estimators: Mapping[str, Mapping[str, Any]],
    groups: int,
    group_size: int,
    repeats: int,
    seed: int = 0,
    progress: bool = False,
) -> list[EstimatorQuality]:
    """Meter the policy-gradient estimates of several credit estimators at the fixed policy ``theta``.

    Each of ``repeats`` rounds samples ONE batch of ``groups`` prompts x ``group_size`` answers (the
    same samples for every estimator: an equal budget, and differences that come from the credit
    only); each estimator (``name -> options`` for :func:`~credo.credit.compute_credit`) turns it into
    per-group REINFORCE estimates ``[N, P]``, from which the round records the cosine between the
    gradients of the two halves of the groups, the cosine of the full estimate with the exact gradient
    of J, and the per-token advantage variance. After the rounds the R x N per-group estimates, pooled,
    give the bias of the expected gradient against the exact one.

    Runs on one CPU thread (restored afterwards): the tensors are tiny, and intra-op threads only add
    overhead (tens of times slower on a busy machine).
    """
    if groups < 2 or groups % 2:
        raise ValueError(f"groups must be even and >= 2 (two halves of N/2 groups), got {groups}")
    if group_size < 2:
        raise ValueError(f"group_size must be >= 2, got {group_size}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    generator = torch.Generator().manual_seed(seed)
    results = {name: EstimatorQuality(name, dict(options)) for name, options in estimators.items()}
    pooled: dict[str, list[Tensor]] = {name: [] for name in estimators}
    with one_thread():
        exact = bed.exact_gradient(theta)
        for _ in tqdm(range(repeats), desc="diagnose", unit="batch", disable=not progress):
            samples = bed.sample(theta, groups, group_size, generator)
            batch = bed.batch_of(samples)
            for name, options in estimators.items():
                advantages = compute_credit(name, batch, **options).advantages
                grads = bed.group_gradients(theta, samples, advantages)
                result = results[name]
                result.half_cosine.append(half_batch_agreement(grads))
                result.exact_cosine.append(reference_alignment(grads, exact))
                result.advantage_variance.append(token_advantage_variance(advantages, batch.response_mask))
                pooled[name].append(grads)
    for name, result in results.items():
        estimates = torch.cat(pooled[name])
        result.bias = gradient_bias(estimates, exact).as_dict() if estimates.shape[0] > 1 else {}
    return list(results.values())
