"""ADSH, DDSH, NMLayer and activation codes beside DPSH and CSQ: clean mAP, mAP under the mainstay attack, the same
after SAAT, and training time, per method, demo source and seed.

    .venv/bin/python benchmarks/bench_seed_methods.py [--quick] [--seeds 0,1,2] [--sources demo-mnist,demo-mnist-multi]
        [--methods adsh,ddsh,dpsh,csq,nmlayer,activation] [--bits 32] [--nm-start 64] [--nm-bits 32,16]
        [--train-items 1000] [--epochs 4] [--queries 200] [--database 1000] [--iterations 20] [--saat-epochs 4]
        [--json-out FILE]

For every (source, seed):

* **adsh** (Jiang & Li, AAAI 2018), **ddsh** (Jiang, Cui & Li, IEEE TIP 2018), **dpsh** (in-batch pairs) and
  **csq** are trained from scratch through the project trainer (:func:`hashguard.training.train_model`, the path
  ``hashguard train`` takes; small CNN with BatchNorm on the code logits, Adam lr 5e-4, batch 32) on the first
  ``--train-items`` training items for ``--epochs`` epochs (for ADSH and DDSH one epoch is one outer iteration of
  their alternating algorithm). ADSH runs under the SAAT protocol (the database split is encoded by the network),
  so that every row ranks the same queries against the same database.
* **nmlayer** (Fu et al., IJCAI 2019): the registered ``nmlayer`` method trained from scratch with the same recipe:
  a ``--nm-start``-bit hash layer (default 64) trained ``--epochs`` epochs with DPSH (in-batch pairs), then one
  epoch per merging stage down to each ``--nm-bits`` target (default 32 and 16), folded into a plain head; beside
  it, DPSH trained at that bit count directly (row "dpsh"). SAAT then hardens the folded model with the DPSH loss.
* **activation** (He et al., arXiv 2101.05490, 2021): the registered ``activation-codes`` method: a network trained
  with CSQ, then its balanced ``--bits``-bit activation code (every ReLU site, fitted on the training items). Its
  training time is CSQ's plus the fitting; SAAT hardens the network with CSQ and reads the code again.

Training time is reported twice: wall-clock seconds (``train s``, ``SAAT s``) and the CPU seconds of the process
over the same span (``train CPU s``, ``SAAT CPU s``, :func:`time.process_time`). With one torch thread the CPU
seconds hardly depend on what else runs on a shared machine, the wall-clock seconds do. The retrieval kernels are
compiled before the first timing.

Every model is then attacked with the non-targeted mainstay attack (Wang et al., CVPR 2021) at the SAAT demo
preset's eps (32/255), ``--iterations`` sign steps of eps/8 (as ``bench_defenses.py``), mainstay codes from the
training items, on the first ``--queries`` queries against the first ``--database`` database items (mAP over the
whole ranking, stable tie order), and hardened with SAAT (Yuan et al., IEEE TIFS 2023) through
:func:`hashguard.defenses.defend` with ``preset="demo"`` and ``--saat-epochs`` epochs on the same training items,
then measured again with the same attack.

Torch runs on ``--threads`` threads (default 1: the benchmark machines are shared). ``--quick`` shrinks every size
so that one seed of everything finishes in a few minutes on 2 cores. Never run as a test; every random choice is
seeded.
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

from hashguard.attacks import build_attack, build_context
from hashguard.attacks.evaluate import evaluate_attack
from hashguard.config import TrainConfig
from hashguard.data import SubsetDataset, open_dataset
from hashguard.defenses import DEFENSES, defend
from hashguard.methods import build_method, method_class
from hashguard.models import load_model
from hashguard.models.hash_model import HashModel
from hashguard.models.nmlayer_compress import stage_schedule
from hashguard.retrieval.metrics import mean_average_precision
from hashguard.seeding import seed_everything
from hashguard.testing import small_cnn_model
from hashguard.training import train_model
from table_text import load_text, number  # a sibling module of the benchmark scripts

SOURCES = ("demo-mnist", "demo-mnist-multi")
METHODS = ("adsh", "ddsh", "dpsh", "csq", "nmlayer", "activation")
#: the demo training recipe of ``bench_methods.py``
RECIPE: dict[str, Any] = {"hash_norm": "batchnorm", "lr": 5e-4, "batch_size": 32}




def method_params(name: str, items: int) -> dict[str, Any]:
    """The method settings of the benchmark (sized for ``items`` training items)."""
    if name == "adsh":
        return {"protocol": "saat", "num_samples": min(500, items)}
    if name == "ddsh":
        return {"columns": max(2, min(100, items // 4))}
    if name == "dpsh":
        return {"pairs": "batch"}
    if name == "nmlayer":
        return {"base": "dpsh", "base_params": "pairs=batch"}
    return {}


def describe(source: str) -> dict[str, Any]:
    """What ``defend`` needs to know of a checkpoint's data (it gets the training items themselves)."""
    return {"data": {"source": source, "seed": 0}}


