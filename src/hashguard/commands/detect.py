"""``hashguard detect``: score the clean and the attacked queries of ``hashguard attack`` results with a query
detector and report its AUROC, TPR at a clean-chosen threshold and the mAP of what it lets through.

    hashguard detect CHECKPOINT_DIR --attack-result DIR [--detector hamming] [--set reference=centers]
                     [--attack mainstay ...] [-k 5000] [--out detection.json] [--json]
"""

from __future__ import annotations

import argparse

from hashguard.commands.common import (
    add_batch_size_argument,
    add_data_arguments,
    add_device_argument,
    add_json_argument,
    add_set_argument,
    add_topk_argument,
    data_config_from_args,
    json_stdout,
    print_json,
)
from hashguard.protocol import MAP_TOPK


def _epilog() -> str:
    from hashguard.detectors import DETECTORS

    return "detectors (settings below each):\n" + "\n".join(
        "  " + line for line in DETECTORS.describe(verbose=True).splitlines()
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="score clean and attacked queries with a query detector (AUROC, TPR at 5%% FPR, let-through mAP)",
        description="Build a query detector on CHECKPOINT_DIR's training codes, choose its threshold on the clean "
        "codes of the attacked queries (at its false-positive rate, --set fpr=0.05) and report, for each attack in "
        "--attack-result, the detection AUROC, the TPR there and the mAP (t-mAP for a targeted attack) of the "
        "adversarial queries it lets through. The model is not changed: a detector rejects queries.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT_DIR", help="the attacked checkpoint")
    parser.add_argument("--attack-result", required=True, metavar="DIR",
                        help="directory written by `hashguard attack --out DIR` ({attack}_codes.npz)")
    parser.add_argument("--detector", default="hamming", help="detector name (hashguard list detectors -v)")
    parser.add_argument("--attack", dest="attacks", action="append", metavar="NAME",
                        help="only this attack's results (repeatable; default: every attack in DIR)")
    add_set_argument(parser, "detector setting (repeatable), e.g. --set reference=centers --set fpr=0.01",
                     dest="params")
    add_topk_argument(parser, MAP_TOPK, f"mAP cut-off (0 = whole ranking; default {MAP_TOPK})")
    add_batch_size_argument(parser, 256, "images per forward pass when encoding (default 256)")
    add_device_argument(parser)
    add_json_argument(parser, "the detection results")
    parser.add_argument("--out", metavar="FILE", help="also write the results (with ROC curves) as JSON here")
    add_data_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from hashguard.commands.attack import parse_params
    from hashguard.io_utils import atomic_write_json
    from hashguard.pipeline.detect import run_detection

    topk = None if args.topk == 0 else args.topk
    with json_stdout(args.json) as stdout:
        report = run_detection(
            args.checkpoint,
            args.attack_result,
            detector=args.detector,
            params=parse_params(args.params),
            attacks=args.attacks,
            topk=topk,
            batch_size=args.batch_size,
            device=args.device,
            data=data_config_from_args(args),
        )
    if args.out:
        atomic_write_json(args.out, report)
    if args.json:
        print_json({**report, "attacks": {k: {x: y for x, y in v.items() if x != "roc"}
                                          for k, v in report["attacks"].items()}}, stdout)
        return 0
    fpr = report["params"].get("fpr", 0.05)
    print(f"{report['detector']} detector ({report['reference_codes']} reference codes), threshold at "
          f"{100 * fpr:g}% FPR on the clean queries:")
    for name, s in report["attacks"].items():
        metric = "t-mAP" if s["targeted"] else "mAP"
        let = "-" if s["let_through_map"] is None else f"{s['let_through_map']:.4f}"
        print(f"  {name}: AUROC {s['auroc']:.3f}, TPR {s['tpr']:.3f} at FPR {s['fpr']:.3f} (threshold "
              f"{s['threshold']:g}); {metric} {s['adversarial_map']:.4f} -> {let} on the {100 * s['let_through']:.0f}% "
              f"let through")
    return 0
