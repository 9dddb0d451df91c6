"""torchvision's local CIFAR-10 folder, read without executing pickled code; never downloads.

Accepted layouts under ``root`` (or ``root`` itself): ``cifar-10-batches-py`` (``data_batch_1..5`` and
``test_batch``, Python pickles) or ``cifar-10-batches-bin`` (``data_batch_1..5.bin``, ``test_batch.bin``,
records of 1 label byte + 3,072 pixel bytes).

The pickles are read with :class:`RestrictedUnpickler`, which resolves only the NumPy array
reconstruction functions a CIFAR batch needs and rejects every other global with :class:`DataError`, so a
tampered batch cannot run code.

Protocol (a common CIFAR-10 protocol, seeded): all 60,000 images pooled; query = 100 per class (1,000),
database = the remaining 59,000, train = 500 per class (5,000) drawn from the database. One-hot labels;
mean/std over the train split.
"""

from __future__ import annotations

import codecs
import importlib
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from hashguard.data.base import DatasetSplits
from hashguard.data.memory import InMemoryDataset, channel_stats, class_split, one_hot
from hashguard.data.sources import SOURCES
from hashguard.errors import DataError

NUM_CLASSES = 10
_PIXELS = 3 * 32 * 32
_PY_DIR, _BIN_DIR = "cifar-10-batches-py", "cifar-10-batches-bin"
_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST_BATCH = "test_batch"

#: the only globals a CIFAR pickle may reference: NumPy array / dtype reconstruction and bytes decoding.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


def _numpy_global(module: str, name: str) -> Any:
    """Resolve an allowed global, mapping NumPy 1's ``numpy.core`` and NumPy 2's ``numpy._core``."""
    if module == "_codecs":
        return codecs.encode
    if module == "numpy":
        return getattr(np, name)
    for candidate in (
        module.replace("numpy.core.", "numpy._core."),
        module.replace("numpy._core.", "numpy.core."),
    ):
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
    raise DataError(f"this NumPy version has no {module}.{name}")


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that only rebuilds NumPy arrays, dicts, lists, strings and numbers."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return _numpy_global(module, name)
        raise DataError(f"refusing to load {module}.{name} from a pickle (only NumPy arrays are allowed)")


def safe_load_pickle(path: str | Path) -> Any:
    """Load a data pickle (e.g. a CIFAR batch) with :class:`RestrictedUnpickler`; errors are DataError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise DataError(f"{path}: not a readable CIFAR batch pickle: {exc}") from None


def _key(batch: dict[Any, Any], name: str) -> Any:
    for key in (name.encode(), name):
        if key in batch:
            return batch[key]
    return None


def read_py_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) of one ``cifar-10-batches-py`` batch."""
    batch = safe_load_pickle(path)
    if not isinstance(batch, dict):
        raise DataError(f"{path}: expected a dict batch, found {type(batch).__name__}")
    data, labels = _key(batch, "data"), _key(batch, "labels")
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataError(f"{path}: batch lacks 'data' array or 'labels'")
    labels = np.asarray(labels, dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS or len(data) != len(labels):
        raise DataError(f"{path}: expected uint8 data (N, {_PIXELS}) and N labels, found {data.shape}")
    return data.reshape(-1, 3, 32, 32), _check_labels(labels, path)


def read_bin_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of one ``cifar-10-batches-bin`` file."""
    path = Path(path)
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if raw.size == 0 or raw.size % (_PIXELS + 1):
        raise DataError(f"{path}: size {raw.size} is not a multiple of the {_PIXELS + 1}-byte record")
    records = raw.reshape(-1, _PIXELS + 1)
    labels = records[:, 0].astype(np.int64)
    return records[:, 1:].reshape(-1, 3, 32, 32), _check_labels(labels, path)


def _check_labels(labels: np.ndarray, path: str | Path) -> np.ndarray:
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        bad = int(np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))[0])
        raise DataError(f"{path}: record {bad + 1} has label {int(labels[bad])}, expected 0-9")
    return labels


def find_cifar_dir(root: str | Path) -> tuple[Path, str]:
    """(folder, ``py`` or ``bin``) of the CIFAR-10 batches under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset directory not found")
    for folder in (root / _PY_DIR, root / _BIN_DIR, root):
        if (folder / _TEST_BATCH).is_file():
            return folder, "py"
        if (folder / f"{_TEST_BATCH}.bin").is_file():
            return folder, "bin"
    raise DataError(
        f"{root}: no {_PY_DIR}/ or {_BIN_DIR}/ folder with test_batch found (nothing is downloaded)"
    )


def load_cifar10_arrays(root: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """All CIFAR-10 images (train batches then test batch) and their labels."""
    folder, kind = find_cifar_dir(root)
    reader = read_py_batch if kind == "py" else read_bin_batch
    suffix = "" if kind == "py" else ".bin"
    images, labels = [], []
    for name in (*_TRAIN_BATCHES, _TEST_BATCH):
        path = folder / f"{name}{suffix}"
        if not path.is_file():
            raise DataError(f"{path}: CIFAR-10 batch not found")
        batch_images, batch_labels = reader(path)
        images.append(batch_images)
        labels.append(batch_labels)
    return np.concatenate(images), np.concatenate(labels)


@SOURCES.register(
    "cifar10",
    summary="local CIFAR-10 (cifar-10-batches-py or -bin): query 1,000 / database 59,000 / train 5,000",
    needs_root=True,
    detect=find_cifar_dir,
    check=lambda root: check_cifar10(root),
)
def open_cifar10(
    root: str | Path,
    image_size: int | None = None,
    seed: int = 0,
    query_per_class: int = 100,
    train_per_class: int = 500,
) -> DatasetSplits:
    """Train / query / database splits of a local CIFAR-10 copy (see the module docstring)."""
    images, classes = load_cifar10_arrays(root)
    rng = np.random.default_rng(seed)
    try:
        query, database, train = class_split(
            classes, query_per_class * NUM_CLASSES, train_per_class * NUM_CLASSES, rng
        )
    except ValueError as exc:
        raise DataError(f"CIFAR-10 split: {exc}") from None
    labels = one_hot(classes, NUM_CLASSES)

    def make(rows: np.ndarray) -> InMemoryDataset:
        return InMemoryDataset(images[rows], labels[rows], image_size, source_rows=rows)

    mean, std = channel_stats(images[train])
    return DatasetSplits("CIFAR-10", make(train), make(query), make(database), mean=mean, std=std)


def check_cifar10(root: str | Path) -> Any:
    """``hashguard datasets check`` of a CIFAR-10 folder: the class counts of all 60,000 images."""
    from hashguard.data.check import summarise_classes

    folder, kind = find_cifar_dir(root)
    _, classes = load_cifar10_arrays(root)
    return summarise_classes(str(folder), f"cifar10 ({kind} batches), image 3x32x32", {"all": classes})
