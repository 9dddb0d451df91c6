"""Where a pairwise loss finds the items it compares a batch against."""

from __future__ import annotations

from typing import Annotated

import torch

from hashguard.errors import ConfigError
from hashguard.methods.memory_bank import MemoryBank
from hashguard.registry import Choices

PAIR_SOURCES = ("bank", "batch")

#: the ``pairs`` parameter of the pairwise methods, as the registry reads it from their signatures
PairSource = Annotated[str, Choices(*PAIR_SOURCES), "pair partners: the memory bank of the training split or the batch"]


def check_pair_source(pairs: str) -> str:
    if pairs not in PAIR_SOURCES:
        raise ConfigError(f"'pairs' must be one of {PAIR_SOURCES}, got {pairs!r}")
    return pairs


def pair_partners(
    bank: MemoryBank, pairs: str, u: torch.Tensor, labels: torch.Tensor, index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (U, Y) to compare the batch against.

    ``pairs="bank"`` (the reference, docs/methods.md): write the batch into the memory bank, then use all N rows
    (detached). ``pairs="batch"``: the batch itself, with gradients through both sides; this form trains
    from scratch where the zero-initialised bank does not.
    """
    if pairs == "bank":
        bank.update(index, u, labels)
        return bank.U, bank.Y
    return u, labels.float()
