"""Bad input at the command line: one line on stderr, a non-zero exit, nothing already written lost or left
half-written.

Every case runs ``hashguard`` in-process (:func:`hashguard.cli.main`) and checks what a user sees on stderr:
exactly one line (progress bars that erase themselves are not lines a user sees), starting
``hashguard: error: ``, naming the path or argument and the problem. The classes:

1. operating-system errors at the boundary (a directory where a file is written, a file where a directory
   is needed, a read-only directory, a full disk while a checkpoint, a model or codes are written);
2. numeric arguments out of range on every subcommand;
3. a training set whose last batch would hold one item (handled: it joins the batch before it);
4. images: truncated files fail ``datasets check`` and ``study --dry-run``, 16-bit images are scaled by their
   bit depth;
5. list files: SAAT paths with spaces are accepted, ambiguous DeepHash lines named;
6. a ``model.json`` that describes another architecture than its weights.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hashguard.cli import main
from hashguard.errors import HashguardError
from hashguard.retrieval.codes_io import save_codes
from hashguard.testing import save_demo_checkpoint, small_cnn_model, tiny_splits

PREFIX = "hashguard: error: "
#: a small demo training run for `hashguard train` (40 train, 10 query, 50 database digits; 2 epochs of 2 batches)
SMALL_TRAIN = [
    "--set", "data.source=demo-mnist", "--set", "data.options.train_size=40", "--set", "data.options.query_size=10",
    "--set", "data.options.database_size=50", "--set", "train.epochs=2", "--set", "train.batch_size=20",
    "--set", "model.bits=16", "--set", "method.name=csq", "--set", "train.recipe=fast",
]


def visible_lines(text: str) -> list[str]:
    """The lines a terminal shows: for each line the text after its last carriage return (a progress bar that
    erases itself leaves nothing), blank lines dropped."""
    return [line.split("\r")[-1].strip() for line in text.split("\n") if line.split("\r")[-1].strip()]


def fails(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run ``hashguard ARGS``; assert a non-zero exit and exactly one visible stderr line, the error line
    (no traceback); return that line without its prefix. A refusal by the argument parser exits through
    ``SystemExit`` with status 2, as argparse does, after the same single line."""
    try:
        code = main(list(args))
    except SystemExit as stop:
        code = stop.code
    err = visible_lines(capsys.readouterr().err)
    assert code != 0, err
    assert len(err) == 1, err
    assert err[0].startswith(PREFIX), err
    assert "Traceback" not in err[0]
    return err[0][len(PREFIX):]


def succeeds(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = main(list(args))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes): what must survive a failed command unchanged."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def no_temporaries(root: Path) -> None:
    temporary = (".staging-", ".replaced-")
    left = [p.name for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(temporary)]
    assert left == [], left


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained small-CNN checkpoint that records a small slice of the demo digits as its data (40 train,
    10 query, 50 database items): enough to fail on, quick to encode."""
    splits = tiny_splits(sizes=(8, 4, 8))
    model = small_cnn_model(splits, 16)
    from hashguard.methods import build_method

    method = build_method("csq", 16, 10, 8, seed=0)
    directory = save_demo_checkpoint(tmp_path_factory.mktemp("ckpt") / "model", model, method)
    payload = json.loads((directory / "model.json").read_text())
    payload["data"]["options"] = {"train_size": 40, "query_size": 10, "database_size": 50}
    (directory / "model.json").write_text(json.dumps(payload))
    return directory


@pytest.fixture()
def code_files(tmp_path: Path) -> tuple[Path, Path]:
    """A query and a database code file of healthy codes (16 bits, one-hot labels over 3 classes): each item's
    code is its class's code with two bits flipped, so retrieval works and no collapse warning is due."""
    rng = np.random.default_rng(0)
    centres = np.where(rng.random((3, 16)) < 0.5, -1, 1).astype(np.int8)
    paths = []
    for name, count in (("q.npz", 5), ("db.npz", 40)):
        classes = np.arange(count) % 3
        codes = centres[classes].copy()
        for row in codes:
            row[rng.choice(16, 2, replace=False)] *= -1
        save_codes(tmp_path / name, codes, np.eye(3, dtype=np.float32)[classes])
        paths.append(tmp_path / name)
    return paths[0], paths[1]


# ----------------------------------------------------------------------------- 1. operating-system errors


