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

from hashguard.activation_codes.model import VARIANTS, Variant
from hashguard.activation_codes.patterns import site_key
from hashguard.methods.base_loss import BaseLossMethod
from hashguard.methods.registry import METHODS
from hashguard.registry import Choices, Range
from hashguard.training.clean_step import CleanStep


def parse_layers(text: str) -> list[str | int] | None:
    """``"fc.2,-1"`` -> ``["fc.2", -1]``; empty text -> None (every ReLU site)."""
    return [site_key(item.strip()) for item in str(text).split(",") if item.strip()] or None


@METHODS.register("activation-codes", reference="He et al., arXiv 2101.05490, 2021", aliases=("actcodes",))
class ActivationCodes(BaseLossMethod):
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
        self.variant = variant
        self.layers = layers
        self.corr_weight = float(corr_weight)
        self.use_base(base, base_params)

    def base_record(self) -> dict[str, Any]:
        """``{"name", "params"}`` of the base loss: the hashing method of the embedded network."""
        return {"name": self.base, "params": self.loss_at_bits.params()}


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
        code_model = fit_activation_codes(
            self.model, self.train_set, method.bits, variant=variant, layers=parse_layers(method.layers),
            seed=self.seed, corr_weight=method.corr_weight,
        )
        network_meta = {**read_model_config(out), "method": method.base_record()}  # one process: the file is here
        save_activation_code_model(out, code_model, base_meta=network_meta,
                                   extra={"trained_as": {"name": method.name, "params": method.params()}})
        code = code_model.code
        self.plan.log(
            f"wrote {out} ({code.bits}-bit {code.variant} activation code from {len(code.sites)} ReLU sites of the "
            f"network trained with {method.base})"
        )


ActivationCodes.training_step = ActivationCodesStep
