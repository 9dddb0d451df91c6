"""DPH: the pairwise inner-product regression used by HAG (docs/methods.md).

Reference: E. Yang, T. Liu, C. Deng, D. Tao, "Adversarial examples for Hamming space search",
IEEE Trans. Cybernetics 2018 (the hashing loss of the HAG code base), as used by SAAT (TIFS 2023).

    L = 1/(B N) sum_{i in batch} sum_{j=1..N} (<u_i, U_j> / K - (2 s_ij - 1))^2

Training from scratch (the CPU demo): as for DPSH and HashNet, the short demo runs use ``pairs="batch"``,
BatchNorm1d on the code logits (``ModelSpec(hash_norm="batchnorm")``) and Adam at lr 5e-4; the bank form
with plain tanh codes stays near random codes on the multi-label demo (docs/methods.md).
"""

from __future__ import annotations

import torch

from hashguard.methods.base import HashingMethod, label_similarity
from hashguard.methods.memory_bank import MemoryBank
from hashguard.methods.pairwise import PairSource, check_pair_source, pair_partners
from hashguard.methods.registry import METHODS


@METHODS.register(reference="Yang et al., IEEE TCYB 2018")
class DPH(HashingMethod):
    """DPH (HAG's hashing loss): squared error between scaled code inner products and +-1 similarity."""

    name = "dph"
    uses_memory_bank = True

    def __init__(self, bits: int, num_classes: int, num_train: int, seed: int = 0, pairs: PairSource = "bank") -> None:
        super().__init__(bits, num_classes, num_train, seed)
        self.pairs = check_pair_source(pairs)
        self.bank = MemoryBank(num_train, bits, num_classes)


    def preinstall(self, codes: torch.Tensor, labels: torch.Tensor) -> None:
        self.bank.preinstall(codes, labels)

    def forward(self, u: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        partners, partner_labels = pair_partners(self.bank, self.pairs, u, labels, index)
        signed_similarity = 2.0 * label_similarity(labels, partner_labels) - 1.0
        inner = u @ partners.t() / self.bits
        return ((inner - signed_similarity) ** 2).mean()
