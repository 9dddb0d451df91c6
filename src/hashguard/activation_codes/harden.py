"""Hardening an activation-code model: adversarially train the network it reads, then read the code again.

An activation code (He et al., arXiv 2101.05490, 2021) has no loss of its own, so SAAT, ATRDH or CgAT cannot
train it directly. :func:`defend_activation_codes` (what ``hashguard defend`` and a study's defense stages run on
an activation-code checkpoint) does what a user would do by hand, in one resumable run under ``--out``:

1. ``OUT/network-base``: the embedded network written as a plain checkpoint, with the hashing method it was
   trained with (recorded in the activation-code checkpoint as its base method);
2. ``OUT/network``: that network hardened by the defense (a normal defense run: resumable, with provenance);
3. ``OUT``: the activation code of the hardened network, read with the original code's settings (bit count,
   variant, ReLU sites, seed, correlation weight) on the same fitting split, with the defense's provenance.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hashguard.activation_codes.checkpoint import CARRIED, KEY, save_activation_code_model
from hashguard.activation_codes.model import ActivationCodeModel, fit_activation_codes
from hashguard.config import DataConfig
from hashguard.data.base import HashingDataset
from hashguard.defenses.config import DefenseConfig
from hashguard.defenses.trainer import DefenseResult
from hashguard.distributed.collectives import barrier
from hashguard.distributed.world import current_world
from hashguard.errors import CheckpointError
from hashguard.labeling.store import copy_labels
from hashguard.models.checkpoint import WEIGHTS_FILE, save_model
from hashguard.pipeline.checkpoint import open_checkpoint

__all__ = ["NETWORK_BASE", "NETWORK", "defend_activation_codes"]

#: subdirectories of the output: the embedded network as a checkpoint, and the hardened network
NETWORK_BASE = "network-base"
NETWORK = "network"


def defend_activation_codes(
    checkpoint: Path,
    settings: DefenseConfig,
    out_dir: Path,
    defend_network: Callable[..., DefenseResult],
    *,
    resume: bool,
    device: str,
    train_set: HashingDataset | None,
    data: DataConfig | None,
    stop_after_epoch: int | None,
    log: Any,
) -> DefenseResult:
    """Harden the network of the activation-code checkpoint ``checkpoint`` with ``settings`` (through
    ``defend_network``, :func:`hashguard.defenses.api.defend`) and write the re-read activation code to ``out_dir``
    (module docstring). Returns the network defense's result, with ``out_dir`` as its directory."""
    opened = open_checkpoint(checkpoint, device=device, data=data, with_data=train_set is None)
    code_model = opened.model
    if not isinstance(code_model, ActivationCodeModel):
        raise CheckpointError(f"{checkpoint}: not an activation-code checkpoint")
    described = opened.meta[KEY]
    base_method = dict((described.get("base") or {}).get("method") or {})
    if not base_method.get("name"):
        raise CheckpointError(
            f"{checkpoint}: the activation code records no hashing method for its network, so its network cannot "
            "be hardened here; harden the network it was read from, then read its codes again "
            "(python -m hashguard.activation_codes)"
        )
    out = Path(out_dir)
    base_dir, network_dir = out / NETWORK_BASE, out / NETWORK
    if not (base_dir / WEIGHTS_FILE).is_file():
        carried = {key: opened.meta[key] for key in CARRIED if key in opened.meta}
        save_model(base_dir, code_model.base_model, method=base_method, num_classes=opened.num_classes,
                   dataset=opened.meta.get("dataset"), extra={**carried, "read_from": str(checkpoint)})
        copy_labels(checkpoint, base_dir)  # a scarce-label run's propagated labels
    barrier(current_world())  # under torchrun rank 0 alone writes; every rank then reads the network from there
    result = defend_network(
        base_dir, settings.defense, network_dir, settings, None, resume=resume, device=device,
        train_set=train_set, data=data, stop_after_epoch=stop_after_epoch, log=log,
    )
    if not result.finished:
        return DefenseResult(out, result.epochs_done, False, result.history)
    hardened = open_checkpoint(network_dir, device=device, with_data=False)
    fit_set = train_set if train_set is not None else opened.training_split()
    code = code_model.code
    model = fit_activation_codes(
        hardened.model, fit_set, code.bits, variant=code.variant,  # type: ignore[arg-type]
        layers=list(code.site_names), seed=code.seed, corr_weight=code.corr_weight,
    )
    meta = {key: opened.meta[key] for key in (*CARRIED, "num_classes", "dataset") if key in opened.meta}
    meta["method"] = base_method  # the same fitting split, data and classes as the code that was hardened
    extra = {"defense": hardened.meta.get("defense")}
    if "trained_as" in opened.meta:
        extra["trained_as"] = opened.meta["trained_as"]
    save_activation_code_model(out, model, base_meta=meta, source=str(network_dir), extra=extra)
    copy_labels(checkpoint, out)
    if log is not None:
        log(f"wrote {out} (the {code.bits}-bit {code.variant} activation code of the hardened network "
            f"{network_dir})")
    return DefenseResult(out, result.epochs_done, True, result.history)
