"""List-file datasets in the two formats users already have (README, Data).

* **SAAT / ProS-GAN pairs**: ``{split}_img.txt`` (one relative image path per line: the whole line, without
  its leading and trailing whitespace, so a path may contain spaces) and ``{split}_label.txt`` (one
  whitespace-separated 0/1 vector per line), aligned line by line. A path line that reads as a path followed
  by 0/1 labels (the DeepHash layout put in the wrong file) is refused.
* **DeepHash-pytorch single files**: ``{split}.txt`` with ``relative/path.jpg 0 1 0 ...`` per line; the path
  is the first whitespace-separated token, so it cannot contain spaces: a line whose labels are preceded by
  several non-label tokens (``img/my photo.jpg 1 0``) is refused as ambiguous, naming the SAAT format.

Splits are ``train``, ``test`` (the query set) and ``database``. Image paths are relative to
``image_root`` (default: the directory holding the lists); absolute paths are used as they are.

The lists are parsed eagerly and validated; every problem is reported as ``file:line: problem``.
Images are decoded lazily with PIL and pre-processed as the SAAT protocol (shorter side to ``resize``, centre crop
``image_size``, [0, 1] CHW tensor, no normalisation).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hashguard.data.base import DatasetSplits, HashingDataset
from hashguard.data.sources import SOURCES
from hashguard.data.transforms import DEFAULT_IMAGE_SIZE, decode_image, default_resize, preprocess_image
from hashguard.errors import DataError

#: list-file split names; ``test`` is the query set.
SPLITS = ("train", "test", "database")
FORMATS = ("saat", "deephash")
_BINARY = frozenset(("0", "1"))


def split_files(root: Path, fmt: str, split: str) -> tuple[Path, Path]:
    """(image-list file, label file) of ``split``; the same file twice for the DeepHash format."""
    if fmt == "saat":
        return root / f"{split}_img.txt", root / f"{split}_label.txt"
    if fmt == "deephash":
        return root / f"{split}.txt", root / f"{split}.txt"
    raise DataError(f"unknown list format {fmt!r}; choose auto, saat or deephash")


def detect_format(root: str | Path) -> str:
    """``saat`` or ``deephash``, from which list files exist in ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset directory not found")
    found = {fmt: [s for s in SPLITS if split_files(root, fmt, s)[0].is_file()] for fmt in FORMATS}
    if found["saat"] and found["deephash"]:
        raise DataError(
            f"{root}: holds both SAAT ({found['saat'][0]}_img.txt) and DeepHash ({found['deephash'][0]}.txt) "
            "list files; pass the format explicitly"
        )
    for fmt in FORMATS:
        if found[fmt]:
            return fmt
    raise DataError(
        f"{root}: no list files found (expected train_img.txt + train_label.txt, ... or train.txt, test.txt, "
        "database.txt)"
    )


class ProblemLog:
    """Collects ``file:line: problem`` messages; in strict mode the first one raises :class:`DataError`."""

    def __init__(self, strict: bool, per_file_limit: int = 20) -> None:
        self.strict = strict
        self.per_file_limit = per_file_limit
        self.messages: list[str] = []
        self.counts: dict[str, int] = {}

    def add(self, file: Path | str, line: int | None, problem: str) -> None:
        message = f"{file}:{line}: {problem}" if line else f"{file}: {problem}"
        if self.strict:
            raise DataError(message)
        count = self.counts[str(file)] = self.counts.get(str(file), 0) + 1
        if count <= self.per_file_limit:
            self.messages.append(message)
        elif count == self.per_file_limit + 1:
            self.messages.append(f"{file}: more problems in this file (first {count - 1} listed)")


@dataclass
class ParsedSplit:
    """One parsed split: image paths, labels and where they came from."""

    split: str
    image_file: Path
    label_file: Path
    paths: list[str]
    labels: np.ndarray
    #: rows whose label line was malformed (labels set to zero); only non-empty in collecting mode.
    bad_rows: list[int] = field(default_factory=list)

    def line_of(self, index: int) -> str:
        """``file:line`` of item ``index`` in the image list."""
        return f"{self.image_file}:{index + 1}"


def _read_lines(path: Path, log: ProblemLog) -> list[str] | None:
    if not path.is_file():
        log.add(path, None, "list file not found")
        return None
    try:
        text = path.read_text(encoding="utf-8-sig")  # tolerate a byte-order mark
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        log.add(path, line, "not UTF-8 text")
        return None
    except OSError as exc:
        log.add(path, None, f"cannot read list file: {exc.strerror or exc}")
        return None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        log.add(path, 1, "empty file (no entries)")
        return None
    return lines


