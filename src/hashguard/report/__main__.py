"""``python -m hashguard.report RUN_DIR``: (re)write the report of a finished study from its results.json.

``hashguard report RUN_DIR`` is the same command.

``python -m hashguard.report --sample DIR`` writes the report of a synthetic study into DIR, to preview the
layout without running anything.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hashguard.errors import HashguardError
from hashguard.report import write_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``python -m hashguard.report`` and ``hashguard report``."""
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="run directory holding results.json")
    parser.add_argument("--card", type=Path, default=None, help="results card (default: RUN_DIR/results.json)")
    parser.add_argument("--sample", action="store_true", help="report a synthetic study into RUN_DIR")


def regenerate(run_dir: Path, card: Path | None = None, sample: bool = False) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and the figures into ``run_dir`` from its ``results.json`` (or
    ``card``; ``sample``: from a synthetic study); returns what was written. An unreadable card is one
    :class:`HashguardError` line."""
    if sample:
        from hashguard.report.sample import write_sample

        payload = write_sample(run_dir)
    else:
        card_path = card or run_dir / "results.json"
        try:
            payload = json.loads(card_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise HashguardError(f"{card_path}: not found (is {run_dir} a finished study's run directory?)") from None
        except (OSError, ValueError) as error:
            raise HashguardError(f"{card_path}: {error}") from None
        if not isinstance(payload, dict):
            raise HashguardError(f"{card_path}: not a JSON object")
    return write_report(payload, run_dir)


def main(argv: list[str] | None = None) -> int:
    """Read ``RUN_DIR/results.json`` (or the given card), write the report beside it, print the paths."""
    parser = argparse.ArgumentParser(prog="python -m hashguard.report", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        written = regenerate(args.run_dir, args.card, args.sample)
    except HashguardError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for key, path in written.items():
        print(f"{key}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
