"""An exact test bed for set-valued policy gradients: a tabular policy writes a list of items slot by
slot, a hidden user values the set, and J(theta) = E[v] and its gradient are known exactly by
enumerating every answer. Sampled groups of answers become a :class:`CreditBatch` with one token per
slot action (the stop included), so the REINFORCE estimate sum_t A_t grad log pi(a_t) of any credit
estimator can be compared with the exact gradient.

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
from dataclasses import dataclass

import torch
from torch import Tensor

from credo.credit import CreditBatch
from credo.credit.games import AdditiveGame, CoverageGame, MaxGame, SetGame

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
    from the N per-group estimates), and the norms."""
    N = estimates.shape[0]
    mean = estimates.mean(dim=0)
    se = estimates.std(dim=0) / N**0.5
    live = se > 1e-12
    z = torch.where(live, (mean - exact) / torch.where(live, se, torch.ones_like(se)), torch.zeros_like(se))
    return {
        "exact_norm": float(exact.norm()),
        "mean_norm": float(mean.norm()),
        "bias_norm": float((mean - exact).norm()),
        "se_norm": float(se.norm()),
        "max_abs_z": float(z.abs().max()),
        "mean_z2": float((z[live] ** 2).mean()),
        "projection": float(mean @ exact / exact.dot(exact)),  # 1 for an unbiased estimator
    }
