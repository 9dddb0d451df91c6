"""``python -m hashguard.report RUN_DIR``: (re)write the report of a finished study from its results.json.

``python -m hashguard.report --sample DIR`` writes the report of a synthetic study into DIR, to preview the
layout without running anything.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hashguard.report import write_report


def main(argv: list[str] | None = None) -> int:
    """Read ``RUN_DIR/results.json`` (or the given card), write the report beside it, print the paths."""
    parser = argparse.ArgumentParser(prog="python -m hashguard.report", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="run directory holding results.json")
    parser.add_argument("--card", type=Path, default=None, help="results card (default: RUN_DIR/results.json)")
    parser.add_argument("--sample", action="store_true", help="report a synthetic study into RUN_DIR")
    args = parser.parse_args(argv)
    if args.sample:
        from hashguard.report.sample import write_sample

        card = write_sample(args.run_dir)
    else:
        card_path = args.card or args.run_dir / "results.json"
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            print(f"error: {card_path}: {error}", file=sys.stderr)
            return 2
        if not isinstance(card, dict):
            print(f"error: {card_path}: not a JSON object", file=sys.stderr)
            return 2
    for key, path in write_report(card, args.run_dir).items():
        print(f"{key}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
