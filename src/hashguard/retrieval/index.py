"""Hamming search indexes behind one interface: exact (filtered scan or multi-index hashing) and FAISS binary indexes.

>>> index = HammingIndex(bits=64, backend="exact")      # or "flat", "ivf", "hnsw"
>>> index.add(db_codes)                                   # +-1 codes, N x 64
>>> distances, ids = index.search(query_codes, k=10)      # int32 / int64, Q x k
>>> lims, distances, ids = index.range_search(query_codes, radius=2)
>>> index.save("db.hgidx"); index = HammingIndex.load("db.hgidx")

Ids are insertion positions (0-based, in the order codes were added). Backends:

* ``exact``: exact top-k ordered by ascending (distance, id) -- the same tie rule as the metrics; columns
  past the database size hold distance -1 and id -1. ``method`` picks the algorithm, never the answer:
  ``"scan"`` (a filtered linear scan), ``"mih"`` (multi-index hashing, Norouzi, Punjani and Fleet, CVPR 2012;
  see :mod:`hashguard.retrieval.mih`) or ``"auto"`` (default: MIH when the database is large enough, its
  tables fit ``mih_memory`` bytes and a sample of the queries shows it does less work than a scan --
  otherwise the tables are freed and the scan is kept until the database size or k changes; the choice of
  the last search is in :attr:`HammingIndex.last_plan` and the repr). Adding codes in chunks costs O(N) in
  total (the packed codes grow geometrically; the tables are rebuilt, O(N), by the next search using them).
* ``flat``: FAISS ``IndexBinaryFlat``; exact distances, but which members of a tie group straddling the k-th
  position are returned is FAISS's choice. Rows are re-sorted by (distance, id).
* ``ivf``: FAISS ``IndexBinaryIVF`` (approximate; trained on the first ``add``; ``nlist`` lists, at most
  as many as the codes of that first ``add``; ``nprobe`` probed). Missing results are -1.
* ``hnsw``: FAISS ``IndexBinaryHNSW`` (approximate; ``hnsw_m`` links, ``ef_search``). FAISS has no range
  search for it, so ``range_search`` is answered exactly from the stored codes.

FAISS backends need ``bits`` to be a multiple of 8. Range search returns every item with distance
``<= radius`` in the FAISS CSR layout: query i's results are ``ids[lims[i]:lims[i+1]]``, sorted by
(distance, id).

Index file (``.hgidx``): an ``.npz`` archive with ``meta`` (JSON: format version, backend, bits, parameters,
ntotal, ``info``: what was indexed, optional), ``codes`` (packed ``uint64`` codes) and, for FAISS backends,
``faiss`` (the serialised index).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from hashguard.errors import ConfigError, DataError
from hashguard.io_utils import atomic_write
from hashguard.retrieval import _kernels, search_kernels
from hashguard.retrieval.codes import as_codes, pack_codes
from hashguard.retrieval.mih import MultiIndexTables, plan

__all__ = ["BACKENDS", "METHODS", "HammingIndex", "load_index"]

BACKENDS = ("exact", "flat", "ivf", "hnsw")
METHODS = ("auto", "scan", "mih")
_FORMAT = "hashguard-index/1"
#: below this many codes ``method="auto"`` always scans (a scan of them costs less than building tables)
AUTO_MIN_ITEMS = 65536
#: cost of one MIH probe or candidate (a random memory access, ~10 ns) in units of one scanned code (~0.1 ns)
MIH_UNIT_COST = 128
#: queries ``method="auto"`` runs through MIH to estimate its work
AUTO_SAMPLE = 32


def _faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - optional dependency
        raise ConfigError(
            "this backend needs faiss-cpu (from the hashguard clone: pip install -e '.[faiss]')"
        ) from None
    return faiss


class HammingIndex:
    """A Hamming-space index over +-1 codes; see the module docstring for the backends and tie rule."""

    def __init__(
        self,
        bits: int,
        backend: str = "exact",
        nlist: int | None = None,
        nprobe: int = 16,
        hnsw_m: int = 32,
        ef_search: int = 128,
        seed: int = 0,
        method: str = "auto",
        mih_memory: int = 100_000_000,
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"unknown index backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if method not in METHODS:
            raise ConfigError(f"unknown search method {method!r}; choose one of {', '.join(METHODS)}")
        if isinstance(mih_memory, bool) or not isinstance(mih_memory, (int, np.integer)) or mih_memory < 0:
            raise ConfigError(f"mih_memory must be a non-negative number of bytes, not {mih_memory!r}")
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 1:
            raise ConfigError(f"bits must be a positive integer, not {bits!r}")
        if backend != "exact" and bits % 8:
            raise ConfigError(f"FAISS backends need a code length that is a multiple of 8, not {bits}")
        for name, value in (("nlist", nlist), ("nprobe", nprobe), ("hnsw_m", hnsw_m), ("ef_search", ef_search)):
            if value is None and name == "nlist":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, not {value!r}")
        self.bits = int(bits)
        self.backend = backend
        self.params: dict[str, Any] = {
            "nlist": nlist,
            "nprobe": int(nprobe),
            "hnsw_m": int(hnsw_m),
            "ef_search": int(ef_search),
            "seed": int(seed),
            "method": method,
            "mih_memory": int(mih_memory),
        }
        # packed codes live in the first _n rows of a buffer that grows geometrically: n codes added in any
        # number of chunks are copied O(n) times in total
        self._buf = np.zeros((0, (self.bits + 63) // 64), np.uint64)
        self._n = 0
        self._mih: MultiIndexTables | None = None
        self._auto_scan: tuple[int, int] | None = None  # (ntotal, k) for which "auto" found the scan cheaper
        #: how the last exact search ran: method, and for MIH its layout and measured work
        self.last_plan: dict[str, Any] = {}
        #: free-form JSON-able description of what was indexed (e.g. where the codes came from), kept in the file
        self.info: dict[str, Any] = {}
        self._faiss_index: Any = None
        if backend == "flat":
            self._faiss_index = _faiss().IndexBinaryFlat(self.bits)
        elif backend == "hnsw":
            self._faiss_index = _faiss().IndexBinaryHNSW(self.bits, int(hnsw_m))
            self._faiss_index.hnsw.efSearch = int(ef_search)

    # --------------------------------------------------------------------------------------------------------

    @property
    def ntotal(self) -> int:
        """Number of indexed codes."""
        return self._n

    @property
    def _codes(self) -> np.ndarray:
        """The packed ``uint64`` codes (a view of the first :attr:`ntotal` rows of the growth buffer)."""
        return self._buf[: self._n]

    @_codes.setter
    def _codes(self, codes: np.ndarray) -> None:
        self._buf = np.ascontiguousarray(codes, np.uint64)
        self._n = int(self._buf.shape[0])
        self._mih = None
        self._auto_scan = None

    def __len__(self) -> int:
        return self.ntotal

    def __repr__(self) -> str:
        extra = ""
        if self.backend == "exact":
            extra = f", method={self.params['method']!r}"
            if self.last_plan:
                extra += f", last={self.last_plan.get('method')!r}"
        return f"HammingIndex(bits={self.bits}, backend={self.backend!r}, ntotal={self.ntotal}{extra})"

    def memory_bytes(self) -> dict[str, int]:
        """Bytes held: ``codes`` (the packed codes), ``buffer_spare`` (unused growth capacity) and ``mih``
        (multi-index tables, 0 when not built); see :func:`hashguard.retrieval.mih.mih_memory_bytes`."""
        row = self._buf.shape[1] * 8
        return {
            "codes": self._n * row,
            "buffer_spare": (self._buf.shape[0] - self._n) * row,
            "mih": self._mih.memory_bytes() if self._mih is not None else 0,
        }

    def _append(self, packed: np.ndarray) -> None:
        need = self._n + packed.shape[0]
        if need > self._buf.shape[0]:
            cap = max(need, int(self._buf.shape[0] * 1.5), 1024)
            grown = np.empty((cap, self._buf.shape[1]), np.uint64)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[self._n : need] = packed
        self._n = need

    def _check(self, codes: Any, name: str) -> np.ndarray:
        c = as_codes(codes, name)
        if c.shape[1] != self.bits:
            raise DataError(f"code length mismatch: {name} have {c.shape[1]} bits, the index has {self.bits}")
        return c

    def add(self, codes: Any) -> None:
        """Append +-1 codes (N x bits); their ids continue from :attr:`ntotal`."""
        c = self._check(codes, "codes")
        if c.shape[0] == 0:
            return
        if self.backend == "ivf" and self._faiss_index is None:
            faiss = _faiss()
            n = c.shape[0]
            if self.params["nlist"] is not None and self.params["nlist"] > n:
                raise ConfigError(
                    f"nlist {self.params['nlist']} is larger than the {n} codes the IVF index is trained on "
                    f"(every list needs at least one code); use nlist <= {n} or leave it to the default"
                )
            nlist = self.params["nlist"] or int(max(1, min(4 * np.sqrt(n), n // 39 or 1)))
            self.params["nlist"] = int(nlist)
            quantizer = faiss.IndexBinaryFlat(self.bits)
            index = faiss.IndexBinaryIVF(quantizer, self.bits, int(nlist))
            index.own_fields = True
            quantizer.this.disown()
            index.cp.seed = self.params["seed"]
            index.train(pack_codes(c, "uint8"))
            index.nprobe = self.params["nprobe"]
            self._faiss_index = index
        if self._faiss_index is not None:
            self._faiss_index.add(pack_codes(c, "uint8"))
        self._append(pack_codes(c, "uint64"))
        self._mih = None  # rebuilt, O(ntotal), by the next search that uses it

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k search. Returns ``(distances int32 Q x k, ids int64 Q x k)``, each row sorted by
        ascending (distance, id); missing entries (k > ntotal, or an approximate index finding fewer) are -1.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k must be a positive integer, not {k!r}")
        q = self._check(queries, "queries")
        if self._faiss_index is None or self.ntotal == 0:
            return self._exact_search(pack_codes(q, "uint64"), int(k))
        D, ids = self._faiss_index.search(pack_codes(q, "uint8"), int(k))
        D = D.astype(np.int32)
        ids = ids.astype(np.int64)
        missing = ids < 0
        D[missing] = np.iinfo(np.int32).max
        order = np.lexsort((ids, D), axis=1) if D.size else np.zeros_like(ids)
        D = np.take_along_axis(D, order, axis=1)
        ids = np.take_along_axis(ids, order, axis=1)
        missing = ids < 0
        D[missing] = -1
        return D, ids

    def _tables(self) -> MultiIndexTables | None:
        if self._mih is None or self._mih.n != self._n:
            layout = plan(self.bits, self._n, self.params["mih_memory"])
            if layout is not None and self._buf.shape[0] > self._n:
                # drop the growth capacity (an O(N) copy, like the build) so that only the tables, within
                # mih_memory, are held beyond the packed codes
                self._buf = self._buf[: self._n].copy()
            self._mih = None if layout is None else MultiIndexTables(layout, self._codes)
        return self._mih

    def _exact_search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k of packed queries by the scan or MIH (``params["method"]``; see the module docstring)."""
        method = self.params["method"]
        n = self._n
        db = self._codes
        scan_plan = {"method": "scan"}
        reason = ""
        if method == "scan" or n == 0 or k >= n:
            reason = "asked for" if method == "scan" else "k covers the database"
        elif method == "auto" and n < AUTO_MIN_ITEMS:
            reason = f"fewer than {AUTO_MIN_ITEMS} codes"
        elif method == "auto" and self._auto_scan == (n, k):
            reason = "a sample of earlier queries found the scan cheaper"
        elif not search_kernels.HAVE_NUMBA:
            reason = "multi-index hashing needs numba"
        if reason:
            self.last_plan = {**scan_plan, "reason": reason}
            return search_kernels.scan_topk(q, db, self.bits, k)
        tables = self._tables()
        if tables is None:
            self.last_plan = {**scan_plan, "reason": "multi-index tables do not fit mih_memory"}
            return search_kernels.scan_topk(q, db, self.bits, k)
        info = {
            "method": "mih",
            "m": tables.plan.m,
            "key_bits": list(tables.plan.key_bits),
            "table_bytes": tables.memory_bytes(),
        }
        if method == "mih":
            d, i, _, work = tables.search(q, db, self.bits, k, np.iinfo(np.int64).max)
            self.last_plan = {**info, "mean_work": float(work.mean()) if work.size else 0.0}
            return d, i
        # auto: a query doing more MIH work than a scan of the database costs falls back to the scan
        max_work = int(min(n / max(MIH_UNIT_COST, 1e-9), 2**62)) + 1
        sample = q[np.linspace(0, q.shape[0] - 1, min(AUTO_SAMPLE, q.shape[0])).astype(np.int64)]
        _, _, fb, work = tables.search(sample, db, self.bits, k, max_work)
        est = float(np.where(fb, max_work, work).mean()) * MIH_UNIT_COST
        if est > 0.5 * n:
            # scanning wins on these codes: free the tables and scan until the database or k changes
            self._mih = None
            self._auto_scan = (n, k)
            self.last_plan = {**scan_plan, "reason": f"sampled MIH cost {est:.0f} > half a scan ({n} codes)"}
            return search_kernels.scan_topk(q, db, self.bits, k)
        d, i, fb, work = tables.search(q, db, self.bits, k, max_work)
        self.last_plan = {**info, "mean_work": float(work.mean()), "scan_fallbacks": int(fb.sum())}
        return d, i

    def range_search(self, queries: Any, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All items with Hamming distance ``<= radius``: ``(lims, distances, ids)`` in FAISS CSR layout."""
        if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
            raise ConfigError(f"radius must be a non-negative integer, not {radius!r}")
        q = self._check(queries, "queries")
        if self.backend in ("exact", "hnsw") or self.ntotal == 0:
            return _kernels.range_search(pack_codes(q, "uint64"), self._codes, self.bits, int(radius))
        # FAISS binary range search keeps distances < radius (strict)
        lims, D, ids = self._faiss_index.range_search(pack_codes(q, "uint8"), int(radius) + 1)
        lims = lims.astype(np.int64)
        D = D.astype(np.int32)
        ids = ids.astype(np.int64)
        for i in range(q.shape[0]):
            a, b = lims[i], lims[i + 1]
            order = np.lexsort((ids[a:b], D[a:b]))
            D[a:b] = D[a:b][order]
            ids[a:b] = ids[a:b][order]
        return lims, D, ids

    def reconstruct(self) -> np.ndarray:
        """The indexed codes as N x bits ``int8`` +-1."""
        from hashguard.retrieval.codes import unpack_codes

        return unpack_codes(self._codes, self.bits)

    # --------------------------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to ``path`` atomically (``.npz`` layout, see the module docstring)."""
        meta = {
            "format": _FORMAT,
            "backend": self.backend,
            "bits": self.bits,
            "ntotal": self.ntotal,
            "params": self.params,
            "info": self.info,
        }
        arrays: dict[str, np.ndarray] = {
            "meta": np.array(json.dumps(meta, sort_keys=True)),
            "codes": self._codes,
        }
        if self._faiss_index is not None:
            arrays["faiss"] = _faiss().serialize_index_binary(self._faiss_index)

        def _write(tmp: str) -> None:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)

        atomic_write(path, _write)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> HammingIndex:
        """Read an index written by :meth:`save`; a missing or corrupt file raises :class:`DataError`."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: index file not found")
        try:
            with np.load(path, allow_pickle=False) as archive:
                meta = json.loads(str(archive["meta"]))
                codes = np.ascontiguousarray(archive["codes"])
                blob = archive["faiss"] if "faiss" in archive.files else None
        except Exception as exc:
            raise DataError(f"{path}: not a hashguard index file ({type(exc).__name__}: {exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise DataError(f"{path}: not a hashguard index file (format {meta.get('format')!r})")
        params = meta.get("params", {})  # files from before "method"/"mih_memory" get the defaults
        index = cls(int(meta["bits"]), meta["backend"], **params)
        if codes.dtype != np.uint64 or codes.ndim != 2 or codes.shape[1] != (index.bits + 63) // 64:
            raise DataError(f"{path}: stored codes have the wrong layout {codes.dtype} {codes.shape}")
        index._codes = codes
        index.info = dict(meta.get("info") or {})
        if index.backend != "exact":
            if blob is None:
                raise DataError(f"{path}: the FAISS index is missing")
            faiss_index = _faiss().deserialize_index_binary(blob)
            if faiss_index.ntotal != codes.shape[0]:
                raise DataError(
                    f"{path}: FAISS index holds {faiss_index.ntotal} codes, expected {codes.shape[0]}"
                )
            if index.backend == "ivf":
                faiss_index.nprobe = int(params.get("nprobe", 16))
            elif index.backend == "hnsw":
                faiss_index.hnsw.efSearch = int(params.get("ef_search", 128))
            index._faiss_index = faiss_index
        return index


def load_index(path: str | os.PathLike[str]) -> HammingIndex:
    """Shorthand for :meth:`HammingIndex.load`."""
    return HammingIndex.load(path)
