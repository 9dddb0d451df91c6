"""Atomic file writes: a reader never sees a half-written result, and a crash never destroys the old one.

Every failure of the operating system while writing (a full disk, a read-only or missing directory, a
directory where a file is written, a file where a directory is needed) is raised as an ``OSError`` that names
the file the caller asked for, never a temporary name, after the temporary files are removed.
:func:`os_error_message` turns such an error into the one line the command line prints.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` again, naming ``path`` (the file the caller writes) instead of a temporary file."""
    if exc.errno is None:
        return exc
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))  # keeps the subclass (errno)


def _check_target(target: Path) -> None:
    """Refuse a target that is a directory before anything is written (raised as ``IsADirectoryError``)."""
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))


def ensure_directory(path: str | os.PathLike[str]) -> Path:
    """Create the directory ``path`` (and its parents) unless it exists; an ``OSError`` naming ``path`` when a
    file stands where the directory (or one of its parents) is needed."""
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(directory))
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def check_output_file(path: str | os.PathLike[str]) -> Path:
    """Fail early, before hours of work, when ``path`` cannot become a file: it is a directory, or a file
    stands where one of its parent directories is needed (an ``OSError`` naming the path)."""
    target = Path(path)
    _check_target(target)
    blocker = _first_file_above(target)
    if blocker is not None:
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(blocker))
    return target


def check_output_directory(path: str | os.PathLike[str]) -> Path:
    """Fail early when ``path`` cannot become a directory: a file stands there or where one of its parents is
    needed (an ``OSError`` naming the file)."""
    directory = Path(path)
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            if not candidate.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(candidate))
            break
    return directory


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` and then move the temporary file over ``path`` in one step."""
    atomic_write_many({path: write})


def atomic_write_many(writers: Mapping[str | os.PathLike[str], Callable[[str], None]]) -> None:
    """Write several files that belong together (weights and their description): every ``write(tmp_path)``
    runs first, and only when all succeeded are the temporary files moved over their targets. A failure of
    any writer leaves every target as it was and no temporary file behind.

    Under ``torchrun`` only rank 0 writes: every rank computes the same results, and on the other ranks this
    is a no-op (so two processes never race on one file)."""
    from hashguard.distributed.world import current_world

    if not current_world().is_main:
        return
    staged: list[tuple[str, Path]] = []
    try:
        for path, write in writers.items():
            target = Path(path)
            _check_target(target)
            ensure_directory(target.parent)
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            except OSError as exc:
                raise _naming(exc, target) from exc
            os.close(fd)
            staged.append((tmp, target))
            try:
                write(tmp)
                os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the permissions of open()
            except OSError as exc:
                raise _naming(exc, target) from exc
        for tmp, target in staged:
            try:
                os.replace(tmp, target)
            except OSError as exc:
                raise _naming(exc, target) from exc
    except BaseException:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""

    def _write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)

    atomic_write(path, _write)


def atomic_write_json(path: str | os.PathLike[str], payload: Any) -> None:
    """Write ``payload`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json_text(payload))


def json_text(payload: Any) -> str:
    """``payload`` as the indented, key-sorted JSON text :func:`atomic_write_json` writes."""
    return json.dumps(payload, indent=2, sort_keys=True) + "\n"


def _first_file_above(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` that is not a directory (a file used as a directory)."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def os_error_message(exc: OSError) -> str:
    """One line for an operating-system error: the path it concerns and the problem, in plain words.

    ``PATH: No space left on device``, ``PATH: is a directory; name a file``, ``PATH: is a file, not a
    directory``, ``PATH: Permission denied``; without a path, the error's own text."""
    name = exc.filename2 if exc.filename2 is not None and exc.filename is None else exc.filename
    problem = exc.strerror or str(exc)
    if name is None:
        return problem
    path = Path(os.fsdecode(name))
    if isinstance(exc, IsADirectoryError):
        return f"{path}: is a directory; name a file"
    if isinstance(exc, FileExistsError | NotADirectoryError):
        if path.exists() and not path.is_dir():
            return f"{path}: is a file, not a directory"
        blocker = _first_file_above(path)
        if blocker is not None:
            return f"{blocker}: is a file, not a directory (needed for {path})"
    if isinstance(exc, PermissionError):
        return f"{path}: permission denied"
    if isinstance(exc, FileNotFoundError):
        return f"{path}: not found"
    return f"{path}: {problem}"
