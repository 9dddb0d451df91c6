"""Lifelong hashing on the demo digits: per session, old-class and new-class mAP, training time against retraining
ADSH from scratch on all the data so far, and mAP under the mainstay attack with and without the SAAT term.

    .venv/bin/python benchmarks/bench_lifelong.py [--sessions 0-6/7-9] [--seeds 0,1,2] [--per-class 60]
        [--epochs 6] [--samples 300] [--bits 16] [--queries 100] [--eps 32/255] [--attack-iterations 20]
        [--threads 1] [--set KEY=VALUE ...]

Session 0 trains ADSH (Jiang and Li, AAAI 2018) from scratch on the first classes (``train_base``). Every later
session arrives with new classes and is run four ways:

* ``lifelong``: the incremental session (Wu et al., CVPR 2019; Xu et al., IEEE TCSVT 2024): the stored codes stay,
  the new items' codes and the query network are learned (``run_session``, demo preset);
* ``lifelong+SAAT``: the same with the SAAT term (Yuan et al., IEEE TIFS 2023) in every incremental session (its
  own chain of sessions from the same session 0);
* ``no update``: the previous session's network encodes the new items, appended to the stored codes (no
  training; DIHN's "ADSH trained on old" row);
* ``retrain``: ADSH from scratch on every training item of every class so far, with the same outer iterations,
  samples per iteration and learning rate (every stored code recomputed).

Evaluation: the first ``--queries`` old-class and new-class queries of the query split, ranked against the
session's whole database (mAP over the whole ranking), clean and under the non-targeted mainstay attack (PGD, sign
steps of eps/8, ``--attack-iterations`` iterations) with its mainstay codes computed from the stored codes. Times
are those of the training call (data selection, the loop, writing the directory): the process's CPU seconds (one
torch thread: the work done, comparable on a shared machine) and the wall seconds (which depend on the load).
Prints a Markdown table (mean and spread over the seeds) and the machine load. Never run as a test; every random
choice is seeded.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

from hashguard.config import DataConfig, build_config, parse_override
from hashguard.data import open_dataset
from hashguard.lifelong import CodeStore, LifelongConfig, evaluate_store, parse_classes, run_session, train_base
from hashguard.pipeline.checkpoint import open_checkpoint
from hashguard.testing import torch_threads


def evaluate(directory: Path, splits, old: list[int], new: list[int], queries: int, attack: dict[str, Any]):
    """Old/new-class clean and attacked mAP of the checkpoint in ``directory`` against its whole database; the
    groups are the classes ``old`` and ``new`` whatever the directory's own session history."""
    opened = open_checkpoint(directory, device="cpu", splits=splits)
    store = CodeStore.load(directory)
    store.session_classes = [old, new] if old else [new]
    return evaluate_store(opened.model, store, splits.query, topk=None, limit=queries, attack=attack)


