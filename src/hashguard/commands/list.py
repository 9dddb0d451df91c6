"""``hashguard list``: the registered dataset sources, backbones, methods, optimizers, attacks and defenses.

    hashguard list                    # every kind, one line per entry
    hashguard list attacks -v         # with each entry's parameters, defaults, ranges and presets
    hashguard list methods dpsh       # one entry with its parameters
"""

from __future__ import annotations

import argparse

from hashguard.plugins import KINDS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "list",
        help="list the registered sources, backbones, methods, optimizers, attacks and defenses",
        description="List what this installation can build, with parameters (defaults, ranges) and presets.",
    )
    parser.add_argument("kind", nargs="?", help=f"one of {', '.join(KINDS)} (default: all)")
    parser.add_argument("name", nargs="?", help="one entry of that kind (implies --verbose)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show every parameter and preset")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from hashguard.plugins import registries, registry

    if args.kind is None:
        for kind, entries in registries().items():
            print(f"{kind}:")
            for line in entries.describe(verbose=args.verbose).splitlines():
                print(f"  {line}")
        return 0
    entries = registry(args.kind)
    if args.name is not None:
        print(entries.entry(args.name).describe(verbose=True))
        return 0
    print(entries.describe(verbose=args.verbose))
    return 0
