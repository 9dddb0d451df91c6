"""Checkpoints: ``model.safetensors`` (weights) plus ``model.json`` (how to rebuild the model, provenance).

Loading never executes code: weights come from safetensors, configuration from JSON. Saving writes both files
under temporary names and moves them into place only when both are complete, so a failed save (a full disk)
leaves the previous pair as it was. A checkpoint whose
weights do not fit the model described by its JSON (another backbone, another code length) is refused with
one line naming the problem.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from hashguard.errors import CheckpointError, ConfigError
from hashguard.io_utils import atomic_write, atomic_write_many, ensure_directory, json_text
from hashguard.models.hash_model import HashModel, ModelSpec
from hashguard.models.heads import HEADS, holds_batchnorm
from hashguard.versions import environment_versions

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model.json"
FORMAT = "hashguard-model/1"


def _plain_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies (safetensors refuses shared or strided storage)."""
    return {key: value.detach().to("cpu").contiguous().clone() for key, value in state.items()}


def _state_writer(state: dict[str, torch.Tensor]) -> Callable[[str], None]:
    """A writer of ``state`` as safetensors for :func:`~hashguard.io_utils.atomic_write`. The bytes are written
    by Python, so that a full disk or a refused write is an ``OSError`` naming the file (safetensors' own
    writer reports those as an exception of its own)."""
    plain = _plain_state(state)

    def write(tmp: str) -> None:
        data = save(plain)
        with open(tmp, "wb") as handle:
            handle.write(data)

    return write


def save_state_file(path: str | os.PathLike[str], state: dict[str, torch.Tensor]) -> None:
    """Write a dict of tensors as safetensors, atomically."""
    atomic_write(path, _state_writer(state))


def load_state_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a safetensors file; a missing or corrupt file raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weight file not found")
    try:
        return load_file(str(path))
    except Exception as exc:
        raise CheckpointError(f"{path}: corrupt safetensors file ({type(exc).__name__}: {exc})") from None


def save_model(
    directory: str | os.PathLike[str],
    model: HashModel,
    *,
    method: dict[str, Any] | None = None,
    num_classes: int | None = None,
    dataset: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``model`` (or the given ``state`` for it) and its description into ``directory``."""
    directory = ensure_directory(directory)
    payload = {
        "format": FORMAT,
        "model": model.spec.to_dict(),
        "method": method or {},
        "num_classes": num_classes,
        "dataset": dataset or {},
        "versions": environment_versions(),
        **(extra or {}),
    }
    text = json_text(payload)

    def write_config(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)

    # both files are staged before either replaces the old pair: weights and description always belong together
    atomic_write_many(
        {
            directory / WEIGHTS_FILE: _state_writer(state if state is not None else model.state_dict()),
            directory / CONFIG_FILE: write_config,
        }
    )
    return directory


def read_model_config(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed ``model.json`` of a checkpoint directory."""
    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: checkpoint directory not found")
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; not a hashguard checkpoint directory")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable JSON ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} checkpoint description")
    return payload


BACKBONE_PREFIX = "backbone."
HEAD_NORM_PREFIX = "hash_norm."


def _backbone_keys(name: str) -> set[str] | None:
    """The state-dict keys of the registered backbone ``name`` (built on the meta device: no memory, no
    initialisation cost); None when it cannot be built with neutral settings."""
    from hashguard.models.backbones import build_backbone

    try:
        with torch.device("meta"):
            module = build_backbone(name, 8, 3, 64, None)
    except Exception:  # noqa: BLE001 - a plug-in backbone with needs of its own is simply not a candidate
        return None
    return {f"{BACKBONE_PREFIX}{key}" for key in module.state_dict()}


def weights_backbone(state: dict[str, torch.Tensor]) -> str | None:
    """The registered backbone whose layers the weights ``state`` hold (by their names), if any."""
    from hashguard.models.backbones import BACKBONES

    found = {key for key in state if key.startswith(BACKBONE_PREFIX)}
    for name in BACKBONES:
        if _backbone_keys(name) == found:
            return name
    return None


def _refuse_other_architecture(directory: Path, described: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    """Raise :class:`CheckpointError` when the weights are not of the architecture ``model.json`` describes
    (another backbone, or a batch-norm hash head on one side only); return when they are."""
    from hashguard.models.backbones import BACKBONES

    name = described.get("backbone")
    config = directory / CONFIG_FILE
    if isinstance(name, str) and name in BACKBONES:
        keys = _backbone_keys(name)
        found = {key for key in state if key.startswith(BACKBONE_PREFIX)}
        if keys is not None and keys != found:
            actual = weights_backbone(state)
            if actual is not None:
                raise CheckpointError(
                    f"{config}: model.json says backbone {name} but the weights in {WEIGHTS_FILE} are of {actual}"
                )
            raise CheckpointError(
                f"{config}: the weights in {WEIGHTS_FILE} do not match the {name} architecture model.json "
                f"describes ({len(keys - found)} missing, {len(found - keys)} unexpected layers)"
            )
    norm = described.get("hash_norm", "none")
    has_norm = any(key.startswith(HEAD_NORM_PREFIX) for key in state)
    if norm in HEADS and has_norm != holds_batchnorm(norm):
        held = "a batch-norm hash head" if has_norm else "no batch-norm hash head"
        raise CheckpointError(
            f"{config}: model.json says hash_norm {norm} but the weights in {WEIGHTS_FILE} hold {held}"
        )


def load_model(
    directory: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[HashModel, dict[str, Any]]:
    """Rebuild the model of a checkpoint directory; returns ``(model in eval mode, model.json payload)``."""
    directory = Path(directory)
    payload = read_model_config(directory)
    state = load_state_file(directory / WEIGHTS_FILE)
    if "activation_codes" in payload:  # a trained network read as an activation-code model
        from hashguard.activation_codes.checkpoint import model_from_checkpoint

        return model_from_checkpoint(directory, payload, state, device), payload
    described = payload.get("model") if isinstance(payload.get("model"), dict) else {}
    try:
        spec_dict = dict(payload["model"])
        spec_dict["pretrained"] = None  # the weights below replace any pretrained initialisation
        spec = ModelSpec.from_dict(spec_dict)
    except (KeyError, TypeError, ConfigError) as exc:
        # another backbone than the weights' makes other fields look wrong (mean/std): name the real cause
        _refuse_other_architecture(directory, described, state)
        raise CheckpointError(f"{directory / CONFIG_FILE}: invalid model description ({exc})") from None
    model = HashModel(spec)
    if set(model.state_dict()) != set(state):
        _refuse_other_architecture(directory, described, state)
    load_fitting_state(model, state, directory / WEIGHTS_FILE, f"the {spec.backbone} model with {spec.bits} bits")
    model.to(device)
    model.eval()
    return model, payload


def load_fitting_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, what: str) -> None:
    """Load ``state`` into ``model`` after checking that its keys and shapes are the model's; otherwise one
    :class:`CheckpointError` naming ``path`` and ``what`` the weights should have been."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise CheckpointError(
            f"{path}: weights belong to another model than {what} "
            f"({len(missing)} missing, {len(unexpected)} unexpected keys, e.g. {example!r})"
        )
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{path}: tensor {key!r} has shape {tuple(tensor.shape)}, {what} expects {tuple(expected[key].shape)}"
            )
    model.load_state_dict(state)
