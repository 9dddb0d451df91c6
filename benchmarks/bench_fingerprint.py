"""What a model fingerprint costs next to the work it lets a study skip.

Times, best of ``--repeats`` after one warm-up call: the functional fingerprint (12 probe images through a
float64 CPU copy of the model, docs/fingerprints.md), the strict exact-weights hash, and one clean evaluation of
the demo model (encode the demo-mnist query and database splits, then mAP@5000 and the curves) - the cheapest
stage a fingerprint keys. A study computes one fingerprint per model (the trained model and each hardened one).
``--resnet`` adds the functional fingerprint of an untrained resnet18 on 3x224x224 input, the size of the paper
configurations, and its float32 forward pass of the same probes for scale.

Prints a table with the machine's load; never run as a test.

    python benchmarks/bench_fingerprint.py [--repeats N] [--resnet]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch

import hashguard as hg
from hashguard.models.fingerprint import functional_fingerprint, probe_batch, weights_fingerprint
from table_text import load_text  # a sibling module of the benchmark scripts


def best_seconds(work: Callable[[], object], repeats: int) -> float:
    work()  # warm-up: allocator, kernels, data caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions of each (default 3)")
    parser.add_argument("--resnet", action="store_true", help="also fingerprint a resnet18 on 224-px input")
    args = parser.parse_args()
    print(f"load average {load_text()} (1 / 5 / 15 min) on {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}")
    splits = hg.open_dataset("demo-mnist")
    torch.manual_seed(0)
    model = hg.create_model("small_cnn", 32, data=splits)
    rows = [
        ("functional fingerprint (small_cnn, 32 bits)", best_seconds(lambda: functional_fingerprint(model),
                                                                      args.repeats)),
        ("strict weights hash (small_cnn, 32 bits)", best_seconds(lambda: weights_fingerprint(model), args.repeats)),
    ]
    evaluation = best_seconds(lambda: hg.evaluate(model, splits, topk=5000), args.repeats)
    rows.append((f"clean evaluation ({len(splits.query)} query + {len(splits.database)} database)", evaluation))
    if args.resnet:
        big = hg.create_model("resnet18", 64).eval()
        probes = probe_batch(3, 224, 224).float()

        def forward() -> None:
            with torch.no_grad():
                big.logits(probes)

        rows.append(("functional fingerprint (resnet18, 3x224x224)", best_seconds(lambda: functional_fingerprint(big),
                                                                                  args.repeats)))
        rows.append(("float32 forward of the 12 probes (resnet18)", best_seconds(forward, args.repeats)))
    width = max(len(name) for name, _ in rows)
    print(f"{'what':<{width}}  {'seconds':>8}  {'/ clean evaluation':>18}")
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:>8.3f}  {seconds / evaluation:>18.3f}")
    print(f"load average {load_text()} after")


if __name__ == "__main__":
    main()
