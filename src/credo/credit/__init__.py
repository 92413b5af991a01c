"""credo.credit: pure tensor functions that turn rewards into credit.

Batched ``torch.Tensor`` in, ``torch.Tensor`` out, on any device; no hidden state, no I/O. Every
estimator is in one registry (:data:`ESTIMATORS`), looked up by name with :func:`compute_credit`.
"""

from credo.credit import candidate_credit as _candidate_credit  # noqa: F401  (registers shape_grpo, wta)
from credo.credit import causal_credit as _causal_credit  # noqa: F401  (registers set_splice, set_rtg, set_coma)
from credo.credit import estimators as _estimators  # noqa: F401  (registers the outcome/GAE estimators)
from credo.credit.gradient_quality import (
    GradientBias,
    cosine,
    gradient_bias,
    half_batch_agreement,
    reference_alignment,
    token_advantage_variance,
)
from credo.credit.groups import (
    GroupStats,
    dr_grpo_advantages,
    group_stats,
    grpo_advantages,
    moving_average_baseline,
    reinforce_advantages,
    reinforce_pp_advantages,
    rloo_advantages,
)
from credo.credit.kl import KL_ESTIMATORS, kl_estimate, kl_k1, kl_k2, kl_k3, kl_reward_penalty
from credo.credit.masks import masked_mean, masked_sum, masked_var, masked_whiten
from credo.credit.registry import (
    ESTIMATORS,
    CreditBatch,
    CreditResult,
    EstimatorSpec,
    compute_credit,
    get_estimator,
    group_ids_of,
    register_estimator,
)
from credo.credit.returns import discounted_returns, gae, lambda_returns, reward_to_go, td_errors
from credo.credit.scan import reverse_linear_scan
from credo.credit.set_utilities import (
    additive_utility,
    coverage_utility,
    facility_location_utility,
    max_utility,
    min_utility,
    relevance_diversity_utility,
    shapley_coverage,
    shapley_facility_location,
)
from credo.credit.shaping import potential_based_shaping
from credo.credit.shapley import (
    shapley_additive,
    shapley_exact,
    shapley_max,
    shapley_min,
    shapley_permutation,
)
from credo.credit.tokens import (
    expand_to_tokens,
    last_token_index,
    outcome_token_rewards,
    sequence_rewards,
    span_index_map,
    span_token_counts,
    spans_to_token_credit,
)

__all__ = [
    "ESTIMATORS",
    "KL_ESTIMATORS",
    "CreditBatch",
    "CreditResult",
    "EstimatorSpec",
    "GradientBias",
    "GroupStats",
    "additive_utility",
    "compute_credit",
    "cosine",
    "coverage_utility",
    "discounted_returns",
    "dr_grpo_advantages",
    "expand_to_tokens",
    "facility_location_utility",
    "gae",
    "get_estimator",
    "gradient_bias",
    "group_ids_of",
    "group_stats",
    "grpo_advantages",
    "half_batch_agreement",
    "kl_estimate",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "kl_reward_penalty",
    "lambda_returns",
    "last_token_index",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "max_utility",
    "min_utility",
    "moving_average_baseline",
    "outcome_token_rewards",
    "potential_based_shaping",
    "reference_alignment",
    "register_estimator",
    "relevance_diversity_utility",
    "reinforce_advantages",
    "reinforce_pp_advantages",
    "reverse_linear_scan",
    "reward_to_go",
    "rloo_advantages",
    "sequence_rewards",
    "shapley_additive",
    "shapley_coverage",
    "shapley_exact",
    "shapley_facility_location",
    "shapley_max",
    "shapley_min",
    "shapley_permutation",
    "span_index_map",
    "span_token_counts",
    "spans_to_token_credit",
    "td_errors",
    "token_advantage_variance",
]
