"""Activation-code diagnostics of an undefended and a SAAT-hardened network: redundancy, categorisation and ReLU
flips under the mainstay attack, per demo source and seed.

    .venv/bin/python benchmarks/bench_activation_codes.py [--quick] [--seeds 0,1,2]
        [--sources demo-mnist,demo-mnist-multi] [--bits 16] [--train-items 500] [--epochs 3] [--finetune-epochs 2]
        [--queries 200] [--database 1000] [--flip-queries 20] [--iterations 10] [--json-out FILE]

He, Lei, Ji and Tao ("Neural networks behave as hash encoders: An empirical study", arXiv 2101.05490, 2021) read
the binarised ReLU pattern of a trained network as a hash code. For every (source, seed) this script trains CSQ
(Yuan et al., CVPR 2020; small CNN with BatchNorm on the code logits, the demo recipe of ``bench_seed_methods.py``)
for ``--epochs`` epochs on the first ``--train-items`` training items, then continues from that base model in two
ways for ``--finetune-epochs`` epochs each: a clean fine-tune with the CSQ loss (the *undefended* model; same
number of epochs as the hardened one, so that extra training is not mistaken for an effect of SAAT) and SAAT
(Yuan et al., IEEE TIFS 2023; ``preset="demo"``, eps 32/255). For each of the two models it reports:

* the paper's *redundancy ratio* (N - distinct codes) / N of the full ReLU pattern (every ``nn.ReLU`` site) over
  the training items and over the queries (0: every item in its own linear region, the paper's "determinism");
* for the learned sign codes and for the balanced ``--bits``-bit activation code of the ``fc.2`` ReLU (fitted on
  the training items): mAP of the queries against the database, redundancy and correlated-bit ratios, K-NN
  (k = 9, Hamming) accuracy of the queries against the training codes and K-Means accuracy (cluster purity) of the
  queries (:func:`hashguard.activation_codes.code_diagnostics`);
* the mean number of ReLU units (all sites) that the non-targeted mainstay attack switches on the first
  ``--flip-queries`` queries, at eps 8/255 and 32/255 (``--iterations`` sign steps of eps/8).

``--quick`` shrinks every size (seed 0, 200 training items, 2 + 1 epochs, 50 queries, 300 database items, flips on
5 queries with 3 steps): a smoke run whose numbers mean nothing. Every random choice is seeded; torch runs on
``--threads`` threads (default 1). Never run as a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench_seed_methods import RECIPE, describe, hardened, parse_list, train_checkpoint
from hashguard.activation_codes import attack_flips, code_diagnostics, fit_activation_codes, redundancy_ratio
from hashguard.activation_codes.patterns import find_sites, unit_states
from hashguard.api import encode
from hashguard.config import TrainConfig
from hashguard.data import SubsetDataset, open_dataset
from hashguard.methods import build_method
from hashguard.models import load_model
from hashguard.models.hash_model import HashModel
from hashguard.retrieval.metrics import mean_average_precision
from hashguard.seeding import seed_everything
from hashguard.testing import stack_split
from hashguard.training import train_model
from table_text import load_text  # a sibling module of the benchmark scripts

SOURCES = ("demo-mnist", "demo-mnist-multi")
FC = "fc.2"  # the small CNN's fully connected ReLU (256 units)


def clean_finetune(base_dir: Path, out: Path, train: SubsetDataset, bits: int, classes: int, epochs: int,
                   seed: int, source: str) -> HashModel:
    """The base checkpoint trained ``epochs`` more epochs with its CSQ loss (the control for SAAT's epochs)."""
    seed_everything(seed)
    model, _ = load_model(base_dir)
    method = build_method("csq", bits, classes, len(train), seed=seed)
    config = TrainConfig(recipe="fast", epochs=epochs, batch_size=RECIPE["batch_size"], lr=RECIPE["lr"],
                         progress=False, val_fraction=0.0, select="last")
    train_model(model, method, train, config, out, seed=seed, log=None, describe=describe(source))
    return model.eval()


def pattern_redundancy(model: HashModel, images: torch.Tensor) -> tuple[float, int]:
    """(redundancy ratio of the full ReLU pattern over ``images``, units read)."""
    network = model.eval()
    sites = [site for site, _ in find_sites(network, images[:1])]
    states = torch.cat([unit_states(network, images[start:start + 100], sites)
                        for start in range(0, len(images), 100)])
    return redundancy_ratio(states.numpy().astype(np.int8) * 2 - 1), int(states.shape[1])


def code_rows(codes_model: HashModel, train: Any, query: Any, database: Any, seed: int) -> dict[str, float]:
    """mAP and the code diagnostics of one code model (learned or activation codes)."""
    ref, ref_labels = encode(codes_model, train)
    test, test_labels = encode(codes_model, query)
    db, db_labels = encode(codes_model, database)
    row = {"map": float(mean_average_precision(test, db, test_labels, db_labels, topk=None))}
    row.update(code_diagnostics(ref, ref_labels, test, test_labels, seed=seed))
    return row


def measure(model: HashModel, train: SubsetDataset, query: Any, database: Any, args: argparse.Namespace,
            seed: int) -> dict[str, Any]:
    """Every diagnostic of one network."""
    train_images, _ = stack_split(train)
    query_images, query_labels = stack_split(query)
    row: dict[str, Any] = {}
    row["pattern_redundancy_train"], row["units"] = pattern_redundancy(model, train_images)
    row["pattern_redundancy_query"], _ = pattern_redundancy(model, query_images)
    row["learned"] = code_rows(model, train, query, database, seed)
    activation = fit_activation_codes(model, train, args.bits, variant="balanced", layers=[FC], seed=seed)
    row["activation"] = code_rows(activation, train, query, database, seed)
    count = min(args.flip_queries, len(query_images))
    for label, eps in (("8", 8 / 255), ("32", 32 / 255)):
        flips = attack_flips(model, query_images[:count], query_labels[:count], "mainstay", train=train,
                             database=database, eps=eps, iterations=args.iterations, step=eps / 8, seed=0)
        row[f"flips_{label}"] = flips["mean_flips"]
    return row


def run_seed(args: argparse.Namespace, source: str, splits: Any, seed: int, root: Path) -> list[dict]:
    train = SubsetDataset(splits.train, np.arange(min(args.train_items, len(splits.train))))
    query = SubsetDataset(splits.query, np.arange(min(args.queries, len(splits.query))))
    database = SubsetDataset(splits.database, np.arange(min(args.database, len(splits.database))))
    base_dir = root / f"{source}-s{seed}-csq"
    started = time.perf_counter()
    train_checkpoint("csq", splits, source, train, args.bits, args.epochs, seed, base_dir)
    base_s = time.perf_counter() - started
    rows = []
    started = time.perf_counter()
    undefended = clean_finetune(base_dir, root / f"{source}-s{seed}-clean", train, args.bits, splits.num_classes,
                                args.finetune_epochs, seed, source)
    clean_s = time.perf_counter() - started
    saat, saat_s, _ = hardened(base_dir, root / f"{source}-s{seed}-saat", train, args.finetune_epochs)
    for label, model, seconds in (("undefended", undefended, clean_s), ("saat", saat.eval(), saat_s)):
        row = {"model": label, "source": source, "seed": seed, "base_s": base_s, "finetune_s": seconds,
               **measure(model, train, query, database, args, seed)}
        rows.append(row)
        print(f"  {source} seed {seed} {label}: " + json.dumps(row), flush=True)
    return rows


def print_table(rows: list[dict]) -> None:
    """Mean ± std over seeds per (source, model)."""
    columns = [
        ("pattern redundancy (train)", lambda r: r["pattern_redundancy_train"]),
        ("learned mAP", lambda r: r["learned"]["map"]),
        ("learned redundancy", lambda r: r["learned"]["redundancy_ratio"]),
        ("learned K-NN", lambda r: r["learned"]["knn_accuracy"]),
        ("learned K-Means", lambda r: r["learned"]["kmeans_accuracy_test"]),
        ("activation mAP", lambda r: r["activation"]["map"]),
        ("activation redundancy", lambda r: r["activation"]["redundancy_ratio"]),
        ("activation K-NN", lambda r: r["activation"]["knn_accuracy"]),
        ("activation K-Means", lambda r: r["activation"]["kmeans_accuracy_test"]),
        ("flips 8/255", lambda r: r["flips_8"]),
        ("flips 32/255", lambda r: r["flips_32"]),
    ]
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["source"], row["model"]), []).append(row)
    print("| source | model | seeds | " + " | ".join(name for name, _ in columns) + " |")
    print("|---|---|---|" + "---|" * len(columns))
    for (source, model), group in groups.items():
        cells = []
        for name, get in columns:
            values = [get(row) for row in group]
            digits = 0 if name.startswith("flips") else 3
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.{digits}f} ± {spread:.{digits}f}")
        print(f"| {source} | {model} | {len(group)} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2; quick 0)")
    parser.add_argument("--sources", default=",".join(SOURCES))
    parser.add_argument("--bits", type=int, default=16)
    parser.add_argument("--train-items", type=int, default=None, help="default 500; quick 200")
    parser.add_argument("--epochs", type=int, default=None, help="CSQ epochs of the base model (default 3; quick 2)")
    parser.add_argument("--finetune-epochs", type=int, default=None,
                        help="epochs of the clean fine-tune and of SAAT (default 2; quick 1)")
    parser.add_argument("--queries", type=int, default=None, help="default 200; quick 50")
    parser.add_argument("--database", type=int, default=None, help="default 1000; quick 300")
    parser.add_argument("--flip-queries", type=int, default=None, help="default 20; quick 5")
    parser.add_argument("--iterations", type=int, default=None, help="attack steps (default 10; quick 3)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    defaults = {"seeds": ("0,1,2", "0"), "train_items": (500, 200), "epochs": (3, 2), "finetune_epochs": (2, 1),
                "queries": (200, 50), "database": (1000, 300), "flip_queries": (20, 5), "iterations": (10, 3)}
    for key, (full, small) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, small if args.quick else full)
    sources = parse_list(args.sources, SOURCES)
    seeds = [int(seed) for seed in parse_list(args.seeds)]
    torch.set_num_threads(args.threads)
    print(f"load average at start: {load_text()} ({os.cpu_count()} cores, torch threads {args.threads})", flush=True)
    started = time.perf_counter()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-activation-codes-") as tmp:
        for source in sources:
            splits = open_dataset(source, seed=0, image_size=28 if source == "demo-mnist-multi" else None)
            for seed in seeds:
                rows += run_seed(args, source, splits, seed, Path(tmp))
    total = time.perf_counter() - started
    print(f"\n{args.bits} bits; CSQ {args.train_items} training items x {args.epochs} epochs, then "
          f"{args.finetune_epochs} epochs clean or SAAT (demo preset); {args.queries} queries x {args.database} "
          f"database items; flips on {args.flip_queries} queries, {args.iterations} steps; {total:.0f} s in all\n")
    print_table(rows)
    print(f"\nload average at end: {load_text()}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=2) + "\n",
                                       encoding="utf-8")


if __name__ == "__main__":
    main()