def train_checkpoint(
    name: str, splits: Any, source: str, train: SubsetDataset, bits: int, epochs: int, seed: int, out: Path,
    **extra: Any,
) -> tuple[HashModel, float, float]:
    """Train ``name`` at ``bits`` bits with the demo recipe into checkpoint ``out``; (model, training seconds, CPU
    seconds of this process during the training)."""
    seed_everything(seed)
    spec = {"hash_norm": RECIPE["hash_norm"], **method_class(name).model_overrides()}
    model = small_cnn_model(splits, bits, seed=seed, **spec)
    params = {**method_params(name, len(train)), **extra}
    method = build_method(name, bits, splits.num_classes, len(train), seed=seed, **params)
    config = TrainConfig(
        recipe="fast", epochs=epochs, batch_size=RECIPE["batch_size"], lr=RECIPE["lr"], progress=False,
        val_fraction=0.0, select="last",
    )
    started, cpu = time.perf_counter(), time.process_time()
    train_model(model, method, train, config, out, seed=seed, log=None, describe=describe(source))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    if name == "activation-codes":  # the checkpoint holds the code read from the trained network
        model, _ = load_model(out)
    model.eval()
    return model, seconds, cpu


def attacked(
    model: HashModel, train: Any, query: Any, database: Any, eps: float, iterations: int
) -> tuple[float, float]:
    """(clean mAP, mAP under the non-targeted mainstay attack) of the queries against the database."""
    context = build_context(model, train, database)
    attack = build_attack("mainstay", model, context, eps=eps, iterations=iterations, seed=0, step=eps / 8)
    run = evaluate_attack(attack, query, context.database_codes, context.database_labels, progress=False)
    return float(run.result.clean_map), float(run.result.adv_map)


def hardened(base_dir: Path, out: Path, train: SubsetDataset, epochs: int) -> tuple[HashModel, float, float]:
    """SAAT (demo preset, ``epochs`` epochs) of the checkpoint in ``base_dir``; (model, training seconds, CPU
    seconds)."""
    started, cpu = time.perf_counter(), time.process_time()
    defend(base_dir, "saat", out, {"progress": False, "epochs": epochs}, preset="demo", train_set=train,
           device="cpu", log=None)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    model, _ = load_model(out)
    return model, seconds, cpu


def run_seed(args: argparse.Namespace, source: str, splits: Any, seed: int, eps: float, root: Path) -> list[dict]:
    """Every chosen method for one (source, seed); one row per model."""
    train = SubsetDataset(splits.train, np.arange(min(args.train_items, len(splits.train))))
    query = SubsetDataset(splits.query, np.arange(min(args.queries, len(splits.query))))
    database = SubsetDataset(splits.database, np.arange(min(args.database, len(splits.database))))
    rows: list[dict] = []
    trained: set[tuple[str, int]] = set()

    def measure(label: str, bits: int, model: HashModel, base_dir: Path | None, seconds: float | None,
                cpu: float | None) -> None:
        row: dict[str, Any] = {"method": label, "bits": bits, "source": source, "seed": seed, "train_s": seconds,
                               "train_cpu_s": cpu}
        row["clean"], row["mainstay"] = attacked(model, train, query, database, eps, args.iterations)
        if base_dir is not None and args.saat_epochs > 0:
            saat_dir = base_dir.with_name(base_dir.name + "-saat")
            model_saat, row["saat_s"], row["saat_cpu_s"] = hardened(base_dir, saat_dir, train, args.saat_epochs)
            row["saat_clean"], row["saat_mainstay"] = attacked(model_saat, train, query, database, eps,
                                                               args.iterations)
        rows.append(row)
        print(f"  {source} seed {seed} {label} ({bits} bits): "
              + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in row.items() if k not in ("method", "source", "seed", "bits")), flush=True)

    def direct(name: str, bits: int) -> Path:
        """Train ``name`` at ``bits`` bits for this (source, seed) and measure it, once."""
        out = root / f"{source}-s{seed}-{name}{bits}"
        if (name, bits) not in trained:
            trained.add((name, bits))
            model, seconds, cpu = train_checkpoint(name, splits, source, train, bits, args.epochs, seed, out)
            measure(name, bits, model, out, seconds, cpu)
        return out

    for name in args.methods:
        if name in ("adsh", "ddsh", "dpsh", "csq"):
            direct(name, args.bits)
        elif name == "nmlayer":
            for bits in args.nm_bits:
                out = root / f"{source}-s{seed}-nmlayer{args.nm_start}-{bits}"
                stages = len(stage_schedule(args.nm_start, bits))
                model, seconds, cpu = train_checkpoint(
                    "nmlayer", splits, source, train, bits, args.epochs + stages, seed, out, start_bits=args.nm_start
                )
                measure(f"nmlayer {args.nm_start}->{bits}", bits, model, out, seconds, cpu)
                direct("dpsh", bits)  # the same bit count trained directly with the base loss
        elif name == "activation":  # the registered method: CSQ training, then the code; SAAT hardens the network
            out = root / f"{source}-s{seed}-activation{args.bits}"
            model, seconds, cpu = train_checkpoint("activation-codes", splits, source, train, args.bits, args.epochs,
                                                   seed, out)
            measure("activation (csq)", args.bits, model, out, seconds, cpu)
    return rows




