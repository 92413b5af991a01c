"""Set games: one object per batch of set utilities, from which every candidate-level credit derives.

An LLM answers a prompt with K candidates; the set S of candidates gets a value v(S). A *game* holds
B such set utilities at once (one per response, over its K candidate slots, the *players*) and
gives:

* :meth:`SetGame.value`: v of any coalitions, ``masks [M, K]`` (the same M coalitions in every game)
  or ``[B, M, K]`` (per game) -> ``[B, M]``;
* :meth:`SetGame.grand_value`: v(N) ``[B]``, the set reward of the whole answer;
* :meth:`SetGame.shapley`: Shapley values ``[B, K]``, by a closed form where one is known, by exact
  enumeration of the 2^K coalitions for small K, and by antithetic permutation sampling beyond
  (``method="auto"`` picks in that order; ``"closed"``, ``"exact"`` and ``"permutation"`` force one);
* :meth:`SetGame.splice`: a new batch of games whose slots are candidates taken from any rows, for
  the counterfactual values the causal estimators need (v of this answer's prefix followed by
  another response's tail, v of the set with one candidate replaced, ...);
* :func:`cat_games` (rows of several games stacked) and ``game_a + game_b`` (:class:`SumGame`).

Every game has v(empty) = 0, so efficiency, sum_k phi_k = v(N), holds for every method (the closed
forms and enumeration exactly; each sampled permutation's marginals telescope to v(N) too).

Players outside ``present`` (unparsable candidates, padding) are out of the game: every coalition is
intersected with ``present`` before it is valued, so an absent player is a null player (phi = 0) and
the present ones share v(N) among themselves.

The games:

===========================  ======================================================  ==============
game                         v(S)                                                    Shapley
===========================  ======================================================  ==============
:class:`MaxGame`             max_{k in S} r_k (the user picks one candidate)          closed form
:class:`AdditiveGame`        sum_{k in S} w_k (e.g. a bonus per valid candidate)      closed form
:class:`CoverageGame`        sum_c w_c [some k in S covers c]                         closed form
:class:`FacilityLocationGame` sum_c w_c max_{k in S} s_kc (graded coverage)           closed form
:class:`LogSumExpGame`       tau log(1 + sum_{k in S} exp(u_k / tau)) (logit)         exact / sampled
:class:`FunctionGame`        any function of the members' features                    exact / sampled
:class:`SumGame`             the sum of its parts (additivity)                        sum of parts'
===========================  ======================================================  ==============
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from credo.credit._checks import as_bool, check_finite, check_tensor, float_dtype
from credo.credit.set_utilities import shapley_coverage
from credo.credit.shapley import shapley_exact, shapley_max, shapley_permutation

ShapleyMethod = Literal["auto", "closed", "exact", "permutation"]
SHAPLEY_METHODS: tuple[str, ...] = ("auto", "closed", "exact", "permutation")
MAX_AUTO_EXACT_PLAYERS = 12  # "auto" enumerates 2^K coalitions up to this K, then samples
DEFAULT_PERMUTATIONS = 512


def _real(name: str, value: Tensor, min_dim: int) -> Tensor:
    check_tensor(name, value)
    if value.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimensions, got shape {tuple(value.shape)}")
    if value.dtype == torch.bool or value.is_complex():
        raise TypeError(f"{name} must be a real tensor, got dtype {value.dtype}")
    check_finite(name, value)
    return value if value.is_floating_point() else value.to(torch.get_default_dtype())


@dataclass(frozen=True, eq=False)
class SetGame:
    """B set games over K candidate slots each (see the module docstring).

    Subclasses are frozen dataclasses. They name their tensor fields in ``candidate_fields`` (shape
    ``[B, K, ...]``, one entry per player: gathered by :meth:`splice`) and ``context_fields`` (shape
    ``[B, ...]``, one per game: taken from the context row by :meth:`splice`), and implement
    :meth:`_values`. ``present``: ``[B, K]`` bool, default all True.
    """

    candidate_fields: ClassVar[tuple[str, ...]] = ()
    context_fields: ClassVar[tuple[str, ...]] = ()

    # -- shape -------------------------------------------------------------------------------------
    @property
    def present(self) -> Tensor:  # overridden by a dataclass field in every concrete game
        raise NotImplementedError

    @property
    def batch_size(self) -> int:
        return int(self.present.shape[0])

    @property
    def num_players(self) -> int:
        return int(self.present.shape[1])

    @property
    def device(self) -> torch.device:
        return self.present.device

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    # -- values ------------------------------------------------------------------------------------
    def _values(self, masks: Tensor) -> Tensor:
        """``masks [B, M, K]`` bool (members, already inside ``present``) -> ``[B, M]``."""
        raise NotImplementedError

    def value(self, masks: Tensor) -> Tensor:
        """v of coalitions: ``masks [M, K]`` (the same coalitions in every game) or ``[B, M, K]`` bool
        -> ``[B, M]``. Members outside ``present`` are ignored."""
        check_tensor("masks", masks)
        masks = as_bool("masks", masks).to(self.device)
        B, K = self.batch_size, self.num_players
        if masks.dim() == 2:
            masks = masks[None].expand(B, *masks.shape)
        if masks.dim() != 3 or masks.shape[0] != B or masks.shape[2] != K:
            raise ValueError(f"masks must be [M, K] or [B, M, K] with B={B}, K={K}; got {tuple(masks.shape)}")
        return self._values(masks & self.present[:, None, :])

    def grand_value(self) -> Tensor:
        """``[B]`` v(N): the value of each game's present players together."""
        return self._values(self.present[:, None, :])[:, 0]

    # -- Shapley values ----------------------------------------------------------------------------
    def closed_form_shapley(self) -> Tensor | None:
        """``[B, K]`` Shapley values by a closed form, or None when the game has none."""
        return None

    def shapley(
        self,
        method: ShapleyMethod = "auto",
        n_permutations: int = DEFAULT_PERMUTATIONS,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``[B, K]`` Shapley values (0 for absent players; each row sums to v(N)).

        ``method``: ``"auto"`` (closed form if the game has one, else exact enumeration for
        K <= 12, else ``n_permutations`` antithetic permutations), or one of ``"closed"``,
        ``"exact"``, ``"permutation"`` to force it.
        """
        if method not in SHAPLEY_METHODS:
            raise ValueError(f"method must be one of {SHAPLEY_METHODS}, got {method!r}")
        if method in ("auto", "closed"):
            phi = self.closed_form_shapley()
            if phi is not None:
                return phi
            if method == "closed":
                raise ValueError(f"{type(self).__name__} has no closed-form Shapley value")
            method = "exact" if self.num_players <= MAX_AUTO_EXACT_PLAYERS else "permutation"
        K = self.num_players

        def utility(masks: Tensor) -> Tensor:  # [M, K] -> [M, B], as the engines want
            return self.value(masks.to(self.device)).T

        if method == "exact":
            phi = shapley_exact(utility, K, device=self.device)
        else:
            phi, _ = shapley_permutation(utility, K, n_permutations, generator=generator, device=self.device)
        return torch.where(
            self.present, phi.to(self.dtype), torch.zeros((), dtype=self.dtype, device=self.device)
        )

    # -- new games from this one -------------------------------------------------------------------
    def splice(self, rows: Tensor, slots: Tensor, context: Tensor | None = None) -> SetGame:
        """A batch of B2 games whose slot j of game i is candidate ``slots[i, j]`` of row ``rows[i, j]``
        of this game (absent where ``slots[i, j] < 0`` or where that candidate is absent).

        Args:
            rows, slots: ``[B2, K2]`` long. context: ``[B2]`` long, the row whose per-game parameters
                (topic weights, for example) game i uses; default ``rows[:, 0]``. Splicing within a
                prompt's group keeps the prompt's parameters.
        """
        check_tensor("rows", rows)
        check_tensor("slots", slots)
        if rows.shape != slots.shape or rows.dim() != 2:
            raise ValueError(
                f"rows and slots must be [B2, K2] of one shape, got {tuple(rows.shape)}, {tuple(slots.shape)}"
            )
        B, K = self.batch_size, self.num_players
        rows, slots = rows.to(self.device).long(), slots.to(self.device).long()
        used = slots >= 0
        if bool(((rows < 0) | (rows >= B))[used].any()) or bool((slots >= K).any()):
            raise ValueError(f"rows must be in [0, {B}) and slots in [-1, {K})")
        flat = (rows.clamp(0, B - 1) * K + slots.clamp(min=0)).reshape(-1)  # [B2 * K2]
        ctx = rows[:, 0].clamp(0, B - 1) if context is None else context.to(self.device).long()
        return self._take(flat, rows.shape, used, ctx)

    def _take(self, flat: Tensor, shape: torch.Size, used: Tensor, context: Tensor) -> SetGame:
        changes: dict[str, Any] = {}
        for name in self.candidate_fields:
            value = getattr(self, name)
            changes[name] = value.reshape(-1, *value.shape[2:])[flat].reshape(*shape, *value.shape[2:])
        for name in self.context_fields:
            changes[name] = getattr(self, name)[context]
        changes["present"] = self.present.reshape(-1)[flat].reshape(shape) & used
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def restrict(self, present: Tensor) -> SetGame:
        """This game with only the players of ``present [B, K]`` (and of its own ``present``) in it."""
        check_tensor("present", present)
        if present.shape != self.present.shape:
            raise ValueError(
                f"present must be [B, K]={tuple(self.present.shape)}, got {tuple(present.shape)}"
            )
        return dataclasses.replace(self, present=self.present & as_bool("present", present).to(self.device))  # type: ignore[type-var]

    def to(self, device: torch.device | str) -> SetGame:
        """This game with every tensor on ``device``."""
        names = (*self.candidate_fields, *self.context_fields, "present")
        return dataclasses.replace(self, **{n: getattr(self, n).to(device) for n in names})  # type: ignore[type-var]

    def __add__(self, other: SetGame) -> SumGame:
        if not isinstance(other, SetGame):
            return NotImplemented
        mine = self.parts if isinstance(self, SumGame) else (self,)
        theirs = other.parts if isinstance(other, SumGame) else (other,)
        return SumGame(parts=(*mine, *theirs))


def _present(present: Tensor | None, like: Tensor, name: str = "present") -> Tensor:
    """``present`` checked against ``like [B, K, ...]``, or all True."""
    shape = like.shape[:2]
    if present is None:
        return torch.ones(shape, dtype=torch.bool, device=like.device)
    check_tensor(name, present)
    if present.shape != shape:
        raise ValueError(f"{name} must be [B, K]={tuple(shape)}, got {tuple(present.shape)}")
    return as_bool(name, present).to(like.device)


def _neg_inf(dtype: torch.dtype) -> Tensor:
    return torch.full((), -torch.inf, dtype=dtype)


def _per_candidate(game: SetGame, name: str) -> Tensor:
    """Check and store the game's ``[B, K]`` real field ``name`` and its ``present`` mask."""
    value = _real(name, getattr(game, name), 2)
    if value.dim() != 2:
        raise ValueError(f"{name} must be [B, K], got shape {tuple(value.shape)}")
    object.__setattr__(game, name, value)
    object.__setattr__(game, "present", _present(game.present, value))
    return value


@dataclass(frozen=True, eq=False)
class MaxGame(SetGame):
    """v(S) = max_{k in S} r_k, v(empty) = 0: the user takes the best candidate (ShapE-GRPO's game).

    ``scores``: ``[B, K]``. Shapley: :func:`credo.credit.shapley.shapley_max`'s closed form.
    """

    scores: Tensor
    present: Tensor = None  # type: ignore[assignment]
    candidate_fields: ClassVar[tuple[str, ...]] = ("scores",)

    def __post_init__(self) -> None:
        _per_candidate(self, "scores")

    @property
    def dtype(self) -> torch.dtype:
        return self.scores.dtype

    def _values(self, masks: Tensor) -> Tensor:
        picked = torch.where(masks, self.scores[:, None, :], _neg_inf(self.dtype).to(self.device))
        return torch.where(
            masks.any(dim=-1), picked.amax(dim=-1), torch.zeros((), dtype=self.dtype, device=self.device)
        )

    def closed_form_shapley(self) -> Tensor:
        return shapley_max(self.scores, self.present, validate=False)


@dataclass(frozen=True, eq=False)
class AdditiveGame(SetGame):
    """v(S) = sum_{k in S} w_k: each candidate brings its own value (phi_k = w_k).

    ``weights``: ``[B, K]``. The recommendation task's count bonus is ``AdditiveGame(bonus / K *
    [r_k > 0])`` added to its :class:`MaxGame`.
    """

    weights: Tensor
    present: Tensor = None  # type: ignore[assignment]
    candidate_fields: ClassVar[tuple[str, ...]] = ("weights",)

    def __post_init__(self) -> None:
        _per_candidate(self, "weights")

    @property
    def dtype(self) -> torch.dtype:
        return self.weights.dtype

    def _values(self, masks: Tensor) -> Tensor:
        return (masks.to(self.dtype) * self.weights[:, None, :]).sum(dim=-1)

    def closed_form_shapley(self) -> Tensor:
        return torch.where(self.present, self.weights, torch.zeros((), dtype=self.dtype, device=self.device))


def _topic_weights(weights: Tensor, like: Tensor) -> Tensor:
    weights = _real("weights", weights, 2)
    if weights.shape != (like.shape[0], like.shape[2]):
        raise ValueError(
            f"weights must be [B, C]={(like.shape[0], like.shape[2])}, got {tuple(weights.shape)}"
        )
    return weights


@dataclass(frozen=True, eq=False)
class CoverageGame(SetGame):
    """Weighted coverage: v(S) = sum_c w_c [some k in S covers topic c].

    ``covers``: ``[B, K, C]`` bool; ``weights``: ``[B, C]``. Shapley (closed form): each covered
    topic's weight split equally among the present candidates covering it
    (:func:`credo.credit.set_utilities.shapley_coverage`).
    """

    covers: Tensor
    weights: Tensor
    present: Tensor = None  # type: ignore[assignment]
    candidate_fields: ClassVar[tuple[str, ...]] = ("covers",)
    context_fields: ClassVar[tuple[str, ...]] = ("weights",)

    def __post_init__(self) -> None:
        check_tensor("covers", self.covers)
        if self.covers.dim() != 3:
            raise ValueError(f"covers must be [B, K, C], got shape {tuple(self.covers.shape)}")
        covers = as_bool("covers", self.covers)
        object.__setattr__(self, "covers", covers)
        object.__setattr__(self, "weights", _topic_weights(self.weights, covers))
        object.__setattr__(self, "present", _present(self.present, covers))

    @property
    def dtype(self) -> torch.dtype:
        return self.weights.dtype

    def _values(self, masks: Tensor) -> Tensor:
        hits = torch.einsum("bmk,bkc->bmc", masks.to(self.dtype), self.covers.to(self.dtype))
        return ((hits > 0).to(self.dtype) * self.weights[:, None, :]).sum(dim=-1)

    def closed_form_shapley(self) -> Tensor:
        return shapley_coverage(self.covers & self.present[..., None], self.weights)


@dataclass(frozen=True, eq=False)
class FacilityLocationGame(SetGame):
    """Facility location (graded coverage): v(S) = sum_c w_c max_{k in S} s_kc, v(empty) = 0.

    ``similarity``: ``[B, K, C]`` how well candidate k serves need c; ``weights``: ``[B, C]``.
    Shapley (closed form): a weighted sum of max games, one per need
    (:func:`credo.credit.set_utilities.shapley_facility_location`).
    """

    similarity: Tensor
    weights: Tensor
    present: Tensor = None  # type: ignore[assignment]
    candidate_fields: ClassVar[tuple[str, ...]] = ("similarity",)
    context_fields: ClassVar[tuple[str, ...]] = ("weights",)

    def __post_init__(self) -> None:
        similarity = _real("similarity", self.similarity, 3)
        if similarity.dim() != 3:
            raise ValueError(f"similarity must be [B, K, C], got shape {tuple(similarity.shape)}")
        object.__setattr__(self, "similarity", similarity)
        object.__setattr__(self, "weights", _topic_weights(self.weights, similarity).to(similarity.dtype))
        object.__setattr__(self, "present", _present(self.present, similarity))

    @property
    def dtype(self) -> torch.dtype:
        return self.similarity.dtype

    def _values(self, masks: Tensor) -> Tensor:
        picked = torch.where(masks[..., None], self.similarity[:, None], _neg_inf(self.dtype).to(self.device))
        best = picked.amax(dim=2)  # [B, M, C]
        best = torch.where(
            masks.any(dim=-1, keepdim=True), best, torch.zeros((), dtype=self.dtype, device=self.device)
        )
        return (best * self.weights[:, None, :]).sum(dim=-1)

    def closed_form_shapley(self) -> Tensor:
        # one max game per need, each with the same present players
        per_need = shapley_max(
            self.similarity.transpose(1, 2),
            self.present[:, None, :].expand(-1, self.similarity.shape[2], -1),
            validate=False,
        )  # [B, C, K]
        return (per_need * self.weights[:, :, None]).sum(dim=1)


GameFunction = Callable[[Tensor, Tensor], Tensor]
"""``(features [B, K, ...], masks [B, M, K] bool) -> [B, M]``: a black-box set utility."""


@dataclass(frozen=True, eq=False)
class FunctionGame(SetGame):
    """Any set utility given as a function of the members' features (no closed form: Shapley values
    by exact enumeration for small K, permutation sampling beyond).

    ``features``: ``[B, K, ...]`` per-candidate features (scores, embeddings, ...); ``fn(features,
    masks [B, M, K]) -> [B, M]`` must give 0 for the empty coalition (checked at construction).
    """

    features: Tensor
    fn: GameFunction = field(compare=False)
    present: Tensor = None  # type: ignore[assignment]
    candidate_fields: ClassVar[tuple[str, ...]] = ("features",)

    def __post_init__(self) -> None:
        check_tensor("features", self.features)
        if self.features.dim() < 2:
            raise ValueError(f"features must be [B, K, ...], got shape {tuple(self.features.shape)}")
        if not callable(self.fn):
            raise TypeError(f"fn must be callable (features, masks) -> [B, M], got {self.fn!r}")
        object.__setattr__(self, "present", _present(self.present, self.features))
        empty = self._values(
            torch.zeros(self.batch_size, 1, self.num_players, dtype=torch.bool, device=self.device)
        )
        if bool((empty.abs() > 1e-9).any()):
            raise ValueError("fn must give v(empty) = 0 for every game (efficiency needs it)")

    @property
    def dtype(self) -> torch.dtype:
        return float_dtype(self.features)

    def _values(self, masks: Tensor) -> Tensor:
        values = self.fn(self.features, masks)
        check_tensor("fn output", values)
        if values.shape != masks.shape[:2]:
            raise ValueError(f"fn must return [B, M]={tuple(masks.shape[:2])}, got {tuple(values.shape)}")
        check_finite("fn output", values)
        return values.to(self.dtype)


@dataclass(frozen=True, eq=False)
class SumGame(SetGame):
    """v(S) = sum of its parts' v(S); Shapley values are the sum of the parts' (additivity), each part
    by its own best method. Build with ``game_a + game_b``."""

    parts: tuple[SetGame, ...]

    def __post_init__(self) -> None:
        if not self.parts:
            raise ValueError("a SumGame needs at least one part")
        first = self.parts[0].present
        for part in self.parts[1:]:
            if part.present.shape != first.shape or not torch.equal(part.present, first):
                raise ValueError("the parts of a SumGame must have the same present players")

    @property
    def present(self) -> Tensor:  # type: ignore[override]
        return self.parts[0].present

    @property
    def dtype(self) -> torch.dtype:
        return self.parts[0].dtype

    def _values(self, masks: Tensor) -> Tensor:
        return torch.stack([p._values(masks).to(self.dtype) for p in self.parts]).sum(dim=0)

    def closed_form_shapley(self) -> Tensor | None:
        parts = [p.closed_form_shapley() for p in self.parts]
        if any(p is None for p in parts):
            return None
        return torch.stack([p.to(self.dtype) for p in parts]).sum(dim=0)  # type: ignore[union-attr]

    def shapley(
        self,
        method: ShapleyMethod = "auto",
        n_permutations: int = DEFAULT_PERMUTATIONS,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        if method == "auto":
            parts = [p.shapley("auto", n_permutations, generator).to(self.dtype) for p in self.parts]
            return torch.stack(parts).sum(dim=0)
        return super().shapley(method, n_permutations, generator)

    def to(self, device: torch.device | str) -> SetGame:
        return SumGame(parts=tuple(p.to(device) for p in self.parts))

    def restrict(self, present: Tensor) -> SetGame:
        return SumGame(parts=tuple(p.restrict(present) for p in self.parts))

    def _take(self, flat: Tensor, shape: torch.Size, used: Tensor, context: Tensor) -> SetGame:
        return SumGame(parts=tuple(p._take(flat, shape, used, context) for p in self.parts))


def cat_games(games: Sequence[SetGame]) -> SetGame:
    """The rows of ``games`` stacked into one batch (same game type and K; parts of sums in order).

    Tasks return one game per response; the reward side stacks them into the batch's game.
    """
    if not games:
        raise ValueError("cat_games needs at least one game")
    kind = type(games[0])
    for g in games:
        if type(g) is not kind:
            raise TypeError(
                f"cannot stack a {type(g).__name__} with a {kind.__name__}: one game type per batch"
            )
        if g.num_players != games[0].num_players:
            raise ValueError(f"cannot stack games of {g.num_players} and {games[0].num_players} players")
    if kind is SumGame:
        n = len(games[0].parts)  # type: ignore[attr-defined]
        if any(len(g.parts) != n for g in games):  # type: ignore[attr-defined]
            raise ValueError("cannot stack sums of different numbers of parts")
        return SumGame(parts=tuple(cat_games([g.parts[i] for g in games]) for i in range(n)))  # type: ignore[attr-defined]
    first = games[0]
    tensors = (*first.candidate_fields, *first.context_fields, "present")
    changes: dict[str, Any] = {name: torch.cat([getattr(g, name) for g in games]) for name in tensors}
    for f in dataclasses.fields(first):  # settings shared by the whole batch (a function, a temperature)
        if f.name not in tensors and any(
            getattr(g, f.name) is not getattr(first, f.name) and getattr(g, f.name) != getattr(first, f.name)
            for g in games
        ):
            raise ValueError(f"cannot stack {kind.__name__}s with different {f.name}")
    return dataclasses.replace(first, **changes)  # type: ignore[type-var]


@dataclass(frozen=True, eq=False)
class LogSumExpGame(SetGame):
    """Logit choice with an outside option: v(S) = tau * log(1 + sum_{k in S} exp(u_k / tau)).

    A user picks the best of the members of S and an outside option of utility 0 (not choosing any
    recommendation), each seen with i.i.d. Gumbel(tau) noise (the multinomial logit model, McFadden
    1974). The expected utility of the best option is ``tau * log(exp(0) + sum_{k in S} exp(u_k /
    tau))`` up to the Gumbel mean; v(S) is that minus the same for the empty set (only the outside
    option), so v(empty) = 0 exactly. v is monotone (every term is positive) and submodular (log of a
    sum of positive terms), and tends to ``max(0, max_{k in S} u_k)`` as ``tau -> 0`` (from above,
    within ``tau * log(|S| + 1)``). Unlike the max game, K good, distinct candidates are worth more
    than one: k candidates of equal utility u >> 0 are worth about ``u + tau * log k``.

    ``utilities``: ``[B, K]`` (may be negative); ``temperature``: tau > 0, a plain float (one per
    game object; :func:`cat_games` keeps the first game's). Computed as ``tau * logsumexp([0, u_S /
    tau])``, stable for any utilities. No closed-form Shapley value: exact enumeration for K <= 12
    (permutation sampling beyond).
    """

    utilities: Tensor
    temperature: float = 1.0
    present: Tensor = None  # type: ignore[assignment]
    candidate_fields: ClassVar[tuple[str, ...]] = ("utilities",)

    def __post_init__(self) -> None:
        _per_candidate(self, "utilities")
        tau = self.temperature
        if isinstance(tau, bool) or not isinstance(tau, int | float):
            raise TypeError(f"temperature must be a float > 0, got {type(tau).__name__}")
        if not (math.isfinite(tau) and tau > 0):
            raise ValueError(f"temperature must be a finite float > 0, got {tau!r}")
        object.__setattr__(self, "temperature", float(tau))

    @property
    def dtype(self) -> torch.dtype:
        return self.utilities.dtype

    def _values(self, masks: Tensor) -> Tensor:
        scaled = self.utilities[:, None, :] / self.temperature  # [B, 1, K]
        terms = torch.where(masks, scaled, _neg_inf(self.dtype).to(self.device))  # [B, M, K]
        outside = torch.zeros((*terms.shape[:2], 1), dtype=self.dtype, device=self.device)
        return self.temperature * torch.logsumexp(torch.cat([outside, terms], dim=-1), dim=-1)
