"""The body of the sharded-evaluation test, run once in the test process (one process) and once in each of two
Gloo processes started with ``torch.multiprocessing.spawn`` (which imports this module, so it lives in a file of
its own). :func:`evaluate_all` reads the inputs the test wrote and computes, in the current world: encodings,
two attack evaluations, mAP values and top-k searches; every rank writes what it got (``.npz`` and ``.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hashguard.attacks import build_attack, build_context
from hashguard.attacks.evaluate import evaluate_attack
from hashguard.data.base import ArrayDataset
from hashguard.distributed.sharding import shard_bounds
from hashguard.distributed.topk import sharded_search
from hashguard.distributed.world import World, current_world, single_process, use
from hashguard.encoding import encode_dataset
from hashguard.models.hash_model import HashModel, ModelSpec
from hashguard.retrieval import sharded_average_precisions, sharded_mean_average_precision

EPS = 8 / 255
#: query attack batches of 3: 13 queries are 5 batches, 2 for rank 0 and 3 for rank 1
ATTACK_BATCH, ATTACK_QUERIES = 3, 13
#: the first shard of the 8-bit database in a 2-process top-k search (smaller than the first k)
FIRST_SHARD = 7
TOPKS = (10, 45)


def _model(folder: Path) -> HashModel:
    from safetensors.torch import load_file

    model = HashModel(ModelSpec(**json.loads((folder / "spec.json").read_text())))
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return model.eval()


def _attack_record(run: Any) -> dict[str, Any]:
    result = run.result.to_dict()
    result.pop("wall_time_s")  # a timing, the one number that is not reproducible
    return json.loads(json.dumps(result))


def evaluate_all(folder: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Everything the test compares, computed in :func:`current_world` (arrays, JSON-able values)."""
    world = current_world()
    data = np.load(folder / "inputs.npz")
    model = _model(folder)
    train = ArrayDataset(data["train_images"], data["train_labels"])
    queries = ArrayDataset(data["query_images"], data["query_labels"])
    database = ArrayDataset(data["db_images"], data["db_labels"])
    arrays: dict[str, np.ndarray] = {}
    values: dict[str, Any] = {"world_size": world.size}
    # encoding: 3 batches (rank 0 one, rank 1 two), and 2 items in 1 batch (rank 1 encodes nothing)
    arrays["db_codes"], arrays["db_labels"] = encode_dataset(model, database, batch_size=64)
    arrays["few_codes"], arrays["few_labels"] = encode_dataset(model, queries.subset(np.arange(2)), batch_size=256)
    # attacks with random starts: the non-targeted one over 5 batches, the targeted one over 1 batch
    context = build_context(model, train, database, batch_size=64)
    attack = build_attack("mainstay", model, context, eps=EPS, iterations=3, step=2 / 255, optimizer="pgd",
                          random_start=True, seed=5)
    run = evaluate_attack(attack, queries, arrays["db_codes"], arrays["db_labels"], batch_size=ATTACK_BATCH,
                          limit=ATTACK_QUERIES, topk=50, progress=False)
    targeted = build_attack("mainstay-targeted", model, context, eps=EPS, iterations=2, step=2 / 255,
                            optimizer="pgd", random_start=True, seed=9)
    run_t = evaluate_attack(targeted, queries, arrays["db_codes"], arrays["db_labels"], batch_size=ATTACK_BATCH,
                            limit=2, target_labels=data["targets"], progress=False)
    for name, done in (("attack", run), ("targeted", run_t)):
        arrays[f"{name}_clean"], arrays[f"{name}_adv"] = done.clean_codes, done.adv_codes
        arrays[f"{name}_theory"], arrays[f"{name}_labels"] = done.theory_codes, done.labels
        values[name] = _attack_record(done)
    # per-query APs and mAP on 8-bit codes with many ties
    q8, db8, ql, dl = data["q8"], data["db8"], data["q8_labels"], data["db8_labels"]
    arrays["ap"] = sharded_average_precisions(q8, db8, ql, dl, topk=5)
    values["map"] = {
        "all": sharded_mean_average_precision(q8, db8, ql, dl),
        "top5": sharded_mean_average_precision(q8, db8, ql, dl, topk=5),
        "tie_aware": sharded_mean_average_precision(q8, db8, ql, dl, topk=5, tie_aware=True),
    }
    # top-k over the 8-bit database in uneven shards (the first smaller than the first k), offsets derived
    cut = [shard_bounds(len(db8), world.size, r)[0] for r in range(world.size)] + [len(db8)]
    if world.size == 2:
        cut[1] = FIRST_SHARD
    shard = db8[cut[world.rank] : cut[world.rank + 1]]
    for k in TOPKS:
        arrays[f"top{k}_d"], arrays[f"top{k}_i"] = sharded_search(shard, None, q8, k)
    return arrays, values


def write_results(folder: Path, name: str) -> None:
    """Run :func:`evaluate_all` and write ``NAME.npz`` and ``NAME.json`` into ``folder``."""
    arrays, values = evaluate_all(folder)
    np.savez(folder / f"{name}.npz", **arrays)
    (folder / f"{name}.json").write_text(json.dumps(values, sort_keys=True))


def worker(rank: int, size: int, port: int, folder: str) -> None:
    """One rank of a Gloo world of ``size`` processes (the ``torch.multiprocessing.spawn`` entry point)."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size)
    use(World(rank, size, rank, "gloo"))
    try:
        write_results(Path(folder), f"rank{rank}")
    finally:
        use(single_process())
        dist.destroy_process_group()
