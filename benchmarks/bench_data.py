"""Opening the embedded demo sources: seconds per call, cold (first call) and warm (CSV cached).

Prints a table; never run as a test. The goal the demo is built to: a warm ``open_dataset`` of either demo
source well under a second on 2 cores, so tests and the study do not pay for the data. ``--quick`` repeats less.

    python benchmarks/bench_data.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from hashguard.data import open_dataset


def seconds(source: str, seed: int) -> float:
    start = time.perf_counter()
    open_dataset(source, seed=seed)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repetitions instead of 10")
    args = parser.parse_args()
    repeats = 3 if args.quick else 10
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} CPUs")
    cold = seconds("demo-mnist", 0)
    print(f"{'source':<18} {'cold (s)':>9} {'warm median (s)':>16} {'warm max (s)':>13}")
    for source in ("demo-mnist", "demo-mnist-multi"):
        first = cold if source == "demo-mnist" else seconds(source, 1)
        warm = [seconds(source, seed) for seed in range(2, 2 + repeats)]
        print(f"{source:<18} {first:>9.3f} {statistics.median(warm):>16.3f} {max(warm):>13.3f}")


if __name__ == "__main__":
    main()
