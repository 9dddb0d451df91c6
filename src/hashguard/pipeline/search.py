"""``hashguard search`` as functions: index a code file, answer top-k or radius queries from a saved index.

Results are a JSON-ready dict: ``{"index": ..., "backend": ..., "bits": ..., "k" or "radius": ..., "results":
[{"query": i, "ids": [...], "distances": [...]}, ...]}``; ids are database row positions in the indexed code
file, each list sorted by ascending (distance, id). When the indexed code file holds an ADSH checkpoint's learned
database codes V (``hashguard encode --split database`` of an ADSH-protocol checkpoint, Jiang and Li, AAAI 2018:
the training pool is the database), the index keeps that in ``info["codes"]`` and the results say so in
``"database"``; the queries are the network's codes as always. Collapsed codes (docs/metrics.md: one code for
most items, fewer codes than labels) give a warning line, on stderr by default.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hashguard.errors import ConfigError
from hashguard.retrieval.codes_io import CodeSet, load_codes
from hashguard.retrieval.health import code_health, print_warnings
from hashguard.retrieval.index import HammingIndex

__all__ = ["build_index", "is_learned", "query_index"]

Warn = Callable[[list[str]], None]


def _check_health(codeset: CodeSet, what: str, warn: Warn | None) -> None:
    if warn is None or codeset.labels is None or len(codeset.labels) != len(codeset.codes):
        return
    line = code_health(codeset.codes, codeset.labels).warning(what)
    if line:
        warn([line])


def is_learned(index: HammingIndex) -> bool:
    """Whether ``index`` holds an ADSH checkpoint's learned database codes V (not the network's codes)."""
    return index.info.get("codes", "network") != "network"


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
    method: str = "auto",
    warn: Warn | None = print_warnings,
) -> HammingIndex:
    """Index the codes of the code file ``codes`` with ``backend`` (and, for the exact backend, the search
    ``method``: auto, scan or mih) and save the index to ``out``; collapsed codes give ``warn`` a warning line."""
    for name, value in (("nlist", nlist), ("nprobe", nprobe), ("hnsw_m", hnsw_m), ("ef_search", ef_search)):
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, not {value}")
    codeset = load_codes(codes)
    _check_health(codeset, f"the codes of {codes}", warn)
    index = HammingIndex(
        codeset.bits, backend, nlist=nlist, nprobe=nprobe, hnsw_m=hnsw_m, ef_search=ef_search, seed=seed,
        method=method,
    )
    index.add(codeset.codes)
    index.info = {"codes_file": str(codes), "codes": str(codeset.meta.get("codes", "network"))}
    index.save(out)
    return index


def query_index(
    index_path: str | Path,
    codes: str | Path,
    *,
    k: int | None = None,
    radius: int | None = None,
    limit: int | None = None,
    warn: Warn | None = print_warnings,
) -> dict[str, Any]:
    """Answer the queries of the code file ``codes`` from the saved index: the ``k`` nearest (default 10), or
    every item within Hamming ``radius``; ``limit`` answers only the first queries. Collapsed query codes give
    ``warn`` a warning line."""
    index = HammingIndex.load(index_path)
    codeset = load_codes(codes)
    _check_health(codeset, f"the codes of {codes}", warn)
    queries = codeset.codes
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"--limit must be positive, not {limit}")
        queries = queries[:limit]
    payload: dict[str, Any] = {"index": str(index_path), "backend": index.backend, "bits": index.bits}
    if is_learned(index):
        payload["database"] = index.info["codes"]
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
        dist, ids = _search(index, queries, k)
        payload["k"] = int(k)
        for i in range(queries.shape[0]):
            keep = ids[i] >= 0
            results.append({"query": i, "ids": ids[i][keep].tolist(), "distances": dist[i][keep].tolist()})
    payload["results"] = results
    return payload


def _search(index: HammingIndex, queries: Any, k: int) -> tuple[Any, Any]:
    """Top-k of ``queries``; under ``torchrun`` with the exact backend each rank searches its contiguous shard of
    the database and the lists merge under the (distance, index) rule (the same result as one search)."""
    from hashguard.distributed.sharding import shard_bounds
    from hashguard.distributed.topk import sharded_search
    from hashguard.distributed.world import current_world

    world = current_world()
    if not world.distributed or index.backend != "exact":
        return index.search(queries, k)
    start, stop = shard_bounds(index.ntotal, world.size, world.rank)
    return sharded_search(index.reconstruct()[start:stop], start, queries, k, world)
