"""``hashguard evaluate``: clean retrieval metrics of a checkpoint, or of two code files."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from hashguard.commands.common import (
    add_batch_size_argument,
    add_data_arguments,
    add_device_argument,
    add_json_argument,
    add_queries_argument,
    add_topk_argument,
    data_config_from_args,
    json_stdout,
    print_json,
)
from hashguard.errors import ConfigError
from hashguard.io_utils import atomic_write, atomic_write_json
from hashguard.pipeline.evaluate import evaluate_checkpoint, evaluate_codes
from hashguard.protocol import MAP_TOPK
from hashguard.retrieval import load_codes
from hashguard.retrieval.health import print_warnings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="mAP@k, tie-aware mAP, P@N and PR curve of query vs database",
        description="Evaluate a checkpoint (encodes query and database) or two code files.",
    )
    parser.add_argument("checkpoint", nargs="?", metavar="CHECKPOINT_DIR",
                        help="checkpoint whose query and database splits are encoded and compared")
    parser.add_argument("--query-codes", metavar="Q.npz", help="evaluate code files instead of a checkpoint")
    parser.add_argument("--db-codes", metavar="DB.npz", help="database code file (with --query-codes)")
    add_topk_argument(parser, MAP_TOPK, f"mAP@k cut-off (0 = whole ranking; default {MAP_TOPK}, the paper protocol's)")
    add_queries_argument(parser, "evaluate only the first N queries (default: all)")
    parser.add_argument("--out", metavar="METRICS.json", help="write every metric as JSON")
    parser.add_argument("--pr-out", metavar="PR.csv", help="write the precision-recall curve as CSV")
    add_batch_size_argument(parser, 256, "images encoded per batch (default 256)")
    add_device_argument(parser)
    add_json_argument(parser, "every metric")
    add_data_arguments(parser)
    parser.set_defaults(handler=run)


def _write_pr_csv(path: str, curve: dict) -> None:
    def _write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["recall", "precision"])
            writer.writerows(zip(curve["recall"], curve["precision"], strict=True))

    atomic_write(path, _write)


def run(args: argparse.Namespace) -> int:
    topk = None if args.topk == 0 else args.topk
    with json_stdout(args.json) as stdout:
        metrics = _metrics(args, topk)
        if args.out:
            atomic_write_json(args.out, metrics)
        if args.pr_out:
            _write_pr_csv(args.pr_out, metrics["pr_curve"])
    if args.json:
        print_json(metrics, stdout)
        return 0
    k = metrics["topk"] if metrics["topk"] is not None else "all"
    where = f" ({metrics['database']})" if "database" in metrics else ""
    print(f"queries {metrics['n_queries']}, database {metrics['n_database']}{where}, {metrics['bits']} bits; "
          f"cut-off mAP@{k}" + (f" (--topk {args.topk}, capped at the database size)" if topk and k != topk else ""))
    print(f"mAP@{k}            {metrics['map']:.4f}   (ties broken by database index)")
    print(f"tie-aware mAP@{k}  {metrics['map_tie_aware']:.4f}   (expected over random order within ties)")
    print(f"mAP (all)          {metrics['map_all']:.4f}")
    pan = metrics["precision_at_n"]
    shown = [(n, p) for n, p in zip(pan["n"], pan["precision"], strict=True) if n in (100, 500, 1000)]
    for n, p in shown:
        print(f"P@{n:<16}{p:.4f}")
    if args.out:
        print(f"wrote {args.out}")
    if args.pr_out:
        print(f"wrote {Path(args.pr_out)}")
    return 0


def _metrics(args: argparse.Namespace, topk: int | None) -> dict:
    if args.query_codes or args.db_codes:
        if not (args.query_codes and args.db_codes) or args.checkpoint:
            raise ConfigError("give either a checkpoint or both --query-codes and --db-codes")
        query, database = load_codes(args.query_codes), load_codes(args.db_codes)
        n = len(query.codes) if args.queries is None else args.queries
        return evaluate_codes(query.codes[:n], database.codes, query.labels[:n], database.labels, topk,
                              warn=print_warnings)
    if args.checkpoint:
        return evaluate_checkpoint(
            args.checkpoint, data_config_from_args(args), topk, args.device,
            queries=args.queries, batch_size=args.batch_size,
        )
    raise ConfigError("name a checkpoint directory, or --query-codes and --db-codes")
