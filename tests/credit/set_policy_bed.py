"""The exact test bed of set-valued policy gradients, now in the library: re-exported for the tests."""

from credo.tabular.set_policy import GAMES, Samples, SetPolicyBed, gradient_check

__all__ = ["GAMES", "Samples", "SetPolicyBed", "gradient_check"]
