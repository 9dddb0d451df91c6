"""``hashguard attack``: one-line errors and a small end-to-end run writing codes plus a JSON result."""

from __future__ import annotations

import json

import pytest

from hashguard.cli import main
from hashguard.models.checkpoint import save_model
from hashguard.retrieval import load_codes


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--attack", "mainstay", "--eps", "1.5"], "eps must be in [0, 1]"),
        (["--attack", "fgsm"], "unknown attack"),
        (["--attack", "p2p", "--targets", "missing.json"], "target-label file not found"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, extra, message):
    code = main(["attack", str(tmp_path / "ckpt"), "--out", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err


def test_attack_command_writes_codes_and_result(tmp_path, attack_bench, capsys):
    ckpt = save_model(tmp_path / "ckpt", attack_bench.model, num_classes=10)
    out = tmp_path / "out"
    code = main(
        [
            "attack",
            str(ckpt),
            "--attack",
            "mainstay-targeted",
            "--out",
            str(out),
            "--data",
            "demo-mnist",
            "--limit",
            "12",
            "--iterations",
            "2",
            "--eps",
            "8/255",
            "--device",
            "cpu",
        ]
    )
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "mainstay-targeted_result.json").read_text())
    assert result["num_queries"] == 12 and result["targeted"] and result["params"]["eps"] == pytest.approx(8 / 255)
    assert (out / "target_labels.json").is_file() and result["target_labels_file"].endswith("target_labels.json")
    assert load_codes(out / "mainstay-targeted_codes.npz").codes.shape == (12, 32)
    # a second targeted attack reuses the saved target labels
    code = main(
        [
            "attack",
            str(ckpt),
            "--attack",
            "p2p",
            "--out",
            str(out),
            "--data",
            "demo-mnist",
            "--limit",
            "12",
            "--iterations",
            "2",
            "--targets",
            str(out / "target_labels.json"),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
