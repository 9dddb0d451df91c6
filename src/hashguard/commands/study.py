"""``hashguard study CONFIG.yaml``: run a whole study (cached stages) into a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from hashguard.pipeline.study import load_study_config, run_study


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "study", help="run a study as cached stages: train (or resume), encode, clean evaluation, results.json"
    )
    parser.add_argument("config", metavar="CONFIG.yaml")
    parser.add_argument("--out", metavar="DIR", help="run directory (default: runs/<config name>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_study_config(args.config, args.overrides)
    out = args.out or str(Path("runs") / Path(args.config).stem)
    run_study(config, out)
    return 0
