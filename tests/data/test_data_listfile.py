"""List-file datasets (SAAT pairs and DeepHash single files): parsing, preprocessing, every bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hashguard.data import open_dataset, preprocess_image
from hashguard.data.listfile import ListFileDataset, detect_format, parse_lists
from hashguard.errors import DataError

LABELS = {
    "train": ["1 0 0 1", "0 1 0 0", "0 0 1 1"],
    "test": ["1 0 0 0", "0 1 1 0"],
    "database": ["1 0 0 1", "0 1 0 0", "0 0 1 1", "0 0 0 0"],
}


def make_images(root: Path, count: int = 4) -> list[str]:
    """Small RGB/grey PNG and JPEG images of odd sizes under root/img/."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = []
    for i in range(count):
        size = (40 + 7 * i, 30 + 5 * i)
        array = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        image = Image.fromarray(array)
        name = f"img/im{i}.{'png' if i % 2 else 'jpg'}"
        (image.convert("L") if i == 3 else image).save(root / name)
        names.append(name)
    return names


def write_saat(root: Path, labels: dict[str, list[str]] = LABELS) -> None:
    names = make_images(root)
    for split, rows in labels.items():
        (root / f"{split}_img.txt").write_text("".join(f"{names[i % 4]}\n" for i in range(len(rows))))
        (root / f"{split}_label.txt").write_text("".join(f"{row}\n" for row in rows))


def write_deephash(root: Path, labels: dict[str, list[str]] = LABELS) -> None:
    names = make_images(root)
    for split, rows in labels.items():
        (root / f"{split}.txt").write_text("".join(f"{names[i % 4]} {row}\n" for i, row in enumerate(rows)))


@pytest.mark.parametrize("writer,fmt", [(write_saat, "saat"), (write_deephash, "deephash")])
def test_both_formats_parse(tmp_path: Path, writer, fmt: str) -> None:
    writer(tmp_path)
    assert detect_format(tmp_path) == fmt
    splits = open_dataset("listfile", root=tmp_path, image_size=32)
    assert (len(splits.train), len(splits.query), len(splits.database)) == (3, 2, 4)
    assert splits.split("test") is splits.query and splits.num_classes == 4
    assert np.array_equal(splits.database.labels[3], np.zeros(4, dtype=np.float32))
    image, label, index = splits.query[1]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert label.tolist() == [0.0, 1.0, 1.0, 0.0] and index == 1
    assert splits.database[3][0].shape == (3, 32, 32)  # greyscale file becomes RGB
    assert splits.fingerprint() == open_dataset("listfile", root=tmp_path, image_size=32).fingerprint()


def test_default_preprocessing_is_spec_224(tmp_path: Path) -> None:
    write_saat(tmp_path)
    splits = open_dataset("listfile", root=tmp_path)
    assert isinstance(splits.train, ListFileDataset) and splits.train.resize == 256
    assert splits.train[0][0].shape == (3, 224, 224)


def test_preprocessing_matches_torchvision() -> None:
    transforms = pytest.importorskip("torchvision.transforms")
    rng = np.random.default_rng(1)
    for shape in ((300, 400, 3), (333, 250, 3), (100, 100, 3)):
        image = Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8))
        ours = preprocess_image(image, 224)
        ref = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()])(
            image
        )
        assert ours.shape == ref.shape == (3, 224, 224)
        assert float((ours - ref).abs().max()) <= 1.5 / 255
    small = preprocess_image(Image.new("RGB", (10, 20), (255, 0, 0)), image_size=16, resize=8)
    assert small.shape == (3, 16, 16) and float(small[0, 0, 0]) == 0.0  # zero padding like torchvision


def bad(tmp_path: Path, match: str, writer=write_saat, edit=None) -> str:
    writer(tmp_path)
    if edit is not None:
        edit(tmp_path)
    with pytest.raises(DataError, match=match) as info:
        splits = open_dataset("listfile", root=tmp_path, image_size=16)
        for part in (splits.train, splits.query, splits.database):
            for i in range(len(part)):
                part[i]
    message = str(info.value)
    assert "\n" not in message
    return message


def test_malformed_saat_path_line(tmp_path: Path) -> None:
    def edit(root: Path) -> None:
        (root / "test_img.txt").write_text("img/im0.jpg\nimg/im1.png 0 1\n")

    msg = bad(
        tmp_path,
        r"test_img\.txt:2: expected the image path alone, found 'img/im1\.png' followed by 2 0/1 label\(s\) "
        r"\(the DeepHash layout\); labels belong in test_label\.txt",
        edit=edit,
    )
    assert str(tmp_path) in msg


def test_saat_paths_may_contain_spaces(tmp_path: Path) -> None:
    """The SAAT image list holds the path alone on its line: spaces (inner and repeated) are part of it."""
    write_saat(tmp_path)
    spaced = ["img/my photo 0.jpg", "img/two  spaces.png"]
    for name, source in zip(spaced, ["img/im0.jpg", "img/im1.png"], strict=True):
        (tmp_path / name).write_bytes((tmp_path / source).read_bytes())
    (tmp_path / "test_img.txt").write_text(f"  {spaced[0]}\n{spaced[1]}  \n")
    splits = open_dataset("listfile", root=tmp_path, image_size=16)
    assert splits.query.paths == spaced
    for index, source in enumerate(["img/im0.jpg", "img/im1.png"]):
        expected = preprocess_image(Image.open(tmp_path / source), 16)
        assert torch.equal(splits.query[index][0], expected)