def timed(run, *args, **kwargs) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) of one training call: on a shared machine the CPU time is the
    comparable figure (with one torch thread it is the work done), the wall time depends on the load."""
    cpu, wall = time.process_time(), time.perf_counter()
    run(*args, **kwargs)
    return time.process_time() - cpu, time.perf_counter() - wall


def no_update(base: Path, classes: list[int], per_class: int, splits, old: list[int], queries: int,
              attack: dict[str, Any]) -> dict[str, Any]:
    """The old model without a session: its network encodes the new items, appended to its stored codes (the
    "ADSH trained on old" baseline of DIHN)."""
    import torch

    from hashguard.encoding import encode_dataset
    from hashguard.lifelong.classes import items_of_classes

    opened = open_checkpoint(base, device="cpu", splits=splits)
    store = CodeStore.load(base)
    rows = items_of_classes(splits.train.labels, classes, store.source_rows.numpy(), per_class * len(classes))
    codes, labels = encode_dataset(opened.model, splits.train.subset(rows))
    grown = store.extended(torch.from_numpy(codes), torch.from_numpy(labels), torch.as_tensor(rows), classes)
    grown.session_classes = [old, classes]
    return evaluate_store(opened.model, grown, splits.query, topk=None, limit=queries, attack=attack)


def run_seed(seed: int, sessions: list[list[int]], args, overrides: dict[str, Any], splits, root: Path):
    """Every session of one seed: {(session, variant): row}."""
    data = DataConfig(source=args.source, seed=0)
    attack = {"eps": args.eps, "step": args.eps / 8, "iterations": args.attack_iterations, "seed": 0}

    def settings(classes: list[int], **extra) -> LifelongConfig:
        values = dict(preset="demo", seed=seed, epochs=args.epochs, num_samples=args.samples, bits=args.bits,
                      items=args.per_class * len(classes), **overrides, **extra)
        return build_config(LifelongConfig, values, "benchmark settings")

    rows: dict[tuple[int, str], dict[str, Any]] = {}
    base = root / f"seed{seed}" / "s0"
    cpu, wall = timed(train_base, data, sessions[0], base, settings(sessions[0]), device="cpu", splits=splits,
                      log=None)
    rows[(0, "ADSH (session 0)")] = {"cpu": cpu, "wall": wall,
                                     **evaluate(base, splits, [], sessions[0], args.queries, attack)}
    previous = {"lifelong": base, "lifelong+SAAT": base}
    seen = list(sessions[0])
    for number, classes in enumerate(sessions[1:], start=1):
        grown = no_update(previous["lifelong"], classes, args.per_class, splits, seen, args.queries, attack)
        rows[(number, "no update (old model)")] = {"cpu": 0.0, "wall": 0.0, **grown}
        for variant, extra in (("lifelong", {}), ("lifelong+SAAT", {"saat": True})):
            out = root / f"seed{seed}" / f"s{number}-{variant}"
            cpu, wall = timed(run_session, previous[variant], classes, out, settings(classes, **extra),
                              device="cpu", log=None)
            previous[variant] = out
            rows[(number, variant)] = {"cpu": cpu, "wall": wall,
                                       **evaluate(out, splits, seen, classes, args.queries, attack)}
        everything = seen + classes
        out = root / f"seed{seed}" / f"s{number}-retrain"
        cpu, wall = timed(train_base, data, everything, out, settings(everything), device="cpu", splits=splits,
                          log=None)
        rows[(number, "retrain ADSH")] = {"cpu": cpu, "wall": wall,
                                          **evaluate(out, splits, seen, classes, args.queries, attack)}
        seen = everything
    return rows


def cell(values: list[float], digits: int = 3) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sessions", default="0-6/7-9", help="classes of each session, '/'-separated")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--per-class", type=int, default=60, help="training items per class of a session")
    parser.add_argument("--epochs", type=int, default=6, help="outer iterations of every training run")
    parser.add_argument("--samples", type=int, default=300, help="items sampled per outer iteration (m)")
    parser.add_argument("--bits", type=int, default=16)
    parser.add_argument("--queries", type=int, default=100, help="old-class and new-class queries each")
    parser.add_argument("--eps", default="32/255", help="attack radius (and the SAAT term's, unless --set eps=...)")
    parser.add_argument("--attack-iterations", type=int, default=20)
    parser.add_argument("--source", default="demo-mnist")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workdir", default=None, help="keep the session directories here")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a lifelong setting for every run, e.g. --set gamma=100")
    args = parser.parse_args()
    args.eps = float(Fraction(args.eps))
    sessions = [parse_classes(part) for part in args.sessions.split("/")]
    overrides = {}
    for text in args.overrides:
        keys, value = parse_override(text)
        overrides[keys[0]] = value
    overrides.setdefault("eps", args.eps)
    seeds = [int(s) for s in args.seeds.split(",")]
    load_before = os.getloadavg()
    splits = open_dataset(args.source, seed=0)
    results: dict[tuple[int, str], list[dict[str, Any]]] = {}
    with torch_threads(args.threads), tempfile.TemporaryDirectory() as scratch:
        root = Path(args.workdir or scratch)
        for seed in seeds:
            for key, row in run_seed(seed, sessions, args, overrides, splits, root).items():
                results.setdefault(key, []).append(row)
    load_after = os.getloadavg()
    print(f"sessions {args.sessions} on {args.source}, {args.per_class} training items per class, {args.bits} bits, "
          f"{args.epochs} outer iterations of m = {args.samples} (demo preset), seeds {seeds}; {args.queries} "
          f"old-class and new-class queries each, mainstay attack eps {args.eps * 255:.0f}/255, "
          f"{args.attack_iterations} iterations; torch threads {args.threads}")
    print(f"load average (1/5/15 min) before {load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f}, after "
          f"{load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f} on {os.cpu_count()} CPUs\n")
    print("| session | run | database | old-class mAP | new-class mAP | old under attack | new under attack | "
          "training CPU s | training wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (number, variant), rows in results.items():
        def values(group: str, key: str, rows=rows) -> list[float]:
            return [r[group][key] for r in rows if group in r and key in r[group]]

        print(f"| {number} ({','.join(map(str, sessions[number]))}) | {variant} | {rows[0]['database_items']} | "
              f"{cell(values('old', 'map'))} | {cell(values('new', 'map'))} | {cell(values('old', 'adv_map'))} | "
              f"{cell(values('new', 'adv_map'))} | {cell([r['cpu'] for r in rows], 1)} | "
              f"{cell([r['wall'] for r in rows], 1)} |")


if __name__ == "__main__":
    main()
