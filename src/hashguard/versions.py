"""Versions of hashguard and its numeric stack, recorded in every checkpoint and result."""

from __future__ import annotations

import platform

import numpy as np
import torch

from hashguard import __version__


def environment_versions() -> dict[str, str]:
    """Versions that influence numbers: hashguard, Python, torch, NumPy."""
    return {
        "hashguard": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
