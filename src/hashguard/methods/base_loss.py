"""Methods whose per-batch loss is another method's (a *base* loss): NMLayer trains every stage with it, activation
codes train their network with it. One home for choosing and building the base and for handing the loss calls
to it (:class:`BaseLossMethod`)."""

from __future__ import annotations

import torch

from hashguard.errors import ConfigError
from hashguard.methods.base import HashingMethod
from hashguard.methods.registry import build_method, method_class


def parse_base_params(text: str, owner: str = "nmlayer") -> dict[str, str]:
    """``"pairs=batch,eta=0.1"`` -> ``{"pairs": "batch", "eta": "0.1"}`` (the registry converts the values);
    ``owner`` names the method in the error line."""
    params: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"method {owner}: base_params must be KEY=VALUE[,KEY=VALUE...], got {text!r}")
        params[key.strip()] = value.strip()
    return params


class BaseLossMethod(HashingMethod):
    """A method whose loss is the ``base`` method's loss at ``bits`` bits (:attr:`loss_at_bits`): ``alpha``,
    ``preinstall`` and the loss itself are the base's. Subclasses call :meth:`use_base` in their constructor."""

    loss_at_bits: HashingMethod

    def use_base(self, base: str, base_params: str) -> None:
        """Check and keep the base (a registered per-batch loss other than this method) and build it at ``bits``."""
        base = str(base).lower()
        if base == self.name:
            raise ConfigError(f"method {self.name}: base cannot be {self.name} itself")
        if method_class(base).training_step is not None:  # unknown names: one line listing the methods
            raise ConfigError(
                f"method {self.name}: base {base} has its own training step; choose a per-batch loss such as dpsh "
                "or csq"
            )
        self.base = base
        self.base_params = base_params
        self.loss_at_bits = self.base_loss(self.bits)
        self.uses_memory_bank = self.loss_at_bits.uses_memory_bank

    def base_loss(self, bits: int) -> HashingMethod:
        """The base hashing loss built for ``bits`` bits."""
        return build_method(
            self.base, bits, self.num_classes, self.num_train, seed=self.seed,
            **parse_base_params(self.base_params, self.name),
        )

    def alpha(self, step: int) -> float:
        return self.loss_at_bits.alpha(step)

    def preinstall(self, codes: torch.Tensor, labels: torch.Tensor) -> None:
        self.loss_at_bits.preinstall(codes, labels)

    def forward(self, u: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return self.loss_at_bits(u, labels, index)
