"""hashguard: train, index, attack, harden and benchmark deep hashing retrieval models.

Implements SAAT, "Semantic-Aware Adversarial Training for Reliable Deep Hashing Retrieval"
(Yuan, Zhang, Wang, Wu, IEEE TIFS 2023), and the methods, attacks and defenses it is compared against.
"""

from __future__ import annotations

__version__ = "0.1.0"

from hashguard.errors import CheckpointError, ConfigError, DataError, HashguardError

__all__ = ["__version__", "HashguardError", "DataError", "ConfigError", "CheckpointError"]
