"""``hashguard train``: train a hashing model from a YAML config plus overrides."""

from __future__ import annotations

import argparse

from hashguard.config import load_experiment_config
from hashguard.pipeline.train import run_training


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a deep hashing model",
        description="Train a deep hashing model. Settings come from --config (YAML) and --set overrides, "
        "e.g. --set train.epochs=3 --set method.name=dph.",
    )
    parser.add_argument("--config", metavar="YAML", help="experiment configuration (default: built-in defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a configuration value (repeatable)")
    parser.add_argument("--out", required=True, metavar="DIR", help="run directory (checkpoint goes here)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_experiment_config(args.config, args.overrides)
    run_training(config, args.out, resume=args.resume)
    return 0
