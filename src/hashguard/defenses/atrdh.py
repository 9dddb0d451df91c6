"""ATRDH: adversarial training with targeted prototype attacks (no triangular mask).

Reference: X. Wang, Z. Zhang, G. Lu, Y. Xu, "Targeted Attack and Defense for Deep Hashing", SIGIR 2021; the
protocol is the port that produced the SAAT paper's Table II (Yuan et al., IEEE TIFS 2023).

State: a sign-code memory ``B_train`` (N x K) initialised from the clean model's sign codes of the training
split, a continuous memory ``U_ben`` (N x K) initialised to zeros (protocol, ``memory_init="zeros"``; or to
the sign codes, ``memory_init="sign"``), and a fresh THA PrototypeNet trained online.
Per batch (x, y, idx):

1. sample B target labels uniformly (with replacement) from the unique training labels, take one Adam step
   of the PrototypeNet with THA's circle loss against (B_train, Y_train) over **all** pairs (no triangular
   mask, which in the reference code dropped the pairs j <= i;
   :func:`hashguard.attacks.prototype.circle_prototype_loss`);
2. x_adv: targeted PGD towards p = sign(PrototypeNet(t)) with the plain loss -mean(f(x + delta) * p);
3. u = f(x), u_adv = f(x_adv); B_train[idx] <- sign(u); U_ben[idx] <- u (continuous);
   L = L_hash(u, y, idx) + w * mean_{i,j} (<u_adv_i, U_ben_j> / K - s_ij)^2 with s_ij = +1 when y_i and Y_j
   share a label and -1 otherwise, and w = ``adv_weight`` = 2 (the protocol: the port behind Table II;
   the original ATRDH used 1).

Differences from the SAAT port, documented: targets come from the unique *training* labels (the port used
the database labels; on the standard benchmarks the label sets coincide, and training never touches another
split); B_train[idx] is refreshed in the outer step, after the attack (one step later than the port, so the
PrototypeNet step of a batch sees its items' codes from their previous visit); the PrototypeNet learning
rate follows the same milestones as the model's.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
from torch import nn

from hashguard.attacks.mainstay_attack import mainstay_loss
from hashguard.attacks.prototype import (
    PrototypeNet,
    circle_prototype_loss,
    new_prototype_net,
    prototype_optimizer,
    prototype_step,
)
from hashguard.attacks.threat import LossFn
from hashguard.defenses.base import Batch, Defense, OuterLoss
from hashguard.defenses.config import DEMO_COMMON, DefenseConfig
from hashguard.defenses.registry import DEFENSES
from hashguard.methods.base import HashingMethod, label_similarity
from hashguard.models.hash_model import sign_codes
from hashguard.protocol import DEFENSES as PROTOCOL
from hashguard.registry import Choices, Range
from hashguard.training.state import optimizer_from_flat, optimizer_to_flat

_PROTO = "prototype."
_PROTO_OPT = "prototype_optimizer."


_DEMO = dict(DEMO_COMMON, epochs=4, lr=1e-3, prototype_hidden=512, prototype_lr=1e-3)


@DEFENSES.register(
    display="ATRDH",
    summary="ATRDH: targeted PGD towards online THA prototypes, pairwise DPH term on the adversarial codes",
    presets={"paper": PROTOCOL["atrdh"], "demo": _DEMO},
)
class ATRDH(Defense):
    """ATRDH (Wang et al., SIGIR 2021, "Targeted Attack and Defense for Deep Hashing")."""

    data_parallel = True

    name = "atrdh"
    reference = "Wang et al., Targeted Attack and Defense for Deep Hashing, SIGIR 2021"

    def __init__(
        self,
        config: DefenseConfig,
        memory_init: Annotated[str, Choices("zeros", "sign"), "the continuous benign memory U_ben starts at"] = "sign",
        prototype_hidden: Annotated[int, Range(1), "hidden width of the online PrototypeNet"] = 4096,
        prototype_lr: Annotated[float, Range(0, exclusive_low=True), "PrototypeNet Adam learning rate"] = 1e-4,
        prototype_gamma: Annotated[float, Range(0, exclusive_low=True), "PrototypeNet circle-loss scale"] = 1.0,
    ) -> None:
        super().__init__(config)
        self.memory_init = memory_init
        self.prototype_hidden = int(prototype_hidden)
        self.prototype_lr = float(prototype_lr)
        self.prototype_gamma = float(prototype_gamma)
        self.codes: torch.Tensor | None = None
        self.memory: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self.pool: torch.Tensor | None = None
        self.net: PrototypeNet | None = None
        self.net_optimizer: torch.optim.Optimizer | None = None

    def setup(self, train_codes: torch.Tensor, train_labels: torch.Tensor, bits: int, seed: int) -> None:
        self.codes = train_codes.detach().float().clone()
        if self.memory_init == "zeros":
            self.memory = torch.zeros_like(self.codes)
        else:
            self.memory = self.codes.clone()
        self.labels = train_labels.detach().float().clone()
        self.pool = torch.unique(self.labels, dim=0)
        self.net = new_prototype_net(self.labels.shape[1], bits, seed=seed, hidden=self.prototype_hidden)
        self.net_optimizer = prototype_optimizer(self.net, self.prototype_lr)

    def to(self, device: torch.device) -> ATRDH:
        assert self.codes is not None and self.memory is not None and self.labels is not None
        assert self.pool is not None and self.net is not None
        self.codes, self.memory = self.codes.to(device), self.memory.to(device)
        self.labels, self.pool = self.labels.to(device), self.pool.to(device)
        self.net.to(device)
        return self

    def inner_loss(
        self, model: nn.Module, batch: Batch, generator: torch.Generator, lr_factor: float
    ) -> LossFn:
        assert self.net is not None and self.net_optimizer is not None and self.pool is not None
        assert self.codes is not None and self.labels is not None
        # drawn for the global batch (identical on every rank, so the prototype network stays identical)
        pick = torch.randint(0, self.pool.shape[0], (batch.global_size,), generator=generator)
        targets = self.pool[pick.to(self.pool.device)]
        for group in self.net_optimizer.param_groups:
            group["lr"] = self.prototype_lr * lr_factor
        self.net.train()
        loss = circle_prototype_loss(self.net, targets, self.codes, self.labels, self.prototype_gamma)
        prototype_step(self.net_optimizer, loss)
        self.net.eval()
        with torch.no_grad():
            prototypes = torch.sign(self.net(targets)).to(device=batch.images.device, dtype=batch.images.dtype)
        prototypes = batch.own(prototypes)
        self.last_prototype_loss = float(loss.detach())

        def inner(u: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
            return mainstay_loss(u, prototypes, targeted=True, kind="plain")

        return inner

    def outer_loss(
        self, model: nn.Module, method: HashingMethod, batch: Batch, adv_images: torch.Tensor
    ) -> OuterLoss:
        assert self.codes is not None and self.memory is not None and self.labels is not None
        u_adv, u, labels, batch_index = batch.gather_outputs(
            model(adv_images, alpha=1.0), model(batch.images, alpha=1.0)
        )
        hash_loss = method(u, labels, batch_index)
        index = batch_index.to(self.codes.device)
        self.codes[index] = sign_codes(u.detach()).float()
        self.memory[index] = u.detach().float()
        similarity = 2 * label_similarity(labels, self.labels) - 1
        inner = u_adv @ self.memory.to(u_adv.dtype).t() / u_adv.shape[1]
        pair_term = ((inner - similarity) ** 2).mean()
        loss = hash_loss + self.config.adv_weight * pair_term
        parts = {
            "hash": float(hash_loss.detach()),
            "adv": float(pair_term.detach()),
            "prototype": getattr(self, "last_prototype_loss", 0.0),
        }
        return OuterLoss(loss, parts)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        assert self.codes is not None and self.memory is not None and self.net is not None
        assert self.net_optimizer is not None
        tensors = {"codes": self.codes, "memory": self.memory}
        tensors.update({f"{_PROTO}{k}": v for k, v in self.net.state_dict().items()})
        optim_tensors, _ = optimizer_to_flat(self.net_optimizer)
        tensors.update({f"{_PROTO_OPT}{k}": v for k, v in optim_tensors.items()})
        return tensors

    def state_meta(self) -> dict[str, Any]:
        assert self.net_optimizer is not None
        return {"prototype_optimizer": optimizer_to_flat(self.net_optimizer)[1]}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        assert self.codes is not None and self.memory is not None and self.net is not None
        assert self.net_optimizer is not None
        self.codes.copy_(tensors["codes"].to(self.codes))
        self.memory.copy_(tensors["memory"].to(self.memory))
        self.net.load_state_dict({k[len(_PROTO):]: v for k, v in tensors.items() if k.startswith(_PROTO)})
        optim = {k[len(_PROTO_OPT):]: v for k, v in tensors.items() if k.startswith(_PROTO_OPT)}
        optimizer_from_flat(self.net_optimizer, optim, meta["prototype_optimizer"])

    def params(self) -> dict[str, Any]:
        return {**super().params(), "targets": "unique training labels", "mask": "none (all pairs)"}
