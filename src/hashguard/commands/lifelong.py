"""``hashguard lifelong``: the next session of lifelong hashing (new classes, the stored codes untouched).

    hashguard lifelong --classes 0-6 --out runs/s0 [--preset demo] [--data demo-mnist]      # session 0: ADSH
    hashguard lifelong --from runs/s0 --classes 7,8,9 --out runs/s1 [--preset demo] [--saat] # session 1, 2, ...

A thin layer over :mod:`hashguard.lifelong` (docs/lifelong.md): Wu et al., CVPR 2019 (DIHN) and Xu et al., IEEE
TCSVT 2024 (DLCH), image-only, on ADSH (Jiang and Li, AAAI 2018); ``--saat`` adds SAAT's adversarial term (Yuan
et al., IEEE TIFS 2023).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from hashguard.commands.common import (
    add_batch_size_argument,
    add_data_arguments,
    add_device_argument,
    add_json_argument,
    add_queries_argument,
    add_set_argument,
    add_topk_argument,
    data_config_from_args,
    json_stdout,
    print_json,
)

if TYPE_CHECKING:
    from hashguard.lifelong import LifelongConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "lifelong",
        help="add new classes to a hashing database without changing its stored codes (lifelong hashing)",
        description="Run the next lifelong-hashing session into --out. With --from (an ADSH checkpoint trained "
        "with protocol adsh, or a previous session directory): the training items of --classes get codes learned "
        "against the stored ones, which stay bit-identical, and the query network is fine-tuned. Without --from: "
        "session 0, ADSH trained from scratch on the training items of --classes of --data. Then the old-class "
        "and new-class queries are ranked against the whole store. Settings: --preset paper (the DIHN recipe) or "
        "demo (CPU), then --set KEY=VALUE (epochs, inner_epochs, num_samples, sample_from, lr, lr_decay, gamma, mu, "
        "similarity, balance, items, saat_weight, eps, step, iterations, bits, ...; docs/lifelong.md).",
    )
    parser.add_argument("--from", dest="base", metavar="DIR",
                        help="ADSH checkpoint (protocol adsh) or previous session directory; omit for session 0")
    parser.add_argument("--classes", metavar="LIST",
                        help="the session's classes: indices and ranges, e.g. 7,8,9 or 0-6")
    parser.add_argument("--classes-file", metavar="FILE",
                        help="the session's classes from a file (one index or range per line, or comma-separated)")
    parser.add_argument("--out", required=True, metavar="DIR", help="the session directory to write")
    parser.add_argument("--config", metavar="FILE",
                        help="YAML file of session settings (the keys of --set, and optionally classes and data); "
                             "e.g. configs/lifelong/demo-session.yaml; --set and the flags override it")
    parser.add_argument("--preset", choices=("paper", "demo"), default=None,
                        help="recipe to start from: paper (DIHN: gamma 200, mu 50, m 2000, Adam 1e-4; default) or demo")
    add_set_argument(parser, "override a setting (repeatable), e.g. --set epochs=4 --set sample_from=new")
    parser.add_argument("--saat", action="store_true", help="add SAAT's adversarial term (same as --set saat=true)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted session in --out")
    add_topk_argument(parser, 0, "mAP@k cut-off of the session's evaluation (0 = whole ranking; default 0)")
    add_queries_argument(parser, "evaluate only the first N old-class and N new-class queries (default: all)")
    add_batch_size_argument(parser, None, "training batch size (same as --set batch_size=N)")
    add_device_argument(parser)
    add_json_argument(parser, "the session record")
    add_data_arguments(parser)
    parser.set_defaults(handler=run)


def settings_of(args: argparse.Namespace) -> LifelongConfig:
    """The session's settings: the preset, then --set, then the shortcut flags."""
    from hashguard.config import build_config, parse_override
    from hashguard.errors import ConfigError
    from hashguard.lifelong import LifelongConfig

    values: dict = dict(config_file(args).get("settings") or {})
    for text in args.overrides:
        keys, value = parse_override(text)
        if len(keys) != 1:
            raise ConfigError(f"--set {text}: lifelong settings are plain keys (e.g. epochs=4)")
        values[keys[0]] = value
    if args.preset is not None:
        values["preset"] = args.preset
    if args.saat:
        values["saat"] = True
    if args.batch_size is not None:
        values["batch_size"] = args.batch_size
    return build_config(LifelongConfig, values, "lifelong settings")


def config_file(args: argparse.Namespace) -> dict:
    """The ``--config`` file: a mapping with optional ``settings`` (lifelong settings), ``classes`` (as for
    --classes) and ``data`` (a data section as in the training configurations); {} without the option."""
    from hashguard.errors import ConfigError

    path = getattr(args, "config", None)
    if path is None:
        return {}
    import yaml

    try:
        payload = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the lifelong configuration ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(payload, dict):
        raise ConfigError(f"{path}: a lifelong configuration is a mapping with settings, classes and data")
    unknown = sorted(set(payload) - {"settings", "classes", "data"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; a lifelong configuration has settings, "
                          "classes and data")
    if not isinstance(payload.get("settings") or {}, dict):
        raise ConfigError(f"{path}: settings must be a mapping of lifelong settings")
    return payload


def classes_of(args: argparse.Namespace) -> list[int]:
    from hashguard.errors import ConfigError
    from hashguard.lifelong.classes import parse_classes, read_classes_file

    from_file = config_file(args).get("classes")
    if args.classes is None and args.classes_file is None and from_file is not None:
        return parse_classes(str(from_file))
    if (args.classes is None) == (args.classes_file is None):
        raise ConfigError("name the session's classes with exactly one of --classes and --classes-file")
    return parse_classes(args.classes) if args.classes is not None else read_classes_file(args.classes_file)


def run(args: argparse.Namespace) -> int:
    from hashguard.config import DataConfig, build_config
    from hashguard.lifelong import run_session, train_base

    config = settings_of(args)
    classes = classes_of(args)
    evaluation = {"topk": None if args.topk == 0 else args.topk, "limit": args.queries}
    with json_stdout(args.json) as stdout:
        if args.base is None:
            from_file = config_file(args).get("data") or {}
            data = data_config_from_args(args) or build_config(DataConfig, from_file, "lifelong data")
            record = train_base(data, classes, args.out, config, device=args.device, resume=args.resume,
                                evaluation=evaluation)
        else:
            record = run_session(args.base, classes, args.out, config, device=args.device,
                                 data=data_config_from_args(args), resume=args.resume, evaluation=evaluation)
    if args.json:
        print_json(record, stdout)
        return 0
    scores = record.get("evaluation") or {}
    cut = "all" if args.topk == 0 else args.topk
    groups = ", ".join(f"{name}-class queries ({scores[name]['queries']}) mAP@{cut} {scores[name]['map']:.4f}"
                       for name in ("old", "new") if name in scores and "map" in scores[name])
    print(f"session {record['session']}: classes {record['session_classes'][-1]}, {record['new_items']} new codes, "
          f"{record['items']} in the store ({record['training_seconds']:.1f} s training); {groups}")
    print(f"wrote {args.out}")
    return 0
