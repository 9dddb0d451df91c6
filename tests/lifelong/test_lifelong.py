"""Lifelong hashing (Wu et al., CVPR 2019, DIHN; Xu et al., IEEE TCSVT 2024, DLCH; on ADSH): the new-code update
against enumeration, old codes bit-identical after a session, new classes retrievable, exact resume, SAAT term,
the command line and its one-line refusals."""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hashguard.config import DataConfig
from hashguard.encoding import encode_dataset
from hashguard.lifelong import CodeStore, LifelongConfig, run_session, train_base
from hashguard.lifelong.classes import parse_classes, queries_of
from hashguard.lifelong.objective import (
    cosine_similarity,
    incremental_objective,
    similarity_ratio,
    target_similarity,
    update_new_codes,
)
from hashguard.methods.adsh import adsh_similarity, similarity_balance
from hashguard.models.checkpoint import load_state_file
from hashguard.retrieval import mean_average_precision
from hashguard.testing import torch_threads

BASE_CLASSES, NEW_CLASSES = [0, 1, 2, 3], [4, 5]


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


def settings(seed: int = 0, items: int = 200, **extra) -> LifelongConfig:
    return LifelongConfig(preset="demo", seed=seed, items=items, epochs=3, num_samples=100, bits=16, **extra)


@pytest.fixture(scope="module")
def splits():
    from hashguard.data import open_dataset

    return open_dataset("demo-mnist", seed=0)


@pytest.fixture(scope="module")
def sessions(splits, tmp_path_factory):
    """Session 0 (ADSH on 200 digits of classes 0-3, 16 bits) and session 1 (120 digits of classes 4-5)."""
    root = tmp_path_factory.mktemp("lifelong")
    with torch_threads(1):
        train_base(DataConfig(source="demo-mnist", seed=0), BASE_CLASSES, root / "s0", settings(), device="cpu",
                   splits=splits, log=None)
        record = run_session(root / "s0", NEW_CLASSES, root / "s1", settings(items=120), device="cpu", log=None,
                             evaluation={"topk": None, "limit": 100})
    return root, record


# ---------------------------------------------------------------------------------------------------------------
# The objective


def test_target_is_adsh_similarity_for_one_hot_labels_and_cosine_for_multi_label() -> None:
    generator = torch.Generator().manual_seed(0)
    labels = torch.eye(4)[torch.randint(0, 4, (30,), generator=generator)]
    ratio = similarity_ratio(labels, "rebalanced")
    assert ratio == pytest.approx(similarity_balance(labels), rel=1e-9)
    assert torch.allclose(target_similarity(labels, labels, ratio), adsh_similarity(labels, labels, ratio), atol=1e-6)
    assert torch.allclose(target_similarity(labels, labels, similarity_ratio(labels, "plain")),
                          adsh_similarity(labels, labels, 1.0), atol=1e-6)
    # {0, 1} vs {1}: cosine 1/sqrt(2); vs {2}: 0; plain target 2S - 1
    multi = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert cosine_similarity(multi[:1], multi)[0].tolist() == pytest.approx([1.0, 2**-0.5, 0.0], abs=1e-6)
    assert target_similarity(multi[:1], multi, 1.0)[0].tolist() == pytest.approx([1.0, 2**0.5 - 1, -1.0], abs=1e-6)


def brute_new_part(u, codes, rows, target, gamma) -> float:
    """The part of J that depends on B_new: the similarity terms against the new rows and the quantisation of the
    sampled new items, written out term by term."""
    total = 0.0
    bits = codes.shape[1]
    for i in range(u.shape[0]):
        for j in range(codes.shape[0]):
            total += (float(u[i] @ codes[j]) - bits * float(target[i, j])) ** 2
        if rows[i] >= 0:
            total += gamma * float(((codes[rows[i]] - u[i]) ** 2).sum())
    return total


