"""SAAT and CgAT: adversarial training against a semantic code of the training set.

SAAT: X. Yuan, Z. Zhang, X. Wang, L. Wu, "Semantic-Aware Adversarial Training for Reliable Deep Hashing
Retrieval", IEEE TIFS 18:4681-4694, 2023.
CgAT: X. Wang et al., "CgAT: Center-Guided Adversarial Training for Deep Hashing-Based
Retrieval", WWW 2023.

Both keep a bank ``U_ben`` of sign codes of the training split, initialised from the clean model (SAAT's
first step) and refreshed with each batch's benign sign codes. Per batch:

* inner: m = code(y; U_ben, Y) (SAAT: the DMFL mainstay code, cosine-weighted positives; CgAT: the centre
  code, unweighted positives, :func:`hashguard.mainstay_codes.center_codes`); PGD minimises the plain loss
  mean(f(x + delta) * m), i.e. drives the adversarial code away from m (the attack objective is
  :class:`hashguard.attacks.MainstayObjective` with ``loss="plain"``);
* outer: u = f(x), u_adv = f(x_adv); U_ben[idx] <- sign(u); m' = code(y; U_ben, Y);
  L = L_hash(u, y, idx) + lambda * (-mean(u_adv * m')) + mu * mean((u_adv - sign(u_adv))^2),
  with lambda = ``adv_weight`` and mu = ``quant_weight`` (SAAT: 1 and 1e-4; CgAT: 1 and 0).

``mainstay_from="database"`` (an ADSH base checkpoint only, Jiang and Li, AAAI 2018) makes the bank the learned
database codes V of the training pool with the pool's labels instead of the network's sign codes: V is what
the retrieval system stores for those items, and it is fixed during the defense (which trains the query network
only), so the bank is then never refreshed. The default ``"network"`` is the paper's protocol.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
from torch import nn

from hashguard.attacks.base import AttackContext
from hashguard.attacks.mainstay_attack import MainstayObjective
from hashguard.attacks.threat import LossFn
from hashguard.defenses.base import Batch, Defense, OuterLoss, quantisation
from hashguard.defenses.config import DEMO_COMMON, DefenseConfig
from hashguard.defenses.registry import DEFENSES
from hashguard.errors import ConfigError
from hashguard.mainstay_codes import MAINSTAY_SOURCES, mainstay_codes
from hashguard.methods.base import HashingMethod
from hashguard.models.hash_model import sign_codes
from hashguard.protocol import DEFENSES as PROTOCOL
from hashguard.registry import Choices


class CodeBankDefense(Defense):
    """Adversarial training towards / away from a code computed from a bank of training sign codes."""

    data_parallel = True

    weighting = "cosine"

    def __init__(
        self,
        config: DefenseConfig,
        refresh_bank: Annotated[bool, "refresh the code bank with each batch's benign sign codes"] = True,
        mainstay_from: Annotated[
            str, Choices(*MAINSTAY_SOURCES),
            "code bank: network (its sign codes of the training items, the paper's) or database (an ADSH "
            "checkpoint's learned codes V, fixed: never refreshed)",
        ] = "network",
    ) -> None:
        super().__init__(config)
        self.mainstay_from = mainstay_from
        self.refresh_bank = bool(refresh_bank) and mainstay_from == "network"
        self.learned: tuple[torch.Tensor, torch.Tensor] | None = None
        self.objective = MainstayObjective(loss="plain", weighting=self.weighting)
        self.bank: torch.Tensor | None = None
        self.bank_labels: torch.Tensor | None = None

    def use_learned_codes(self, codes: torch.Tensor, labels: torch.Tensor) -> None:
        """Install an ADSH checkpoint's learned database codes V (in the order of the training items) and the
        pool's labels as the bank, for ``mainstay_from="database"``; :meth:`setup` then keeps them."""
        self.learned = (codes.detach().float().clone(), labels.detach().float().clone())

    def setup(self, train_codes: torch.Tensor, train_labels: torch.Tensor, bits: int, seed: int) -> None:
        if self.mainstay_from == "database":
            if self.learned is None:
                raise ConfigError(
                    f"{self.name} with mainstay_from=database needs the learned database codes V of an ADSH "
                    "checkpoint (hashguard defend installs them)"
                )
            train_codes, train_labels = self.learned
            self.learned = None
        self.bank = train_codes.detach().float().clone()
        self.bank_labels = train_labels.detach().float().clone()

    def to(self, device: torch.device) -> CodeBankDefense:
        if self.bank is not None and self.bank_labels is not None:
            self.bank, self.bank_labels = self.bank.to(device), self.bank_labels.to(device)
        return self

    def _context(self) -> AttackContext:
        if self.bank is None:
            raise RuntimeError(f"{self.name}: setup() was not called")
        return AttackContext(train_codes=self.bank, train_labels=self.bank_labels)

    def inner_loss(
        self, model: nn.Module, batch: Batch, generator: torch.Generator, lr_factor: float
    ) -> LossFn:
        prepared = self.objective.prepare(model, batch.images, batch.labels, None, self._context(), generator)
        return prepared.loss

    def outer_loss(
        self, model: nn.Module, method: HashingMethod, batch: Batch, adv_images: torch.Tensor
    ) -> OuterLoss:
        assert self.bank is not None and self.bank_labels is not None
        u_adv, u, labels, index = batch.gather_outputs(model(adv_images, alpha=1.0), model(batch.images, alpha=1.0))
        hash_loss = method(u, labels, index)
        if self.refresh_bank:
            self.bank[index.to(self.bank.device)] = sign_codes(u.detach()).float()
        code = mainstay_codes(labels, self.bank, self.bank_labels, weighting=self.weighting)
        code = code.to(device=u_adv.device, dtype=u_adv.dtype)
        adv_term = -(u_adv * code).mean()
        quant = quantisation(u_adv)
        loss = hash_loss + self.config.adv_weight * adv_term + self.config.quant_weight * quant
        parts = {"hash": float(hash_loss.detach()), "adv": float(adv_term.detach()), "quant": float(quant.detach())}
        return OuterLoss(loss, parts)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        assert self.bank is not None
        return {"bank": self.bank}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        assert self.bank is not None
        self.bank.copy_(tensors["bank"].to(self.bank))

    def params(self) -> dict[str, Any]:
        return {
            **super().params(), "code": "mainstay" if self.weighting == "cosine" else "centre",
            "mainstay_from": self.mainstay_from,
        }


@DEFENSES.register(
    display="SAAT",
    summary="SAAT: inner PGD away from the DMFL mainstay code, outer L_hash - lambda <f(x_adv), m> + mu Q",
    presets={"paper": PROTOCOL["saat"], "demo": dict(DEMO_COMMON, epochs=4)},
)
class SAAT(CodeBankDefense):
    """SAAT: semantic-aware adversarial training with DMFL mainstay codes (Yuan et al., IEEE TIFS 2023)."""

    name = "saat"
    reference = "Yuan et al., Semantic-Aware Adversarial Training for Reliable Deep Hashing Retrieval, TIFS 2023"
    weighting = "cosine"
