"""Throughput of training, attacks and evaluation on one process and on two ``torchrun`` processes (CPU, Gloo),
and the per-step communication a scaling model for N processes needs (docs/distributed.md).

    .venv/bin/python benchmarks/bench_distributed.py [--quick] [--repeats 3]

Three launches of the same work, side by side in one run:

* ``1 proc x 1 thread``: one process, ``OMP_NUM_THREADS=1`` (the per-core reference);
* ``1 proc x 2 threads``: one process using both cores through intra-op threads (what a plain run gets);
* ``2 procs x 1 thread``: ``torchrun --nproc_per_node 2``, Gloo, one thread each;
* control, ``2 lone procs``: two independent one-process runs of the whole work at the same time, no
  communication; their summed throughput is the most two processes can get from this machine, so
  ``2 procs / 2 lone`` is the efficiency of the data-parallel run itself (communication, synchronised batch
  norm, waiting for the slower rank), whatever the machine does to two busy processes.

The work (every random choice seeded; the demo-mnist digits, the small CNN, 32 bits, CSQ):

* train: data-parallel clean training (:func:`hashguard.training.loop.fit`), two epochs of a global batch of 64
  over the 2,000 training digits from a fresh model with SGD (momentum 0.9), checkpoints included (items per
  second);
* encode: the 4,500 database digits (:func:`hashguard.encoding.encode_dataset`, whole batches per rank);
* attack: the mainstay attack, PGD, 20 iterations, on 128 queries in batches of 32 (query-iterations per
  second; :func:`hashguard.attacks.evaluate.evaluate_attack`, whole batches per rank);
* mAP: mAP@5000 of 2,100 random 64-bit queries against 193,734 random codes with 21 labels (NUS-WIDE's
  sizes), queries shared out (:func:`hashguard.retrieval.sharded_mean_average_precision`).

Each figure is the best of ``--repeats`` timed repetitions after one warm-up; ranks meet at a barrier before
and after each timed region. Every launch checks that it computed the same results (trained-weight checksum to
1e-3 relative, attacked codes' mAP, code checksum and mAP exactly) as the one-process reference. Never run
as a test; prints a Markdown table with the machine's load average.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from table_text import load_text  # noqa: E402

LAUNCHES = (("1 proc x 1 thread", 1, 1), ("1 proc x 2 threads", 1, 2), ("2 procs x 1 thread", 2, 1))


def _best(run, repeats: int, world) -> tuple[float, object]:  # noqa: ANN001 - a callable and a World
    """Best wall time of ``run()`` over ``repeats`` after one warm-up (ranks synchronised around each)."""
    from hashguard.distributed.collectives import barrier

    result = run()
    best = float("inf")
    for _ in range(repeats):
        barrier(world)
        start = time.perf_counter()
        result = run()
        barrier(world)
        best = min(best, time.perf_counter() - start)
    return best, result


def worker(quick: bool, repeats: int, out: Path) -> None:
    """The timed work of one launch (every rank runs it; rank 0 writes the JSON results)."""
    import tempfile

    import numpy as np
    import torch

    from hashguard.attacks import build_attack, build_context
    from hashguard.attacks.evaluate import evaluate_attack
    from hashguard.config import TrainConfig
    from hashguard.data import open_dataset
    from hashguard.distributed import world as worlds
    from hashguard.encoding import encode_dataset
    from hashguard.methods import build_method
    from hashguard.retrieval import sharded_mean_average_precision
    from hashguard.testing import small_cnn_model
    from hashguard.training.clean_step import CleanStep
    from hashguard.training.loop import LoopSettings, fit

    world = worlds.start()
    splits = open_dataset("demo-mnist", seed=0)
    scale = 4 if quick else 1
    results: dict[str, dict[str, float]] = {}

    # training: the second epoch (the first one warms up), best of the repeats, each from the same start
    train_items = len(splits.train) // scale
    train_set = torch.utils.data.Subset(splits.train, range(train_items))
    train_set.num_classes = splits.num_classes  # type: ignore[attr-defined]
    config = TrainConfig(recipe="fast", epochs=2, batch_size=64, val_fraction=0.0, progress=False)

    def train_once() -> float:
        """Two epochs from the same start in a fresh run directory; a checksum of the trained weights."""
        model = small_cnn_model(splits, 32, seed=0, hash_norm="batchnorm")
        method = build_method("csq", bits=32, num_classes=splits.num_classes, num_train=train_items, seed=0)
        step = CleanStep(model, method, train_set, config, seed=0)  # type: ignore[arg-type]
        with tempfile.TemporaryDirectory() as tmp:
            fit(step, train_set, LoopSettings(epochs=2, batch_size=64, seed=0), shared_directory(tmp, world),
                identity="bench", make_optimizer=lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.9),
                log=None)
        return float(sum(p.double().sum() for p in model.parameters()))

    best_train, checksum = _best(train_once, repeats, world)
    results["train"] = {"rate": 2 * train_items / best_train, "unit": "items/s", "check": float(checksum)}

    model = small_cnn_model(splits, 32, seed=0, hash_norm="batchnorm").eval()
    database = torch.utils.data.Subset(splits.database, range(len(splits.database) // scale))
    seconds, (codes, _) = _best(lambda: encode_dataset(model, database, batch_size=256), repeats, world)
    results["encode"] = {"rate": len(database) / seconds, "unit": "items/s",
                         "check": float(np.asarray(codes, dtype=np.int64).sum())}

    context = build_context(model, splits.train, splits.database)
    queries = torch.utils.data.Subset(splits.query, range(128 // scale))
    iterations = 20

    def attack_once():  # noqa: ANN202
        attack = build_attack("mainstay", model, context, eps=8 / 255, iterations=iterations, seed=0)
        return evaluate_attack(attack, queries, context.database_codes, context.database_labels, batch_size=32,
                               progress=False).result

    seconds, outcome = _best(attack_once, repeats, world)
    results["attack"] = {"rate": len(queries) * iterations / seconds, "unit": "query-iterations/s",
                         "check": float(outcome.adv_map)}

    rng = np.random.default_rng(0)
    n_query, n_db = 2100 // scale, 193_734 // scale
    q = np.where(rng.random((n_query, 64)) < 0.5, -1, 1).astype(np.int8)
    d = np.where(rng.random((n_db, 64)) < 0.5, -1, 1).astype(np.int8)
    ql = (rng.random((n_query, 21)) < 0.15).astype(np.float32)
    dl = (rng.random((n_db, 21)) < 0.15).astype(np.float32)
    seconds, value = _best(lambda: sharded_mean_average_precision(q, d, ql, dl, topk=5000, world=world), repeats,
                           world)
    results["map"] = {"rate": n_query / seconds, "unit": "queries/s", "check": float(value)}
    if world.is_main:
        out.write_text(json.dumps({"world": world.size, "threads": torch.get_num_threads(), "results": results}))
    worlds.stop()


def shared_directory(tmp: str, world) -> str:  # noqa: ANN001 - a World
    """One run directory for every rank (rank 0's temporary directory, broadcast)."""
    if not world.distributed:
        return tmp
    import torch
    import torch.distributed as dist

    encoded = torch.zeros(512, dtype=torch.uint8)
    if world.is_main:
        raw = tmp.encode()
        encoded[: len(raw)] = torch.tensor(list(raw), dtype=torch.uint8)
    dist.broadcast(encoded, 0)
    return bytes(encoded[encoded > 0].tolist()).decode()


def launch(nproc: int, threads: int, quick: bool, repeats: int, out: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(HERE)]))
    args = [__file__, "--worker", "--repeats", str(repeats), "--out", str(out)] + (["--quick"] if quick else [])
    if nproc > 1:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                   "--master_addr", "127.0.0.1", "--master_port", str(port), *args]
    else:
        command = [sys.executable, *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"launch of {nproc} process(es) failed:\n{done.stderr[-3000:]}")
    return json.loads(out.read_text())


