"""The train / encode / evaluate commands end to end on tiny demo data, and their one-line errors."""

import json

import numpy as np
import pytest

from hashguard.cli import main
from hashguard.retrieval import load_codes, mean_average_precision

TINY = [
    "--set", "data.options={query_size: 100, train_size: 300}",
    "--set", "train.recipe=fast", "--set", "train.epochs=2", "--set", "train.progress=false",
    "--set", "method.name=csq", "--set", "model.bits=16",
]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--out", str(out), *TINY]) == 0
    return out


def test_train_encode_evaluate_round_trip(trained_run, tmp_path, capsys):
    assert (trained_run / "model.safetensors").is_file() and (trained_run / "model.json").is_file()
    meta = json.loads((trained_run / "model.json").read_text())
    assert meta["dataset"]["fingerprint"] and meta["method"]["name"] == "csq"
    for split in ("query", "database"):
        assert main(["encode", str(trained_run), "--split", split, "--out", str(tmp_path / f"{split}.npz")]) == 0
    query, database = load_codes(tmp_path / "query.npz"), load_codes(tmp_path / "database.npz")
    assert query.codes.shape == (100, 16) and query.meta["split"] == "query"
    capsys.readouterr()
    metrics_file = tmp_path / "m.json"
    assert main(["evaluate", str(trained_run), "--topk", "1000", "--out", str(metrics_file),
                 "--pr-out", str(tmp_path / "pr.csv")]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads(metrics_file.read_text())
    expected = mean_average_precision(query.codes, database.codes, query.labels, database.labels, topk=1000)
    assert metrics["map"] == pytest.approx(expected)
    assert f"{expected:.4f}" in printed and "tie-aware" in printed
    rng = np.random.default_rng(0)
    chance = mean_average_precision(
        np.where(rng.random(query.codes.shape) < 0.5, -1, 1), database.codes, query.labels, database.labels, topk=1000
    )
    assert expected > chance + 0.2
    assert (tmp_path / "pr.csv").read_text().startswith("recall,precision")
    # evaluating the code files gives the same number as evaluating the checkpoint
    assert main(["evaluate", "--query-codes", str(tmp_path / "query.npz"), "--db-codes",
                 str(tmp_path / "database.npz"), "--topk", "1000", "--out", str(tmp_path / "m2.json")]) == 0
    assert json.loads((tmp_path / "m2.json").read_text())["map"] == pytest.approx(expected)


def _one_line_error(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hashguard: error: ")
    return err[0]


def test_bad_inputs_get_one_clear_line(trained_run, tmp_path, capsys):
    assert "train.epochs" in _one_line_error(capsys, ["train", "--out", str(tmp_path / "x"), "--set", "train.epochs=0"])
    assert "not found" in _one_line_error(capsys, ["encode", str(tmp_path / "nope"), "--out", str(tmp_path / "c.npz")])
    assert "--resume" in _one_line_error(capsys, ["train", "--out", str(trained_run), *TINY])
    # code files of different lengths
    from hashguard.retrieval import save_codes

    save_codes(tmp_path / "a.npz", np.ones((3, 8), np.int8), np.eye(3, 2, dtype=np.float32))
    save_codes(tmp_path / "b.npz", np.ones((4, 16), np.int8), np.eye(4, 2, dtype=np.float32))
    line = _one_line_error(capsys, ["evaluate", "--query-codes", str(tmp_path / "a.npz"), "--db-codes",
                                    str(tmp_path / "b.npz")])
    assert "bit" in line or "length" in line
    # a checkpoint from another model: weights of a 32-bit run under this run's description
    (tmp_path / "corrupt.npz").write_bytes(b"not an archive")
    assert "code file" in _one_line_error(capsys, ["evaluate", "--query-codes", str(tmp_path / "corrupt.npz"),
                                                   "--db-codes", str(tmp_path / "b.npz")])
    # the trained checkpoint survived all of the above untouched
    assert (trained_run / "model.safetensors").is_file()


def test_model_hash_norm_reaches_the_model_spec(demo_splits):
    from hashguard.config import ExperimentConfig
    from hashguard.pipeline.train import model_spec_for

    plain = ExperimentConfig.model_validate({"method": {"name": "csq"}})
    normed = ExperimentConfig.model_validate({"method": {"name": "csq"}, "model": {"hash_norm": "batchnorm"}})
    ortho = ExperimentConfig.model_validate({"method": {"name": "orthohash"}})
    assert model_spec_for(plain, demo_splits).hash_norm == "none"
    assert model_spec_for(normed, demo_splits).hash_norm == "batchnorm"
    assert model_spec_for(ortho, demo_splits).hash_norm == "batchnorm"  # the method's own need wins