@pytest.mark.parametrize("seed", range(3))
def test_new_code_update_minimises_each_column_and_replayed_items_have_no_code(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    new, bits, classes = 6, 4, 3
    labels = torch.eye(classes, dtype=torch.float64)[torch.randint(0, classes, (5,), generator=generator)]
    new_labels = torch.eye(classes, dtype=torch.float64)[torch.randint(0, classes, (new,), generator=generator)]
    codes = torch.randint(0, 2, (new, bits), generator=generator).double() * 2 - 1
    u = torch.rand(5, bits, generator=generator, dtype=torch.float64) * 2 - 1
    positions = torch.tensor([0, -1, 3, -1, 5])  # two sampled items are old (replayed): no row in B_new
    target = target_similarity(labels, new_labels, 0.5).double()
    after = update_new_codes(codes, u, positions, target, 3.0)
    for k in range(bits):
        # the sweep's column k minimises J over that column, given the columns before it (already updated) and
        # the columns after it (not yet): check against all 2^6 columns
        def with_column(column, k=k):
            trial = torch.cat([after[:, :k], codes[:, k:]], 1)
            trial[:, k] = torch.tensor(column, dtype=torch.float64)
            return brute_new_part(u, trial, positions, target, 3.0)

        best = min(with_column(c) for c in itertools.product((-1.0, 1.0), repeat=new))
        assert with_column(after[:, k].tolist()) == pytest.approx(best, rel=1e-12, abs=1e-9)
    assert brute_new_part(u, after, positions, target, 3.0) <= brute_new_part(u, codes, positions, target, 3.0) + 1e-9
    assert set(after.unique().tolist()) <= {-1.0, 1.0}


def test_batch_objective_by_hand() -> None:
    u = torch.tensor([[0.5, -0.5]])
    codes = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    target = torch.tensor([[1.0, -0.5]])
    value, parts = incremental_objective(u, codes, torch.tensor([1]), target, gamma=2.0, mu=3.0)
    # square: (0 - 2)^2 + (1 - (-1))^2 = 8; quantisation: (0.5)^2 + (0.5)^2 = 0.5; balance: (0.5 - 0.5)^2 = 0
    assert float(parts["square"]) == pytest.approx(8.0) and float(parts["quantisation"]) == pytest.approx(0.5)
    assert float(parts["balance"]) == 0.0 and float(value) == pytest.approx(8.0 + 2.0 * 0.5)
    _, linear = incremental_objective(torch.tensor([[0.5, 0.25]]), codes, torch.tensor([0]), target, 2.0, 3.0,
                                      balance="linear")
    assert float(linear["balance"]) == pytest.approx(0.75)


def test_session_sampler_draws_omega_from_old_and_new_items_reproducibly() -> None:
    from hashguard.lifelong.step import SessionSampler

    both, only_new = SessionSampler(10, 30, 8, 2, seed=3), SessionSampler(10, 0, 8, 2, seed=3)
    drawn = torch.cat([both.omega(e) for e in range(20)])
    assert (drawn < 10).any() and (drawn >= 10).any() and int(drawn.max()) < 40  # new rows 0-9, old rows 10-39
    assert all(int(only_new.omega(e).max()) < 10 and len(only_new.omega(e)) == 8 for e in range(5))
    order = both.order(4)
    assert len(order) == both.num_items() == 16 and sorted(order) == sorted(both.omega(4).tolist() * 2)
    assert order == SessionSampler(10, 30, 8, 2, seed=3).order(4) and order != both.order(5)
    assert len(SessionSampler(5, 0, 8, 1, seed=0).omega(0)) == 5  # m larger than the pool: every item


def test_parse_classes() -> None:
    from hashguard.errors import ConfigError

    assert parse_classes("7,8,9") == [7, 8, 9] and parse_classes("0-2, 5,1") == [0, 1, 2, 5]
    for bad in ("", "a", "3-1", "-2"):
        with pytest.raises(ConfigError):
            parse_classes(bad)


# ---------------------------------------------------------------------------------------------------------------
# A session


def test_old_codes_stay_bit_identical(sessions) -> None:
    root, record = sessions
    before = load_state_file(root / "s0" / "database_codes.safetensors")["codes"]
    store = CodeStore.load(root / "s1")
    old = len(before)
    digest = hashlib.sha256(np.ascontiguousarray(before.numpy()).tobytes()).hexdigest()
    assert hashlib.sha256(np.ascontiguousarray(store.codes[:old].numpy()).tobytes()).hexdigest() == digest
    assert torch.equal(load_state_file(root / "s1" / "database_codes.safetensors")["codes"][:old], before)
    assert store.frozen[:old].all() and not store.frozen[old:].any()
    assert store.session.tolist() == [0] * old + [1] * (len(store) - old) and record["new_items"] == 120
    assert store.session_classes == [BASE_CLASSES, NEW_CLASSES]
    assert set(store.labels[old:].argmax(1).tolist()) == set(NEW_CLASSES)
    assert json.loads((root / "s1" / "model.json").read_text())["lifelong"]["previous_codes_sha256"] == digest


# Measured on x86-64, one torch thread (16 bits; session 0: 200 digits of classes 0-3, session 1: 120 digits of
# classes 4-5; demo preset with 3 outer iterations of m = 100; the first 100 new-class queries against the whole
# store), seeds 0-4: new-class mAP after the session minus the old model's (the base network encoding the new items
# and the queries, no training): 0.382 - 0.473 (session 0.943 - 0.986, old model 0.499 - 0.574); old-class mAP after
# the session 0.969 - 0.986. The margins are about half of the smallest measured values.
def test_new_classes_beat_the_old_model(sessions, splits) -> None:
    from hashguard.pipeline.checkpoint import open_checkpoint

    root, record = sessions
    old_model = open_checkpoint(root / "s0", device="cpu", splits=splits).model
    store = CodeStore.load(root / "s1")
    fresh = store.session == 1
    naive, _ = encode_dataset(old_model, splits.train.subset(store.source_rows[fresh].numpy()))
    database = np.concatenate([store.codes[~fresh].numpy(), naive])
    queries = splits.query.subset(queries_of(splits.query.labels, BASE_CLASSES + NEW_CLASSES, NEW_CLASSES)[:100])
    codes, labels = encode_dataset(old_model, queries)
    before = float(mean_average_precision(codes, database, labels, store.labels.numpy(), None))
    assert record["evaluation"]["new"]["queries"] == 100
    assert record["evaluation"]["new"]["map"] > before + 0.19
    assert record["evaluation"]["old"]["map"] > 0.48  # old classes stay retrievable (measured >= 0.969)


def test_resume_equals_an_uninterrupted_session(sessions, tmp_path: Path) -> None:
    root, _ = sessions
    out = tmp_path / "s1"
    paused = run_session(root / "s0", NEW_CLASSES, out, settings(items=120), device="cpu", log=None,
                         stop_after_epoch=1)
    assert paused == {"finished": False, "epochs_done": 1} and not (out / "code_store.safetensors").exists()
    run_session(root / "s0", NEW_CLASSES, out, settings(items=120), device="cpu", log=None, resume=True)
    for name in ("model.safetensors", "code_store.safetensors"):
        whole, resumed = load_state_file(root / "s1" / name), load_state_file(out / name)
        assert whole.keys() == resumed.keys() and all(torch.equal(whole[k], resumed[k]) for k in whole), name


def test_saat_term_trains_against_mainstay_codes_of_the_store(sessions, tmp_path: Path) -> None:
    root, _ = sessions
    config = settings(items=60, saat=True, iterations=2)
    config = config.model_copy(update={"epochs": 1, "num_samples": 40})
    record = run_session(root / "s1", [6], tmp_path / "s2", config, device="cpu", log=None, evaluation=None)
    history = json.loads((tmp_path / "s2" / "history.json").read_text())
    assert "adv" in history[0] and -1.0 <= history[0]["adv"] <= 1.0
    previous, store = CodeStore.load(root / "s1"), CodeStore.load(tmp_path / "s2")
    assert torch.equal(store.codes[: len(previous)], previous.codes) and record["session"] == 2
    assert store.session_classes[-1] == [6] and store.frozen[: len(previous)].all()


# ---------------------------------------------------------------------------------------------------------------
# The command line


def test_cli_session_and_evaluate_on_the_session_directory(sessions, tmp_path: Path, capsys) -> None:
    from hashguard.cli import main
    from hashguard.pipeline.checkpoint import open_checkpoint
    from hashguard.pipeline.evaluate import evaluate_checkpoint

    root, _ = sessions
    classes = tmp_path / "classes.txt"
    classes.write_text("# session 2\n6\n7\n", encoding="utf-8")
    out = tmp_path / "s2"
    argv = ["lifelong", "--from", str(root / "s1"), "--classes-file", str(classes), "--out", str(out), "--preset",
            "demo", "--set", "epochs=1", "--set", "items=40", "--set", "num_samples=40", "--queries", "20",
            "--device", "cpu", "--json"]  # fmt: skip
    assert main(argv) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["session"] == 2 and record["session_classes"][-1] == [6, 7] and record["new_items"] == 40
    assert record["evaluation"]["new"]["queries"] == 20 and record["evaluation"]["old"]["queries"] == 20
    assert main(["attack", str(out), "--attack", "mainstay", "--queries", "4", "-k", "0", "--set", "iterations=1",
                 "--set", "mainstay_from=database", "--out", str(tmp_path / "attack"), "--device", "cpu"]) == 0
    attacked = json.loads((tmp_path / "attack" / "mainstay_result.json").read_text())
    assert attacked["num_queries"] == 4 and attacked["params"]["mainstay_from"] == "database"
    capsys.readouterr()
    metrics = evaluate_checkpoint(out, topk=None, progress=False, queries=30, warn=None)
    store = CodeStore.load(out)
    assert metrics["n_database"] == len(store) == 360 and "ADSH protocol" in metrics["database"]
    opened = open_checkpoint(out, device="cpu")
    codes, labels = encode_dataset(opened.model, opened.require_splits().query[:30])
    expected = mean_average_precision(codes, store.codes.numpy(), labels, store.labels.numpy(), None)
    assert metrics["map_all"] == pytest.approx(float(expected), abs=1e-9)


def _error(capsys, argv) -> str:
    from hashguard.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hashguard: error:") and "\n" not in err and "Traceback" not in err
    return err


def test_bad_inputs_are_one_line(sessions, splits, tmp_path: Path, capsys) -> None:
    from hashguard.methods import build_method
    from hashguard.testing import save_demo_checkpoint, small_cnn_model

    root, _ = sessions
    base = ["lifelong", "--from", str(root / "s1"), "--out", str(tmp_path / "x"), "--device", "cpu"]
    assert "classes [4] were already seen" in _error(capsys, [*base, "--classes", "4,8"])
    assert "out of range" in _error(capsys, [*base, "--classes", "12"])
    assert "exactly one of --classes and --classes-file" in _error(capsys, base)
    assert "gama" in _error(capsys, [*base, "--classes", "8", "--set", "gama=3"])
    # code length mismatch: the store's codes are 8 bits, the query network 16
    broken = tmp_path / "broken"
    shutil.copytree(root / "s0", broken)
    store = CodeStore.load(broken)
    CodeStore(store.codes[:, :8].contiguous(), store.labels, store.frozen, store.session, store.source_rows,
              store.session_classes, store.data).save(broken)
    err = _error(capsys, ["lifelong", "--from", str(broken), "--classes", "8", "--out", str(tmp_path / "y"),
                          "--device", "cpu"])  # fmt: skip
    assert "code length mismatch" in err and "8 bits" in err
    # a plain ADSH checkpoint (hashguard train, protocol adsh) on the first 64 training digits: every class seen
    from hashguard.config import TrainConfig
    from hashguard.data import SubsetDataset
    from hashguard.training import train_model

    pool = SubsetDataset(splits.train, np.arange(64))
    adsh = build_method("adsh", 8, splits.num_classes, len(pool), seed=0, num_samples=32)
    train_model(small_cnn_model(splits, 8, hash_norm="batchnorm"), adsh, pool,
                TrainConfig(recipe="fast", epochs=1, batch_size=32, val_fraction=0.0, select="last", progress=False),
                tmp_path / "adsh", log=None, describe={"data": {"source": "demo-mnist", "seed": 0}})
    seen = sorted(set(np.asarray(pool.labels).argmax(1).tolist()))
    err = _error(capsys, ["lifelong", "--from", str(tmp_path / "adsh"), "--classes", str(seen[0]), "--out",
                          str(tmp_path / "u"), "--device", "cpu"])  # fmt: skip
    assert f"classes [{seen[0]}] were already seen (the store holds classes {seen})" in err
    # a non-ADSH checkpoint
    csq = save_demo_checkpoint(tmp_path / "csq", small_cnn_model(splits, 8), build_method("csq", 8, 10, 64))
    err = _error(capsys, ["lifelong", "--from", str(csq), "--classes", "8", "--out", str(tmp_path / "z"),
                          "--device", "cpu"])  # fmt: skip
    assert "a csq model" in err and "ADSH checkpoint" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y" / "model.json").exists()
    # old images needed (sample_from=all) but the store does not know where they are
    unknown = tmp_path / "unknown"
    shutil.copytree(root / "s0", unknown)
    store = CodeStore.load(unknown)
    store.source_rows = torch.full_like(store.source_rows, -1)
    store.save(unknown)
    err = _error(capsys, ["lifelong", "--from", str(unknown), "--classes", "8", "--out", str(tmp_path / "w"),
                          "--device", "cpu"])  # fmt: skip
    assert "sample_from=new" in err
    # a stored code changed behind the store's back
    tampered = tmp_path / "tampered"
    shutil.copytree(root / "s0", tampered)
    state = load_state_file(tampered / "code_store.safetensors")
    state["codes"][0, 0] *= -1
    from hashguard.models.checkpoint import save_state_file

    save_state_file(tampered / "code_store.safetensors", state)
    err = _error(capsys, ["lifelong", "--from", str(tampered), "--classes", "8", "--out", str(tmp_path / "v"),
                          "--device", "cpu"])  # fmt: skip
    assert "do not match the digest" in err


def test_config_file_gives_the_settings_of_set_and_ships_valid_sessions(tmp_path: Path, capsys) -> None:
    import argparse

    from hashguard.cli import build_parser
    from hashguard.commands.lifelong import classes_of, config_file, settings_of

    parser = build_parser()
    path = tmp_path / "session.yaml"
    path.write_text("classes: 7-9\nsettings: {preset: demo, epochs: 2, saat: true}\n", encoding="utf-8")
    from_file = parser.parse_args(["lifelong", "--config", str(path), "--out", str(tmp_path / "o")])
    from_flags = parser.parse_args(["lifelong", "--classes", "7,8,9", "--preset", "demo", "--set", "epochs=2",
                                    "--saat", "--out", str(tmp_path / "o")])
    assert settings_of(from_file) == settings_of(from_flags) and classes_of(from_file) == [7, 8, 9]
    overridden = parser.parse_args(["lifelong", "--config", str(path), "--set", "epochs=5", "--classes", "6",
                                    "--out", str(tmp_path / "o")])
    assert settings_of(overridden).epochs == 5 and classes_of(overridden) == [6]  # the command line wins
    root = Path(__file__).resolve().parents[2] / "configs" / "lifelong"
    shipped = sorted(root.glob("*.yaml"))
    assert len(shipped) >= 2
    for config in shipped:
        args = argparse.Namespace(config=str(config), overrides=[], preset=None, saat=False, batch_size=None,
                                  classes=None, classes_file=None)
        settings_of(args)
        assert classes_of(args) and set(config_file(args)) <= {"settings", "classes", "data"}


def test_a_bad_config_file_is_one_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("classes: 7-9\nsessions: 2\n", encoding="utf-8")
    assert "unknown key(s) sessions" in _error(capsys, ["lifelong", "--config", str(bad), "--out", str(tmp_path / "o")])
    bad.write_text("settings: {epochs: -1}\nclasses: 7\n", encoding="utf-8")
    assert "epochs" in _error(capsys, ["lifelong", "--config", str(bad), "--out", str(tmp_path / "o")])
    assert "cannot read" in _error(capsys, ["lifelong", "--config", str(tmp_path / "missing.yaml"), "--classes", "7",
                                            "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()