def test_a_directory_where_a_file_is_written(capsys, tmp_path, checkpoint, code_files):
    query, database = code_files
    target = tmp_path / "somedir"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    before = tree(tmp_path)
    line = fails(capsys, "encode", str(checkpoint), "--out", str(target))
    assert line == f"{target}: is a directory; name a file"
    line = fails(capsys, "evaluate", "--query-codes", str(query), "--db-codes", str(database), "--out", str(target))
    assert line == f"{target}: is a directory; name a file"
    line = fails(capsys, "search", "build", "--codes", str(database), "--out", str(target))
    assert line == f"{target}: is a directory; name a file"
    assert tree(tmp_path) == before
    no_temporaries(tmp_path)


def test_a_file_where_a_directory_is_needed(capsys, tmp_path, checkpoint, code_files):
    query, database = code_files
    blocker = tmp_path / "results"
    blocker.write_text("an earlier result")
    before = tree(tmp_path)
    assert fails(capsys, "encode", str(checkpoint), "--out", str(blocker / "codes.npz")) == (
        f"{blocker}: is a file, not a directory"
    )
    line = fails(capsys, "attack", str(checkpoint), "--attack", "hag", "--out", str(blocker), "--iterations", "1")
    assert line.startswith(f"{blocker}: ") and "not a directory" in line
    assert fails(capsys, "train", "--out", str(blocker), *SMALL_TRAIN) == f"{blocker}: is a file, not a directory"
    line = fails(capsys, "evaluate", "--query-codes", str(query), "--db-codes", str(database),
                 "--pr-out", str(blocker / "deeper" / "pr.csv"))
    assert line.startswith(f"{blocker}: is a file, not a directory")
    assert tree(tmp_path) == before
    no_temporaries(tmp_path)
    # a file where the run keeps its checkpoints: refused before the first epoch, not after it
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").write_text("not a directory")
    line = fails(capsys, "train", "--out", str(run), *SMALL_TRAIN)
    assert line == f"{run / 'checkpoints'}: is a file, not a directory"
    assert (run / "checkpoints").read_text() == "not a directory" and not (run / "history.json").exists()


def test_a_read_only_directory(capsys, tmp_path, code_files, monkeypatch):
    query, database = code_files
    locked = tmp_path / "locked"
    locked.mkdir()
    target = locked / "db.hgidx"
    if hasattr(os, "geteuid") and os.geteuid() != 0:  # root writes anywhere: only another user sees the refusal
        locked.chmod(0o555)
        try:
            assert fails(capsys, "search", "build", "--codes", str(database), "--out", str(target)) == (
                f"{target}: permission denied"
            )
        finally:
            locked.chmod(0o755)
    # the refusal as the operating system reports it: on the temporary file the write starts with
    import hashguard.io_utils as io_utils

    def refused(prefix: str = "", suffix: str = "", dir: str | None = None) -> tuple[int, str]:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.path.join(dir or ".", f"{prefix}x{suffix}"))

    monkeypatch.setattr(io_utils.tempfile, "mkstemp", refused)
    assert fails(capsys, "search", "build", "--codes", str(database), "--out", str(target)) == (
        f"{target}: permission denied"
    )
    line = fails(capsys, "evaluate", "--query-codes", str(query), "--db-codes", str(database),
                 "--out", str(locked / "metrics.json"))
    assert line == f"{locked / 'metrics.json'}: permission denied"
    assert list(locked.iterdir()) == []


def _disk_full_after(calls: int, monkeypatch: pytest.MonkeyPatch, where: str = "") -> list[str]:
    """Let the first ``calls`` weight files whose temporary path contains ``where`` be written, then fail like a
    full disk half-way through the next (some bytes on disk, then ENOSPC); returns the files written so far."""
    import hashguard.models.checkpoint as ckpt

    real = ckpt._state_writer
    written: list[str] = []

    def writer(state):
        write = real(state)

        def maybe_full(tmp: str) -> None:
            if where not in tmp:
                write(tmp)
                return
            if len(written) >= calls:
                with open(tmp, "wb") as handle:
                    handle.write(b"\0" * 64)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            write(tmp)
            written.append(tmp)

        return maybe_full

    monkeypatch.setattr(ckpt, "_state_writer", writer)
    return written