def _spaced_path(tokens: list[str], width: int | None) -> str | None:
    """The path of a DeepHash line whose path seems to contain spaces (``img/my photo.jpg 1 0``): several
    tokens, none of them 0 or 1, before a trailing run of 0/1 labels (of the known label width, once known);
    None for an ordinary line or a line whose labels are merely malformed (``img/a.jpg 1 x 0``)."""
    end = len(tokens)
    while end > 1 and tokens[end - 1] in _BINARY:
        end -= 1
    if end < 2 or end == len(tokens) or _BINARY.intersection(tokens[1:end]):
        return None
    if width is not None and len(tokens) - end != width:
        return None
    return " ".join(tokens[:end])


def _label_row(
    tokens: list[str], file: Path, line: int, width: int | None, width_from: str, log: ProblemLog,
    spaced_hint: bool = False,
) -> str | None:
    """The 0/1 digits of one label row as a string, or None (problem logged)."""
    if not tokens:
        log.add(file, line, "no labels")
        return None
    if width is not None and len(tokens) != width:
        hint = ""
        if spaced_hint and len(tokens) > width:
            hint = "; if the image path contains spaces, the DeepHash format cannot hold it (use the SAAT format)"
        log.add(file, line, f"expected {width} labels ({width_from}), found {len(tokens)}{hint}")
        return None
    if not _BINARY.issuperset(tokens):
        column, token = next((i, t) for i, t in enumerate(tokens, 1) if t not in _BINARY)
        log.add(file, line, f"label {token!r} in label column {column} is not 0 or 1")
        return None
    return "".join(tokens)


def parse_split(
    root: str | Path,
    split: str,
    fmt: str,
    width: int | None = None,
    width_from: str = "",
    strict: bool = True,
    log: ProblemLog | None = None,
) -> ParsedSplit | None:
    """Parse and validate the lists of ``split`` in ``root``.

    ``width`` (if given) is the label count every row must have, ``width_from`` says where it came from.
    With ``strict`` the first problem raises :class:`DataError`; otherwise problems go to ``log`` and
    malformed rows get all-zero labels (listed in ``bad_rows``). Returns None if the lists are unusable.
    """
    log = log or ProblemLog(strict)
    root = Path(root)
    image_file, label_file = split_files(root, fmt, split)
    paths: list[str] = []
    rows: list[str | None] = []
    if fmt == "deephash":
        lines = _read_lines(image_file, log)
        if lines is None:
            return None
        for number, text in enumerate(lines, 1):
            tokens = text.split()
            if len(tokens) < 2:
                problem = "empty line" if not tokens else "expected an image path followed by 0/1 labels"
                log.add(image_file, number, problem)
                paths.append(tokens[0] if tokens else "")
                rows.append(None)
                continue
            spaced = _spaced_path(tokens, width)
            if spaced is not None:
                log.add(
                    image_file, number,
                    f"ambiguous line: the image path {spaced!r} seems to contain spaces, which the DeepHash "
                    f"format (path, then labels, separated by whitespace) cannot hold; rename the file or use "
                    f"the SAAT format ({split}_img.txt with the path alone on its line, {split}_label.txt)",
                )
                paths.append(spaced)
                rows.append(None)
                continue
            row = _label_row(tokens[1:], image_file, number, width, width_from, log, spaced_hint=True)
            if width is None and row is not None:
                width, width_from = len(row), f"as on line {number}"
            paths.append(tokens[0])
            rows.append(row)
    else:
        path_lines = _read_lines(image_file, log)
        label_lines = _read_lines(label_file, log)
        if path_lines is None or label_lines is None:
            return None
        for number, text in enumerate(path_lines, 1):
            path = text.strip()  # the whole line is the path: it may contain spaces
            tokens = path.split()
            if not tokens:
                log.add(image_file, number, "empty line")
            elif len(tokens) > 1 and _BINARY.issuperset(tokens[1:]):
                log.add(
                    image_file, number,
                    f"expected the image path alone, found {tokens[0]!r} followed by {len(tokens) - 1} 0/1 "
                    f"label(s) (the DeepHash layout); labels belong in {label_file.name}",
                )
            paths.append(path)
        for number, text in enumerate(label_lines, 1):
            row = _label_row(text.split(), label_file, number, width, width_from, log)
            if width is None and row is not None:
                width, width_from = len(row), f"as on line {number}"
            rows.append(row)
        if len(path_lines) != len(label_lines):
            short = label_file if len(label_lines) < len(path_lines) else image_file
            count = min(len(path_lines), len(label_lines))
            log.add(
                short,
                count + 1,
                f"line missing: {image_file.name} has {len(path_lines)} lines, "
                f"{label_file.name} has {len(label_lines)}",
            )
            paths, rows = paths[:count], rows[:count]
    if width is None:  # no valid label row at all (only possible when collecting)
        return None
    bad_rows = [i for i, row in enumerate(rows) if row is None]
    digits = "".join(row if row is not None else "0" * width for row in rows)
    labels = (np.frombuffer(digits.encode("ascii"), dtype=np.uint8) - ord("0")).reshape(len(rows), width)
    return ParsedSplit(split, image_file, label_file, paths, labels.astype(np.float32), bad_rows)


