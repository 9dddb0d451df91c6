"""Unsupervised hashing (BTHash) beside supervised DPSH: clean mAP, mAP under the mainstay attack, the same after
SAAT, per demo source and seed.

    .venv/bin/python benchmarks/bench_unsupervised.py [--quick] [--seeds 0,1,2]
        [--sources demo-mnist,demo-mnist-multi] [--bits 16] [--train-items 1000] [--epochs 4] [--queries 200]
        [--database 1000] [--iterations 20] [--saat-epochs 4] [--threads 1] [--json-out FILE]

For every (source, seed):

* **bthash** (Barlow Twins, Zbontar et al., ICML 2021, on the code layer; trained without labels) and **dpsh**
  (Li et al., IJCAI 2016, in-batch pairs) are trained from scratch through the project trainer
  (:func:`hashguard.training.train_model`, the path ``hashguard train`` takes; small CNN with BatchNorm on the code
  logits, Adam lr 5e-4, batch 32) on the first ``--train-items`` training items for ``--epochs`` epochs;
* each model is attacked with the non-targeted mainstay attack (Yuan et al., IEEE TIFS 2023) at the SAAT demo
  preset's eps (32/255), ``--iterations`` sign steps of eps/8, on the first ``--queries`` queries against the first
  ``--database`` database items (mAP over the whole ranking). DPSH's mainstay codes come from the training labels;
  BTHash's from k-means pseudo-labels of its training codes (k = 10, the classes of the data;
  :mod:`hashguard.pseudo_labels`), the query's pseudo-label being the cluster of its clean code: the path
  ``hashguard attack`` takes for a model trained without labels;
* each model is hardened with SAAT (:func:`hashguard.defenses.defend`, ``preset="demo"``, ``--saat-epochs`` epochs,
  same training items; BTHash again with pseudo-labels, never the labels) and measured again with the same attack.

Labels are read only to score the retrieval (mAP) and, for DPSH, to train and to build its mainstay codes. Torch
runs on ``--threads`` threads (default 1: the benchmark machines are shared). ``--quick`` shrinks every size so
that one seed finishes in a few minutes on 2 cores. Never run as a test; every random choice is seeded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hashguard.attacks import build_attack, build_context
from hashguard.attacks.evaluate import evaluate_attack
from hashguard.attacks.pseudo_labelled import use_pseudo_labels
from hashguard.config import TrainConfig
from hashguard.data import SubsetDataset, open_dataset
from hashguard.defenses import DEFENSES, defend
from hashguard.methods import build_method, method_class
from hashguard.models import load_model
from hashguard.models.hash_model import HashModel
from hashguard.pseudo_labels import PseudoLabelSpec, pseudo_label_spec_of
from hashguard.seeding import seed_everything
from hashguard.testing import small_cnn_model
from hashguard.training import train_model
from table_text import load_text, number  # a sibling module of the benchmark scripts

SOURCES = ("demo-mnist", "demo-mnist-multi")
METHODS: dict[str, dict[str, Any]] = {"bthash": {}, "dpsh": {"pairs": "batch"}}
RECIPE: dict[str, Any] = {"hash_norm": "batchnorm", "lr": 5e-4, "batch_size": 32}




def train_checkpoint(
    name: str, splits: Any, source: str, train: SubsetDataset, bits: int, epochs: int, seed: int, out: Path
) -> tuple[HashModel, float]:
    """Train ``name`` into checkpoint ``out``; (model, training seconds)."""
    seed_everything(seed)
    spec = {"hash_norm": RECIPE["hash_norm"], **method_class(name).model_overrides()}
    model = small_cnn_model(splits, bits, seed=seed, **spec)
    method = build_method(name, bits, splits.num_classes, len(train), seed=seed, **METHODS[name])
    config = TrainConfig(
        recipe="fast", epochs=epochs, batch_size=RECIPE["batch_size"], lr=RECIPE["lr"], progress=False,
        val_fraction=0.0, select="last",
    )
    started = time.perf_counter()
    train_model(model, method, train, config, out, seed=seed, log=None,
                describe={"data": {"source": source, "seed": 0}})
    seconds = time.perf_counter() - started
    model.eval()
    return model, seconds


def attacked(
    model: HashModel, pseudo: PseudoLabelSpec | None, train: Any, query: Any, database: Any, eps: float,
    iterations: int,
) -> tuple[float, float]:
    """(clean mAP, mAP under the non-targeted mainstay attack); ``pseudo``: k-means pseudo-labels in place of the
    training and query labels."""
    context = build_context(model, train, database)
    attack = build_attack("mainstay", model, context, eps=eps, iterations=iterations, seed=0, step=eps / 8)
    use_pseudo_labels(attack, pseudo)
    run = evaluate_attack(attack, query, context.database_codes, context.database_labels, progress=False)
    return float(run.result.clean_map), float(run.result.adv_map)


def run_seed(args: argparse.Namespace, source: str, splits: Any, seed: int, eps: float, root: Path) -> list[dict]:
    """Both methods for one (source, seed); one row per method."""
    train = SubsetDataset(splits.train, np.arange(min(args.train_items, len(splits.train))))
    query = SubsetDataset(splits.query, np.arange(min(args.queries, len(splits.query))))
    database = SubsetDataset(splits.database, np.arange(min(args.database, len(splits.database))))
    rows: list[dict] = []
    for name in METHODS:
        out = root / f"{source}-s{seed}-{name}"
        model, seconds = train_checkpoint(name, splits, source, train, args.bits, args.epochs, seed, out)
        pseudo = pseudo_label_spec_of(json.loads((out / "model.json").read_text()))
        row: dict[str, Any] = {"method": name, "source": source, "seed": seed, "train_s": seconds}
        row["clean"], row["mainstay"] = attacked(model, pseudo, train, query, database, eps, args.iterations)
        if args.saat_epochs > 0:
            hard = root / f"{source}-s{seed}-{name}-saat"
            started = time.perf_counter()
            defend(out, "saat", hard, {"progress": False, "epochs": args.saat_epochs}, preset="demo",
                   train_set=train, device="cpu", log=None)
            row["saat_s"] = time.perf_counter() - started
            hardened, _ = load_model(hard)
            row["saat_clean"], row["saat_mainstay"] = attacked(hardened, pseudo, train, query, database, eps,
                                                               args.iterations)
        rows.append(row)
        print(f"  {source} seed {seed} {name}: "
              + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in row.items() if k not in ("method", "source", "seed")), flush=True)
    return rows




def print_table(rows: list[dict]) -> None:
    """One Markdown row per (method, source, seed), then mean ± std over seeds where there are several."""
    print("| method | labels | source | seed | clean mAP | mainstay | SAAT clean | SAAT mainstay | train s | SAAT s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        labels = "none (k-means)" if row["method"] == "bthash" else "yes"
        print(f"| {row['method']} | {labels} | {row['source']} | {row['seed']} | {number(row['clean'])} "
              f"| {number(row['mainstay'])} | {number(row.get('saat_clean'))} | {number(row.get('saat_mainstay'))} "
              f"| {number(row['train_s'], 1)} | {number(row.get('saat_s'), 1)} |")
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["source"]), []).append(row)
    if all(len(group) < 2 for group in groups.values()):
        return
    print("\nmean ± std over seeds\n")
    print("| method | source | seeds | clean mAP | mainstay | SAAT clean | SAAT mainstay | SAAT gain under attack |")
    print("|---|---|---|---|---|---|---|---|")

    def cell(values: list[float]) -> str:
        if not values:
            return "-"
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.3f} ± {spread:.3f}"

    for (method, source), group in groups.items():
        values = {key: [row[key] for row in group if row.get(key) is not None]
                  for key in ("clean", "mainstay", "saat_clean", "saat_mainstay")}
        gains = [row["saat_mainstay"] - row["mainstay"] for row in group if row.get("saat_mainstay") is not None]
        print(f"| {method} | {source} | {len(group)} | {cell(values['clean'])} | {cell(values['mainstay'])} "
              f"| {cell(values['saat_clean'])} | {cell(values['saat_mainstay'])} | {cell(gains)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (one seed in a few minutes)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--sources", default=",".join(SOURCES))
    parser.add_argument("--bits", type=int, default=16)
    parser.add_argument("--train-items", type=int, default=None, help="training items (default 1000; quick 300)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 4; quick 3)")
    parser.add_argument("--queries", type=int, default=None, help="attacked queries (default 200; quick 50)")
    parser.add_argument("--database", type=int, default=None, help="database items (default 1000; quick 500)")
    parser.add_argument("--iterations", type=int, default=None, help="mainstay attack steps (default 20; quick 10)")
    parser.add_argument("--saat-epochs", type=int, default=None,
                        help="SAAT epochs (default: the demo preset's; quick 1; 0 skips SAAT)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json-out", default=None, help="also write the rows as JSON")
    args = parser.parse_args()
    quick = args.quick
    demo = DEFENSES.entry("saat").presets["demo"]
    args.train_items = args.train_items or (300 if quick else 1000)
    args.epochs = args.epochs or (3 if quick else 4)
    args.queries = args.queries or (50 if quick else 200)
    args.database = args.database or (500 if quick else 1000)
    args.iterations = args.iterations or (10 if quick else 20)
    if args.saat_epochs is None:
        args.saat_epochs = 1 if quick else int(demo["epochs"])
    eps = float(demo["eps"])
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise SystemExit(f"unknown source(s) {', '.join(unknown)}; choose from {', '.join(SOURCES)}")
    torch.set_num_threads(args.threads)
    print(f"load before: {load_text()}; torch threads {args.threads}; bits {args.bits}; train items "
          f"{args.train_items}; epochs {args.epochs}; queries {args.queries}; database {args.database}; "
          f"mainstay eps {eps:.4f}, {args.iterations} steps; SAAT epochs {args.saat_epochs}", flush=True)
    started = time.perf_counter()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for source in sources:
            image_size = 28 if source == "demo-mnist-multi" else None  # 2 x 2 digit grids scaled like the tests
            splits = open_dataset(source, seed=0, image_size=image_size)
            for seed in seeds:
                rows += run_seed(args, source, splits, seed, eps, Path(tmp))
    print(f"\nload after: {load_text()}; wall {time.perf_counter() - started:.0f} s\n")
    print_table(rows)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
