"""``python -m hashguard.activation_codes CHECKPOINT_DIR --out DIR --bits K``: read a trained checkpoint as an
activation-code model (He et al., arXiv 2101.05490) fitted on its training split, and save it as a checkpoint
that ``hashguard evaluate`` and ``hashguard attack`` open like any other."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hashguard.activation_codes.model import VARIANTS
from hashguard.activation_codes.patterns import site_key
from hashguard.errors import HashguardError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hashguard.activation_codes",
        description="Read a trained checkpoint's ReLU pattern as a K-bit hash code (no training) and save it "
        "as a checkpoint for hashguard evaluate / attack.",
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT_DIR", help="trained checkpoint (its data is re-opened)")
    parser.add_argument("--out", required=True, metavar="DIR", help="directory of the activation-code checkpoint")
    parser.add_argument("--bits", type=int, required=True, help="code length K")
    parser.add_argument("--variant", choices=VARIANTS, default="balanced", help="reduction to K bits")
    parser.add_argument(
        "--layer", dest="layers", action="append", type=site_key, metavar="NAME|INDEX",
        help="ReLU site or module of the backbone (repeatable; default: every ReLU site)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random and projection variants")
    parser.add_argument("--corr-weight", type=float, default=1.0, help="weight of the correlation term (balanced)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    from hashguard.activation_codes.checkpoint import build_from_checkpoint

    try:
        model = build_from_checkpoint(
            args.checkpoint, args.out, args.bits, variant=args.variant, layers=args.layers, seed=args.seed,
            corr_weight=args.corr_weight, device=args.device, batch_size=args.batch_size,
        )
    except HashguardError as exc:
        print(f"hashguard: error: {exc}", file=sys.stderr)
        return 2
    code = model.code
    print(
        f"{args.out}: {code.bits}-bit {code.variant} activation code from {len(code.sites)} ReLU sites "
        f"({code.total_units} units, {code.candidates} vary over {code.fit_items} fitting items)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
