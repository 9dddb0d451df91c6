"""Defense evidence on the demo digits: undefended vs SAAT, ATRDH and CgAT under three attacks at one eps.

    .venv/bin/python benchmarks/bench_defenses.py [--quick] [--eps 32/255] [--threads 1]
        [--source demo-mnist-multi] [--defenses saat,cgat] [--train-items N] [--workdir DIR]
        [--set KEY=VALUE ...] [--no-baseline]

1. Train a clean base model (CSQ, small CNN, 32 bits, Adam 1e-3, seeded) on the demo-mnist training split and
   save it as a hashguard checkpoint.
2. Harden it with ``hashguard.defenses.defend(..., preset="demo")`` for each defense (the same call the study
   pipeline and ``hashguard defend --preset demo`` make).
3. For every model: clean mAP and mAP under the non-targeted mainstay, HAG and SDHA attacks, all at the same
   eps, on the first queries of the query split against the database split (whole-ranking mAP, stable tie
   order). Attack iterations are reduced from the paper's (100 / 2000 / 1500) to keep this on a CPU budget;
   the alpha schedule still spans the whole run, and the mainstay attack's sign step is eps/8 (instead of
   1/255) so that its few iterations can reach the edge of the ball.

``--workdir DIR`` keeps the checkpoints there and reuses those already present (training is seeded, so a
rerun trains the same models); by default a temporary directory is used and removed.

Never run as a test; prints a Markdown table. Every random choice is seeded.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from hashguard.attacks import build_attack, build_context
from hashguard.attacks.evaluate import evaluate_attack
from hashguard.data import open_dataset
from hashguard.data.base import SubsetDataset
from hashguard.defenses import DEFENSES, defend
from hashguard.models import load_model
from hashguard.testing import save_demo_checkpoint, train_tiny_csq

BITS = 32


def train_base(splits, source: str, n_train: int, epochs: int, directory: Path) -> Path:
    """A clean CSQ small-CNN checkpoint (seeded), saved with the description ``defend`` needs."""
    model, method = train_tiny_csq(splits, bits=BITS, epochs=epochs, train_items=n_train, batch_size=64)
    return save_demo_checkpoint(directory, model, method, source=source, num_classes=splits.num_classes)


def measure(model, splits, eps: float, n_query: int, iterations: dict[str, int]) -> dict[str, float]:
    """Clean mAP and mAP under each attack (same eps, first ``n_query`` queries, whole database)."""
    context = build_context(model, splits.train, splits.database)
    row: dict[str, float] = {}
    for name, iters in iterations.items():
        extra = {"step": eps / 8} if name == "mainstay" else {}
        attack = build_attack(name, model, context, eps=eps, iterations=iters, seed=0, **extra)
        run = evaluate_attack(attack, splits.query, context.database_codes, context.database_labels, limit=n_query)
        row.setdefault("clean", run.result.clean_map)
        row[name] = run.result.adv_map
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer training items, queries and iterations")
    parser.add_argument("--eps", default=None, help="attack radius (default: the demo preset's training eps)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--base-epochs", type=int, default=None)
    parser.add_argument("--workdir", default=None, help="keep (and reuse) the checkpoints in this directory")
    parser.add_argument("--source", default="demo-mnist", help="demo-mnist (default) or demo-mnist-multi")
    parser.add_argument("--defenses", default=",".join(DEFENSES),
                        help=f"comma-separated subset of {','.join(DEFENSES)}")
    parser.add_argument("--train-items", type=int, default=None, help="training digits (default 1000 / all)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a defense setting for every defense (on top of the demo preset)")
    parser.add_argument("--no-baseline", action="store_true", help="do not attack the undefended model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    eps = float(Fraction(args.eps)) if args.eps else float(DEFENSES.entry("saat").presets["demo"]["eps"])
    splits = open_dataset(args.source, seed=0)
    n_train = args.train_items or (1000 if args.quick else len(splits.train))
    defenses = [name.strip() for name in args.defenses.split(",") if name.strip()]
    base_epochs = args.base_epochs or (6 if args.quick else 8)
    n_query = 100 if args.quick else 250
    iterations = (
        {"mainstay": 20, "hag": 50, "sdha": 50} if args.quick else {"mainstay": 50, "hag": 200, "sdha": 200}
    )
    train_set = SubsetDataset(splits.train, np.arange(n_train))

    with tempfile.TemporaryDirectory(prefix="bench-defenses-") as tmp:
        root = Path(args.workdir or tmp) / f"{args.source}-n{n_train}-e{base_epochs}"
        t0 = time.perf_counter()
        base_dir = root / "base"
        if not (base_dir / "model.safetensors").is_file():
            train_base(splits, args.source, n_train, base_epochs, base_dir)
        print(f"base: CSQ small_cnn {BITS} bits, {n_train} digits x {base_epochs} epochs, "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
        rows: dict[str, dict[str, float]] = {}
        seconds: dict[str, float] = {}
        base, _ = load_model(base_dir)
        if not args.no_baseline:
            rows["undefended"] = measure(base, splits, eps, n_query, iterations)
            print(f"undefended: {rows['undefended']}", flush=True)
        suffix = "-" + "-".join(sorted(args.overrides)).replace("/", "_") if args.overrides else ""
        for name in defenses:
            t0 = time.perf_counter()
            out = root / f"{name}{suffix}"
            if not (out / "model.safetensors").is_file():
                defend(base_dir, name, out, {"progress": False}, args.overrides, preset="demo",
                       train_set=train_set, log=None, resume=True)
            hardened, meta = load_model(out)
            seconds[name] = sum(record["seconds"] for record in meta["defense"]["history"])
            rows[name] = measure(hardened, splits, eps, n_query, iterations)
            config = meta["defense"]["config"]
            print(f"{name}: {rows[name]} (train {seconds[name]:.0f} s, epochs {config['epochs']}, "
                  f"eps {config['eps']:.4f}, step {config['step']:.4f}, lr {config['lr']})", flush=True)

    eps_text = f"{Fraction(eps).limit_denominator(255)}"
    print(f"\n### {args.source}: {n_train} training images, {n_query} queries x {len(splits.database)} database, "
          f"{BITS} bits, attack eps {eps_text}\n")
    its = ", ".join(f"{k} {v}" for k, v in iterations.items())
    extra = "".join(f" `{o}`" for o in args.overrides)
    print(f"attack iterations: {its} (mainstay step eps/8); defenses with `preset=\"demo\"`{extra}\n")
    print("| model | clean mAP | mainstay | HAG | SDHA | harden time |")
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        label = name if name == "undefended" else name.upper()
        cost = f"{seconds[name]:.0f} s" if name in seconds else "-"
        print(f"| {label} | {row['clean']:.4f} | {row['mainstay']:.4f} | {row['hag']:.4f} | {row['sdha']:.4f} "
              f"| {cost} |")


if __name__ == "__main__":
    main()
