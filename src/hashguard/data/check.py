"""Validate a dataset and summarise it: ``hashguard datasets check PATH``.

For list-file datasets every line of every split is checked (malformed lines, non-0/1 labels, label widths,
aligned line counts) and, unless ``images=False``, every distinct image is opened with PIL and decoded in
full, as training will decode it (a truncated JPEG passes PIL's ``verify()``, which reads no pixels).
Problems are ``file:line: problem`` lines; facts that are legitimate in real benchmarks (zero-label rows,
duplicate paths as in FLICKR-25K's train list, query/database overlap) are reported, not failed.

IDX folders, CIFAR-10 folders and the built-in sources are opened with :func:`open_dataset` and summarised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hashguard.data.base import HashingDataset
from hashguard.data.listfile import SPLITS, ParsedSplit, detect_format, parse_lists
from hashguard.data.memory import one_hot
from hashguard.data.sources import SOURCES, needs_root, open_dataset
from hashguard.data.transforms import decode_image
from hashguard.errors import DataError

#: list-file layouts the check reads line by line (the ``listfile`` source)
LIST_FORMATS = ("saat", "deephash")


def check_formats() -> tuple[str, ...]:
    """--format choices of the check command: auto, the list-file layouts and every source declaring a check."""
    return ("auto", *LIST_FORMATS, *(name for name, e in SOURCES.items() if "check" in e.attributes))


@dataclass
class SplitReport:
    """What one split holds."""

    split: str
    count: int
    label_width: int
    cardinality: float
    zero_label_rows: int
    duplicates: int = 0
    missing_images: int | None = None
    unreadable_images: int | None = None


@dataclass
class CheckReport:
    """The outcome of :func:`check_dataset`: per-split summaries, problems (errors) and notes."""

    path: str
    format: str
    splits: list[SplitReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def table(self) -> str:
        """A plain-text table of the splits, followed by the notes."""
        header = (
            "split",
            "items",
            "labels",
            "labels/item",
            "zero-label",
            "duplicates",
            "missing",
            "unreadable",
        )
        rows = [header]
        for s in self.splits:
            rows.append(
                (
                    s.split,
                    str(s.count),
                    str(s.label_width),
                    f"{s.cardinality:.3f}",
                    str(s.zero_label_rows),
                    str(s.duplicates),
                    "-" if s.missing_images is None else str(s.missing_images),
                    "-" if s.unreadable_images is None else str(s.unreadable_images),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = [f"{self.path} ({self.format})"]
        for number, row in enumerate(rows):
            lines.append(
                "  ".join(
                    cell.rjust(w) if i else cell.ljust(w)
                    for i, (cell, w) in enumerate(zip(row, widths, strict=True))
                )
            )
            if number == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.extend(f"note: {note}" for note in self.notes)
        status = "ok" if self.ok else f"{len(self.problems)} problem(s)"
        lines.append(f"status: {status}")
        return "\n".join(lines)


def _label_stats(split: str, labels: np.ndarray) -> SplitReport:
    per_item = labels.sum(axis=1)
    return SplitReport(
        split=split,
        count=int(labels.shape[0]),
        label_width=int(labels.shape[1]),
        cardinality=float(per_item.mean()) if len(per_item) else 0.0,
        zero_label_rows=int((per_item == 0).sum()),
    )


def verify_image(path: Path) -> str | None:
    """None if every pixel of ``path`` decodes as training decodes it (:func:`decode_image`), else a short
    reason (``not found`` or the error)."""
    try:
        decode_image(path)
    except FileNotFoundError:
        return "not found"
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for corrupt files
        return f"unreadable ({type(exc).__name__}: {exc})"
    return None


def _check_images(
    parsed: ParsedSplit, base: Path, report: SplitReport, cache: dict[str, str | None], reported: dict[str, int]
) -> list[str]:
    """Decode every image of one split (each distinct path once over all splits, ``cache``); the split's
    missing / unreadable counts go to ``report``, and one problem line per bad image (at its first listing;
    ``reported`` maps the image to its index in ``problems`` across splits)."""
    problems = []
    missing = unreadable = 0
    for index, name in enumerate(parsed.paths):
        if not name:
            continue
        if name not in cache:
            cache[name] = verify_image(base / name)
        reason = cache[name]
        if reason is None:
            continue
        if reason == "not found":
            missing += 1
        else:
            unreadable += 1
        if name not in reported:
            reported[name] = 1
            problems.append(f"{parsed.image_file}:{index + 1}: image {base / name} {reason}")
        else:
            reported[name] += 1
    report.missing_images, report.unreadable_images = missing, unreadable
    return problems


def check_listfiles(
    root: str | Path, fmt: str = "auto", images: bool = True, image_root: str | Path | None = None
) -> CheckReport:
    """Check the list files (and, with ``images``, the images) of the dataset in ``root``."""
    root = Path(root)
    fmt = detect_format(root) if fmt == "auto" else fmt
    parsed, problems = parse_lists(root, fmt, strict=False)
    report = CheckReport(str(root), f"{fmt} list files", problems=list(problems))
    base = root if image_root is None else Path(image_root)
    if images and not base.is_dir():
        report.problems.append(f"{base}: image root directory not found")
        images = False
    cache: dict[str, str | None] = {}
    reported: dict[str, int] = {}
    for split in SPLITS:
        if split not in parsed:
            continue
        part = parsed[split]
        summary = _label_stats(split if split != "test" else "test (query)", part.labels)
        seen: set[str] = set()
        for name in part.paths:
            if name in seen:
                summary.duplicates += 1
            seen.add(name)
        if images:
            report.problems.extend(_check_images(part, base, summary, cache, reported))
        report.splits.append(summary)
    if "test" in parsed and "database" in parsed:
        shared = set(parsed["test"].paths) & set(parsed["database"].paths)
        if shared:
            report.notes.append(f"{len(shared)} image path(s) appear in both test (query) and database")
    if "train" in parsed and "database" in parsed:
        outside = set(parsed["train"].paths) - set(parsed["database"].paths)
        report.notes.append(
            "train is a subset of database"
            if not outside
            else f"{len(outside)} train image(s) not in database"
        )
    repeated = sum(1 for count in reported.values() if count > 1)
    if repeated:
        report.notes.append(
            f"{repeated} bad image(s) are listed more than once; each problem line names the first listing"
        )
    for summary in report.splits:
        if summary.duplicates:
            report.notes.append(f"{summary.split}: {summary.duplicates} line(s) repeat an earlier image path")
        if summary.zero_label_rows:
            report.notes.append(f"{summary.split}: {summary.zero_label_rows} row(s) have no label")
    return report


def _summarise_splits(name: str, kind: str, datasets: dict[str, HashingDataset]) -> CheckReport:
    report = CheckReport(name, kind)
    for split, dataset in datasets.items():
        report.splits.append(_label_stats(split, dataset.labels))
    return report


def summarise_classes(name: str, kind: str, parts: dict[str, np.ndarray]) -> CheckReport:
    report = CheckReport(name, kind)
    width = max(int(classes.max(initial=0)) + 1 for classes in parts.values())
    for split, classes in parts.items():
        report.splits.append(_label_stats(split, one_hot(classes, width)))
    return report


def _detect_any(root: Path) -> str:
    """List-file layout if present, else the first registered source whose ``detect`` accepts ``root``."""
    try:
        return detect_format(root)
    except DataError as list_error:
        for name, entry in SOURCES.items():
            if "check" not in entry.attributes or "detect" not in entry.attributes:
                continue
            try:
                entry.attributes["detect"](root)
                return name
            except DataError:
                continue
        raise list_error from None


def check_dataset(
    path: str | Path, format: str = "auto", images: bool = True, image_root: str | Path | None = None
) -> CheckReport:
    """Validate the dataset at ``path`` (a directory, or a built-in source name such as ``demo-mnist``).

    ``format``: ``auto`` (list files, detected), ``saat``, ``deephash``, ``idx`` or ``cifar10``. Problems
    that make the dataset unusable are in ``report.problems``; a directory that does not exist or has no
    recognisable dataset raises :class:`DataError`.
    """
    formats = check_formats()
    if format not in formats:
        raise DataError(f"unknown dataset format {format!r}; choose one of: {', '.join(formats)}")
    text = str(path)
    if format == "auto" and text in SOURCES and not needs_root(text) and not Path(text).exists():
        splits = open_dataset(text)
        kind = f"built-in source, image {'x'.join(map(str, splits.image_shape))}"
        return _summarise_splits(
            text, kind, {"train": splits.train, "query": splits.query, "database": splits.database}
        )
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: dataset directory not found")
    if format == "auto":
        format = _detect_any(root)
    if format not in LIST_FORMATS:
        return SOURCES.entry(format).attributes["check"](root)
    return check_listfiles(root, format, images=images, image_root=image_root)
