"""Activation codes as a trainable method name (``method.name: activation-codes``): train a network with a base
hashing loss, then read its ReLU pattern as the K-bit code.

Reference: B. He, L. Lei, S. Ji, D. Tao, "Neural networks behave as hash encoders: An empirical study", arXiv
2101.05490, 2021. The code is training-free (:mod:`hashguard.activation_codes`); what this method adds is the
network it is read from, so that ``hashguard train``, a study's model stage and every defense reach activation
codes like any other method:

* **training** is one run of the shared loop with the ``base`` loss (a per-batch hashing loss, ``csq`` by default)
  on a ``bits``-bit hash model, exactly as ``method.name: <base>`` would train it;
* **the end of the run** (:class:`ActivationCodesStep`) keeps the selected weights, fits the activation code of
  the trained network on the fitting split (``variant``, ``layers``, ``corr_weight``; the training seed seeds the
  random and projection variants) and writes an activation-code checkpoint: the network is embedded, its hashing
  loss is recorded as the code's base method;
* **defenses** harden the embedded network with that base loss and read the code again with the same settings
  (:func:`hashguard.defenses.api.defend`), since the code itself has no loss.

With z(x) the network's K code logits and a(x) the pre-activations of its ReLU units, training minimises the base
loss and the code is read from the trained network:

    L = L_base(tanh(alpha * z(x)), y),        b(x) = sign(S a(x))

where S selects K non-constant units (balanced or random variant) or projects the standardised ReLU outputs onto K
seeded directions (projection variant). As a loss (``method(u, labels, index)``) the method is the base loss.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch

from hashguard.activation_codes.model import VARIANTS, Variant
from hashguard.errors import ConfigError
from hashguard.methods.base import HashingMethod
from hashguard.methods.nmlayer import parse_base_params
from hashguard.methods.registry import METHODS, build_method, method_class
from hashguard.registry import Choices, Range
from hashguard.training.clean_step import CleanStep


def parse_layers(text: str) -> list[str | int] | None:
    """``"fc.2,-1"`` -> ``["fc.2", -1]``; empty text -> None (every ReLU site)."""
    layers: list[str | int] = []
    for item in (part.strip() for part in str(text).split(",")):
        if not item:
            continue
        try:
            layers.append(int(item))
        except ValueError:
            layers.append(item)
    return layers or None


@METHODS.register("activation-codes", reference="He et al., arXiv 2101.05490, 2021", aliases=("actcodes",))
class ActivationCodes(HashingMethod):
    """Activation codes: train a network with a base hashing loss, then read its ReLU pattern as the K-bit code
    (He et al., arXiv 2101.05490, 2021)."""

    name = "activation-codes"

    def __init__(
        self,
        bits: int,
        num_classes: int,
        num_train: int,
        seed: int = 0,
        base: Annotated[str, "hashing loss that trains the network (a method without its own training step)"] = "csq",
        base_params: Annotated[str, "parameters of the base loss, KEY=VALUE[,KEY=VALUE...]"] = "",
        variant: Annotated[str, Choices(*VARIANTS), "reduction of the ReLU pattern to K bits"] = "balanced",
        layers: Annotated[str, "ReLU sites read, comma-separated names or positions (empty: every site)"] = "",
        corr_weight: Annotated[float, Range(0), "weight of the correlation term of the balanced selection"] = 1.0,
    ) -> None:
        super().__init__(bits, num_classes, num_train, seed)
        base = str(base).lower()
        if base == self.name:
            raise ConfigError("method activation-codes: base cannot be activation-codes itself")
        if method_class(base).training_step is not None:  # unknown names: one line listing the methods
            raise ConfigError(
                f"method activation-codes: base {base} has its own training step; choose a per-batch loss such as "
                "csq or dpsh"
            )
        self.base = base
        self.base_params = base_params
        self.variant = variant
        self.layers = layers
        self.corr_weight = float(corr_weight)
        self.base_loss = build_method(base, bits, num_classes, num_train, seed=seed, **parse_base_params(base_params))
        self.uses_memory_bank = self.base_loss.uses_memory_bank

    @classmethod
    def model_overrides(cls) -> dict[str, Any]:
        return {}

    def base_record(self) -> dict[str, Any]:
        """``{"name", "params"}`` of the base loss: the hashing method of the embedded network."""
        return {"name": self.base, "params": self.base_loss.params()}

    def alpha(self, step: int) -> float:
        return self.base_loss.alpha(step)

    def preinstall(self, codes: torch.Tensor, labels: torch.Tensor) -> None:
        self.base_loss.preinstall(codes, labels)

    def forward(self, u: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return self.base_loss(u, labels, index)


class ActivationCodesStep(CleanStep):
    """The clean step of the base loss; at the end it writes the trained network's activation code (He et al.,
    arXiv 2101.05490, 2021) instead of the network. One process only: the code is fitted once, on rank 0's
    model."""

    name = "activation-codes"
    data_parallel = False

    def finish(self, history: list[dict[str, Any]]) -> None:
        from hashguard.activation_codes.checkpoint import save_activation_code_model
        from hashguard.activation_codes.model import fit_activation_codes
        from hashguard.models.checkpoint import read_model_config

        super().finish(history)  # the selected weights, written and left in the model
        method: ActivationCodes = self.method  # type: ignore[assignment]
        variant: Variant = method.variant  # type: ignore[assignment]
        out = self.plan.out_dir
        network_meta = dict(read_model_config(out)) if self.plan.is_main else {}
        network_meta["method"] = method.base_record()
        network_meta.pop("format", None)
        code_model = fit_activation_codes(
            self.model, self.train_set, method.bits, variant=variant, layers=parse_layers(method.layers),
            seed=self.seed, corr_weight=method.corr_weight,
        )
        if self.plan.is_main:
            save_activation_code_model(out, code_model, base_meta=network_meta,
                                       extra={"trained_as": {"name": method.name, "params": method.params()}})
        code = code_model.code
        self.plan.log(
            f"wrote {out} ({code.bits}-bit {code.variant} activation code from {len(code.sites)} ReLU sites of the "
            f"network trained with {method.base})"
        )


ActivationCodes.training_step = ActivationCodesStep
