"""Clean mAP of every hashing method on the demo data: mean and spread over 3 seeds, side by side.

    python benchmarks/bench_methods.py [--quick] [--bits 32] [--epochs 4]

Small CNN from scratch, the project trainer (fast recipe, in-batch pairs for the pairwise losses), mAP over
the whole database with the stable (distance, index) tie rule. ``--quick`` uses 1,000 training items,
200 queries and 1,000 database items.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

from hashguard.config import TrainConfig
from hashguard.data import SubsetDataset, open_dataset
from hashguard.encoding import encode_dataset
from hashguard.methods import build_method, method_class
from hashguard.models import HashModel, ModelSpec
from hashguard.retrieval import mean_average_precision
from hashguard.seeding import seed_everything
from hashguard.training import train_model

METHODS = {
    "dph": {"pairs": "batch"},
    "dpsh": {"pairs": "batch"},
    "hashnet": {"pairs": "batch"},
    "csq": {},
    "dpn": {},
    "hswd": {"pairs": "batch"},
    "orthohash": {},
}


def clean_map(name: str, source: str, seed: int, bits: int, epochs: int, quick: bool) -> float:
    splits = open_dataset(source, seed=0, image_size=28 if source == "demo-mnist-multi" else None)
    train, query, database = splits.train, splits.query, splits.database
    if quick:
        train = SubsetDataset(train, np.arange(1000))
        query = SubsetDataset(query, np.arange(200))
        database = SubsetDataset(database, np.arange(1000))
    seed_everything(seed)
    channels, size, _ = splits.image_shape
    spec = ModelSpec(backbone="small_cnn", bits=bits, in_channels=channels, image_size=size,
                     mean=list(splits.mean), std=list(splits.std), **method_class(name).model_overrides())
    model = HashModel(spec)
    method = build_method(name, bits, splits.num_classes, len(train), seed=seed, **METHODS[name])
    config = TrainConfig(recipe="fast", epochs=epochs, batch_size=32, lr=2e-3, progress=False, val_fraction=0.0,
                         select="last")
    with tempfile.TemporaryDirectory() as out:
        train_model(model, method, train, config, out, seed=seed, log=None)
    q, ql = encode_dataset(model, query)
    d, dl = encode_dataset(model, database)
    return float(mean_average_precision(q, d, ql, dl))


def random_map(source: str, bits: int, quick: bool) -> float:
    splits = open_dataset(source, seed=0)
    nq, nd = (200, 1000) if quick else (len(splits.query), len(splits.database))
    rng = np.random.default_rng(0)
    q = np.where(rng.random((nq, bits)) < 0.5, -1, 1)
    d = np.where(rng.random((nd, bits)) < 0.5, -1, 1)
    return float(mean_average_precision(q, d, splits.query.labels[:nq], splits.database.labels[:nd]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--bits", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    sources = ["demo-mnist", "demo-mnist-multi"]
    print(f"{args.bits} bits, {args.epochs} epochs, {args.seeds} seeds{' (quick sizes)' if args.quick else ''}")
    print("| method | " + " | ".join(f"{s} mAP (mean ± sd)" for s in sources) + " | seconds |")
    print("|---|" + "---|" * len(sources) + "---|")
    print("| random codes | " + " | ".join(f"{random_map(s, args.bits, args.quick):.3f}" for s in sources) + " | |")
    for name in METHODS:
        started = time.perf_counter()
        cells = []
        for source in sources:
            scores = [clean_map(name, source, seed, args.bits, args.epochs, args.quick) for seed in range(args.seeds)]
            cells.append(f"{statistics.mean(scores):.3f} ± {statistics.stdev(scores):.3f}")
        print(f"| {name} | " + " | ".join(cells) + f" | {time.perf_counter() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
