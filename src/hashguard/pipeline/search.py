"""``hashguard search`` as functions: index a code file, answer top-k or radius queries from a saved index.

Results are a JSON-ready dict: ``{"index": ..., "backend": ..., "bits": ..., "k" or "radius": ..., "results":
[{"query": i, "ids": [...], "distances": [...]}, ...]}``; ids are database row positions in the indexed code
file, each list sorted by ascending (distance, id).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hashguard.errors import ConfigError
from hashguard.retrieval.codes_io import load_codes
from hashguard.retrieval.index import HammingIndex

__all__ = ["build_index", "query_index"]


def build_index(
    codes: str | Path,
    out: str | Path,
    backend: str = "exact",
    *,
    nlist: int | None = None,
    nprobe: int = 16,
    hnsw_m: int = 32,
    ef_search: int = 128,
    seed: int = 0,
) -> HammingIndex:
    """Index the codes of the code file ``codes`` with ``backend`` and save the index to ``out``."""
    for name, value in (("nlist", nlist), ("nprobe", nprobe), ("hnsw_m", hnsw_m), ("ef_search", ef_search)):
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, not {value}")
    codeset = load_codes(codes)
    index = HammingIndex(
        codeset.bits, backend, nlist=nlist, nprobe=nprobe, hnsw_m=hnsw_m, ef_search=ef_search, seed=seed
    )
    index.add(codeset.codes)
    index.save(out)
    return index


def query_index(
    index_path: str | Path,
    codes: str | Path,
    *,
    k: int | None = None,
    radius: int | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Answer the queries of the code file ``codes`` from the saved index: the ``k`` nearest (default 10), or
    every item within Hamming ``radius``; ``limit`` answers only the first queries."""
    index = HammingIndex.load(index_path)
    queries = load_codes(codes).codes
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"--limit must be positive, not {limit}")
        queries = queries[:limit]
    payload: dict[str, Any] = {"index": str(index_path), "backend": index.backend, "bits": index.bits}
    results = []
    if radius is not None:
        lims, dist, ids = index.range_search(queries, radius)
        payload["radius"] = int(radius)
        for i in range(queries.shape[0]):
            a, b = int(lims[i]), int(lims[i + 1])
            results.append({"query": i, "ids": ids[a:b].tolist(), "distances": dist[a:b].tolist()})
    else:
        k = 10 if k is None else k
        if k < 1:
            raise ConfigError(f"-k must be positive, not {k}")
        dist, ids = index.search(queries, k)
        payload["k"] = int(k)
        for i in range(queries.shape[0]):
            keep = ids[i] >= 0
            results.append({"query": i, "ids": ids[i][keep].tolist(), "distances": dist[i][keep].tolist()})
    payload["results"] = results
    return payload
