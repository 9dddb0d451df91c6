"""Activation-code checkpoints: the wrapped network's weights and the selection in safetensors, the
description in ``model.json``, loadable by :func:`hashguard.models.load_model` (so ``hashguard evaluate`` and
``hashguard attack`` open them like any checkpoint).

``model.json`` holds the usual fields, with ``model`` describing the K-bit activation-code model (the wrapped
network's backbone and input, ``bits`` = K), plus ``activation_codes``: ``code`` (the
:class:`~hashguard.activation_codes.model.ActivationCodeSpec`), ``base_model`` (the wrapped network's own
model description) and ``base`` (provenance: the source checkpoint and its hashing method). The weights file
holds the wrapped network under ``base_model.`` and the selection (``units``; for the projection variant also
``unit_mean``, ``unit_scale``, ``projection``). ``method`` is left empty: an activation-code model has no
training loss, so ``hashguard defend`` refuses it (harden the network first, then read its activation codes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from hashguard.activation_codes.model import ActivationCodeModel, ActivationCodeSpec, Variant, fit_activation_codes
from hashguard.errors import CheckpointError, ConfigError
from hashguard.labeling.store import copy_labels
from hashguard.models.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_fitting_state, save_model
from hashguard.models.hash_model import HashModel, ModelSpec

__all__ = [
    "KEY", "is_activation_code_checkpoint", "save_activation_code_model", "model_from_checkpoint",
    "build_from_checkpoint",
]

#: the ``model.json`` key that marks an activation-code checkpoint
KEY = "activation_codes"
#: the top-level fields of a source checkpoint's ``model.json`` carried over besides ``num_classes`` and
#: ``dataset`` (its data, training record and scarce-label record, so that commands re-open the same data and
#: fitting split, with the propagated labels of a scarce-label run: see :func:`hashguard.labeling.store.copy_labels`)
CARRIED = ("data", "training", "labels")



def is_activation_code_checkpoint(meta: dict[str, Any]) -> bool:
    """Whether a parsed ``model.json`` describes an activation-code model."""
    return isinstance(meta.get(KEY), dict)


def save_activation_code_model(
    directory: str | os.PathLike[str],
    model: ActivationCodeModel,
    *,
    base_meta: dict[str, Any] | None = None,
    source: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` as a checkpoint directory; ``base_meta`` is the source checkpoint's ``model.json``
    (its data description, class count and training record are carried over), ``source`` its path; ``extra``
    further top-level ``model.json`` fields (a defense's provenance, the method the run was trained as)."""
    base_meta = base_meta or {}
    carried = {key: base_meta[key] for key in CARRIED if key in base_meta}
    extra = {
        KEY: {
            "code": model.code.to_dict(),
            "base_model": model.base_model.spec.to_dict(),
            "base": {"checkpoint": None if source is None else str(source), "method": base_meta.get("method") or {}},
        },
        **carried,
        **(extra or {}),
    }
    return save_model(
        directory,
        model,
        method={},
        num_classes=base_meta.get("num_classes"),
        dataset=base_meta.get("dataset"),
        extra=extra,
    )


def model_from_checkpoint(
    directory: Path, payload: dict[str, Any], state: dict[str, torch.Tensor], device: str | torch.device = "cpu"
) -> ActivationCodeModel:
    """Rebuild the activation-code model described by ``payload`` (a parsed ``model.json``) from ``state``."""
    config = directory / CONFIG_FILE
    described = payload.get(KEY)
    try:
        if not isinstance(described, dict):
            raise ConfigError(f"{KEY} must be a mapping")
        code = ActivationCodeSpec.from_dict(dict(described["code"]))
        base_dict = dict(described["base_model"])
        base_dict["pretrained"] = None  # the stored weights replace any pretrained initialisation
        base_spec = ModelSpec.from_dict(base_dict)
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"{config}: invalid activation-code description ({exc})") from None
    base = HashModel(base_spec)
    shapes = {"units": state.get("units")}
    if code.variant == "projection":
        shapes.update(
            unit_mean=state.get("unit_mean"), unit_scale=state.get("unit_scale"), projection=state.get("projection")
        )
    missing = [name for name, tensor in shapes.items() if tensor is None]
    if missing:
        raise CheckpointError(f"{directory / WEIGHTS_FILE}: activation-code tensor {missing[0]!r} missing")
    try:
        model = ActivationCodeModel(
            base,
            code,
            state["units"],
            mean=shapes.get("unit_mean"),
            scale=shapes.get("unit_scale"),
            weight=shapes.get("projection"),
        )
    except ConfigError as exc:
        raise CheckpointError(f"{directory / WEIGHTS_FILE}: {exc}") from None
    load_fitting_state(model, state, directory / WEIGHTS_FILE, f"the activation-code model of {base_spec.backbone}")
    model.to(device)
    model.eval()
    return model


def build_from_checkpoint(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    bits: int,
    *,
    variant: Variant = "balanced",
    layers: list[str | int] | None = None,
    seed: int = 0,
    corr_weight: float = 1.0,
    device: str = "auto",
    batch_size: int = 256,
) -> ActivationCodeModel:
    """Read the trained checkpoint ``checkpoint`` as a ``bits``-bit activation-code model fitted on the split
    it was trained on (its training split minus its validation items), and save it in ``out``."""
    from hashguard.pipeline.checkpoint import open_checkpoint

    opened = open_checkpoint(checkpoint, device=device)
    if isinstance(opened.model, ActivationCodeModel):
        raise ConfigError(f"{checkpoint}: already an activation-code model; start from the trained network")
    model = fit_activation_codes(
        opened.model,
        opened.training_split(),
        bits,
        variant=variant,
        layers=layers,
        seed=seed,
        corr_weight=corr_weight,
        batch_size=batch_size,
    )
    save_activation_code_model(out, model, base_meta=opened.meta, source=str(checkpoint))
    copy_labels(checkpoint, out)
    return model
