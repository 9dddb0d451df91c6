"""Model fingerprints: a functional hash of what a model computes, and an exact hash of its weights.

The functional fingerprint follows the functional-equivalence caching of Gillard et al., "Unified Functional
Hashing in Automatic Machine Learning" (arXiv 2302.05433, 2023, Sec. 3): run the model on a fixed, seeded
probe batch, round its outputs to a few mantissa bits and hash the result. Two models that compute the same
function get the same fingerprint however their weights are stored (a re-saved checkpoint, renamed state-dict
keys, a float64 round trip, another device, another memory layout); a change of behaviour gives another.

What is hashed (docs/fingerprints.md):

* the pre-sign hash-layer logits z(x) (``model.logits``, eval mode) of :data:`PROBE_COUNT` probe images of the
  model's input shape in [0, 1]: :data:`RANDOM_PROBES` uniform images from a ``torch.Generator`` seeded with
  :data:`PROBE_SEED`, then four structured ones (black, white, a diagonal ramp, a checkerboard);
* the logits are computed in float64 on the CPU (a float64 copy of the model: the caller's model is not
  touched) and each is rounded to :data:`MANTISSA_BITS` explicit mantissa bits (round half away from zero on
  the IEEE-754 bit pattern, -0 as +0, one NaN pattern);
* the functionally relevant parts of the model description: code length and input shape;
* ``extra`` tensors that are part of the model's function, e.g. an ADSH model's learned database codes V
  (Jiang & Li, AAAI 2018), hashed exactly (as float64 values).

Why float64 and 16 bits: float32 logits of the same weights differ by up to ~2^-11 relative between kernels
(a channels-last copy of the demo network, measured), which would move values across any rounding boundary
finer than that. Float64 logits of the same weights differ by ~1e-12 relative (~2^-40) between kernels and
thread counts; a boundary of a 16-bit mantissa grid lies 2^-17 relative apart, so a value straddles one with a
probability of about 2 * 2^-40 / 2^-17 ~ 2e-7, and a fingerprint of a few hundred values has a spurious
mismatch with a probability below 1e-4. A spurious mismatch only costs a recomputation (a cache miss), never a
wrong reuse. Two models collide only when every probe logit agrees to ~1e-5 relative.

The strict fingerprint (:func:`weights_fingerprint`) is SHA-256 over the model's state dict as the model holds
it: every tensor's name, dtype, shape and bytes (contiguous, on the CPU), sorted by name. It is independent of
the device and the memory layout, but a model cast to float64 has another one (dtype and bytes differ), and
so does any change of a single bit.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

#: the seed of the probe batch's generator (fixed: a fingerprint is only comparable to one made with it)
PROBE_SEED = 20230210
#: uniform random probe images; four structured ones follow them
RANDOM_PROBES = 8
#: every probe image (random + black, white, diagonal ramp, checkerboard)
PROBE_COUNT = RANDOM_PROBES + 4
#: explicit mantissa bits kept of each float64 logit (IEEE-754 double has 52)
MANTISSA_BITS = 16
#: the version of the functional recipe, hashed in: changing probes or rounding changes every fingerprint
FORMAT = "hashguard-fingerprint/1"
STRICT_FORMAT = "hashguard-weights/1"

MODES = ("functional", "weights")


@dataclass(frozen=True)
class Fingerprint:
    """A fingerprint (``digest``: 64 hex digits of SHA-256) and what it covers."""

    digest: str
    mode: str
    bits: int
    input_shape: tuple[int, int, int]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def short(self) -> str:
        """The first 16 hex digits (what logs print)."""
        return self.digest[:16]

    def to_dict(self) -> dict[str, Any]:
        return {"fingerprint": self.digest, "mode": self.mode, "bits": self.bits,
                "input_shape": list(self.input_shape), **self.details}


def input_shape(model: nn.Module) -> tuple[int, int, int]:
    """(channels, height, width) of the images ``model`` takes (its ``spec``)."""
    spec = getattr(model, "spec", None)
    if spec is None:
        raise TypeError(f"{type(model).__name__} has no model spec (in_channels, image_size) to probe it with")
    return int(spec.in_channels), int(spec.image_size), int(spec.image_size)


def probe_batch(channels: int, height: int, width: int) -> torch.Tensor:
    """The fixed probe images, float64 (:data:`PROBE_COUNT`, C, H, W) in [0, 1], on the CPU.

    :data:`RANDOM_PROBES` uniform images from a generator seeded with :data:`PROBE_SEED`, then black, white,
    a diagonal ramp (x + y) / (W + H - 2) and a checkerboard of 4-pixel squares.
    """
    generator = torch.Generator(device="cpu").manual_seed(PROBE_SEED)
    random = torch.rand(RANDOM_PROBES, channels, height, width, generator=generator, dtype=torch.float64)
    rows = torch.arange(height, dtype=torch.float64).view(-1, 1)
    cols = torch.arange(width, dtype=torch.float64).view(1, -1)
    ramp = (rows + cols) / max(height + width - 2, 1)
    checker = ((torch.div(rows, 4, rounding_mode="floor") + torch.div(cols, 4, rounding_mode="floor")) % 2)
    structured = torch.stack([
        torch.zeros(height, width, dtype=torch.float64),
        torch.ones(height, width, dtype=torch.float64),
        ramp,
        checker,
    ]).unsqueeze(1).expand(-1, channels, -1, -1)
    return torch.cat([random, structured]).contiguous()


def round_mantissa(values: torch.Tensor, bits: int = MANTISSA_BITS) -> np.ndarray:
    """The IEEE-754 float64 bit patterns of ``values`` rounded to ``bits`` explicit mantissa bits, as int64.

    Round half away from zero on the magnitude (a carry moves into the exponent, so 1.111...1 rounds to 2); -0
    becomes +0, every NaN one pattern, infinities stay.
    """
    if not 0 <= bits <= 52:
        raise ValueError(f"mantissa bits must be in [0, 52], got {bits}")
    x = values.detach().to("cpu", torch.float64).contiguous().reshape(-1) + 0.0  # -0.0 + 0.0 = +0.0
    raw = x.numpy().view(np.int64).copy()
    drop = 52 - bits
    finite = np.isfinite(x.numpy())
    if drop:
        rounded = (raw + np.int64(1 << (drop - 1))) & np.int64(~((1 << drop) - 1))
        raw = np.where(finite, rounded, raw)
    raw[np.isnan(x.numpy())] = np.array([np.nan]).view(np.int64)[0]
    return raw.astype("<i8")


def _float64_copy(model: nn.Module) -> nn.Module:
    """A float64 copy of ``model`` on the CPU in eval mode (the original keeps its device, dtype and mode)."""
    clone = copy.deepcopy(model)
    clone.to(device="cpu", dtype=torch.float64)
    return clone.eval()


def _update_tensor(digest: Any, name: str, tensor: torch.Tensor | np.ndarray, as_float64: bool) -> None:
    """Feed ``name``, dtype, shape and the bytes of ``tensor`` (contiguous, CPU; ``as_float64``: its values as
    float64, so that the stored dtype does not matter) to ``digest``."""
    value = torch.as_tensor(tensor).detach().to("cpu")
    if as_float64:
        value = value.to(torch.float64)
    dtype = str(value.dtype).replace("torch.", "")
    if value.dtype == torch.bfloat16:  # no numpy counterpart: its bit patterns
        value = value.view(torch.int16)
    array = np.ascontiguousarray(value.numpy())
    if array.dtype.byteorder == ">":
        array = array.byteswap().view(array.dtype.newbyteorder("<"))
    header = {"name": name, "dtype": dtype, "shape": list(array.shape)}
    digest.update(json.dumps(header, sort_keys=True).encode())
    digest.update(array.tobytes())


def functional_fingerprint(
    model: nn.Module, extra: Mapping[str, torch.Tensor | np.ndarray] | None = None
) -> Fingerprint:
    """The functional fingerprint of ``model`` (a hash model with ``logits`` and ``spec``), with ``extra``
    tensors that belong to its function (an ADSH model's database codes V); see the module docstring.

    Gillard et al., "Unified Functional Hashing in Automatic Machine Learning", arXiv 2302.05433, 2023.
    """
    shape = input_shape(model)
    bits = int(model.bits)
    probes = probe_batch(*shape)
    clone = _float64_copy(model)
    with torch.random.fork_rng(devices=[]), torch.no_grad():  # any randomness in eval mode is seeded too
        torch.manual_seed(PROBE_SEED)
        logits = clone.logits(probes)
    del clone
    rounded = round_mantissa(logits, MANTISSA_BITS)
    details = {"probes": PROBE_COUNT, "probe_seed": PROBE_SEED, "mantissa_bits": MANTISSA_BITS,
               "computed_in": "float64 on the CPU", "includes": sorted(extra or {})}
    header = {"format": FORMAT, "bits": bits, "input_shape": list(shape), "output_shape": list(logits.shape),
              "probes": PROBE_COUNT, "probe_seed": PROBE_SEED, "mantissa_bits": MANTISSA_BITS}
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    digest.update(rounded.tobytes())
    for name in sorted(extra or {}):
        _update_tensor(digest, name, (extra or {})[name], as_float64=True)
    return Fingerprint(digest.hexdigest(), "functional", bits, shape, details)


def weights_fingerprint(
    model: nn.Module, extra: Mapping[str, torch.Tensor | np.ndarray] | None = None
) -> Fingerprint:
    """The strict fingerprint: SHA-256 of the code length, the input shape and every state-dict tensor of
    ``model`` (name, dtype, shape, bytes; sorted by name; contiguous on the CPU), then the ``extra`` tensors as
    given (dtype included; a checkpoint's ADSH codes V are read as float, so their values count)."""
    shape = input_shape(model)
    bits = int(model.bits)
    digest = hashlib.sha256(json.dumps({"format": STRICT_FORMAT, "bits": bits, "input_shape": list(shape)},
                                       sort_keys=True).encode())
    state = model.state_dict()
    for name in sorted(state):
        _update_tensor(digest, name, state[name].contiguous(), as_float64=False)
    for name in sorted(extra or {}):
        _update_tensor(digest, f"extra:{name}", (extra or {})[name], as_float64=False)
    details = {"tensors": len(state), "includes": sorted(extra or {})}
    return Fingerprint(digest.hexdigest(), "weights", bits, shape, details)


def fingerprint(
    model: nn.Module, mode: str = "functional", extra: Mapping[str, torch.Tensor | np.ndarray] | None = None
) -> Fingerprint:
    """:func:`functional_fingerprint` (``mode="functional"``) or :func:`weights_fingerprint` (``"weights"``)."""
    if mode == "functional":
        return functional_fingerprint(model, extra)
    if mode == "weights":
        return weights_fingerprint(model, extra)
    from hashguard.errors import ConfigError

    raise ConfigError(f"fingerprint mode must be one of {', '.join(MODES)}, got {mode!r}")
