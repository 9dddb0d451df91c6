"""Scarce labels: mAP of a hashing model trained on propagated labels against the label budget, for
representative and random selection of the labelled items.

    .venv/bin/python benchmarks/bench_label_budget.py [--quick] [--seeds 0,1,2] [--source demo-mnist]
        [--budgets 0.01,0.05,0.2,1] [--method dpsh] [--bits 16] [--train-items 1000] [--epochs 4]
        [--queries 200] [--database 1000] [--rounds 1] [--alpha 0.9] [--labels-only] [--threads 1] [--json-out FILE]

For every seed and budget below 1, the first ``--train-items`` training items of ``--source`` (data seed 0) form
the unlabelled pool; :func:`hashguard.labeling.label_pool` picks the budget's items by each selection
(``representative``: density-weighted farthest point on the raw-pixel kNN graph; ``random``: seeded by the seed)
and propagates their labels to the pool (``--rounds`` progressive rounds). The method (default DPSH with its
registered defaults, Li et al., IJCAI 2016) is then trained on the propagated labels through the project
trainer (:func:`hashguard.training.train_model`; small CNN with BatchNorm on the code logits, Adam lr 5e-4, batch
32, ``--epochs`` epochs) and its codes rank the first ``--queries`` queries against the first ``--database``
database items (mAP over the whole ranking, true labels). Budget 1 (every label) is trained once per seed on the
pool's own labels.

The table gives, per budget and selection, the label accuracy of the pool after propagation (share of items whose
whole label set is right), the entry accuracy (share of right (item, class) entries: the finer measure for
multi-hot labels) and the mAP, as mean and min - max over the seeds, and the mean labelling and training
seconds. Torch runs on ``--threads`` threads (default 1: the benchmark machines are shared); the load average of
the machine is printed before and after. ``--quick``: one seed, 500 pool items, 2 epochs. ``--labels-only``:
label accuracy alone (no training; seconds). Never run as a test.
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

from hashguard.config import TrainConfig
from hashguard.data import SubsetDataset, open_dataset
from hashguard.encoding import encode_dataset
from hashguard.labeling import label_pool
from hashguard.methods import build_method, method_class
from hashguard.retrieval import mean_average_precision
from hashguard.seeding import seed_everything
from hashguard.testing import small_cnn_model
from hashguard.training import train_model
from table_text import load_text  # a sibling module of the benchmark scripts

SELECTIONS = ("representative", "random")




def train_and_rank(args: argparse.Namespace, splits: Any, train: Any, query: Any, database: Any, seed: int) -> tuple[
        float, float]:
    """(mAP, training seconds) of ``args.method`` trained on ``train`` (whatever labels it carries)."""
    seed_everything(seed)
    model = small_cnn_model(splits, args.bits, seed=seed, hash_norm="batchnorm",
                            **method_class(args.method).model_overrides())
    method = build_method(args.method, args.bits, splits.num_classes, len(train), seed=seed)
    config = TrainConfig(recipe="fast", epochs=args.epochs, batch_size=32, lr=5e-4, progress=False, val_fraction=0.0,
                         select="last")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        train_model(model, method, train, config, Path(out), seed=seed, log=None)
    seconds = time.perf_counter() - started
    query_codes, query_labels = encode_dataset(model, query)
    db_codes, db_labels = encode_dataset(model, database)
    return float(mean_average_precision(query_codes, db_codes, query_labels, db_labels, topk=None)), seconds


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    splits = open_dataset(args.source, seed=0)
    pool = SubsetDataset(splits.train, np.arange(min(args.train_items, len(splits.train))))
    query = SubsetDataset(splits.query, np.arange(min(args.queries, len(splits.query))))
    database = SubsetDataset(splits.database, np.arange(min(args.database, len(splits.database))))
    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        for budget in args.budgets:
            for selection in (("all",) if budget >= 1 else SELECTIONS):
                row: dict[str, Any] = {"seed": seed, "budget": budget, "selection": selection}
                if selection == "all":
                    train, row["labelled"], row["label_s"] = pool, len(pool), 0.0
                    row["label_accuracy"] = row["entry_accuracy"] = 1.0
                else:
                    result = label_pool(pool, budget, selection, rounds=args.rounds, alpha=args.alpha, seed=seed)
                    train = result.dataset(pool)
                    summary = result.summary
                    row.update(labelled=summary["labelled"], label_accuracy=summary["label_accuracy"],
                               entry_accuracy=summary["label_accuracy_entries"], label_s=summary["seconds"])
                if args.labels_only:
                    row["map"], row["train_s"] = float("nan"), 0.0
                else:
                    row["map"], row["train_s"] = train_and_rank(args, splits, train, query, database, seed)
                rows.append(row)
                print(f"  seed {seed} budget {budget:g} {selection}: {row['labelled']} labels, label accuracy "
                      f"{row['label_accuracy']:.4f}, mAP {row['map']:.4f} ({row['label_s']:.1f} s + "
                      f"{row['train_s']:.1f} s)", flush=True)
    return rows


def spread(values: list[float]) -> str:
    if any(value != value for value in values):  # not measured (--labels-only)
        return "-"
    return f"{statistics.mean(values):.3f} ({min(values):.3f} - {max(values):.3f})"


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| budget | selection | labels | label accuracy | entry accuracy | mAP | label s | train s |",
             "|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["budget"], r["selection"]) for r in rows}, key=lambda k: (k[0], SELECTIONS.index(k[1])
                                                                                 if k[1] in SELECTIONS else 0))
    for budget, selection in keys:
        group = [r for r in rows if r["budget"] == budget and r["selection"] == selection]
        lines.append(
            f"| {budget:g} | {selection} | {group[0]['labelled']} | {spread([r['label_accuracy'] for r in group])} | "
            f"{spread([r['entry_accuracy'] for r in group])} | {spread([r['map'] for r in group])} | "
            f"{statistics.mean(r['label_s'] for r in group):.1f} | "
            f"{statistics.mean(r['train_s'] for r in group):.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one seed, 500 pool items, 2 epochs")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (selection and training)")
    parser.add_argument("--source", default="demo-mnist", help="demo-mnist or demo-mnist-multi")
    parser.add_argument("--budgets", default="0.01,0.05,0.2,1", help="label fractions (1: every label)")
    parser.add_argument("--method", default="dpsh", help="any registered supervised method")
    parser.add_argument("--bits", type=int, default=16)
    parser.add_argument("--train-items", type=int, default=1000, help="size of the unlabelled pool")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--database", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=1, help="progressive propagation rounds")
    parser.add_argument("--alpha", type=float, default=0.9, help="propagation alpha (Zhou et al.: 0.99)")
    parser.add_argument("--labels-only", action="store_true", help="label accuracy only, no training")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json-out", help="write the rows as JSON")
    args = parser.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.budgets = [float(b) for b in args.budgets.split(",")]
    if args.quick:
        args.seeds, args.train_items, args.epochs = args.seeds[:1], 500, 2
    torch.set_num_threads(args.threads)
    print(f"load before: {load_text()} ({os.cpu_count()} CPUs, {args.threads} torch thread(s))")
    started = time.perf_counter()
    rows = run(args)
    print(f"load after: {load_text()}; {time.perf_counter() - started:.0f} s in all")
    print(f"\n{args.source}, {args.method} {args.bits} bits, pool {args.train_items}, {args.epochs} epochs, "
          f"{args.rounds} round(s), alpha {args.alpha:g}, seeds {','.join(map(str, args.seeds))}:\n")
    print(table(rows))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
