"""``hashguard fingerprint``: the functional (or exact-weights) fingerprint of a checkpoint."""

from __future__ import annotations

import argparse

from hashguard.commands.common import add_json_argument, json_stdout, print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fingerprint",
        help="hash of what a checkpoint's model computes (or of its exact weights)",
        description="Print the functional fingerprint of a checkpoint: SHA-256 of its hash-layer logits on a "
        "fixed seeded probe batch (computed in float64 on the CPU, rounded to 16 mantissa bits), its code length "
        "and input shape, and an ADSH checkpoint's database codes V (Gillard et al., 'Unified Functional Hashing "
        "in Automatic Machine Learning', 2023). Re-saved checkpoints, renamed weight keys, a float64 round trip "
        "and device moves keep it; any change of behaviour changes it. The study uses it as the identity of a "
        "model's cached stages (docs/fingerprints.md).",
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT_DIR", help="checkpoint directory to fingerprint")
    parser.add_argument("--strict", action="store_true",
                        help="hash the exact weights instead (SHA-256 of every state-dict tensor's name, dtype, "
                        "shape and bytes): any changed bit changes it")
    add_json_argument(parser, "the fingerprint and what it covers")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from hashguard.pipeline.fingerprint import checkpoint_fingerprint

    with json_stdout(args.json) as stdout:
        found = checkpoint_fingerprint(args.checkpoint, strict=args.strict)
    if args.json:
        print_json({"checkpoint": str(args.checkpoint), **found.to_dict()}, stdout)
        return 0
    channels, height, width = found.input_shape
    print(f"{found.mode} fingerprint of {args.checkpoint}: {found.digest}")
    if found.mode == "functional":
        details = found.details
        print(f"  {found.bits} bits, input {channels}x{height}x{width}; logits of {details['probes']} probes "
              f"(seed {details['probe_seed']}) rounded to {details['mantissa_bits']} mantissa bits, computed in "
              f"{details['computed_in']}")
    else:
        print(f"  {found.bits} bits, input {channels}x{height}x{width}; {found.details['tensors']} state-dict "
              f"tensors, exact bytes")
    if found.details.get("includes"):
        print(f"  also hashed: {', '.join(found.details['includes'])} (the ADSH database codes V)")
    return 0
