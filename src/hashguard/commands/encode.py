"""``hashguard encode``: write the +-1 codes and labels of one split."""

from __future__ import annotations

import argparse

from hashguard.commands.common import add_data_arguments, data_config_from_args
from hashguard.pipeline.encode import encode_split


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("encode", help="encode a dataset split into binary codes")
    parser.add_argument("checkpoint", metavar="CHECKPOINT_DIR")
    parser.add_argument("--split", default="database", choices=["train", "query", "test", "database"])
    parser.add_argument("--out", required=True, metavar="CODES.npz")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=256)
    add_data_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    codes, _ = encode_split(
        args.checkpoint, args.split, args.out, data=data_config_from_args(args), device=args.device,
        batch_size=args.batch_size,
    )
    print(f"wrote {codes.shape[0]} codes of {codes.shape[1]} bits to {args.out}")
    return 0
