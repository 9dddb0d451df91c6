"""The ``hashguard`` command line: a thin layer over the library, one module per subcommand.

Every user-fixable problem (a :class:`~hashguard.errors.HashguardError`) becomes a single line on stderr
and exit status 2; an interrupt exits with 130. Nothing already written is removed on failure.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from hashguard import __version__
from hashguard.errors import HashguardError

#: subcommand modules under ``hashguard.commands``; each defines ``register(subparsers)``.
COMMAND_MODULES = ("datasets", "train", "encode", "evaluate", "search", "attack", "defend", "study", "list")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hashguard",
        description="Train, index, attack, harden and benchmark deep hashing retrieval models.",
    )
    parser.add_argument("--version", action="version", version=f"hashguard {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"hashguard.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from hashguard.plugins import load_plugins

    try:
        load_plugins()  # third-party methods, attacks, defenses, ... register before the arguments are read
    except HashguardError as exc:
        print(f"hashguard: error: {exc}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except HashguardError as exc:
        print(f"hashguard: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a directory where a file is written, ...: one line naming the path
        from hashguard.io_utils import os_error_message

        print(f"hashguard: error: {os_error_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = "rerun the same command" if args.command == "study" else "rerun with --resume"
        print(f"hashguard: interrupted; finished checkpoints and stages are kept, {hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
