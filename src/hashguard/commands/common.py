"""Arguments shared by several subcommands."""

from __future__ import annotations

import argparse

from hashguard.config import DataConfig, build_config


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data (default: the dataset the checkpoint was trained on)")
    group.add_argument("--data", metavar="SOURCE", help="dataset source, e.g. demo-mnist, listfile, idx, cifar10")
    group.add_argument("--root", metavar="DIR", help="dataset directory for file-based sources")
    group.add_argument("--image-size", type=int, metavar="PX", help="crop size for list-file images")
    group.add_argument("--data-seed", type=int, default=0, metavar="N", help="seed of the split (default 0)")


def data_config_from_args(args: argparse.Namespace) -> DataConfig | None:
    if args.data is None:
        return None
    return build_config(
        DataConfig,
        {"source": args.data, "root": args.root, "image_size": args.image_size, "seed": args.data_seed},
        "command line",
    )