def test_deephash_path_with_spaces_is_ambiguous(tmp_path: Path) -> None:
    def edit(root: Path) -> None:
        (root / "test.txt").write_text("img/im0.jpg 1 0 0 0\nimg/my photo 1.png 0 1 1 0\n")

    msg = bad(
        tmp_path,
        r"test\.txt:2: ambiguous line: the image path 'img/my photo 1\.png' seems to contain spaces, which the "
        r"DeepHash format .* cannot hold; rename the file or use the SAAT format \(test_img\.txt",
        write_deephash,
        edit,
    )
    assert str(tmp_path) in msg


def test_deephash_bad_labels_are_not_taken_for_a_spaced_path(tmp_path: Path) -> None:
    # a non-0/1 token between 0/1 labels is a label error, not a path with spaces
    def edit(root: Path) -> None:
        (root / "test.txt").write_text("img/im0.jpg 1 0 0 0\nimg/im1.png 0 x 1 0\n")

    bad(tmp_path, r"test\.txt:2: label 'x' in label column 2 is not 0 or 1", write_deephash, edit)

    # one label too many could be a path token: the width message says so
    def extra(root: Path) -> None:
        (root / "test.txt").write_text("img/im0.jpg 1 0 0 0\nimg/im1.png 0 1 1 0 1\n")

    bad(
        tmp_path / "b",
        r"test\.txt:2: expected 4 labels \(as in .*\), found 5; if the image path contains spaces, the DeepHash "
        r"format cannot hold it \(use the SAAT format\)",
        write_deephash,
        extra,
    )


def test_malformed_deephash_line(tmp_path: Path) -> None:
    def edit(root: Path) -> None:
        (root / "database.txt").write_text("img/im0.jpg 1 0 0 1\nimg/im1.png\n")

    bad(tmp_path, r"database\.txt:2: expected an image path followed by 0/1 labels", write_deephash, edit)


def test_label_width_mismatch_within_file(tmp_path: Path) -> None:
    def edit(root: Path) -> None:
        (root / "train_label.txt").write_text("1 0 0 1\n0 1 0\n0 0 1 1\n")

    bad(tmp_path, r"train_label\.txt:2: expected 4 labels \(as on line 1\), found 3", edit=edit)


def test_label_width_mismatch_between_splits(tmp_path: Path) -> None:
    def edit(root: Path) -> None:
        (root / "test.txt").write_text("img/im0.jpg 1 0 0 0 1\nimg/im1.png 0 1 1 0 0\n")

    bad(tmp_path, r"test\.txt:1: expected 4 labels \(as in .*train\.txt\), found 5", write_deephash, edit)


def test_non_binary_label(tmp_path: Path) -> None:
    def edit(root: Path) -> None:
        (root / "database_label.txt").write_text("1 0 0 1\n0 2 0 0\n0 0 1 1\n0 0 0 0\n")

    bad(tmp_path, r"database_label\.txt:2: label '2' in label column 2 is not 0 or 1", edit=edit)


def test_line_count_mismatch(tmp_path: Path) -> None:
    def edit(root: Path) -> None:
        (root / "test_label.txt").write_text("1 0 0 0\n")

    bad(
        tmp_path,
        r"test_label\.txt:2: line missing: test_img\.txt has 2 lines, test_label\.txt has 1",
        edit=edit,
    )


def test_empty_file_and_blank_line(tmp_path: Path) -> None:
    bad(
        tmp_path / "a",
        r"train_label\.txt:1: empty file",
        edit=lambda r: (r / "train_label.txt").write_text("\n"),
    )
    bad(
        tmp_path / "b",
        r"test\.txt:2: empty line",
        write_deephash,
        lambda r: (r / "test.txt").write_text("img/im0.jpg 1 0 0 0\n\nimg/im1.png 0 1 1 0\n"),
    )


def test_missing_list_file_and_directory(tmp_path: Path) -> None:
    bad(
        tmp_path / "a",
        r"database_label\.txt: list file not found",
        edit=lambda r: (r / "database_label.txt").unlink(),
    )
    with pytest.raises(DataError, match="dataset directory not found"):
        open_dataset("listfile", root=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no list files found"):
        open_dataset("listfile", root=tmp_path / "empty")
    with pytest.raises(DataError, match="needs a root"):
        open_dataset("listfile")


def test_missing_image(tmp_path: Path) -> None:
    msg = bad(
        tmp_path,
        r"im2\.jpg: image not found \(listed at .*train_img\.txt:3\)",
        edit=lambda r: (r / "img/im2.jpg").unlink(),
    )
    assert str(tmp_path) in msg


def test_corrupt_image(tmp_path: Path) -> None:
    def edit(root: Path) -> None:
        (root / "img/im1.png").write_bytes(b"this is not a png")

    bad(tmp_path, r"im1\.png: cannot read image: .*\(listed at .*train_img\.txt:2\)", edit=edit)


def test_collecting_mode_reports_every_problem(tmp_path: Path) -> None:
    write_saat(tmp_path)
    (tmp_path / "train_label.txt").write_text("1 0 0 1\n0 1 x 0\n0 0 1\n")
    parsed, problems = parse_lists(tmp_path, strict=False)
    assert len(problems) == 2 and problems[0].endswith(
        "train_label.txt:2: label 'x' in label column 3 is not 0 or 1"
    )
    assert parsed["train"].bad_rows == [1, 2] and len(parsed["database"].paths) == 4


def test_crlf_and_byte_order_mark_are_tolerated(tmp_path: Path) -> None:
    write_saat(tmp_path)
    (tmp_path / "test_img.txt").write_bytes(b"\xef\xbb\xbfimg/im0.jpg\r\nimg/im1.png\r\n\r\n")
    splits = open_dataset("listfile", root=tmp_path, image_size=8)
    assert splits.query.paths == ["img/im0.jpg", "img/im1.png"] and splits.query[0][0].shape == (3, 8, 8)
