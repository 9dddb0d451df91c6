"""Clean mAP of every registered hashing method on the demo data, mean and spread over seeds.

Usage: ``python benchmarks/bench_methods.py [--seeds 3] [--epochs 4] [--train-items 1000] [--bits 16]``

Each run trains the small CNN with the project trainer (Adam, lr 2e-3, batch 32) on the first
``--train-items`` training items of ``demo-mnist`` (single label, 28 px) or ``demo-mnist-multi`` (multi-label
2x2 grids, scaled to 28 px), then ranks 200 queries against 1,000 database items (mAP over the whole list,
ties broken by database index). Pairwise methods run in both memory-bank (reference) and in-batch form.
The table also gives the mAP of random codes on the same queries.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import numpy as np
import torch

from hashguard.config import TrainConfig
from hashguard.data import SubsetDataset, open_dataset
from hashguard.encoding import encode_dataset
from hashguard.methods import build_method, method_class
from hashguard.models.hash_model import HashModel, ModelSpec
from hashguard.seeding import seed_everything
from hashguard.training import train_model

VARIANTS: list[tuple[str, str, dict[str, Any]]] = [
    ("dph (bank)", "dph", {}),
    ("dph (batch)", "dph", {"pairs": "batch"}),
    ("dpsh (bank)", "dpsh", {}),
    ("dpsh (batch)", "dpsh", {"pairs": "batch"}),
    ("hashnet (bank)", "hashnet", {}),
    ("hashnet (batch)", "hashnet", {"pairs": "batch"}),
    ("csq", "csq", {}),
    ("dpn (m=1)", "dpn", {}),
    ("dpn (m=0.5)", "dpn", {"margin": 0.5}),
    ("hswd (bank)", "hswd", {}),
    ("hswd (batch)", "hswd", {"pairs": "batch"}),
    ("orthohash", "orthohash", {}),
]
SOURCES = ("demo-mnist", "demo-mnist-multi")


def mean_ap(q: np.ndarray, d: np.ndarray, ql: np.ndarray, dl: np.ndarray) -> float:
    """mAP over the whole database with a stable (distance, index) order."""
    try:
        from hashguard.retrieval import mean_average_precision
    except ImportError:
        mean_average_precision = None
    if mean_average_precision is not None:
        return float(mean_average_precision(q, d, ql, dl, topk=None))
    distances = 0.5 * (q.shape[1] - q.astype(np.float64) @ d.astype(np.float64).T)
    scores = []
    for i in range(len(q)):
        relevant = (dl[np.argsort(distances[i], kind="stable")] @ ql[i] > 0).astype(np.float64)
        if relevant.sum() == 0:
            scores.append(0.0)
            continue
        precision = np.cumsum(relevant) / np.arange(1, len(relevant) + 1)
        scores.append(float((precision * relevant).sum() / relevant.sum()))
    return float(np.mean(scores))


def run_one(splits: Any, name: str, params: dict[str, Any], args: argparse.Namespace, seed: int) -> float:
    train = SubsetDataset(splits.train, np.arange(min(args.train_items, len(splits.train))))
    query = SubsetDataset(splits.query, np.arange(min(200, len(splits.query))))
    database = SubsetDataset(splits.database, np.arange(min(1000, len(splits.database))))
    seed_everything(seed)
    channels, size, _ = splits.image_shape
    spec = ModelSpec(
        backbone="small_cnn",
        bits=args.bits,
        in_channels=channels,
        image_size=size,
        mean=list(splits.mean),
        std=list(splits.std),
        **method_class(name).model_overrides(),
    )
    model = HashModel(spec)
    method = build_method(name, args.bits, splits.num_classes, len(train), seed=seed, **params)
    config = TrainConfig(
        recipe="fast",
        epochs=args.epochs,
        batch_size=32,
        lr=2e-3,
        progress=False,
        val_fraction=0.0,
        select="last",
    )
    with tempfile.TemporaryDirectory() as out:
        train_model(model, method, train, config, out, seed=seed, log=None)
    q, ql = encode_dataset(model, query)
    d, dl = encode_dataset(model, database)
    return mean_ap(q, d, ql, dl)


def random_map(splits: Any, bits: int) -> float:
    rng = np.random.default_rng(0)
    ql = splits.query.labels[:200]
    dl = splits.database.labels[:1000]
    q = np.where(rng.random((len(ql), bits)) < 0.5, 1, -1)
    d = np.where(rng.random((len(dl), bits)) < 0.5, 1, -1)
    return mean_ap(q, d, np.asarray(ql), np.asarray(dl))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-items", type=int, default=1000)
    parser.add_argument("--bits", type=int, default=16)
    parser.add_argument("--only", default="", help="comma-separated variant labels to run (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    chosen = [v for v in VARIANTS if not args.only or v[0] in args.only.split(",")]
    splits = {
        source: open_dataset(source, seed=0, image_size=28 if source == "demo-mnist-multi" else None)
        for source in SOURCES
    }
    rows = []
    started = time.perf_counter()
    for label, name, params in chosen:
        cells = []
        for source in SOURCES:
            scores = [run_one(splits[source], name, params, args, seed) for seed in range(args.seeds)]
            spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
            cells.append(f"{statistics.mean(scores):.3f} ± {spread:.3f}")
        rows.append((label, *cells))
        print(f"  done {label} ({time.perf_counter() - started:.0f} s)", flush=True)
    rows.append(("random codes", *(f"{random_map(splits[s], args.bits):.3f}" for s in SOURCES)))
    print(
        f"\nclean mAP, {args.bits} bits, {args.train_items} train items, {args.epochs} epochs, "
        f"mean ± std over {args.seeds} seeds"
    )
    print(f"| {'method':<16} | {'demo-mnist':<15} | {'demo-mnist-multi':<16} |")
    print(f"|{'-' * 18}|{'-' * 17}|{'-' * 18}|")
    for label, single, multi in rows:
        print(f"| {label:<16} | {single:<15} | {multi:<16} |")


if __name__ == "__main__":
    main()
