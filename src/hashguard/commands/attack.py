"""``hashguard attack``: attack the query split of a checkpoint's dataset and write codes plus a JSON result.

Parses the arguments and calls :func:`hashguard.pipeline.attack.run_attack`, which writes
``{out}/{attack}_codes.npz``, ``{out}/{attack}_result.json`` and, for targeted attacks without ``--targets``,
``{out}/target_labels.json``.
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from typing import Any

from hashguard.attacks import describe_attacks
from hashguard.commands.common import (
    add_batch_size_argument,
    add_data_arguments,
    add_device_argument,
    add_json_argument,
    add_queries_argument,
    add_topk_argument,
    data_config_from_args,
    json_stdout,
    print_json,
)
from hashguard.errors import ConfigError
from hashguard.pipeline.attack import run_attack
from hashguard.protocol import MAP_TOPK


def parse_number(text: str) -> float:
    """A float, also written as a fraction such as 8/255."""
    try:
        return float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"not a number: {text!r} (use e.g. 0.0314 or 8/255)") from None


def parse_params(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values stay strings unless numeric (the attack registry validates them)."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key = key.strip().replace("-", "_")
        value = value.strip()
        try:
            params[key] = int(value)
        except ValueError:
            try:
                params[key] = parse_number(value) if any(c.isdigit() for c in value) else value
            except ConfigError:
                params[key] = value
    return params


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "attack",
        help="attack the query split with a registered attack; write adversarial codes and a JSON result",
        epilog="attacks:\n" + describe_attacks(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT_DIR", help="trained checkpoint to attack")
    parser.add_argument("--attack", required=True, help="attack name (see below; hashguard list attacks -v)")
    parser.add_argument("--out", required=True, metavar="DIR", help="directory for codes and result")
    parser.add_argument("--eps", help="L-inf radius in [0, 1], e.g. 8/255 (default: the attack's)")
    parser.add_argument("--iterations", type=int, help="optimizer iterations (default: the attack's)")
    parser.add_argument("--step", help="step size / learning rate (default: the attack's)")
    parser.add_argument("--optimizer", help="pgd, bim, mi, ni, sini, vmi, di, sgd or adam (default: the attack's)")
    parser.add_argument(
        "--set",
        dest="params",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="further attack parameter (repeatable), e.g. --set n_anchors=9 (alias: --param)",
    )
    parser.add_argument("--param", dest="params", action="append", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help="attack seed (default 0)")
    parser.add_argument("--targets", metavar="FILE", help="target-label file to reuse (targeted attacks)")
    parser.add_argument("--target-seed", type=int, default=0, help="seed when target labels are created (default 0)")
    add_queries_argument(parser, "attack only the first N queries (default: all)")
    add_topk_argument(parser, MAP_TOPK, f"mAP cut-off (0 = whole ranking; default {MAP_TOPK}, the paper protocol's)")
    add_batch_size_argument(parser, 128, "queries attacked per batch (default 128)")
    add_device_argument(parser)
    add_json_argument(parser, "the result (the content of {attack}_result.json)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace this attack's results in --out (otherwise a second run of it there is refused)")
    add_data_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    params = parse_params(args.params)
    if args.eps is not None:
        params["eps"] = parse_number(args.eps)
    if args.step is not None:
        params["step"] = parse_number(args.step)
    if args.iterations is not None:
        params["iterations"] = args.iterations
    if args.optimizer is not None:
        params["optimizer"] = args.optimizer
    params["seed"] = args.seed
    topk = None if args.topk == 0 else args.topk
    with json_stdout(args.json) as stdout:
        result = run_attack(
            args.checkpoint,
            args.attack,
            args.out,
            params=params,
            targets=args.targets,
            target_seed=args.target_seed,
            limit=args.queries,
            topk=topk,
            batch_size=args.batch_size,
            device=args.device,
            data=data_config_from_args(args),
            overwrite=args.overwrite,
        )
    if args.json:
        print_json(result, stdout)
        return 0
    cut = "all" if topk is None else topk
    metric = f"t-mAP@{cut}" if result["targeted"] else f"mAP@{cut}"
    before = result["clean_tmap"] if result["targeted"] else result["clean_map"]
    after = result["adv_tmap"] if result["targeted"] else result["adv_map"]
    source = " (mainstay codes from the learned database codes V)" if (
        result.get("params", {}).get("mainstay_from") == "database") else ""
    print(
        f"{result['attack']}{source}: {metric} {before:.4f} -> {after:.4f} on {result['num_queries']} queries "
        f"(L-inf {result['perceptibility']['linf']:.4f}, {result['wall_time_s']:.1f} s); wrote {args.out}"
    )
    return 0