def test_a_full_disk_while_a_training_checkpoint_is_written(capsys, tmp_path, monkeypatch):
    out = tmp_path / "run"
    # the epoch-1 checkpoint is written, the epoch-2 one meets a full disk
    _disk_full_after(1, monkeypatch, where=f"{os.sep}.staging-")
    line = fails(capsys, "train", "--out", str(out), *SMALL_TRAIN)
    assert line == f"{out / 'checkpoints' / 'epoch-0002'}: {os.strerror(errno.ENOSPC)}"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch-0001"]
    no_temporaries(out)
    from hashguard.training.state import read_checkpoint

    tensors, meta = read_checkpoint(out / "checkpoints" / "epoch-0001")  # complete and readable
    assert meta["epochs_done"] == 1 and tensors
    monkeypatch.undo()  # space again: the run resumes from what was kept
    succeeds(capsys, "train", "--out", str(out), "--resume", *SMALL_TRAIN)
    assert (out / "model.safetensors").is_file() and (out / "model.json").is_file()
    assert json.loads((out / "history.json").read_text())[-1]["epoch"] == 2


def test_a_full_disk_while_a_model_is_saved_keeps_the_old_pair(tmp_path, monkeypatch):
    from hashguard.models.checkpoint import load_model, save_model

    splits = tiny_splits(sizes=(8, 4, 8))
    directory = tmp_path / "model"
    save_model(directory, small_cnn_model(splits, 16, seed=0), method={"name": "csq"})
    before = tree(directory)
    _disk_full_after(0, monkeypatch)
    with pytest.raises(OSError) as info:
        save_model(directory, small_cnn_model(splits, 16, seed=1), method={"name": "dpsh"})
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(directory / "model.safetensors")
    assert tree(directory) == before  # weights and model.json of the first save, both
    no_temporaries(tmp_path)
    load_model(directory)


def test_a_full_disk_while_codes_are_written(capsys, tmp_path, checkpoint, monkeypatch):
    out = tmp_path / "codes.npz"
    out.write_bytes(b"the previous codes")

    def full(handle, **arrays):
        handle.write(b"PK\3\4 half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez", full)
    line = fails(capsys, "encode", str(checkpoint), "--split", "query", "--out", str(out))
    assert line == f"{out}: {os.strerror(errno.ENOSPC)}"
    assert out.read_bytes() == b"the previous codes"
    no_temporaries(tmp_path)


# ----------------------------------------------------------------------------- 2. numeric arguments


def names(line: str, argument: str, problem: str = "positive") -> bool:
    """Whether an error line names the argument and the problem (the parser's wording or the pipeline's)."""
    return argument in line and problem in line


def test_batch_sizes_must_be_positive(capsys, tmp_path, checkpoint):
    for size in ("0", "-3"):
        line = fails(capsys, "encode", str(checkpoint), "--out", str(tmp_path / "c.npz"), "--batch-size", size)
        assert names(line, "--batch-size") and size in line, line
        line = fails(capsys, "attack", str(checkpoint), "--attack", "hag", "--out", str(tmp_path / "a"),
                     "--batch-size", size)
        assert names(line, "--batch-size") and size in line, line
    line = fails(capsys, "encode", str(checkpoint), "--out", str(tmp_path / "c.npz"), "--batch-size", "many")
    assert line.startswith("encode: argument --batch-size: ") and "'many'" in line
    assert line.endswith("(see: hashguard encode --help)")
    assert "batch_size" in fails(capsys, "train", "--out", str(tmp_path / "t"), *SMALL_TRAIN,
                                 "--set", "train.batch_size=0")
    assert "batch_size" in fails(capsys, "defend", str(checkpoint), "--defense", "saat", "--out",
                                 str(tmp_path / "d"), "--set", "batch_size=0")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # nothing was written


def test_counts_and_cut_offs_must_be_in_range(capsys, tmp_path, checkpoint, code_files):
    query, database = code_files
    attack = ["attack", str(checkpoint), "--attack", "hag", "--out", str(tmp_path / "a")]
    for value in ("0", "-1"):
        assert names(fails(capsys, *attack, "--limit", value), "--limit")
    assert names(fails(capsys, *attack, "--topk", "-1"), "--topk")
    assert "iterations" in fails(capsys, *attack, "--iterations", "-1")
    assert "eps must be in [0, 1]" in fails(capsys, *attack, "--eps", "2")
    assert names(fails(capsys, "evaluate", "--query-codes", str(query), "--db-codes", str(database),
                       "--topk", "-5"), "--topk")
    assert "the following arguments are required: --attack" in fails(capsys, "attack", str(checkpoint))
    train = ["train", "--out", str(tmp_path / "t"), *SMALL_TRAIN]
    assert "train.epochs" in fails(capsys, *train, "--set", "train.epochs=0")
    for bits in ("0", "-8"):
        assert "model.bits" in fails(capsys, *train, "--set", f"model.bits={bits}")
    assert "epochs" in fails(capsys, "defend", str(checkpoint), "--defense", "saat", "--out",
                             str(tmp_path / "d"), "--set", "epochs=0")
    line = fails(capsys, *attack, "--data", "demo-mnist", "--image-size", "0")
    assert ("image_size" in line or "--image-size" in line) and ("greater than 0" in line or "positive" in line)
    assert fails(capsys, *attack, "--data", "demo-mnist", "--data-seed", "-1") == (
        "the data seed must be a non-negative integer, got -1"
    )
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["db.npz", "q.npz"]  # nothing written


