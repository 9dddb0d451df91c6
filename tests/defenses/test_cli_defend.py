"""``hashguard defend``: one-line errors that write nothing, an end-to-end run with provenance, resume."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from hashguard.cli import main
from hashguard.models import load_model

TINY = ["--preset", "demo", "--set", "epochs=1", "--set", "train_items=64", "--set", "progress=false"]


def _digest(directory):
    """SHA-256 over every file under ``directory`` (names and bytes)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(directory)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--defense", "fgsm-at"], "unknown defense 'fgsm-at'"),
        (["--defense", "saat", "--set", "eps=1.5"], "eps: Input should be less than or equal to 1"),
        (["--defense", "saat", "--set", "eps=-8/255"], "eps: Input should be greater than or equal to 0"),
        (
            ["--defense", "cgat", "--set", "lamda=1"],
            "defense cgat: unknown setting(s) lamda; its own settings: refresh_bank, mainstay_from",
        ),
        (["--defense", "saat", "--set", "defense=atrdh"], "contradicts the chosen defense 'saat'"),
        (["--defense", "saat", "--set", "epochs"], "must look like key.path=value"),
        (["--defense", "saat", "--data", "nosuch"], "unknown dataset source 'nosuch'"),
    ],
)
def test_bad_settings_are_one_line_and_write_nothing(defense_bench, tmp_path, capsys, extra, message):
    before = _digest(defense_bench.checkpoint)
    code = main(["defend", str(defense_bench.checkpoint), "--out", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("hashguard: error: ") and message in err and "\n" not in err, err
    assert not (tmp_path / "out").exists()
    assert _digest(defense_bench.checkpoint) == before


def test_missing_and_corrupt_checkpoints_are_one_line(defense_bench, tmp_path, capsys):
    code = main(["defend", str(tmp_path / "nowhere"), "--defense", "saat", "--out", str(tmp_path / "a"), *TINY])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "checkpoint directory not found" in err and "\n" not in err, err
    broken = tmp_path / "broken"
    shutil.copytree(defense_bench.checkpoint, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    code = main(["defend", str(broken), "--defense", "saat", "--out", str(tmp_path / "b"), *TINY])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "corrupt safetensors file" in err and "\n" not in err, err
    (broken / "model.json").write_text("{ not json")
    code = main(["defend", str(broken), "--defense", "saat", "--out", str(tmp_path / "b"), *TINY])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "unreadable JSON" in err, err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_output_may_not_overwrite_the_base_or_another_model(defense_bench, tmp_path, capsys):
    copy = tmp_path / "base"
    shutil.copytree(defense_bench.checkpoint, copy)
    before = _digest(copy)
    code = main(["defend", str(copy), "--defense", "saat", "--out", str(copy), *TINY])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "is the base checkpoint" in err, err
    other = tmp_path / "other"
    shutil.copytree(defense_bench.checkpoint, other)
    code = main(["defend", str(copy), "--defense", "saat", "--out", str(other), *TINY])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "not a resumable defense run" in err, err
    assert _digest(copy) == before and _digest(other) == before


def test_defend_command_writes_hardened_checkpoint_with_provenance(defense_bench, tmp_path, capsys):
    out = tmp_path / "runs" / "saat"
    argv = ["defend", str(defense_bench.checkpoint), "--defense", "SAAT", "--out", str(out), *TINY,
            "--set", "eps=16/255", "--device", "cpu"]
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "saat: 1 epochs" in captured.out and str(out) in captured.out
    model, meta = load_model(out)
    assert model.bits == 16 and meta["method"]["name"] == "csq"
    provenance = meta["defense"]
    assert provenance["name"] == "saat" and "TIFS 2023" in provenance["reference"]
    assert provenance["config"]["preset"] == "demo" and provenance["config"]["epochs"] == 1
    assert provenance["config"]["eps"] == pytest.approx(16 / 255)
    assert provenance["config"]["batch_size"] == 64  # from the demo preset
    assert provenance["train_items"] == 64 and provenance["steps_per_epoch"] == 1
    assert provenance["base"]["path"] == str(defense_bench.checkpoint)
    assert meta["train_source"] == "base checkpoint's training split" and meta["data"]["source"] == "demo-mnist"
    expected = hashlib.sha256((defense_bench.checkpoint / "model.safetensors").read_bytes()).hexdigest()
    assert provenance["base"]["weights_sha256"] == expected
    assert len(json.loads((out / "history.json").read_text())) == 1

    # a second run into the same directory without --resume is refused and changes nothing
    finished = _digest(out)
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--resume" in err and "\n" not in err, err
    assert _digest(out) == finished
    # --resume on a finished run trains nothing more and rewrites identical weights
    weights = (out / "model.safetensors").read_bytes()
    assert main([*argv, "--resume"]) == 0
    assert (out / "model.safetensors").read_bytes() == weights
    # --resume with other settings is refused (the run identity differs)
    code = main([*argv[:-2], "--set", "eps=8/255", "--device", "cpu", "--resume"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "another configuration" in err, err
    assert (out / "model.safetensors").read_bytes() == weights


def test_help_lists_defenses(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["defend", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert all(name in text for name in ("saat", "atrdh", "cgat", "--preset", "--resume"))
