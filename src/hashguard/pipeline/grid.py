"""Data of the report's retrieval grid (the SAAT paper's Fig. 5): a few queries, their top-k database items,
the adversarial queries and their top-k, each result marked relevant (shares a label with the query) or not.

Ranking follows the project's tie rule: Hamming distance, then database index.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from hashguard.attacks import build_attack
from hashguard.attacks.pseudo_labelled import use_pseudo_labels
from hashguard.io_utils import atomic_write
from hashguard.pipeline.attack_stage import AttackedModel


def top_k(query_codes: np.ndarray, db_codes: np.ndarray, k: int) -> np.ndarray:
    """(Q, k) database indices ranked by (Hamming distance, index)."""
    q = np.asarray(query_codes, dtype=np.float64)
    d = np.asarray(db_codes, dtype=np.float64)
    distances = 0.5 * (q.shape[1] - q @ d.T)
    return np.argsort(distances, axis=1, kind="stable")[:, :k]


def choose_queries(labels: np.ndarray, count: int) -> list[int]:
    """The first ``count`` queries with distinct label sets (then the next ones, if too few are distinct)."""
    chosen: list[int] = []
    seen: set[bytes] = set()
    for index, row in enumerate(labels):
        key = (row > 0).tobytes()
        if key in seen or not row.any():
            continue
        seen.add(key)
        chosen.append(index)
        if len(chosen) == count:
            return chosen
    rest = [i for i in range(len(labels)) if i not in chosen]
    return chosen + rest[: count - len(chosen)]


def build_grid(
    target: AttackedModel, attack: str, params: dict[str, Any], count: int, k: int, path: Path
) -> dict[str, Any]:
    """Attack ``count`` queries of ``target`` with ``attack`` and write the grid arrays to ``path`` (npz)."""
    query, database = target.splits.query, target.splits.database
    if target.database is not None:  # ADSH protocol: the database is the training pool (its learned codes V)
        database = target.train_set
    labels = np.asarray(query.labels, dtype=np.float32)
    picked = choose_queries(labels, min(count, len(query)))
    context = target.context()
    attacker = use_pseudo_labels(build_attack(attack, target.model, context, **params), target.pseudo)
    if attacker.targeted:
        raise ValueError(f"the retrieval grid needs a non-targeted attack, not {attack!r}")
    images = torch.stack([query.load_image(i) for i in picked])
    batch_labels = torch.as_tensor(labels[picked])
    output = attacker.run(images, batch_labels)
    clean_codes = target.model.encode(images).cpu().numpy()
    adv_codes = output.adv_codes.cpu().numpy()
    db_codes = context.database_codes.cpu().numpy()
    db_labels = context.database_labels.cpu().numpy()
    clean_top, adv_top = top_k(clean_codes, db_codes, k), top_k(adv_codes, db_codes, k)

    def gather(rows: np.ndarray) -> np.ndarray:
        return np.stack([np.stack([database.load_image(int(j)).numpy() for j in row]) for row in rows])

    def relevant(rows: np.ndarray) -> np.ndarray:
        return np.stack([(db_labels[row] @ labels[q]) > 0 for row, q in zip(rows, picked, strict=True)])

    arrays = {
        "query_index": np.asarray(picked, dtype=np.int64),
        "query_images": images.numpy().astype(np.float32),
        "adv_images": output.adv_images.detach().cpu().numpy().astype(np.float32),
        "clean_topk_index": clean_top.astype(np.int64),
        "clean_topk_images": gather(clean_top).astype(np.float32),
        "clean_topk_relevant": relevant(clean_top),
        "adv_topk_index": adv_top.astype(np.int64),
        "adv_topk_images": gather(adv_top).astype(np.float32),
        "adv_topk_relevant": relevant(adv_top),
    }

    def _write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)

    atomic_write(path, _write)
    return {
        "queries": picked,
        "clean_relevant": int(arrays["clean_topk_relevant"].sum()),
        "adv_relevant": int(arrays["adv_topk_relevant"].sum()),
    }
