"""``hashguard attack``: one-line errors and a small end-to-end run writing codes plus a JSON result."""

from __future__ import annotations

import json

import pytest

from hashguard.cli import main
from hashguard.models.checkpoint import save_model
from hashguard.retrieval import load_codes
from hashguard.testing import MINI_PROSGAN


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
    p2p = json.loads((out / "p2p_result.json").read_text())
    assert p2p["target_labels_file"] == result["target_labels_file"]
    saved = (out / "target_labels.json").read_bytes()
    # ProS-GAN end to end: the CLI hands it the training split (read lazily); without --targets it reuses the
    # target labels already saved in --out, with a different --target-seed that would otherwise draw new ones
    code = main(
        [
            "attack",
            str(ckpt),
            "--attack",
            "prosgan",
            "--out",
            str(out),
            "--data",
            "demo-mnist",
            "--limit",
            "12",
            "--target-seed",
            "5",
            "--device",
            "cpu",
            *[f"--param={key}={value}" for key, value in {**MINI_PROSGAN, "res_blocks": 0}.items()],
            "--param=project=true",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert (out / "target_labels.json").read_bytes() == saved
    pros = json.loads((out / "prosgan_result.json").read_text())
    assert pros["attack"] == "prosgan" and pros["targeted"] and pros["num_queries"] == 12
    assert pros["params"]["gan_steps"] == 2 and pros["params"]["project"] is True
    assert pros["perceptibility"]["linf"] <= 8 / 255 + 1e-6 and pros["theory_tmap"] is not None
    assert pros["codes_file"] == str(out / "prosgan_codes.npz") and pros["info"]["projected_queries"] == 12
    assert load_codes(out / "prosgan_codes.npz").codes.shape == (12, 32)