def launch_lone_pair(quick: bool, repeats: int, folder: Path) -> list[dict]:
    """Two one-process runs of the whole work started together (the control of the module docstring)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(HERE)]))
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    outs = [folder / f"lone-{i}.json" for i in range(2)]
    processes = [
        subprocess.Popen([sys.executable, __file__, "--worker", "--repeats", str(repeats), "--out", str(out)]
                         + (["--quick"] if quick else []), env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
        for out in outs
    ]
    for process in processes:
        _, err = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"a lone run failed:\n{err[-3000:]}")
    return [json.loads(out.read_text()) for out in outs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of every size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.quick, args.repeats, args.out)
        return
    import tempfile

    load_before = load_text()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, nproc, threads in LAUNCHES:
            runs[label] = launch(nproc, threads, args.quick, args.repeats, Path(tmp) / f"{nproc}-{threads}.json")
        lone = launch_lone_pair(args.quick, args.repeats, Path(tmp))
    reference = runs[LAUNCHES[0][0]]["results"]
    print(f"load average before: {load_before}; after: {load_text()}; {os.cpu_count()} CPUs"
          f"{' (quick sizes)' if args.quick else ''}\n")
    header = ("| work | unit | " + " | ".join(label for label, _, _ in LAUNCHES)
              + " | 2 lone procs (sum) | 2 procs / 1x1 | 2 procs / 1x2 | 2 procs / 2 lone |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for work in ("train", "encode", "attack", "map"):
        rates = [runs[label]["results"][work]["rate"] for label, _, _ in LAUNCHES]
        ceiling = sum(run["results"][work]["rate"] for run in lone)
        cells = " | ".join(f"{rate:,.0f}" for rate in [*rates, ceiling])
        ratios = f"{rates[2] / rates[0]:.2f}x | {rates[2] / rates[1]:.2f}x | {rates[2] / ceiling:.2f}"
        print(f"| {work} | {reference[work]['unit']} | {cells} | {ratios} |")
    print()
    for label, _, _ in LAUNCHES[1:]:
        for work in ("train", "encode", "attack", "map"):
            got, want = runs[label]["results"][work]["check"], reference[work]["check"]
            # training: a checksum of the weights, which float reordering moves in the last digits (SGD, 2 epochs)
            tolerance = 1e-3 * max(1.0, abs(want)) if work == "train" else 0.0
            verdict = "same" if abs(got - want) <= tolerance else f"DIFFERENT ({got!r} vs {want!r})"
            print(f"- {label}, {work}: result {verdict} as 1 proc x 1 thread")


if __name__ == "__main__":
    main()
