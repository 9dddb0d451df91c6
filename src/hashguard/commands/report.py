"""``hashguard report RUN_DIR``: (re)write report.md and report.html of a study from its results.json.

The same as ``python -m hashguard.report``: the report is rebuilt from the results card alone, so it can be
regenerated (for example after an upgrade) without rerunning any stage.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from hashguard.report.__main__ import add_arguments

    parser = subparsers.add_parser(
        "report",
        help="(re)write report.md and report.html of a study run directory from its results.json",
        description="Rewrite report.md, report.html and the figures of a study from RUN_DIR/results.json "
        "(or --card); --sample writes the report of a synthetic study to preview the layout.",
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from hashguard.report.__main__ import regenerate

    for key, path in regenerate(args.run_dir, args.card, args.sample).items():
        print(f"{key}: {path}")
    return 0