def parse_lists(
    root: str | Path, fmt: str = "auto", strict: bool = True
) -> tuple[dict[str, ParsedSplit], list[str]]:
    """Parse every split of ``root``; returns (parsed splits, problems). Strict mode raises on the first."""
    root = Path(root)
    fmt = detect_format(root) if fmt == "auto" else fmt
    log = ProblemLog(strict)
    parsed: dict[str, ParsedSplit] = {}
    width: int | None = None
    width_from = ""
    for split in SPLITS:
        result = parse_split(root, split, fmt, width, width_from, strict, log)
        if result is None:
            continue
        if width is None:
            width = result.labels.shape[1]
            width_from = f"as in {result.label_file}"
        parsed[split] = result
    return parsed, log.messages


def load_pil_image(path: Path, where: str = "") -> Image.Image:
    """Open and fully decode ``path`` with PIL (:func:`~hashguard.data.transforms.decode_image`: 8-bit RGB, or
    a [0, 1] float image for 16-bit grey files); any failure is a :class:`DataError` naming the path."""
    suffix = f" (listed at {where})" if where else ""
    try:
        return decode_image(path)
    except FileNotFoundError:
        raise DataError(f"{path}: image not found{suffix}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot read image: {exc}{suffix}") from None


class ListFileDataset(HashingDataset):
    """One split of a list-file dataset: images decoded lazily from ``image_root / path``."""

    def __init__(
        self,
        parsed: ParsedSplit,
        image_root: str | Path,
        image_size: int = DEFAULT_IMAGE_SIZE,
        resize: int | None = None,
    ) -> None:
        self.split = parsed.split
        self.list_file = parsed.image_file
        self.paths = parsed.paths
        self.labels = parsed.labels
        self.image_root = Path(image_root)
        self.image_size = int(image_size)
        self.resize = default_resize(self.image_size) if resize is None else int(resize)
        self.image_shape = (3, self.image_size, self.image_size)

    def image_path(self, index: int) -> Path:
        """Where the image of item ``index`` lives."""
        return self.image_root / self.paths[index]

    def load_image(self, index: int) -> torch.Tensor:
        image = load_pil_image(self.image_path(index), f"{self.list_file}:{index + 1}")
        return preprocess_image(image, self.image_size, self.resize)

    def fingerprint_parts(self) -> list[bytes]:
        names = hashlib.sha256("\n".join(self.paths).encode("utf-8")).digest()
        return [*super().fingerprint_parts(), names, f"{self.image_size}/{self.resize}".encode()]


@SOURCES.register(
    "listfile",
    summary="list files in ROOT: SAAT/ProS-GAN {split}_img.txt + {split}_label.txt or DeepHash {split}.txt",
    needs_root=True,
    detect=detect_format,
)
def open_listfile(
    root: str | Path,
    image_size: int | None = None,
    seed: int = 0,
    format: str = "auto",
    image_root: str | Path | None = None,
    resize: int | None = None,
) -> DatasetSplits:
    """The train / query (``test``) / database splits of the list files in ``root``.

    ``format`` is ``auto`` (detect), ``saat`` or ``deephash``; ``image_root`` is the directory image paths
    are relative to (default ``root``); ``image_size`` is the crop (default 224) and ``resize`` the shorter
    side before cropping (default ``round(image_size * 256 / 224)``). ``seed`` is unused: the lists fix the
    splits. Mean/std are left to the model's ImageNet default.
    """
    del seed
    root = Path(root)
    if format not in ("auto", *FORMATS):
        raise DataError(f"unknown list format {format!r}; choose auto, saat or deephash")
    parsed, _ = parse_lists(root, format, strict=True)
    missing = [s for s in SPLITS if s not in parsed]
    if missing:  # unreachable in strict mode, kept as a guard
        raise DataError(f"{root}: split {missing[0]} missing")
    size = DEFAULT_IMAGE_SIZE if image_size is None else int(image_size)
    if size <= 0 or (resize is not None and resize <= 0):
        raise DataError(f"image_size and resize must be positive, got {image_size} and {resize}")
    base = root if image_root is None else Path(image_root)
    if not base.is_dir():
        raise DataError(f"{base}: image root directory not found")
    splits = {name: ListFileDataset(parsed[name], base, size, resize) for name in SPLITS}
    name = root.resolve().name or "listfile"
    return DatasetSplits(name, splits["train"], splits["test"], splits["database"])
