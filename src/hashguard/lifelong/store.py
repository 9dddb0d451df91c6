"""The lifelong code store: every database item's binary code, its labels, whether its code is frozen, the
session it arrived in and where its image lives in the data source.

Lifelong (incremental) hashing keeps the codes already stored for the database unchanged when new classes arrive
(Wu et al., "Deep Incremental Hashing Network for Efficient Image Retrieval", CVPR 2019; Xu et al., "Deep
Lifelong Cross-modal Hashing", IEEE TCSVT 2024): only the new items get codes, learned against the old ones.
A :class:`CodeStore` is that database. On disk (a session directory) it is

* ``code_store.safetensors``: ``codes`` (N, K) int8 in {-1, +1}, ``labels`` (N, C) float32, ``frozen`` (N,)
  uint8 (1: the code was fixed during the session that wrote the store), ``session`` (N,) int64 (the session
  the item arrived in) and ``source_rows`` (N,) int64 (the item's position in the data source's training
  split; -1 when unknown);
* ``lifelong.json``: the session number, the classes of every session, the code length, the SHA-256 of the
  codes' bytes (checked on load) and the data description.

The session directory also holds ``database_codes.safetensors`` (codes and labels), the file an ADSH checkpoint
keeps its learned database codes in (Jiang and Li, AAAI 2018), so ``hashguard evaluate`` / ``attack`` rank
queries against the store like against an ADSH model's database.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hashguard.errors import CheckpointError
from hashguard.io_utils import atomic_write_json
from hashguard.models.checkpoint import load_state_file, save_state_file

STORE_FILE = "code_store.safetensors"
STORE_META = "lifelong.json"
STORE_FORMAT = 1


def codes_digest(codes: torch.Tensor) -> str:
    """SHA-256 of the codes as contiguous int8 bytes (row-major): equal digests mean bit-identical codes."""
    array = np.ascontiguousarray(codes.detach().cpu().to(torch.int8).numpy())
    return hashlib.sha256(array.tobytes()).hexdigest()


@dataclass
class CodeStore:
    """The database of a lifelong hashing run (see the module docstring)."""

    codes: torch.Tensor  # (N, K) int8 in {-1, +1}
    labels: torch.Tensor  # (N, C) float32
    frozen: torch.Tensor  # (N,) bool
    session: torch.Tensor  # (N,) int64
    source_rows: torch.Tensor  # (N,) int64, -1 when unknown
    session_classes: list[list[int]] = field(default_factory=list)
    data: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        n = self.codes.shape[0]
        if self.codes.dim() != 2 or self.labels.dim() != 2 or self.labels.shape[0] != n:
            raise CheckpointError(f"code store: codes {tuple(self.codes.shape)} and labels {tuple(self.labels.shape)} "
                                  "must be (N, K) and (N, C)")
        for name in ("frozen", "session", "source_rows"):
            if tuple(getattr(self, name).shape) != (n,):
                raise CheckpointError(f"code store: {name} must hold one entry per item ({n})")
        if n and not bool(((self.codes == 1) | (self.codes == -1)).all()):
            raise CheckpointError("code store: codes must be -1 or +1")

    @property
    def bits(self) -> int:
        return int(self.codes.shape[1])

    @property
    def num_classes(self) -> int:
        return int(self.labels.shape[1])

    @property
    def number(self) -> int:
        """The number of the session that wrote the store (0: the base model)."""
        return len(self.session_classes) - 1

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def seen_classes(self) -> list[int]:
        return sorted({c for classes in self.session_classes for c in classes})

    def digest(self) -> str:
        return codes_digest(self.codes)

    @classmethod
    def initial(
        cls, codes: torch.Tensor, labels: torch.Tensor, source_rows: torch.Tensor | np.ndarray,
        data: dict[str, Any] | None = None,
    ) -> CodeStore:
        """Session 0: the codes of a trained ADSH model's pool; its classes are those some item carries."""
        labels = labels.float()
        classes = [int(c) for c in torch.nonzero(labels.sum(0) > 0).flatten().tolist()]
        n = codes.shape[0]
        return cls(
            codes.to(torch.int8), labels, torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.long),
            torch.as_tensor(np.asarray(source_rows), dtype=torch.long), [classes], data,
        )

    def extended(self, new_codes: torch.Tensor, new_labels: torch.Tensor, new_rows: torch.Tensor,
                 classes: list[int]) -> CodeStore:
        """The next session's store: every present code frozen and unchanged, the new items appended."""
        m = new_codes.shape[0]
        number = self.number + 1
        return CodeStore(
            torch.cat([self.codes, new_codes.to(torch.int8)]),
            torch.cat([self.labels, new_labels.float()]),
            torch.cat([torch.ones(len(self), dtype=torch.bool), torch.zeros(m, dtype=torch.bool)]),
            torch.cat([self.session, torch.full((m,), number, dtype=torch.long)]),
            torch.cat([self.source_rows, new_rows.long()]),
            [*self.session_classes, sorted(classes)],
            self.data,
        )

    def save(self, directory: str | Path, extra: dict[str, Any] | None = None) -> None:
        """Write ``code_store.safetensors`` and ``lifelong.json`` into ``directory`` (``extra`` joins the JSON)."""
        directory = Path(directory)
        save_state_file(directory / STORE_FILE, {
            "codes": self.codes.to(torch.int8), "labels": self.labels.float(), "frozen": self.frozen.to(torch.uint8),
            "session": self.session.long(), "source_rows": self.source_rows.long(),
        })
        atomic_write_json(directory / STORE_META, {
            "format": STORE_FORMAT, "session": self.number, "bits": self.bits, "num_classes": self.num_classes,
            "items": len(self), "session_classes": self.session_classes, "codes_sha256": self.digest(),
            "data": self.data, **(extra or {}),
        })

    @classmethod
    def load(cls, directory: str | Path) -> CodeStore:
        """Read a store written by :meth:`save`; the codes must match the digest recorded beside them."""
        directory = Path(directory)
        meta_path, path = directory / STORE_META, directory / STORE_FILE
        if not meta_path.is_file() or not path.is_file():
            raise CheckpointError(f"{directory}: not a lifelong session directory (no {STORE_META} and {STORE_FILE})")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{meta_path}: not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})") from None
        state = load_state_file(path)
        missing = [k for k in ("codes", "labels", "frozen", "session", "source_rows") if k not in state]
        if missing:
            raise CheckpointError(f"{path}: missing tensors {', '.join(missing)}")
        store = cls(
            state["codes"].to(torch.int8), state["labels"].float(), state["frozen"].bool(), state["session"].long(),
            state["source_rows"].long(), [list(map(int, c)) for c in meta.get("session_classes", [])],
            meta.get("data"),
        )
        if store.digest() != meta.get("codes_sha256"):
            raise CheckpointError(f"{path}: the codes do not match the digest in {STORE_META} (changed or corrupt)")
        return store
