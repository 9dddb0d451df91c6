"""``hashguard search``: build a Hamming index from a code file and answer top-k or radius queries.

    hashguard search build --codes db.npz --out db.hgidx [--backend exact|flat|ivf|hnsw]
    hashguard search query --index db.hgidx --codes q.npz --topk 10 [--queries N] [--out results.json] [--json]
    hashguard search query --index db.hgidx --codes q.npz --radius 2 [--out results.json]

Results are JSON: ``{"index": ..., "backend": ..., "bits": ..., "k" or "radius": ..., "results": [{"query": i,
"ids": [...], "distances": [...]}, ...]}``; ids are database row positions in the indexed code file, each
list sorted by ascending (distance, id). Without ``--out`` (or with ``--json``) the JSON goes to stdout.
``-k`` and ``--k`` are aliases of ``--topk``, ``--limit`` of ``--queries``. The work is done by
:mod:`hashguard.pipeline.search`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hashguard.commands.common import add_json_argument, add_queries_argument, json_stdout, positive_int
from hashguard.io_utils import atomic_write_json
from hashguard.pipeline.search import build_index, is_learned, query_index
from hashguard.retrieval.index import BACKENDS


def register(subparsers: Any) -> None:
    """Add the ``search`` subcommand (with ``build`` and ``query``) to the CLI."""
    parser = subparsers.add_parser(
        "search",
        help="build a Hamming index from codes and answer top-k / radius queries",
        description="Build a Hamming index from a code file (.npz) and answer top-k or radius queries.",
    )
    sub = parser.add_subparsers(dest="search_command", metavar="ACTION")

    build = sub.add_parser("build", help="index the codes of a code file")
    build.add_argument("--codes", required=True, help="database code file (.npz from `hashguard encode`)")
    build.add_argument("--out", required=True, help="index file to write (e.g. db.hgidx)")
    build.add_argument("--backend", choices=BACKENDS, default="exact", help="search backend (default: exact)")
    build.add_argument("--method", choices=("auto", "scan", "mih"), default="auto",
                       help="exact backend: linear scan, multi-index hashing, or auto (chooses by size and a sample "
                       "of the queries; default)")
    build.add_argument("--nlist", type=positive_int, default=None, help="ivf: number of lists (default ~4 sqrt(N))")
    build.add_argument("--nprobe", type=positive_int, default=16, help="ivf: lists probed per query (default 16)")
    build.add_argument("--hnsw-m", type=positive_int, default=32, help="hnsw: links per node (default 32)")
    build.add_argument("--ef-search", type=positive_int, default=128, help="hnsw: search breadth (default 128)")
    build.add_argument("--seed", type=int, default=0, help="ivf: k-means seed (default 0)")
    build.set_defaults(handler=_build)

    query = sub.add_parser("query", help="answer queries from a saved index")
    query.add_argument("--index", required=True, help="index file written by `hashguard search build`")
    query.add_argument("--codes", required=True, help="query code file (.npz)")
    group = query.add_mutually_exclusive_group()
    group.add_argument("-k", "--topk", dest="k", type=positive_int, default=None, metavar="K",
                       help="number of neighbours per query (default 10)")
    group.add_argument("--k", dest="k", type=positive_int, help=argparse.SUPPRESS)
    group.add_argument(
        "--radius", type=int, default=None, help="return every item within this Hamming radius"
    )
    query.add_argument("--out", default=None, help="JSON file for the results (default: stdout)")
    add_queries_argument(query, "answer only the first N queries (default: all)")
    add_json_argument(query, "the results (also when --out writes them to a file)")
    query.set_defaults(handler=_query)

    parser.set_defaults(handler=lambda args: _missing_action(parser))


def _missing_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _build(args: argparse.Namespace) -> int:
    index = build_index(
        args.codes,
        args.out,
        args.backend,
        nlist=args.nlist,
        nprobe=args.nprobe,
        hnsw_m=args.hnsw_m,
        ef_search=args.ef_search,
        seed=args.seed,
        method=args.method,
    )
    source = f"; the {index.info['codes']}, not the network's encoding" if is_learned(index) else ""
    print(f"indexed {index.ntotal} codes of {index.bits} bits ({args.backend}) -> {args.out}{source}")
    return 0


def _query(args: argparse.Namespace) -> int:
    with json_stdout(args.json) as stdout:
        payload = query_index(args.index, args.codes, k=args.k, radius=args.radius, limit=args.queries)
        if args.out:
            atomic_write_json(args.out, payload)
    results = payload["results"]
    if args.out and not args.json:
        n = sum(len(r["ids"]) for r in results)
        against = f" against the {payload['database']}" if "database" in payload else ""
        print(f"answered {len(results)} queries ({n} results){against} -> {args.out}")
    else:
        json.dump(payload, stdout)
        stdout.write("\n")
    return 0
