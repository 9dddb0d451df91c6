"""``hashguard list``: the registered dataset sources, backbones, code heads, methods, optimizers, attacks, defenses and
detectors.

    hashguard list                    # every kind, one line per entry (name, summary, paper)
    hashguard list attacks -v         # with each entry's parameters, defaults, ranges and presets
    hashguard list methods dpsh       # the entries matching a pattern, with their parameters
    hashguard list attacks '*-targeted'   # a glob; a plain word matches as a substring
    hashguard list datasets           # datasets is an alias of sources
    hashguard list --json             # the same as JSON
"""

from __future__ import annotations

import argparse
from typing import Any

from hashguard.commands.common import add_json_argument, print_json
from hashguard.errors import ConfigError
from hashguard.plugins import KINDS
from hashguard.registry import Entry, Registry


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "list",
        help="list the registered sources, backbones, code heads, methods, optimizers, attacks, defenses and detectors",
        description="List what this installation can build, with parameters (defaults, ranges), presets and "
        "the paper of each entry. KIND is one of " + ", ".join(KINDS) + " (datasets = sources; default: all); "
        "PATTERN keeps the entries whose name matches (a glob such as '*pgd*', or a substring) and shows "
        "their parameters. A PATTERN alone (no KIND) searches every kind.",
    )
    parser.add_argument("kind", nargs="?", metavar="KIND",
                        help=f"one of {', '.join(KINDS)} or datasets (default: every kind)")
    parser.add_argument("pattern", nargs="?", metavar="PATTERN",
                        help="glob or substring of entry names; shows each match's parameters (implies -v)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show every parameter and preset")
    add_json_argument(parser, "the entries with their parameters")
    parser.set_defaults(handler=run)


def select(kind: str | None, pattern: str | None) -> tuple[dict[str, list[Entry[Any]]], bool]:
    """``({kind: [matching entries]}, whether a pattern filtered them)``. A pattern that is an entry's exact name
    (or alias) selects that entry alone. An unknown kind, or a pattern that matches nothing, is one
    :class:`ConfigError` line."""
    from hashguard.api import plugin_registries

    if kind is not None and kind.lower() in ("all", "*"):
        kind = None
    if kind is not None:
        try:
            chosen: dict[str, Registry[Any]] = plugin_registries(kind)
        except ConfigError:
            if pattern is not None:
                raise
            # `hashguard list dpsh`: a lone word that is no kind is a pattern over every kind
            found = _filter(plugin_registries(), kind)
            if not found:
                raise
            return found, True
    else:
        chosen = plugin_registries()
    if pattern is None:
        return {key: list(entries.values()) for key, entries in chosen.items()}, False
    found = _filter(chosen, pattern)
    if not found:
        names = ", ".join(name for entries in chosen.values() for name in entries)
        raise ConfigError(f"no {' or '.join(chosen)} match {pattern!r}; the names are: {names}")
    return found, True


def _filter(chosen: dict[str, Registry[Any]], pattern: str) -> dict[str, list[Entry[Any]]]:
    """The entries named ``pattern`` exactly (name or alias), or else those whose name or an alias matches it."""
    from hashguard.api import matches

    def names(entry: Entry[Any]) -> tuple[str, ...]:
        return (entry.name, *entry.aliases)

    exact = {key: [e for e in entries.values() if pattern.lower() in names(e)] for key, entries in chosen.items()}
    if not any(exact.values()):
        exact = {
            key: [e for e in entries.values() if any(matches(n, pattern) for n in names(e))]
            for key, entries in chosen.items()
        }
    return {key: entries for key, entries in exact.items() if entries}


def entry_json(entry: Entry[Any]) -> dict[str, Any]:
    """One entry as JSON: name, summary, paper, aliases, parameters (default, type, range, help), presets."""
    return {
        "name": entry.name,
        "summary": entry.summary,
        "reference": entry.reference,
        "aliases": list(entry.aliases),
        "parameters": [
            {
                "name": p.name,
                "type": p.kind.__name__,
                "default": p.default,
                "low": p.low,
                "high": p.high,
                "choices": None if p.choices is None else list(p.choices),
                "help": p.help,
            }
            for p in entry.parameters()
        ],
        "presets": entry.presets,
    }


def run(args: argparse.Namespace) -> int:
    found, filtered = select(args.kind, args.pattern)
    if args.json:
        print_json({key: [entry_json(entry) for entry in entries] for key, entries in found.items()})
        return 0
    verbose = args.verbose or filtered
    one_kind = args.kind is not None and args.kind.lower() not in ("all", "*") and (args.pattern or not filtered)
    if one_kind:  # `list methods`, `list methods dpsh`: no heading
        print("\n".join(entry.describe(verbose=verbose) for entries in found.values() for entry in entries))
        return 0
    for key, entries in found.items():
        print(f"{key}:")
        for entry in entries:
            for line in entry.describe(verbose=verbose).splitlines():
                print(f"  {line}")
    return 0
