"""``hashguard defend``: adversarially fine-tune a trained checkpoint with SAAT, ATRDH or CgAT.

    hashguard defend CHECKPOINT_DIR --defense saat --out runs/x/saat [--preset demo]
                     [--set eps=8/255 --set epochs=5] [--resume] [--device auto]

A thin layer over :func:`hashguard.defenses.defend`: the hardened checkpoint (``model.safetensors`` +
``model.json`` with the ``defense`` provenance: base checkpoint and its SHA-256, defense, paper, full
configuration, history) goes to ``--out``; per-epoch training states go to ``--out/checkpoints`` so that
``--resume`` continues an interrupted run. Defenses (docs/protocol.md): ``saat`` (Yuan et al., IEEE TIFS 2023),
``atrdh`` (Wang et al., SIGIR 2021), ``cgat`` (Wang et al., WWW 2023).
"""

from __future__ import annotations

import argparse

from hashguard.commands.common import (
    add_batch_size_argument,
    add_data_arguments,
    add_device_argument,
    add_set_argument,
    data_config_from_args,
)


def _epilog() -> str:
    """The registered defenses with their own settings, the shared --set keys and the presets."""
    from hashguard.defenses import DEFENSES
    from hashguard.defenses.config import SHARED_SETTINGS

    shared = " ".join(SHARED_SETTINGS)
    presets = sorted({name for name in DEFENSES for name in DEFENSES.entry(name).presets})
    return (
        "defenses (own settings below each; protocol recipes: docs/protocol.md):\n"
        + "\n".join("  " + line for line in DEFENSES.describe(verbose=True).splitlines() if " preset " not in line)
        + "\n\n--set keys every defense shares (DefenseConfig): " + shared
        + "\npresets: " + ", ".join(presets) + " (paper: the protocol recipe, default; demo: the CPU recipe for the "
        "demo digits, inner attack in eval mode, fewer epochs, eps 32/255); --set overrides either.\n"
        "every paper recipe runs the inner attack in train mode (inner_bn update, inner_dropout true)\n"
        "query detectors (hamming) change no weight: they are run by `hashguard detect` (docs/detection.md)"
    )


def refuse_detector(name: str) -> None:
    """A query detector named as a defense (``--defense hamming-detector``): one line pointing to ``hashguard
    detect``. A detector after HashVFL (Qiu et al., IEEE TIFS 2024) rejects queries and trains no model."""
    from hashguard.defenses import DEFENSES
    from hashguard.detectors import DETECTORS
    from hashguard.errors import ConfigError

    if name in DEFENSES or name not in DETECTORS:
        return  # a defense, or neither (the defense registry's own message follows)
    detector = DETECTORS.key(name)
    raise ConfigError(
        f"{name!r} is a query detector, not a defense (it changes no weight, it rejects queries): run "
        f"`hashguard detect CHECKPOINT_DIR --attack-result DIR --detector {detector}` (docs/detection.md)"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "defend",
        help="harden a trained checkpoint with adversarial training (SAAT, ATRDH, CgAT, ...)",
        description="Adversarially fine-tune CHECKPOINT_DIR and write the hardened checkpoint with its "
        "provenance to --out. Settings: the defense's reference recipe (--preset paper), or the CPU demo "
        "recipe (--preset demo), then --set overrides.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT_DIR", help="trained checkpoint to harden")
    parser.add_argument("--defense", required=True, help="a registered defense (listed below)")
    parser.add_argument("--out", required=True, metavar="DIR", help="directory for the hardened checkpoint")
    parser.add_argument("--preset", help="recipe to start from: paper (default) or demo")
    add_set_argument(parser, "override a setting (repeatable), e.g. --set eps=8/255 --set epochs=5")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    add_batch_size_argument(parser, None, "training batch size (same as --set batch_size=N; default: the preset's)")
    add_device_argument(parser)
    add_data_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from hashguard.defenses import build_defense_config, defend

    overrides = list(args.overrides)
    if args.batch_size is not None:
        overrides.append(f"batch_size={args.batch_size}")
    # validate the defense and every setting before anything is loaded or written
    refuse_detector(args.defense)
    build_defense_config(args.defense, None, overrides, args.preset)
    result = defend(
        args.checkpoint,
        args.defense,
        args.out,
        None,
        overrides,
        preset=args.preset,
        resume=args.resume,
        device=args.device,
        data=data_config_from_args(args),
    )
    last = result.history[-1] if result.history else {}
    loss = f", final loss {last['loss']:.4f}" if "loss" in last else ""
    print(f"{args.defense.lower()}: {result.epochs_done} epochs{loss}; wrote {result.out_dir}")
    return 0