def print_table(rows: list[dict]) -> None:
    """One Markdown row per (method, bits, source, seed), then mean ± std over seeds where there are several."""
    print("| method | bits | source | seed | clean mAP | mainstay | SAAT clean | SAAT mainstay | train s | train CPU s "
          "| SAAT s | SAAT CPU s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['method']} | {row['bits']} | {row['source']} | {row['seed']} | {number(row['clean'])} "
              f"| {number(row['mainstay'])} | {number(row.get('saat_clean'))} | {number(row.get('saat_mainstay'))} "
              f"| {number(row['train_s'], 1)} | {number(row.get('train_cpu_s'), 1)} | {number(row.get('saat_s'), 1)} "
              f"| {number(row.get('saat_cpu_s'), 1)} |")
    groups: dict[tuple[str, int, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["bits"], row["source"]), []).append(row)
    if all(len(group) < 2 for group in groups.values()):
        return
    print("\nmean ± std over seeds\n")
    print("| method | bits | source | seeds | clean mAP | mainstay | SAAT clean | SAAT mainstay | train s "
          "| train CPU s | SAAT CPU s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")

    def cell(group: list[dict], key: str, digits: int = 3) -> str:
        values = [row[key] for row in group if row.get(key) is not None]
        if not values:
            return "-"
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.{digits}f} ± {spread:.{digits}f}"

    for (method, bits, source), group in groups.items():
        print(f"| {method} | {bits} | {source} | {len(group)} | {cell(group, 'clean')} | {cell(group, 'mainstay')} "
              f"| {cell(group, 'saat_clean')} | {cell(group, 'saat_mainstay')} | {cell(group, 'train_s', 1)} "
              f"| {cell(group, 'train_cpu_s', 1)} | {cell(group, 'saat_cpu_s', 1)} |")


def parse_list(text: str, allowed: tuple[str, ...] | None = None) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if allowed is not None:
        unknown = [item for item in items if item not in allowed]
        if unknown:
            raise SystemExit(f"unknown choice(s) {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (one seed of everything in minutes)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--sources", default=",".join(SOURCES))
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    parser.add_argument("--bits", type=int, default=32)
    parser.add_argument("--nm-start", type=int, default=64, help="NMLayer hash-layer width before merging")
    parser.add_argument("--nm-bits", default="32,16", help="NMLayer target bit counts (comma-separated)")
    parser.add_argument("--train-items", type=int, default=None, help="training items (default 1000; quick 300)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 4; quick 3)")
    parser.add_argument("--queries", type=int, default=None, help="attacked queries (default 200; quick 50)")
    parser.add_argument("--database", type=int, default=None, help="database items (default 1000; quick 500)")
    parser.add_argument("--iterations", type=int, default=None, help="mainstay attack steps (default 20; quick 10)")
    parser.add_argument("--saat-epochs", type=int, default=None,
                        help="SAAT epochs (default: the demo preset's; quick 1; 0 skips SAAT)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json-out", default=None, help="also write the rows as JSON to this file")
    args = parser.parse_args()
    quick = args.quick
    preset = DEFENSES.entry("saat").presets["demo"]
    defaults = {"train_items": (1000, 300), "epochs": (4, 3), "queries": (200, 50), "database": (1000, 500),
                "iterations": (20, 10), "saat_epochs": (int(preset["epochs"]), 1)}
    for key, (full, small) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, small if quick else full)
    args.methods = parse_list(args.methods, METHODS)
    sources = parse_list(args.sources, SOURCES)
    seeds = [int(seed) for seed in parse_list(args.seeds)]
    args.nm_bits = [int(bits) for bits in parse_list(args.nm_bits)]
    eps = float(preset["eps"])
    torch.set_num_threads(args.threads)
    # compile the retrieval kernels before any timing, so that the first method trained does not pay for it
    mean_average_precision(np.ones((1, 8)), np.ones((2, 8)), np.ones((1, 2)), np.ones((2, 2)))
    print(f"load average at start: {load_text()} ({os.cpu_count()} cores, torch threads {args.threads})", flush=True)
    started = time.perf_counter()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-seed-methods-") as tmp:
        for source in sources:
            splits = open_dataset(source, seed=0, image_size=28 if source == "demo-mnist-multi" else None)
            for seed in seeds:
                rows += run_seed(args, source, splits, seed, eps, Path(tmp))
    total = time.perf_counter() - started
    print(f"\n{args.train_items} training items x {args.epochs} epochs, {args.queries} queries x {args.database} "
          f"database items, mainstay attack eps 32/255, {args.iterations} steps of eps/8; SAAT demo preset, "
          f"{args.saat_epochs} epochs; {total:.0f} s in all\n")
    print_table(rows)
    print(f"\nload average at end: {load_text()}")
    if args.json_out:
        keys = ("bits", "nm_start", "nm_bits", "train_items", "epochs", "queries", "database", "iterations",
                "saat_epochs", "threads")
        settings = {key: getattr(args, key) for key in keys}
        payload = {"settings": {**settings, "eps": eps, "seeds": seeds, "sources": sources}, "rows": rows,
                   "seconds": total}
        Path(args.json_out).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
