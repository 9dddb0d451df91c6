"""Clean mAP of every registered hashing method on the demo data, mean and spread over seeds.

Usage: ``python benchmarks/bench_methods.py [--seeds 3] [--epochs 4] [--train-items 1000] [--bits 16]``

Each run trains the small CNN from scratch with the project trainer (Adam, batch 32) on the first training
items of ``demo-mnist-multi`` (multi-label 2x2 grids scaled to 28 px; ``--train-items`` items, ``--epochs``
epochs) or ``demo-mnist`` (single label, 28 px; ``--single-items`` 500, ``--single-epochs`` 2, the budget
of the tests: single-label digits are learnt much faster), then ranks 200 queries against 1,000 database
items (mAP over the whole list, ties broken by database index, relevant = shares a label).

Variants (see docs/methods.md for why):

* **demo recipe** (the rows without a note): BatchNorm1d on the code logits (``hash_norm="batchnorm"``,
  u = tanh(BN(z))), lr 5e-4, in-batch pairs for the pairwise losses; the loss formulas are the reference;
* **bank**: the reference memory-bank form of a pairwise loss, otherwise the demo recipe;
* **plain tanh**: u = tanh(z) without normalisation and lr 2e-3 (the earlier test setting), to show the
  saturation / collapse the demo recipe avoids.

The last row gives the mAP of random +-1 codes on the same queries (one draw per seed). Torch runs on one
thread (the benchmark machines are shared); 3 seeds of the default variants take 10-15 minutes on 2 shared
cores.
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
from hashguard.retrieval import mean_average_precision
from hashguard.seeding import seed_everything
from hashguard.testing import small_cnn_model
from hashguard.training import train_model

DEMO_RECIPE: dict[str, Any] = {"hash_norm": "batchnorm", "lr": 5e-4}
PLAIN_TANH: dict[str, Any] = {"hash_norm": "none", "lr": 2e-3}

#: (row label, method name, method parameters, training recipe)
VARIANTS: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    ("dph", "dph", {"pairs": "batch"}, DEMO_RECIPE),
    ("dpsh", "dpsh", {"pairs": "batch"}, DEMO_RECIPE),
    ("hashnet", "hashnet", {"pairs": "batch"}, DEMO_RECIPE),
    ("csq", "csq", {}, DEMO_RECIPE),
    ("dpn", "dpn", {}, DEMO_RECIPE),
    ("hswd", "hswd", {"pairs": "batch"}, DEMO_RECIPE),
    ("orthohash", "orthohash", {}, DEMO_RECIPE),
    ("hashnet (bank)", "hashnet", {}, DEMO_RECIPE),
    ("hashnet (plain tanh)", "hashnet", {"pairs": "batch"}, PLAIN_TANH),
    ("csq (plain tanh)", "csq", {}, PLAIN_TANH),
    ("dpn (plain tanh)", "dpn", {}, PLAIN_TANH),
]
SOURCES = ("demo-mnist", "demo-mnist-multi")
QUERY_ITEMS = 200
DATABASE_ITEMS = 1000


def mean_ap(q: np.ndarray, d: np.ndarray, ql: np.ndarray, dl: np.ndarray) -> float:
    """mAP over the whole database with the project's stable (distance, index) order."""
    return float(mean_average_precision(q, d, ql, dl, topk=None))


def run_one(
    splits: Any,
    name: str,
    params: dict[str, Any],
    recipe: dict[str, Any],
    budget: tuple[int, int],
    bits: int,
    seed: int,
) -> float:
    """Train one (method, recipe, seed) for ``budget`` = (items, epochs) and return the clean mAP."""
    items, epochs = budget
    train = SubsetDataset(splits.train, np.arange(min(items, len(splits.train))))
    query = SubsetDataset(splits.query, np.arange(min(QUERY_ITEMS, len(splits.query))))
    database = SubsetDataset(splits.database, np.arange(min(DATABASE_ITEMS, len(splits.database))))
    seed_everything(seed)
    spec = {"hash_norm": recipe["hash_norm"], **method_class(name).model_overrides()}
    model = small_cnn_model(splits, bits, seed=seed, **spec)
    method = build_method(name, bits, splits.num_classes, len(train), seed=seed, **params)
    config = TrainConfig(
        recipe="fast",
        epochs=epochs,
        batch_size=32,
        lr=recipe["lr"],
        progress=False,
        val_fraction=0.0,
        select="last",
    )
    with tempfile.TemporaryDirectory() as out:
        train_model(model, method, train, config, out, seed=seed, log=None)
    q, ql = encode_dataset(model, query)
    d, dl = encode_dataset(model, database)
    return mean_ap(q, d, ql, dl)


def random_map(splits: Any, bits: int, seed: int) -> float:
    """mAP of random +-1 codes for the benchmark's queries and database (one seeded draw)."""
    rng = np.random.default_rng(seed)
    ql = np.asarray(splits.query.labels[:QUERY_ITEMS])
    dl = np.asarray(splits.database.labels[:DATABASE_ITEMS])
    q = np.where(rng.random((len(ql), bits)) < 0.5, 1, -1)
    d = np.where(rng.random((len(dl), bits)) < 0.5, 1, -1)
    return mean_ap(q, d, ql, dl)


def cell(scores: list[float]) -> str:
    """'mean ± std (min)' of a list of scores."""
    spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
    return f"{statistics.mean(scores):.3f} ± {spread:.3f} ({min(scores):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-items", type=int, default=1000)
    parser.add_argument("--single-epochs", type=int, default=2)
    parser.add_argument("--single-items", type=int, default=500)
    parser.add_argument("--bits", type=int, default=16)
    parser.add_argument("--only", default="", help="comma-separated variant labels to run (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    chosen = [v for v in VARIANTS if not args.only or v[0] in args.only.split(",")]
    splits = {
        source: open_dataset(source, seed=0, image_size=28 if source == "demo-mnist-multi" else None)
        for source in SOURCES
    }
    seeds = list(range(args.seeds))
    budgets = {
        "demo-mnist": (args.single_items, args.single_epochs),
        "demo-mnist-multi": (args.train_items, args.epochs),
    }
    rows = []
    started = time.perf_counter()
    for label, name, params, recipe in chosen:
        cells = []
        for source in SOURCES:
            scores = [run_one(splits[source], name, params, recipe, budgets[source], args.bits, seed) for seed in seeds]
            cells.append(cell(scores))
        rows.append((label, *cells))
        print(f"  done {label}: {' | '.join(cells)} ({time.perf_counter() - started:.0f} s)", flush=True)
    rows.append(("random codes", *(cell([random_map(splits[s], args.bits, seed) for seed in seeds]) for s in SOURCES)))
    print(
        f"\nclean mAP, {args.bits} bits, (train items, epochs) {budgets}, "
        f"mean ± std (min) over {args.seeds} seeds, {time.perf_counter() - started:.0f} s"
    )
    print(f"| {'method':<22} | {'demo-mnist':<23} | {'demo-mnist-multi':<23} |")
    print(f"|{'-' * 24}|{'-' * 25}|{'-' * 25}|")
    for label, single, multi in rows:
        print(f"| {label:<22} | {single:<23} | {multi:<23} |")


if __name__ == "__main__":
    main()
