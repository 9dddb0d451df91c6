"""``hashguard encode``: write the +-1 codes and labels of one split."""

from __future__ import annotations

import argparse

from hashguard.commands.common import (
    add_batch_size_argument,
    add_data_arguments,
    add_device_argument,
    data_config_from_args,
)
from hashguard.pipeline.encode import NETWORK, encode_split


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "encode",
        help="encode a dataset split into binary codes",
        description="Encode one split of the checkpoint's dataset (or of --data) into +-1 codes and labels, "
        "written as a .npz code file for `hashguard search` and `hashguard evaluate --query-codes/--db-codes`. "
        "For an ADSH checkpoint under its own protocol the database split is the training pool and its codes are "
        "the learned codes V stored beside the model (written as they are); queries are encoded by the network.",
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT_DIR", help="trained checkpoint whose codes to compute")
    parser.add_argument("--split", default="database", choices=["train", "query", "test", "database"],
                        help="which split to encode (test = query; default: database)")
    parser.add_argument("--out", required=True, metavar="CODES.npz", help="code file to write")
    add_batch_size_argument(parser, 256, "images encoded per batch (default 256)")
    add_device_argument(parser)
    add_data_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    codes, _, source = encode_split(
        args.checkpoint, args.split, args.out, data=data_config_from_args(args), device=args.device,
        batch_size=args.batch_size,
    )
    what = "the network's codes" if source == NETWORK else f"the {source}, not the network's encoding"
    print(f"wrote {codes.shape[0]} codes of {codes.shape[1]} bits to {args.out} ({args.split} split: {what})")
    return 0
