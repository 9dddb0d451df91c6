"""Query-detector benchmark: the Hamming detector's AUROC and TPR at 5 % FPR against every attack on the demo,
for an undefended model and its SAAT-hardened version (docs/detection.md).

    .venv/bin/python benchmarks/bench_detector.py [--quick] [--eps 8/255] [--threads 1] [--workdir DIR]

1. Train a clean base model (CSQ, small CNN, 32 bits, Adam 1e-3, seeded; :func:`hashguard.testing.train_tiny_csq`)
   on demo-mnist training digits and harden it with ``hashguard.defenses.defend(..., "saat", preset="demo")``.
2. For each model: fit the Hamming detector (class centre codes of the model's training codes), attack the first
   queries with every registered attack (targeted ones at seeded target labels; ProS-GAN with the tests' tiny
   settings, projected onto the eps ball) at one eps and a reduced iteration budget, and report the detection
   AUROC, TPR at the threshold chosen on the clean scores of the same queries (5 % FPR), and the mAP (t-mAP) of
   all attacked queries and of those the detector lets through.
Never run as a test; prints a Markdown table with the machine load. Every random choice is seeded.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from hashguard.attacks import ATTACKS, attack_spec, build_attack, build_context, select_target_labels
from hashguard.data import open_dataset
from hashguard.data.base import SubsetDataset
from hashguard.defenses import defend
from hashguard.detectors import build_detector
from hashguard.models import load_model
from hashguard.retrieval import average_precisions
from hashguard.retrieval.detection import detection_summary
from hashguard.testing import TINY_PROSGAN, save_demo_checkpoint, stack_split, train_tiny_csq

BITS = 32


def measure(model, splits, eps: float, n_query: int, iterations: int) -> dict[str, dict]:
    """Detection summary of every registered attack against ``model`` (first ``n_query`` queries)."""
    context = build_context(model, splits.train, splits.database, train_images=True)
    qx, qy = stack_split(splits.query, n_query)
    targets = torch.as_tensor(select_target_labels(qy, context.database_labels, seed=0))
    detector = build_detector("hamming", reference="centers")
    detector.fit(context.train_codes.cpu().numpy(), context.train_labels.cpu().numpy())
    clean = detector.score(model.encode(qx).cpu().numpy())
    db_codes, db_labels = context.database_codes.cpu().numpy(), context.database_labels.cpu().numpy()
    extra = {"tha": dict(epochs=1, steps=200, hidden=1024, lr=1e-3), "prosgan": dict(TINY_PROSGAN, project=True)}
    rows = {}
    for name in ATTACKS:
        spec = attack_spec(name)
        budget = {"iterations": iterations} if spec.iterative else {}
        start = time.perf_counter()
        attack = build_attack(name, model, context, eps=eps, seed=0, **budget, **extra.get(name, {}))
        out = attack.run(qx, qy, targets if spec.targeted else None)
        codes = out.adv_codes.cpu().numpy()
        relevance = (targets if spec.targeted else qy).numpy()
        ap = average_precisions(codes, db_codes, relevance, db_labels)
        rows[name] = detection_summary(clean, detector.score(codes), ap)
        rows[name]["seconds"] = time.perf_counter() - start
        rows[name]["targeted"] = spec.targeted
        print(f"  {name}: AUROC {rows[name]['auroc']:.3f} TPR {rows[name]['tpr']:.3f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer training items, queries and iterations")
    parser.add_argument("--eps", default="8/255", help="attack radius of every attack (default 8/255)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workdir", default=None, help="keep (and reuse) the checkpoints in this directory")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    eps = float(Fraction(args.eps))
    splits = open_dataset("demo-mnist", seed=0)
    n_train = 800 if args.quick else 2000
    n_query = 60 if args.quick else 200
    iterations = 20 if args.quick else 100
    epochs = 3 if args.quick else 6
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-detector-") as tmp:
        root = Path(args.workdir or tmp) / f"demo-mnist-n{n_train}-e{epochs}"
        base_dir = root / "base"
        if not (base_dir / "model.safetensors").is_file():
            model, method = train_tiny_csq(splits, bits=BITS, epochs=epochs, train_items=n_train, batch_size=64)
            save_demo_checkpoint(base_dir, model, method, num_classes=splits.num_classes)
        saat_dir = root / "saat"
        if not (saat_dir / "model.safetensors").is_file():
            defend(base_dir, "saat", saat_dir, {"progress": False}, preset="demo",
                   train_set=SubsetDataset(splits.train, np.arange(n_train)), log=None, resume=True)
        results = {}
        for key, directory in (("undefended", base_dir), ("SAAT", saat_dir)):
            model, _ = load_model(directory)
            print(f"{key}:", flush=True)
            results[key] = measure(model, splits, eps, n_query, iterations)
    total = time.perf_counter() - started
    load = os.getloadavg()
    print(f"\n### Hamming detector (class centres), demo-mnist: {n_train} training digits, {n_query} queries, "
          f"{BITS} bits, every attack at eps {Fraction(eps).limit_denominator(255)}, {iterations} iterations\n")
    print(f"threshold at 5% FPR on the clean scores of the same queries; {args.threads} torch thread(s), "
          f"{os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end; "
          f"whole run {total:.0f} s\n")
    print("| model | attack | AUROC | TPR @ 5% FPR | FPR | mAP attacked | mAP let through | let through |")
    print("|---|---|---|---|---|---|---|---|")
    for key, rows in results.items():
        for name, s in rows.items():
            metric = "t-mAP " if s["targeted"] else ""
            let = "-" if s["let_through_map"] is None else f"{s['let_through_map']:.4f}"
            print(f"| {key} | {name} | {s['auroc']:.3f} | {s['tpr']:.3f} | {s['fpr']:.3f} | "
                  f"{metric}{s['adversarial_map']:.4f} | {let} | {s['let_through']:.2f} |")


if __name__ == "__main__":
    main()
