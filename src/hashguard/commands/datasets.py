"""``hashguard datasets``: inspect and validate datasets (a thin layer over :mod:`hashguard.data.check`)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from hashguard.commands.common import add_json_argument, json_stdout, print_json
from hashguard.data.check import check_dataset, check_formats
from hashguard.data.sources import describe_sources

#: at most this many problem lines go to stderr; the count of the rest follows.
MAX_PRINTED_PROBLEMS = 50


def register(subparsers: Any) -> None:
    """Add the ``datasets`` command and its ``check`` and ``sources`` subcommands."""
    parser = subparsers.add_parser(
        "datasets",
        help="validate dataset directories and list dataset sources",
        description="Validate dataset directories and list the dataset sources.",
    )
    actions = parser.add_subparsers(dest="datasets_command", metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="validate a dataset and report counts, labels, duplicates, missing or unreadable images",
        description=(
            "Validate a dataset directory (list files, IDX or CIFAR-10) or a built-in source such as "
            "demo-mnist. Prints a table per split; exits 0 when clean, 1 with one line per problem "
            "(file:line: problem) on stderr otherwise."
        ),
    )
    check.add_argument("path", metavar="PATH", help="dataset directory, or a built-in source name")
    check.add_argument(
        "--format", choices=check_formats(), default="auto", help="dataset format (default: auto)"
    )
    check.add_argument("--no-images", action="store_true", help="check the lists only, do not open images")
    check.add_argument(
        "--image-root", default=None, help="directory image paths are relative to (default: PATH)"
    )
    add_json_argument(check, "the report (splits, problems, notes, ok)")
    check.set_defaults(handler=run_check)
    listing = actions.add_parser(
        "sources", help="list the dataset sources and their options (as `hashguard list sources -v`)"
    )
    listing.set_defaults(handler=run_sources)
    parser.set_defaults(handler=lambda args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def run_check(args: argparse.Namespace) -> int:
    """Handler of ``hashguard datasets check``."""
    with json_stdout(args.json) as stdout:
        report = check_dataset(
            args.path, format=args.format, images=not args.no_images, image_root=args.image_root
        )
    if args.json:
        print_json({**dataclasses.asdict(report), "ok": report.ok}, stdout)
        return 0 if report.ok else 1
    print(report.table())
    for problem in report.problems[:MAX_PRINTED_PROBLEMS]:
        print(problem, file=sys.stderr)
    if len(report.problems) > MAX_PRINTED_PROBLEMS:
        print(f"... and {len(report.problems) - MAX_PRINTED_PROBLEMS} more problems", file=sys.stderr)
    return 0 if report.ok else 1


def run_sources(args: argparse.Namespace) -> int:
    """Handler of ``hashguard datasets sources``."""
    del args
    print(describe_sources())
    return 0
