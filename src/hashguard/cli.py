"""The ``hashguard`` command line: a thin layer over the library, one module per subcommand.

Every user-fixable problem (a :class:`~hashguard.errors.HashguardError`) becomes a single line on stderr
and exit status 2; an interrupt exits with 130. Nothing already written is removed on failure.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from hashguard import __version__
from hashguard.errors import HashguardError

#: subcommand modules under ``hashguard.commands``; each defines ``register(subparsers)``.
COMMAND_MODULES = (
    "datasets", "train", "encode", "evaluate", "search", "attack", "defend", "detect", "lifelong", "study", "report",
    "list", "fingerprint",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hashguard",
        description="Train, index, attack, harden and benchmark deep hashing retrieval models.",
        epilog="Every subcommand speaks one vocabulary: --set KEY=VALUE (overrides), -k/--topk (cut-off), "
        "--queries N, --device, --batch-size, --json (results as JSON on stdout). "
        "`hashguard list` shows every method, backbone, attack, defense, detector, optimizer and dataset source.",
    )
    parser.add_argument("-V", "--version", action="version", version=f"hashguard {__version__}",
                        help="print the version and exit")
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
    one_line_usage_errors(parser)
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 2
    try:
        return int(_run_in_world(args) or 0)
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


def _run_in_world(args: argparse.Namespace) -> int:
    """Run the command's handler; under ``torchrun`` (``WORLD_SIZE`` > 1) inside the process group, with the
    standard output of every rank but 0 silenced (errors still reach stderr). ``--precision`` and
    ``--channels-last`` set the forward-pass runtime (:mod:`hashguard.precision`) for the command."""
    from hashguard.distributed import world as worlds
    from hashguard.precision import Runtime, from_environment, set_runtime

    if getattr(args, "precision", None) is not None or getattr(args, "channels_last", None):
        environment = from_environment()
        set_runtime(Runtime(args.precision or environment.precision,
                            bool(args.channels_last) or environment.channels_last))

    current = worlds.start()
    if not current.distributed:
        return args.handler(args)
    import contextlib
    import os

    try:
        with open(os.devnull, "w") as sink, contextlib.ExitStack() as stack:
            if not current.is_main:
                stack.enter_context(contextlib.redirect_stdout(sink))
            result = args.handler(args)
    except BaseException:
        worlds.abandon()
        raise
    worlds.stop()
    return result


def one_line_usage_errors(parser: argparse.ArgumentParser) -> None:
    """Make ``parser`` and its subcommand parsers report a bad argument as one line (``hashguard: error:
    COMMAND: argument --batch-size: must be a positive integer, got '0' (see: hashguard COMMAND --help)``)
    and exit with status 2, instead of the usage block argparse prints before its error line."""
    stack = [parser]
    while stack:
        current = stack.pop()
        current.error = _one_line_error(current)  # type: ignore[method-assign]
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())


def _one_line_error(parser: argparse.ArgumentParser):  # noqa: ANN202 - returns the replacement method
    def error(message: str) -> NoReturn:
        command = parser.prog.split(" ", 1)[1] if " " in parser.prog else ""
        where = f"{command}: " if command else ""
        print(f"hashguard: error: {where}{message} (see: {parser.prog} --help)", file=sys.stderr)
        raise SystemExit(2)

    return error


if __name__ == "__main__":
    sys.exit(main())
