"""How a model's forward pass computes: float32 (default) or bfloat16 mixed precision, and the memory format.

Two runtime options for accelerators (they change neither a model's weights nor its checkpoint):

* ``precision="bf16"``: the network's forward pass runs under ``torch.autocast`` with bfloat16 (convolutions and
  matrix products in bfloat16, reductions and batch norm as autocast decides); the code logits come back as
  float32, so losses, tanh codes, sign codes and every metric are computed as before. bfloat16 keeps 8 bits of
  mantissa, so a logit close to zero can change sign: the codes of a bf16 forward pass differ from the float32
  ones in a small fraction of bits (measured and asserted in ``tests/models/test_precision.py``).
* ``channels_last=True``: images (and, once, the network's weights) use the channels-last memory format, which
  cuDNN and oneDNN convolutions prefer; the arithmetic is the same up to the order of float additions.

Set them with ``--precision bf16`` / ``--channels-last`` on every command that runs a model, with
``HASHGUARD_PRECISION`` / ``HASHGUARD_CHANNELS_LAST=1`` in the environment, or for a block of code with
:func:`use_runtime`. The default is float32, contiguous: the paper protocol's arithmetic.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from hashguard.errors import ConfigError

PRECISIONS = ("float32", "bf16")


@dataclass(frozen=True)
class Runtime:
    """The forward-pass options (see the module docstring)."""

    precision: str = "float32"
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The autocast context of a forward pass on ``device`` (a no-op context for float32)."""
        if self.precision == "float32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)

    def describe(self) -> str:
        return f"{self.precision}{', channels-last' if self.channels_last else ''}"


@functools.lru_cache(maxsize=1)
def from_environment() -> Runtime:
    """The runtime ``HASHGUARD_PRECISION`` and ``HASHGUARD_CHANNELS_LAST`` ask for (default float32, contiguous),
    read once per process: every forward pass asks for the runtime in force."""
    flag = os.environ.get("HASHGUARD_CHANNELS_LAST", "").strip().lower()
    return Runtime(os.environ.get("HASHGUARD_PRECISION", "float32").strip() or "float32",
                   flag in ("1", "true", "yes", "on"))


_current: Runtime | None = None


def current_runtime() -> Runtime:
    """The runtime in force: the last :func:`set_runtime`, else the environment's."""
    return _current if _current is not None else from_environment()


def set_runtime(runtime: Runtime | None) -> None:
    """Make ``runtime`` the one in force (None: back to the environment's)."""
    global _current
    _current = runtime


@contextlib.contextmanager
def use_runtime(precision: str = "float32", channels_last: bool = False) -> Iterator[Runtime]:
    """The runtime ``(precision, channels_last)`` for the block; the previous one afterwards."""
    global _current
    previous = _current
    _current = Runtime(precision, channels_last)
    try:
        yield _current
    finally:
        _current = previous
