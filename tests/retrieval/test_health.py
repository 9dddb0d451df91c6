"""The collapse check of hashguard.retrieval.health on hand-made codes, and its warning lines in evaluate and
search (no trained model)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hashguard.cli import main
from hashguard.retrieval import mean_average_precision, save_codes
from hashguard.retrieval.health import chance_map, code_health


def one_hot(classes: list[int], width: int) -> np.ndarray:
    return np.eye(width, dtype=np.float32)[classes]


def class_codes(classes: list[int], bits: int = 8) -> np.ndarray:
    """Each class its own code: the bits of (class + 1) as +-1 (distinct, so a perfect single-label hash)."""
    return np.array([[1 if (c + 1) >> b & 1 else -1 for b in range(bits)] for c in classes], dtype=np.int8)


def test_chance_level_is_the_mean_fraction_of_relevant_items():
    db = one_hot([0, 0, 1, 2], 3)
    # query of class 0: 2 of 4 relevant; class 2: 1 of 4; a multi-hot query {1, 2}: 2 of 4
    queries = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 1]], dtype=np.float32)
    assert chance_map(queries, db) == pytest.approx((2 / 4 + 1 / 4 + 2 / 4) / 3)
    # a query without a label counts 0, as it does in mAP
    assert chance_map(np.zeros((1, 3), np.float32), db) == 0.0


def test_a_random_ranking_scores_the_chance_level_on_average():
    rng = np.random.default_rng(0)
    db_labels = one_hot(list(rng.integers(0, 4, 400)), 4)
    query_labels = one_hot(list(rng.integers(0, 4, 200)), 4)
    scores = [
        mean_average_precision(
            np.where(rng.random((200, 32)) < 0.5, 1, -1), np.where(rng.random((400, 32)) < 0.5, 1, -1),
            query_labels, db_labels,
        )
        for _ in range(5)
    ]
    # random 32-bit codes give a random ranking: mAP within 0.03 of the chance level
    assert np.mean(scores) == pytest.approx(chance_map(query_labels, db_labels), abs=0.03)


def test_one_code_for_most_items_is_collapsed():
    classes = [i % 10 for i in range(100)]
    codes = class_codes(classes)
    codes[:60] = codes[0]  # items 0-59 and the class-0 items 60, 70, 80, 90 share one code; classes have 10 %
    health = code_health(codes, one_hot(classes, 10))
    assert health.dominant_share == pytest.approx(0.64) and health.largest_label_share == pytest.approx(0.1)
    assert health.collapsed and "64%" in health.warning("the codes")
    assert health.warning("the codes").startswith("WARNING: the codes look collapsed: ")


def test_one_code_per_class_is_healthy_even_when_one_class_is_most_of_the_database():
    classes = [0] * 70 + [1] * 15 + [2] * 15
    health = code_health(class_codes(classes), one_hot(classes, 3))
    assert health.dominant_share == pytest.approx(0.7) and health.distinct_codes == 3
    assert not health.collapsed and health.warning("the codes") is None


def test_fewer_codes_than_labels_is_collapsed():
    classes = [i % 10 for i in range(100)]
    codes = class_codes([c % 4 for c in classes])  # 4 codes for 10 classes, the largest code covers 30 %
    health = code_health(codes, one_hot(classes, 10))
    assert health.distinct_codes == 4 and health.dominant_share == pytest.approx(0.3)
    assert health.problems == ["4 distinct codes for 10 labels"]


def test_chance_level_map_is_collapsed_and_a_learned_one_is_not():
    rng = np.random.default_rng(1)
    classes = list(rng.integers(0, 10, 200))
    labels, codes = one_hot(classes, 10), class_codes(classes)
    chance = chance_map(labels[:50], labels)  # about 0.1
    threshold = chance + 0.1 * (1 - chance)
    assert code_health(codes, labels, map_value=threshold - 0.01, query_labels=labels[:50]).collapsed
    healthy = code_health(codes, labels, map_value=threshold + 0.01, query_labels=labels[:50])
    assert not healthy.collapsed and healthy.chance == pytest.approx(chance)


@pytest.fixture
def code_files(tmp_path):
    classes = [i % 10 for i in range(200)]
    labels = one_hot(classes, 10)
    healthy = class_codes(classes, 16)
    collapsed = healthy.copy()
    collapsed[:150] = collapsed[0]
    paths = {}
    for name, codes in (("healthy", healthy), ("collapsed", collapsed)):
        paths[name] = tmp_path / f"{name}.npz"
        save_codes(paths[name], codes, labels, meta={"split": "database"})
    return paths


@pytest.mark.parametrize("name", ["healthy", "collapsed"])
def test_evaluate_and_search_warn_on_collapsed_codes_only(code_files, tmp_path, capsys, name):
    path = str(code_files[name])
    capsys.readouterr()
    assert main(["evaluate", "--query-codes", path, "--db-codes", path, "--topk", "0",
                 "--out", str(tmp_path / "m.json")]) == 0
    err = capsys.readouterr().err
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["code_health"]["collapsed"] is (name == "collapsed")
    assert ("WARNING" in err) is (name == "collapsed")
    assert main(["search", "build", "--codes", path, "--out", str(tmp_path / "i.hgidx")]) == 0
    assert ("WARNING" in capsys.readouterr().err) is (name == "collapsed")
    assert main(["search", "query", "--index", str(tmp_path / "i.hgidx"), "--codes", path, "-k", "3"]) == 0
    captured = capsys.readouterr()
    assert ("WARNING" in captured.err) is (name == "collapsed")
    assert json.loads(captured.out)["k"] == 3  # the warning never mixes into the JSON on stdout