def test_search_arguments_must_be_in_range(capsys, tmp_path, code_files):
    query, database = code_files
    index = tmp_path / "db.hgidx"
    build = ["search", "build", "--codes", str(database), "--out", str(index)]
    assert names(fails(capsys, *build, "--backend", "ivf", "--nlist", "0"), "--nlist")
    assert names(fails(capsys, *build, "--backend", "ivf", "--nprobe", "-1"), "--nprobe")
    pytest.importorskip("faiss")
    line = fails(capsys, *build, "--backend", "ivf", "--nlist", "41")  # the database holds 40 codes
    assert line.startswith("nlist 41 is larger than the 40 codes the IVF index is trained on")
    assert not index.exists()
    succeeds(capsys, *build)
    ask = ["search", "query", "--index", str(index), "--codes", str(query)]
    assert names(fails(capsys, *ask, "-k", "0"), "-k")
    assert names(fails(capsys, *ask, "-k", "-3"), "-k")
    assert names(fails(capsys, *ask, "--radius", "-1"), "radius", "non-negative")
    assert names(fails(capsys, *ask, "--limit", "0"), "--limit")


def test_study_numbers_must_be_in_range(capsys, tmp_path):
    config = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
    for key in ("attacks.queries=0", "attacks.batch_size=-1", "train.epochs=0", "model.bits=0"):
        line = fails(capsys, "study", str(config), "--dry-run", "--set", key)
        assert key.split("=")[0].split(".")[-1] in line, line


# ----------------------------------------------------------------------------- 3. a last batch of one item


def test_epoch_batches_fold_a_single_last_item():
    from hashguard.training.loop import batch_count, epoch_batches

    order = list(range(33))
    assert [len(b) for b in epoch_batches(order, 16)] == [16, 17]
    assert sum(epoch_batches(order, 16), []) == order  # every item once, in the sampler's order
    assert [len(b) for b in epoch_batches(list(range(32)), 16)] == [16, 16]
    assert [len(b) for b in epoch_batches(list(range(34)), 16)] == [16, 16, 2]
    assert [len(b) for b in epoch_batches(list(range(17)), 16)] == [17]
    assert [len(b) for b in epoch_batches([5], 16)] == [1]  # nothing to fold into
    assert [batch_count(n, 16) for n in (1, 16, 17, 18, 32, 33, 34)] == [1, 1, 1, 2, 2, 2, 3]


@pytest.mark.parametrize("method", ["csq", "orthohash"])
def test_a_training_set_of_batch_size_times_k_plus_one(tmp_path, method):
    """33 items in batches of 16: CSQ on the batch-norm head (the from-scratch recipe) and OrthoHash (whose
    model carries the batch-norm head) train; a batch of one item would stop both (the control below)."""
    from hashguard.config import TrainConfig
    from hashguard.data.base import SubsetDataset
    from hashguard.methods import build_method, method_class
    from hashguard.training import train_model

    splits = tiny_splits(sizes=(33, 4, 8))
    spec = {"hash_norm": "batchnorm", **method_class(method).model_overrides()}
    model = small_cnn_model(splits, 16, **spec)
    assert model.spec.hash_norm == "batchnorm"
    data = SubsetDataset(splits.train, np.arange(33))
    hashing = build_method(method, 16, 10, len(data), seed=0)
    config = TrainConfig(recipe="fast", epochs=1, batch_size=16, progress=False, val_fraction=0, eval_topk=None)
    result = train_model(model, hashing, data, config, tmp_path / "run", seed=0, log=None)
    assert result.epochs_done == 1 and np.isfinite(result.history[0]["loss"])
    # the control: a batch of one item in training mode is what the loop must never hand over
    model.train()
    image = data[0][0].unsqueeze(0)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        model(image)


