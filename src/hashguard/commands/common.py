"""Arguments shared by several subcommands: one spelling, one meaning and one help text for each.

The vocabulary every subcommand uses (old spellings stay as hidden aliases):

* ``--set KEY=VALUE``  override a setting (repeatable); ``attack`` also takes ``--param``;
* ``-k/--topk K``      the cut-off: mAP@K for ``evaluate``/``attack``/``study``, K neighbours for ``search query``;
* ``--queries N``      only the first N queries (``--limit`` is an alias);
* ``--device D``       cpu, cuda, cuda:N, mps or auto, on every command that runs a model;
* ``--batch-size N``   images per forward pass;
* ``--json``           machine-readable JSON on stdout and nothing else there (messages go to stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from hashguard.config import DataConfig, build_config

DEVICE_HELP = "cpu, cuda, cuda:N, mps or auto (CUDA, then MPS, then CPU)"


def positive_int(text: str) -> int:
    """An integer >= 1 (an argparse type: anything else is one usage line and exit status 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def cutoff(text: str) -> int:
    """An integer >= 0 (0 = the whole ranking)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be positive, or 0 for the whole ranking, got {text!r}")
    return value


def add_set_argument(parser: argparse.ArgumentParser, help: str, dest: str = "overrides") -> None:
    """``--set KEY=VALUE`` (repeatable) collected in ``args.<dest>``."""
    parser.add_argument("--set", dest=dest, action="append", default=[], metavar="KEY=VALUE", help=help)


def add_topk_argument(parser: argparse.ArgumentParser, default: int | None, help: str, zero: bool = True) -> None:
    """``-k/--topk K``: the cut-off (``zero``: 0 means the whole ranking)."""
    parser.add_argument("-k", "--topk", type=cutoff if zero else positive_int, default=default, metavar="K", help=help)


def add_queries_argument(parser: argparse.ArgumentParser, help: str = "use only the first N queries") -> None:
    """``--queries N`` with the hidden alias ``--limit N``."""
    parser.add_argument("--queries", type=positive_int, default=None, metavar="N", help=f"{help} (alias: --limit)")
    parser.add_argument("--limit", dest="queries", type=positive_int, help=argparse.SUPPRESS)


def add_device_argument(parser: argparse.ArgumentParser, default: str | None = "auto", note: str = "") -> None:
    """``--device D``."""
    shown = f"default: {default}" if default else note
    parser.add_argument("--device", default=default, metavar="DEVICE", help=f"{DEVICE_HELP}; {shown}")
    parser.add_argument("--precision", choices=("float32", "bf16"), default=None,
                        help="forward passes in float32 (default) or bfloat16 mixed precision (torch.autocast; "
                        "for accelerators; codes may differ in a few bits; default: HASHGUARD_PRECISION or float32)")
    parser.add_argument("--channels-last", action="store_true", default=None,
                        help="channels-last memory format for images and convolution weights (for accelerators)")


def add_batch_size_argument(parser: argparse.ArgumentParser, default: int | None, help: str) -> None:
    """``--batch-size N`` (a positive integer)."""
    parser.add_argument("--batch-size", type=positive_int, default=default, metavar="N", help=help)


def add_json_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """``--json``: print ``what`` as JSON on stdout, nothing else there."""
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON on stdout (messages go to stderr)")


@contextlib.contextmanager
def json_stdout(enabled: bool) -> Iterator[TextIO]:
    """Yield the real stdout; while ``enabled`` (``--json``) anything else printed goes to stderr, so stdout
    holds only the JSON document."""
    real = sys.stdout
    if not enabled:
        yield real
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield real


def print_json(payload: Any, stream: TextIO | None = None) -> None:
    """``payload`` as one JSON document (non-JSON values written as strings) and a newline."""
    stream = stream or sys.stdout
    json.dump(payload, stream, indent=2, default=str)
    stream.write("\n")
    stream.flush()


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data (default: the dataset the checkpoint was trained on)")
    group.add_argument("--data", metavar="SOURCE", help="dataset source, e.g. demo-mnist, listfile, idx, cifar10")
    group.add_argument("--root", metavar="DIR", help="dataset directory for file-based sources")
    group.add_argument("--image-size", type=positive_int, metavar="PX", help="crop size for list-file images")
    group.add_argument("--data-seed", type=int, default=0, metavar="N", help="seed of the split (default 0)")


def data_config_from_args(args: argparse.Namespace) -> DataConfig | None:
    if args.data is None:
        return None
    return build_config(
        DataConfig,
        {"source": args.data, "root": args.root, "image_size": args.image_size, "seed": args.data_seed},
        "command line",
    )
