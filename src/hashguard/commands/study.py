"""``hashguard study CONFIG.yaml``: run a whole robustness study (cached stages) into a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from hashguard.commands.common import add_device_argument, add_queries_argument, add_set_argument, add_topk_argument
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
    parser.add_argument("config", metavar="CONFIG.yaml", help="study configuration, e.g. configs/demo.yaml")
    parser.add_argument("--out", metavar="DIR", help="run directory (default: runs/<config name>)")
    add_set_argument(parser, "override a config value (repeatable), e.g. --set attacks.override.eps=16/255")
    add_queries_argument(parser, "attack only the first N queries (same as --set attacks.queries=N)")
    add_topk_argument(parser, None, "the study's mAP cut-off (0 = whole ranking; same as --set evaluation.topk=K; "
                      "default: the config's)")
    add_device_argument(parser, None, "default: the config's device, auto (same as --set device=D)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved attack budgets and the departures from the paper protocol; validate "
                        "the config, dataset, model, attacks and defenses; print the plan; train nothing")
    parser.add_argument("--no-report", action="store_true", help="write results.json only")
    parser.set_defaults(handler=run)


def overrides_of(args: argparse.Namespace) -> list[str]:
    """The --set overrides followed by the shortcut flags, which win."""
    overrides = list(args.overrides)
    if args.queries is not None:
        overrides.append(f"attacks.queries={args.queries}")
    if args.topk is not None:
        overrides.append(f"evaluation.topk={'null' if args.topk == 0 else args.topk}")
    if args.device is not None:
        overrides.append(f"device={args.device}")
    return overrides


def run(args: argparse.Namespace) -> int:
    config = load_study_config(args.config, overrides_of(args))
    if args.dry_run:
        dry_run(config)
        return 0
    out = args.out or str(Path("runs") / Path(args.config).stem)
    run_study(config, out, report=not args.no_report)
    return 0
