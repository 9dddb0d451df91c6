"""Progressive bit compression with neurons-merging layers (Fu et al., "Neurons Merging Layer: Towards Progressive
Redundancy Reduction for Deep Supervised Hashing", IJCAI 2019, Sec. 3 and Fig. 2).

The paper attaches a neurons-merging layer after the hash layer, learns which output neurons are redundant in an
*active* phase, holds that relation fixed in a *frozen* phase, truncates the layer (merges the neurons) and repeats
with a new layer until the target code length. Its exact importance measure, edge-update rule, phase lengths and
stage sizes were not available to us; the choices below are ours (``docs/methods.md``, "NMLayer"):

* **Stages** (:func:`stage_schedule`): each stage keeps ``floor(ratio * K)`` bits (default ratio 0.75) and never
  fewer than the target, e.g. 64 -> 48 -> 36 -> 27 -> 20 -> 16; an explicit list may be given instead.
* **Active phase** (:func:`choose_merges`): from the hash-layer pre-activations of the training split (eval mode,
  at most ``max_items`` items), merge one pair of groups at a time until the stage's bit count, recomputing the
  merged relaxed codes tanh(mean of the group's pre-activations) after every merge:

  - ``redundancy="correlation"``: merge the two groups whose relaxed codes have the largest (signed) Pearson
    correlation; a positively correlated pair carries nearly one bit of information, whereas averaging an
    anti-correlated pair would cancel both;
  - ``redundancy="map_drop"`` (default): the least important group is the one whose removal costs the least
    training-split mAP (leave-one-bit-out, first half of the items as queries, second half as database); it is
    merged into the group it is most positively correlated with.

  Ties go to the lowest index, so the choice is deterministic for given pre-activations.
* **Truncation**: the partition folds into a plain hash layer (:func:`hashguard.models.nmlayer.fold`).
* **Frozen phase**: the folded K_stage-bit model is fine-tuned for ``frozen_epochs`` with the hashing method's loss
  (built for K_stage bits; default DPSH with in-batch pairs) through the shared training loop. Training the
  folded layer is the merged model re-parametrised (one row per group instead of the group's rows, whose mean is
  what the output sees).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader

from hashguard.data.base import HashingDataset
from hashguard.errors import ConfigError
from hashguard.models.hash_model import HashModel
from hashguard.models.nmlayer import NeuronPartition, fold, hash_layer
from hashguard.retrieval.bit_stats import bit_correlation, leave_one_bit_out_map

Redundancy = Literal["correlation", "map_drop"]

#: Frozen-phase parameters used when ``method_params`` is None. Each stage builds a new method, so a memory bank
#: would start empty every stage; DPSH then pairs each batch with itself instead.
DEFAULT_METHOD_PARAMS: dict[str, dict[str, Any]] = {"dpsh": {"pairs": "batch"}}


def stage_schedule(bits_in: int, bits_out: int, ratio: float = 0.75) -> list[int]:
    """The bit counts after each stage: floor(ratio * K) per stage, never below ``bits_out``, ending at it."""
    if not 1 <= bits_out <= bits_in:
        raise ConfigError(f"target bits must be in 1..{bits_in}, got {bits_out}")
    if not 0 < ratio < 1:
        raise ConfigError(f"stage ratio must be in (0, 1), got {ratio}")
    stages: list[int] = []
    current = bits_in
    while current > bits_out:
        current = max(bits_out, min(current - 1, math.floor(ratio * current)))
        stages.append(current)
    return stages


@torch.no_grad()
def split_logits(
    model: HashModel, dataset: HashingDataset, max_items: int | None = None
) -> tuple[torch.Tensor, np.ndarray]:
    """Hash-layer pre-activations (eval mode) and labels of the first ``max_items`` items of ``dataset``."""
    count = len(dataset) if max_items is None else min(len(dataset), max_items)
    loader = DataLoader(dataset[:count], batch_size=256, shuffle=False)
    was_training = model.training
    model.eval()
    chunks, labels = [], []
    try:
        for images, batch_labels, _ in loader:
            chunks.append(model.logits(images.to(model.device)).cpu())
            labels.append(batch_labels)
    finally:
        model.train(was_training)
    return torch.cat(chunks).double(), torch.cat(labels).numpy()


def _pick_pair(merged: torch.Tensor, labels: np.ndarray | None, redundancy: Redundancy) -> tuple[int, int]:
    corr = bit_correlation(torch.tanh(merged).numpy())
    np.fill_diagonal(corr, -np.inf)
    if redundancy == "correlation":
        flat = int(np.argmax(corr))  # row-major: the lowest (i, j) among ties
        return divmod(flat, corr.shape[0])
    if labels is None:
        raise ConfigError("redundancy 'map_drop' needs the training labels")
    codes = torch.where(merged >= 0, 1.0, -1.0).numpy()
    half = codes.shape[0] // 2
    if half < 1:
        raise ConfigError("redundancy 'map_drop' needs at least 2 training items")
    _, drops = leave_one_bit_out_map(codes[:half], codes[half:], labels[:half], labels[half:])
    weakest = int(np.argmin(drops))
    return weakest, int(np.argmax(corr[weakest]))


def choose_merges(
    logits: torch.Tensor,
    partition: NeuronPartition,
    target_groups: int,
    labels: np.ndarray | None = None,
    redundancy: Redundancy = "map_drop",
) -> list[tuple[int, int]]:
    """Active phase: merge groups of ``partition`` (in place) until ``target_groups`` remain.

    ``logits`` are the (N, K_in) pre-activations of the partition's neurons. Returns the merged pairs as
    (representative, representative) in merge order.
    """
    if redundancy not in ("correlation", "map_drop"):
        raise ConfigError(f"redundancy must be 'correlation' or 'map_drop', got {redundancy!r}")
    if not 1 <= target_groups <= partition.num_groups:
        raise ConfigError(f"cannot merge {partition.num_groups} groups into {target_groups}")
    if logits.shape[1] != partition.size:
        raise ConfigError(f"{logits.shape[1]} pre-activations for a partition of {partition.size} neurons")
    merges: list[tuple[int, int]] = []
    while partition.num_groups > target_groups:
        groups = partition.groups()
        merged = logits @ partition.merge_matrix(logits.dtype).T
        a, b = _pick_pair(merged, labels, redundancy)
        merges.append((groups[a][0], groups[b][0]))
        partition.union(groups[a][0], groups[b][0])
    return merges


@dataclass
class CompressionResult:
    """The compressed plain model and what each stage did."""

    model: HashModel
    stages: list[dict[str, Any]] = field(default_factory=list)


def compress(
    model: HashModel,
    train_set: HashingDataset,
    target_bits: int,
    *,
    method: str = "dpsh",
    method_params: dict[str, Any] | None = None,
    train_config: Any | None = None,
    frozen_epochs: int = 1,
    stages: Sequence[int] | None = None,
    ratio: float = 0.75,
    redundancy: Redundancy = "map_drop",
    max_items: int | None = 1000,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> CompressionResult:
    """Compress a trained ``model`` to ``target_bits`` bits stage by stage (Fu et al., IJCAI 2019).

    Each stage: active phase (:func:`choose_merges` on the training split), truncation (:func:`fold`), frozen
    phase (``frozen_epochs`` of ``method`` at the stage's bit count through
    :func:`hashguard.training.trainer.train_model`, in a temporary directory; ``train_config`` is a
    :class:`hashguard.config.TrainConfig` whose ``epochs`` is replaced by ``frozen_epochs``; 0 skips training;
    ``method_params=None`` means :data:`DEFAULT_METHOD_PARAMS` of the method).
    The input model is not modified; the result is a plain :class:`HashModel` with ``bits = target_bits``.
    """
    from hashguard.config import TrainConfig
    from hashguard.methods import build_method
    from hashguard.training.trainer import train_model

    hash_layer(model)
    schedule = list(stages) if stages is not None else stage_schedule(model.bits, target_bits, ratio)
    if not schedule or schedule[-1] != target_bits or any(b <= a for a, b in zip(schedule[1:], schedule, strict=False)):
        raise ConfigError(f"stages must decrease strictly and end at {target_bits}, got {schedule}")
    if schedule[0] >= model.bits:
        raise ConfigError(f"the first stage must have fewer than {model.bits} bits, got {schedule[0]}")
    if frozen_epochs < 0:
        raise ConfigError(f"frozen_epochs must be >= 0, got {frozen_epochs}")
    params = dict(method_params) if method_params is not None else dict(DEFAULT_METHOD_PARAMS.get(method, {}))
    base_config = train_config if train_config is not None else TrainConfig(recipe="fast", progress=False)
    current = model
    history: list[dict[str, Any]] = []
    for stage_bits in schedule:
        logits, labels = split_logits(current, train_set, max_items)
        partition = NeuronPartition(current.bits)
        merges = choose_merges(logits, partition, stage_bits, labels, redundancy)
        merged = (logits @ partition.merge_matrix(logits.dtype).T).float()
        folded = fold(current, partition, (merged.mean(0), merged.var(0)))
        record: dict[str, Any] = {
            "bits_in": current.bits, "bits_out": stage_bits, "groups": partition.groups(), "merges": merges,
        }
        if frozen_epochs > 0:
            hashing = build_method(
                method, stage_bits, train_set.num_classes, len(train_set), seed=seed, **params
            )
            config = base_config.model_copy(update={"epochs": frozen_epochs, "progress": False})
            with tempfile.TemporaryDirectory(prefix="nmlayer-") as tmp:
                result = train_model(folded, hashing, train_set, config, tmp, seed=seed, log=None)
            record["frozen_history"] = result.history
        if log is not None:
            log(f"NMLayer stage {current.bits} -> {stage_bits} bits: {len(merges)} merges")
        history.append(record)
        current = folded
    current.eval()
    return CompressionResult(current, history)
