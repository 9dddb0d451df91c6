"""Device choice: ``auto`` picks CUDA, then Apple MPS, then CPU; code elsewhere follows the model's device."""

from __future__ import annotations

import torch

from hashguard.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``auto`` / ``cpu`` / ``cuda`` / ``cuda:1`` / ``mps`` into a usable ``torch.device``.

    In a ``torchrun`` job with NCCL, ``auto`` and ``cuda`` mean the rank's own GPU, ``cuda:LOCAL_RANK``."""
    from hashguard.distributed.world import current_world, default_device

    own = default_device(current_world())
    if own is not None and name in ("auto", "cuda"):
        return torch.device(own)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device {name!r} is not a valid torch device ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available on this machine")
    return device