def test_a_batch_size_of_one_on_a_batch_norm_model_is_one_line(capsys, tmp_path):
    line = fails(capsys, "train", "--out", str(tmp_path / "run"), *SMALL_TRAIN, "--set", "train.batch_size=1",
                 "--set", "model.hash_norm=batchnorm")
    assert line.startswith("training: a batch of one item cannot pass the model's batch-norm layers")
    assert "batch size 1" in line


# ----------------------------------------------------------------------------- 4. images


def _image_dataset(root: Path, names: list[str]) -> None:
    """A SAAT-format dataset listing ``names`` (already under ``root``) in every split, one label each."""
    for split in ("train", "test", "database"):
        (root / f"{split}_img.txt").write_text("".join(f"{name}\n" for name in names))
        (root / f"{split}_label.txt").write_text("".join(f"{i % 2} {1 - i % 2}\n" for i in range(len(names))))


def _write_truncated(root: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    good, jpeg, png = root / "good.jpg", root / "cut.jpg", root / "cut.png"
    Image.fromarray(pixels).save(good, quality=90)
    data = good.read_bytes()
    jpeg.write_bytes(data[: len(data) // 2])
    Image.fromarray(pixels).save(png)
    png.write_bytes(png.read_bytes()[:-200])
    return jpeg, png


def test_truncated_images_fail_the_dataset_check(capsys, tmp_path):
    jpeg, png = _write_truncated(tmp_path)
    with Image.open(jpeg) as image:  # PIL's verify() reads no pixels: it passes the JPEG training cannot read
        image.verify()
    _image_dataset(tmp_path, ["good.jpg", "cut.jpg", "cut.png"])
    code = main(["datasets", "check", str(tmp_path)])
    err = visible_lines(capsys.readouterr().err)
    assert code == 1
    assert len(err) == 2  # one line per bad image, not per split
    assert err[0].startswith(f"{tmp_path / 'train_img.txt'}:2: image {jpeg} unreadable") and "truncated" in err[0]
    assert err[1].startswith(f"{tmp_path / 'train_img.txt'}:3: image {png} unreadable")
    from hashguard.data import open_dataset

    splits = open_dataset("listfile", root=tmp_path, image_size=16)
    splits.train.load_image(0)
    with pytest.raises(HashguardError, match=r"cut\.jpg: cannot read image: .*truncated.*train_img\.txt:2"):
        splits.train.load_image(1)


def test_a_truncated_image_fails_the_study_dry_run(capsys, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _write_truncated(data)
    _image_dataset(data, ["good.jpg", "cut.jpg"])
    config = tmp_path / "study.yaml"
    config.write_text(
        "name: cut\n"
        f"data: {{source: listfile, root: {json.dumps(str(data))}, image_size: 16}}\n"
        "model: {backbone: small_cnn, bits: 16}\n"
        "method: {name: csq}\n"
        "train: {recipe: fast, epochs: 1}\n"
        "attacks: {suite: [mainstay], sweep: {attacks: []}}\n"
        "defenses: {run: []}\n"
    )
    code = main(["study", str(config), "--dry-run"])
    err = visible_lines(capsys.readouterr().err)
    assert code != 0 and len(err) == 1 and err[0].startswith(PREFIX)
    assert "cut.jpg unreadable" in err[0] and "truncated" in err[0]


def test_a_16_bit_png_is_scaled_by_its_bit_depth(tmp_path):
    from hashguard.data.listfile import load_pil_image
    from hashguard.data.transforms import preprocess_image

    # multiples of 13107 = 65535 / 5: exactly 0, 0.2, 0.4, 0.6, 0.8 and 1.0 of the full scale
    values = np.array([[0, 13107, 26214], [39321, 52428, 65535], [65535, 13107, 0]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as image:
        assert image.mode.startswith("I")  # a 16-bit grey image, as PIL opens it
    expected = torch.tensor([[0.0, 0.2, 0.4], [0.6, 0.8, 1.0], [1.0, 0.2, 0.0]])
    # no resizing (the shorter side already is 3) and no cropping: every pixel as it is, grey repeated to RGB
    tensor = preprocess_image(load_pil_image(path), image_size=3, resize=3)
    assert tensor.shape == (3, 3, 3) and tensor.dtype == torch.float32
    for channel in tensor:
        assert torch.allclose(channel, expected, atol=1e-6)
    # the same pixels at 8 bits give the same picture (within the 8-bit rounding), not a white square
    eight = tmp_path / "eight.png"
    Image.fromarray((values // 257).astype(np.uint8)).save(eight)
    assert torch.allclose(preprocess_image(load_pil_image(eight), 3, 3), tensor, atol=1 / 255)


def test_out_of_range_deep_images_are_refused(capsys, tmp_path):
    wide = tmp_path / "wide.tif"
    Image.fromarray(np.array([[0, 70000], [5, 9]], dtype=np.int32)).save(wide)
    _image_dataset(tmp_path, ["wide.tif"])
    code = main(["datasets", "check", str(tmp_path)])
    err = visible_lines(capsys.readouterr().err)
    assert code == 1 and len(err) == 1
    assert "wide.tif unreadable" in err[0] and "only 16-bit values (0..65535) are supported" in err[0]


# ----------------------------------------------------------------------------- 5. list files


def test_saat_lists_with_spaces_in_paths_pass_the_check(capsys, tmp_path):
    for name in ("my photo.png", "sub dir/two  spaces.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8), 128, np.uint8)).save(tmp_path / name)
    _image_dataset(tmp_path, ["my photo.png", "sub dir/two  spaces.png"])
    code = main(["datasets", "check", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 0 and visible_lines(captured.err) == [] and "status: ok" in captured.out


def test_ambiguous_list_lines_are_named(capsys, tmp_path):
    deephash = tmp_path / "deephash"
    deephash.mkdir()
    for split in ("train", "test", "database"):
        (deephash / f"{split}.txt").write_text("a.png 1 0\nmy photo.png 0 1\n")
    line = fails(capsys, "train", "--out", str(tmp_path / "run"), "--set", "data.source=listfile",
                 "--set", f"data.root={deephash}", "--set", "train.epochs=1")
    assert line.startswith(f"{deephash / 'train.txt'}:2: ambiguous line: the image path 'my photo.png' seems to "
                           "contain spaces")
    assert "SAAT format (train_img.txt" in line
    saat = tmp_path / "saat"
    saat.mkdir()
    _image_dataset(saat, ["a.png", "b.png"])
    (saat / "test_img.txt").write_text("a.png\nb.png 0 1\n")  # DeepHash lines in a SAAT list
    line = fails(capsys, "train", "--out", str(tmp_path / "run"), "--set", "data.source=listfile",
                 "--set", f"data.root={saat}", "--set", "train.epochs=1")
    assert line == (
        f"{saat / 'test_img.txt'}:2: expected the image path alone, found 'b.png' followed by 2 0/1 label(s) "
        "(the DeepHash layout); labels belong in test_label.txt"
    )
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- 6. model.json and weights


def _edited(checkpoint: Path, tmp_path: Path, **model: object) -> Path:
    copy = tmp_path / "edited"
    shutil.copytree(checkpoint, copy)
    payload = json.loads((copy / "model.json").read_text())
    payload["model"].update(model)
    (copy / "model.json").write_text(json.dumps(payload))
    return copy


@pytest.mark.parametrize("backbone", ["resnet18", "alexnet", "vgg11"])
def test_model_json_naming_another_backbone(capsys, tmp_path, checkpoint, backbone):
    edited = _edited(checkpoint, tmp_path, backbone=backbone)
    before = tree(edited)
    line = fails(capsys, "evaluate", str(edited))
    assert line == (
        f"{edited / 'model.json'}: model.json says backbone {backbone} but the weights in model.safetensors are "
        "of small_cnn"
    )
    assert "mean/std" not in line and tree(edited) == before


def test_model_json_and_weights_that_disagree_otherwise(capsys, tmp_path, checkpoint):
    edited = _edited(checkpoint, tmp_path, hash_norm="batchnorm")
    assert fails(capsys, "encode", str(edited), "--out", str(tmp_path / "c.npz")) == (
        f"{edited / 'model.json'}: model.json says hash_norm batchnorm but the weights in model.safetensors hold "
        "no batch-norm hash head"
    )
    shutil.rmtree(edited)
    edited = _edited(checkpoint, tmp_path, bits=32)
    line = fails(capsys, "encode", str(edited), "--out", str(tmp_path / "c.npz"))
    assert "hash_layer" in line and "has shape (16" in line and "with 32 bits expects (32" in line
    shutil.rmtree(edited)
    edited = _edited(checkpoint, tmp_path, backbone="no_such_net")
    assert "no_such_net" in fails(capsys, "encode", str(edited), "--out", str(tmp_path / "c.npz"))
    assert not (tmp_path / "c.npz").exists()
