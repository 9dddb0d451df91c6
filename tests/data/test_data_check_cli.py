"""``hashguard datasets check``: a readable table for clean data, one stderr line per problem otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_data_arrays import make_idx
from test_data_listfile import write_deephash, write_saat

from hashguard.cli import main
from hashguard.data.check import check_dataset


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, list[str]]:
    code = main(["datasets", "check", *args])
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line]


def test_clean_saat_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_saat(tmp_path)
    code, out, err = run(capsys, str(tmp_path))
    assert code == 0 and err == []
    assert "saat list files" in out and "test (query)" in out and "status: ok" in out
    assert "labels/item" in out and "database: 1 row(s) have no label" in out


def test_clean_deephash_dataset_report(tmp_path: Path) -> None:
    write_deephash(tmp_path)
    report = check_dataset(tmp_path)
    assert report.ok and report.format == "deephash list files"
    train = report.splits[0]
    assert (train.count, train.label_width, train.zero_label_rows, train.missing_images) == (3, 4, 0, 0)
    assert train.cardinality == pytest.approx(5 / 3)
    assert "train is a subset of database" in report.notes


def test_malformed_line_gives_one_stderr_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_saat(tmp_path)
    (tmp_path / "train_label.txt").write_text("1 0 0 1\n0 1 0\n0 0 1 1\n")
    code, _, err = run(capsys, str(tmp_path), "--no-images")
    assert code != 0 and len(err) == 1
    assert err[0] == f"{tmp_path / 'train_label.txt'}:2: expected 4 labels (as on line 1), found 3"


def test_missing_and_corrupt_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_deephash(tmp_path)
    (tmp_path / "img/im2.jpg").unlink()
    (tmp_path / "img/im1.png").write_bytes(b"garbage")
    code, out, err = run(capsys, str(tmp_path))
    assert code == 1
    assert any(line.startswith(f"{tmp_path / 'train.txt'}:3: image ") and "not found" in line for line in err)
    assert any(
        line.startswith(f"{tmp_path / 'train.txt'}:2: image ") and "unreadable" in line for line in err
    )
    # one line per bad image, at its first listing, although test and database list them too
    assert len(err) == 2 and "status: 2 problem(s)" in out
    assert "2 bad image(s) are listed more than once" in out
    report = check_dataset(tmp_path)
    assert report.splits[0].missing_images == 1 and report.splits[0].unreadable_images == 1
    # --no-images skips the image checks
    code, _, err = run(capsys, str(tmp_path), "--no-images")
    assert code == 0 and err == []


def test_duplicates_are_reported_not_failed(tmp_path: Path) -> None:
    write_deephash(tmp_path)
    (tmp_path / "train.txt").write_text("img/im0.jpg 1 0 0 1\nimg/im0.jpg 1 0 0 1\nimg/im1.png 0 0 0 0\n")
    report = check_dataset(tmp_path)
    assert report.ok and report.splits[0].duplicates == 1 and report.splits[0].zero_label_rows == 1


def test_user_errors_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, str(tmp_path / "nowhere"))
    assert code == 2 and len(err) == 1 and err[0].startswith("hashguard: error: ") and "not found" in err[0]
    code, _, err = run(capsys, str(tmp_path))
    assert code == 2 and len(err) == 1 and "no list files found" in err[0]


def test_builtin_and_idx_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "demo-mnist")
    assert code == 0 and "built-in source" in out and "4500" in out
    make_idx(tmp_path, train=60, test=20)
    code, out, _ = run(capsys, str(tmp_path), "--format", "idx")
    assert code == 0 and "idx" in out and "t10k files (query)" in out
    code, out, _ = run(capsys, str(tmp_path))  # auto-detected
    assert code == 0 and "idx" in out
    assert main(["datasets", "sources"]) == 0
    assert "demo-mnist-multi" in capsys.readouterr().out
