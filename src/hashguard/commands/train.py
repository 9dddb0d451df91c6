"""``hashguard train``: train a hashing model from a YAML config plus overrides."""

from __future__ import annotations

import argparse
from pathlib import Path

from hashguard.commands.common import add_batch_size_argument, add_device_argument, add_set_argument
from hashguard.config import load_experiment_config
from hashguard.pipeline.train import CONFIG_FILE, run_training


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a deep hashing model",
        description="Train a deep hashing model. Settings come from --config (a training configuration: data, "
        "model, method, train, seed, device; e.g. configs/train-demo.yaml) and --set overrides, e.g. "
        "--set train.epochs=3 --set method.name=dph. Without --config: the CPU demo recipe of "
        "configs/train-demo.yaml (CSQ on the small CNN, the embedded demo digits). --resume without --config "
        "continues the run in --out with the configuration stored there (--out/config.yaml).",
    )
    parser.add_argument("--config", metavar="YAML",
                        help="training configuration (default: the demo recipe of configs/train-demo.yaml; "
                        "with --resume: the run's own --out/config.yaml)")
    add_set_argument(parser, "override a configuration value (repeatable), e.g. --set train.epochs=3")
    parser.add_argument("--out", required=True, metavar="DIR", help="run directory (checkpoint goes here)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    add_batch_size_argument(parser, None, "training batch size (same as --set train.batch_size=N)")
    add_device_argument(parser, None, "default: the config's device, auto (same as --set device=D)")
    parser.add_argument("--label-budget", metavar="B",
                        help="scarce labels: keep only B training labels, a count (100), a fraction (0.05) or a "
                        "percentage (5%%), and label the rest by propagation (same as --set labels.budget=B; "
                        "docs/labeling.md)")
    parser.add_argument("--label-selection", choices=("representative", "random"),
                        help="which items keep their labels under --label-budget: representative (default) or "
                        "random (same as --set labels.selection=S)")
    parser.set_defaults(handler=run)


def overrides_of(args: argparse.Namespace) -> list[str]:
    """The --set overrides followed by the shortcut flags, which win."""
    overrides = list(args.overrides)
    if args.batch_size is not None:
        overrides.append(f"train.batch_size={args.batch_size}")
    if args.device is not None:
        overrides.append(f"device={args.device}")
    if args.label_budget is not None:
        overrides.append(f"labels.budget={args.label_budget}")
    if args.label_selection is not None:
        overrides.append(f"labels.selection={args.label_selection}")
    return overrides


def run(args: argparse.Namespace) -> int:
    stored = Path(args.out) / CONFIG_FILE
    if args.resume and args.config is None and stored.is_file():
        # the run's own configuration; --set may still change what does not alter the result (e.g. progress)
        config = load_experiment_config(stored, overrides_of(args))
    else:
        config = load_experiment_config(args.config, overrides_of(args), default=True)
    run_training(config, args.out, resume=args.resume)
    return 0
