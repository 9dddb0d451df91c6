"""Atomic writes: the old file survives a failed write, and a new file gets the permissions of open()."""

from __future__ import annotations

import os
import stat

import pytest

from hashguard.io_utils import atomic_write, atomic_write_json, atomic_write_text


def test_new_file_has_the_permissions_of_a_plain_open(tmp_path):
    atomic_write_text(tmp_path / "atomic.txt", "x")
    with open(tmp_path / "plain.txt", "w") as handle:
        handle.write("x")
    mode = stat.S_IMODE(os.stat(tmp_path / "atomic.txt").st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "plain.txt").st_mode)
    assert mode & stat.S_IRGRP or os.umask(os.umask(0)) & 0o040  # readable by the group unless the umask says no


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "results.json"
    atomic_write_json(path, {"map": 0.5})

    def broken(tmp: str) -> None:
        with open(tmp, "w") as handle:
            handle.write("{half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert path.read_text().strip().startswith("{") and '"map": 0.5' in path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
