"""IDX and CIFAR-10 folders from tiny synthetic files; the restricted unpickler."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from hashguard.data import open_dataset
from hashguard.data.cifar import RestrictedUnpickler, read_py_batch, safe_load_pickle
from hashguard.data.idx import read_idx
from hashguard.errors import DataError


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def make_idx(root: Path, train: int = 60, test: int = 20, compress: bool = True) -> None:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    for part, count in (("train", train), ("t10k", test)):
        write_idx(root / f"{part}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (count, 28, 28)), compress)
        write_idx(root / f"{part}-labels-idx1-ubyte{suffix}", np.arange(count) % 10, compress)


def test_read_idx_roundtrip_and_validation(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a", array)
    assert np.array_equal(read_idx(tmp_path / "a", 3), array)
    (tmp_path / "b").write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3I", 2, 3, 4) + b"\x00" * 5)
    with pytest.raises(DataError, match="needs 24 bytes of data, found 5"):
        read_idx(tmp_path / "b", 3)
    (tmp_path / "c").write_bytes(b"\x12\x34\x56\x78")
    with pytest.raises(DataError, match="bad magic number"):
        read_idx(tmp_path / "c", 1)
    with pytest.raises(DataError, match="expected a 1-dimensional IDX file"):
        read_idx(tmp_path / "a", 1)
    (tmp_path / "d.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="d.gz: cannot read IDX file"):
        read_idx(tmp_path / "d.gz", 1)


@pytest.mark.parametrize("layout", ["", "FashionMNIST/raw"])
def test_idx_dataset(tmp_path: Path, layout: str) -> None:
    make_idx(tmp_path / layout if layout else tmp_path, compress=bool(layout))
    splits = open_dataset("idx", root=tmp_path, train_size=20, seed=1)
    assert (len(splits.train), len(splits.query), len(splits.database)) == (20, 20, 60)
    assert splits.image_shape == (1, 28, 28) and splits.num_classes == 10
    assert np.bincount(splits.train.labels.argmax(1)).tolist() == [2] * 10
    assert set(splits.train.source_rows) <= set(range(60)) and len(splits.mean) == 1
    small = open_dataset("idx", root=tmp_path, train_size=10, query_size=10, image_size=14, channels=3)
    assert len(small.query) == 10 and small.query[0][0].shape == (3, 14, 14)


def test_idx_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no train-images-idx3-ubyte"):
        open_dataset("idx", root=tmp_path)
    make_idx(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte: IDX file not found"):
        open_dataset("idx", root=tmp_path)


def fake_cifar(root: Path, per_batch: int = 30, protocol: int = 2) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"batch_label": b"fake",
            b"labels": [int(v) for v in np.arange(per_batch) % 10],
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"filenames": [b"x.png"] * per_batch,
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    return folder


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_python_batches(tmp_path: Path, protocol: int) -> None:
    fake_cifar(tmp_path, protocol=protocol)
    splits = open_dataset("cifar10", root=tmp_path, query_per_class=2, train_per_class=3)
    assert (len(splits.query), len(splits.database), len(splits.train)) == (20, 160, 30)
    assert splits.image_shape == (3, 32, 32) and len(splits.mean) == 3
    assert not set(splits.query.source_rows) & set(splits.database.source_rows)
    assert set(splits.train.source_rows) <= set(splits.database.source_rows)
    image, label, _ = splits.train[0]
    assert image.shape == (3, 32, 32) and label.sum() == 1
    again = open_dataset(
        "cifar10", root=tmp_path / "cifar-10-batches-py", query_per_class=2, train_per_class=3
    )
    assert again.fingerprint() == splits.fingerprint()


def test_cifar_binary_batches(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        records = rng.integers(0, 256, (20, 3073), dtype=np.uint8)
        records[:, 0] = np.arange(20) % 10
        (folder / f"{name}.bin").write_bytes(records.tobytes())
    splits = open_dataset("cifar10", root=tmp_path, query_per_class=1, train_per_class=2, image_size=16)
    assert (len(splits.query), len(splits.database), len(splits.train)) == (10, 110, 20)
    assert splits.query[0][0].shape == (3, 16, 16)
    (folder / "test_batch.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="not a multiple of the 3073-byte record"):
        open_dataset("cifar10", root=tmp_path)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_restricted_unpickler_rejects_code(tmp_path: Path) -> None:
    folder = fake_cifar(tmp_path)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Exploit()}, protocol=2))
    with pytest.raises(DataError, match=r"test_batch: refusing to load (posix|os|nt)\.system"):
        open_dataset("cifar10", root=tmp_path)
    payload = pickle.dumps(_Exploit())
    import io

    with pytest.raises(DataError, match="refusing"):
        RestrictedUnpickler(io.BytesIO(payload)).load()
    (folder / "data_batch_1").write_bytes(b"garbage")
    with pytest.raises(DataError, match="data_batch_1: not a readable CIFAR batch pickle"):
        read_py_batch(folder / "data_batch_1")
    (folder / "data_batch_2").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DataError, match="expected a dict batch"):
        read_py_batch(folder / "data_batch_2")
    assert safe_load_pickle(folder / "data_batch_3")[b"batch_label"] == b"fake"


def test_cifar_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no cifar-10-batches-py/ or cifar-10-batches-bin/"):
        open_dataset("cifar10", root=tmp_path)
    with pytest.raises(DataError, match="needs a root"):
        open_dataset("cifar10")


class _Py2Pickler(pickle._Pickler):  # type: ignore[misc,name-defined]
    """Writes bytes as Python 2 ``str`` (BINSTRING) and names NumPy 1's module, like the real CIFAR files."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str

    def save_global(self, obj, name=None) -> None:  # noqa: ANN001
        if getattr(obj, "__name__", "") == "_reconstruct":
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)

    dispatch[type(len)] = save_global


def test_cifar_python2_style_pickle(tmp_path: Path) -> None:
    import io

    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump({b"data": data, b"labels": [3, 7]})
    (tmp_path / "batch").write_bytes(buffer.getvalue())
    assert b"numpy.core.multiarray" in buffer.getvalue() and b"_codecs" not in buffer.getvalue()
    images, labels = read_py_batch(tmp_path / "batch")
    assert images.shape == (2, 3, 32, 32) and labels.tolist() == [3, 7]
    assert np.array_equal(images.reshape(2, -1), data)
