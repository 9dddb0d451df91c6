"""``hashguard study CONFIG.yaml``: run a whole robustness study (cached stages) into a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from hashguard.pipeline.study import dry_run, load_study_config, run_study


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "study",
        help="train (or load), attack, defend and report, as cached stages; a rerun skips finished stages",
        description=(
            "Run a whole robustness study: train (or load) -> encode -> clean evaluation -> attack suite and "
            "eps sweep -> defenses (SAAT, ATRDH, CgAT) -> attacks on the hardened models -> results.json, "
            "report.md and report.html. An interrupted study resumes where it stopped."
        ),
    )
    parser.add_argument("config", metavar="CONFIG.yaml")
    parser.add_argument("--out", metavar="DIR", help="run directory (default: runs/<config name>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. attacks.override.eps=16/255 (repeatable)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved attack budgets and the departures from the paper protocol; validate "
                        "the config, dataset, model, attacks and defenses; print the plan; train nothing")
    parser.add_argument("--no-report", action="store_true", help="write results.json only")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_study_config(args.config, args.overrides)
    if args.dry_run:
        dry_run(config)
        return 0
    out = args.out or str(Path("runs") / Path(args.config).stem)
    run_study(config, out, report=not args.no_report)
    return 0
