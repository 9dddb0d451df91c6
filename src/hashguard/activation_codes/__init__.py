"""Activation codes: a training-free hash encoder read from the ReLU pattern of any trained network.

He, Lei, Ji & Tao, "Neural networks behave as hash encoders: An empirical study" (arXiv 2101.05490, 2021).
See docs/methods.md ("Activation codes") for the construction, its parameters and the choices made where
the paper leaves them open.
"""

from hashguard.activation_codes.diagnostics import (
    attack_flips,
    code_diagnostics,
    correlated_bit_ratio,
    kmeans_accuracy,
    knn_accuracy,
    redundancy_ratio,
    relu_flips,
)
from hashguard.activation_codes.model import VARIANTS, ActivationCodeModel, ActivationCodeSpec, fit_activation_codes
from hashguard.activation_codes.patterns import find_sites, relu_modules, resolve_sites, tap_sites, unit_states
from hashguard.activation_codes.selection import (
    balanced_selection,
    bit_correlations,
    non_constant_units,
    random_selection,
)

__all__ = [
    "attack_flips",
    "code_diagnostics",
    "correlated_bit_ratio",
    "kmeans_accuracy",
    "knn_accuracy",
    "redundancy_ratio",
    "relu_flips",
    "VARIANTS",
    "ActivationCodeModel",
    "ActivationCodeSpec",
    "balanced_selection",
    "bit_correlations",
    "find_sites",
    "fit_activation_codes",
    "non_constant_units",
    "random_selection",
    "relu_modules",
    "resolve_sites",
    "tap_sites",
    "unit_states",
]
