"""HSWD: HashNet's loss plus a sliced-Wasserstein quantisation term (docs/methods.md).

Reference: K. D. Doan, P. Yang, P. Li, "One loss for quantization: Deep hashing with discrete Wasserstein
distributional matching", CVPR 2022; combined with HashNet as in the SAAT code base (TIFS 2023).

    L = L_HashNet + w * (1 / (B K)) sum_k sum_b (sort_b(R)_bk - sort_b(u)_bk)^2,   R = sign(N(0, 1))^{B x K}

with w = 0.1: each bit's batch distribution is matched to a balanced +-1 distribution (1-D Wasserstein
distance between sorted samples). The continuation scale and a = 10/K are HashNet's.

R is redrawn at every loss call from a CPU generator seeded by (seed, call number); the call number is the
buffer ``calls``, so it is saved with the method's state and a resumed run draws the same R sequence as an
uninterrupted one, on any device.

Training from scratch (the CPU demo): as for HashNet, the reference settings (memory bank, plain tanh codes)
barely beat random codes on the multi-label demo in a short run; ``pairs="batch"`` with BatchNorm1d on the
code logits (``ModelSpec(hash_norm="batchnorm")``) and Adam at lr 5e-4 train it (see the HashNet module
docstring and docs/methods.md). The SWD bit-balance term alone did not
prevent the crowding of the codes (plain tanh, in-batch pairs: mAP 0.392 vs 0.350 for random codes).
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
import torch

from hashguard.errors import ConfigError
from hashguard.methods.hashnet import HashNet
from hashguard.methods.pairwise import PairSource
from hashguard.methods.registry import METHODS
from hashguard.registry import Range


def sliced_wasserstein_quantisation(u: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """sum((sort(R) - sort(u))^2) / B / K with both sorted along the batch per bit."""
    sorted_u, _ = torch.sort(u, dim=0)
    sorted_r, _ = torch.sort(reference, dim=0)
    return ((sorted_r - sorted_u) ** 2).sum() / (u.shape[0] * u.shape[1])


@METHODS.register(reference="Doan et al., CVPR 2022")
class HSWD(HashNet):
    """HSWD: HashNet pairwise loss + w x sliced-Wasserstein distance of each bit to a balanced +-1 law."""

    name = "hswd"
    uses_memory_bank = True

    def __init__(
        self,
        bits: int,
        num_classes: int,
        num_train: int,
        seed: int = 0,
        swd_weight: Annotated[float, Range(0), "weight of the sliced-Wasserstein term"] = 0.1,
        a: Annotated[float | None, Range(0), "inner-product scale (None: 10 / bits)"] = None,
        step_size: Annotated[int, Range(1), "continuation: steps per alpha increase"] = 200,
        gamma: Annotated[float, Range(0), "continuation rate"] = 0.005,
        power: Annotated[float, Range(0), "continuation power"] = 0.5,
        pairs: PairSource = "bank",
    ) -> None:
        super().__init__(
            bits,
            num_classes,
            num_train,
            seed,
            a=a,
            step_size=step_size,
            gamma=gamma,
            power=power,
            pairs=pairs,
        )
        if swd_weight < 0:
            raise ConfigError(f"HSWD's 'swd_weight' must be >= 0, got {swd_weight}")
        self.swd_weight = float(swd_weight)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))


    def reference_signs(self, rows: int, call: int) -> torch.Tensor:
        """R = sign(N(0, 1)) of shape (rows, K) for loss call ``call`` (deterministic in seed and call)."""
        state = np.random.SeedSequence([int(self.seed) % 2**63, int(call)]).generate_state(2, dtype=np.uint32)
        generator = torch.Generator(device="cpu")
        generator.manual_seed(int(state[0]) << 32 | int(state[1]))
        return torch.randn(rows, self.bits, generator=generator).sign()

    def forward(self, u: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        call = int(self.calls.item())
        with torch.no_grad():
            self.calls += 1
        reference = self.reference_signs(u.shape[0], call).to(device=u.device, dtype=u.dtype)
        return self.pair_loss(u, labels, index) + self.swd_weight * sliced_wasserstein_quantisation(u, reference)
