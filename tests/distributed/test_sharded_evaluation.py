"""Sharded encoding, attacks, mAP and top-k search in 2 Gloo processes on CPU equal the one-process run.

The same code (:func:`sharded_worker.evaluate_all`) runs in this process and in two spawned ranks: codes and
adversarial codes must be bit-identical, mAP values equal to 1e-12, top-k lists identical, ties included.
Both sides use one torch thread, so the one-process reference computes its convolutions the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sharded_worker
import torch
from launch import spawn_ranks

from hashguard.attacks import select_target_labels
from hashguard.distributed.world import current_world
from hashguard.retrieval import HammingIndex, average_precisions, mean_average_precision
from hashguard.testing import small_cnn_model, torch_threads

pytestmark = pytest.mark.filterwarnings("ignore")
SIZE = 2
TIMEOUT_S = 120


def _write_inputs(folder: Path, splits) -> None:
    from safetensors.torch import save_file

    fields = dict(backbone="small_cnn", bits=16, in_channels=1, image_size=28, mean=list(splits.mean),
                  std=list(splits.std))
    model = small_cnn_model(splits, bits=16, seed=0)
    (folder / "spec.json").write_text(json.dumps(fields))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    rng = np.random.default_rng(11)
    pool = rng.choice([-1, 1], size=(6, 8)).astype(np.int8)  # 8-bit codes from 6 distinct ones: many ties
    q8, db8 = pool[rng.integers(0, 6, size=9)], pool[rng.integers(0, 6, size=40)]
    eye = np.eye(4, dtype=np.float32)
    query_labels = splits.query.labels[:20]
    db_labels = splits.database.labels[:150]
    np.savez(
        folder / "inputs.npz",
        train_images=splits.train.images[:120], train_labels=splits.train.labels[:120],
        query_images=splits.query.images[:20], query_labels=query_labels,
        db_images=splits.database.images[:150], db_labels=db_labels,
        targets=select_target_labels(query_labels, db_labels, seed=0),
        q8=q8, db8=db8, q8_labels=eye[rng.integers(0, 4, size=9)], db8_labels=eye[rng.integers(0, 4, size=40)],
    )


@pytest.fixture(scope="module")
def results(tmp_path_factory, tiny_splits):
    folder = tmp_path_factory.mktemp("sharded")
    _write_inputs(folder, tiny_splits)
    assert not current_world().distributed
    with torch_threads(1):
        sharded_worker.write_results(folder, "single")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            patch.delenv(key, raising=False)
        spawn_ranks(sharded_worker.worker, folder, SIZE, TIMEOUT_S)

    def load(name: str) -> tuple[dict[str, np.ndarray], dict]:
        with np.load(folder / f"{name}.npz") as archive:
            arrays = {key: archive[key] for key in archive.files}
        return arrays, json.loads((folder / f"{name}.json").read_text())

    return folder, load("single"), [load(f"rank{r}") for r in range(SIZE)]


def _close(a, b, path: str = "") -> None:
    """Equal JSON values, floats to 1e-12."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            _close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and not isinstance(b, bool):
        assert b == pytest.approx(a, rel=1e-12, abs=1e-12), path
    else:
        assert a == b, path


def test_every_rank_gets_the_one_process_arrays(results):
    _, (single, _), ranks = results
    for rank, (arrays, values) in enumerate(ranks):
        assert values["world_size"] == SIZE
        assert arrays.keys() == single.keys()
        for key in single:
            assert arrays[key].dtype == single[key].dtype, (rank, key)
            np.testing.assert_array_equal(arrays[key], single[key], err_msg=f"rank {rank}: {key}")


def test_the_attacks_did_something_and_report_the_one_process_numbers(results):
    _, (single, one), ranks = results
    # not vacuous: the attack moved codes, and the encodings have the sizes asked for
    assert single["db_codes"].shape == (150, 16) and single["few_codes"].shape == (2, 16)
    assert single["attack_adv"].shape == (sharded_worker.ATTACK_QUERIES, 16)
    assert (single["attack_adv"] != single["attack_clean"]).any()
    assert one["attack"]["bits_flipped"] > 0 and one["attack"]["info"]["mainstay_ties"] >= 0
    for _, values in ranks:
        _close(one["attack"], values["attack"], "attack")
        _close(one["targeted"], values["targeted"], "targeted")
        _close(one["map"], values["map"], "map")


def test_the_one_process_reference_is_the_plain_computation(results):
    """What the ranks are compared with is itself the plain (unsharded) metric and search."""
    folder, (single, one), _ = results
    data = np.load(folder / "inputs.npz")
    q8, db8, ql, dl = data["q8"], data["db8"], data["q8_labels"], data["db8_labels"]
    assert one["map"]["all"] == mean_average_precision(q8, db8, ql, dl)
    assert one["map"]["top5"] == mean_average_precision(q8, db8, ql, dl, topk=5)
    np.testing.assert_array_equal(single["ap"], average_precisions(q8, db8, ql, dl, topk=5))
    index = HammingIndex(bits=8)
    index.add(db8)
    for k in sharded_worker.TOPKS:
        d, i = index.search(q8, k)
        np.testing.assert_array_equal(single[f"top{k}_d"], d)
        np.testing.assert_array_equal(single[f"top{k}_i"], i)
    # ties are present (the test would not see a wrong tie order otherwise) and k beyond the database pads with -1
    d10 = single["top10_d"]
    assert (d10[:, 1:] == d10[:, :-1]).any()
    assert (single["top45_i"][:, 40:] == -1).all()
    with torch_threads(1):
        model = sharded_worker._model(folder)
        images = torch.from_numpy(data["db_images"]).float() / 255
        np.testing.assert_array_equal(single["db_codes"], model.encode(images).numpy())
