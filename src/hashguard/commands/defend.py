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

from hashguard.commands.common import add_data_arguments, data_config_from_args

_EPILOG = """defenses (protocol recipes: docs/protocol.md):
  saat   SAAT, inner PGD away from the DMFL mainstay code, outer L_hash - lambda<f(x_adv), m> + mu Q
         (Yuan et al., IEEE TIFS 2023); paper recipe: SGD 0.05, 20 epochs, eps 8/255, step 2/255, 7 steps
  atrdh  ATRDH, targeted PGD towards online THA prototypes, pairwise DPH term on adversarial codes
         (Wang et al., SIGIR 2021); paper recipe: Adam 1e-4, 100 epochs, weight 2, U_ben from zeros
  cgat   CgAT, as SAAT with the unweighted centre code (Wang et al., WWW 2023); SGD 0.01, 30 epochs,
         random crop and flip
  every paper recipe runs the inner attack in train mode (inner_bn update, inner_dropout true)

--set keys (DefenseConfig): epochs batch_size optimizer lr momentum betas weight_decay milestones lr_gamma
  eps step iterations random_start inner_bn inner_dropout adv_weight quant_weight refresh_bank augment
  memory_init prototype_hidden prototype_lr prototype_gamma train_items seed checkpoint_every progress
presets: paper (the protocol, default) and demo (CPU recipe for the demo digits: inner attack in eval mode,
  fewer epochs, eps 32/255); --set overrides either.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "defend",
        help="harden a trained checkpoint with adversarial training (saat, atrdh, cgat)",
        description="Adversarially fine-tune CHECKPOINT_DIR and write the hardened checkpoint with its "
        "provenance to --out. Settings: the defense's reference recipe (--preset paper), or the CPU demo "
        "recipe (--preset demo), then --set overrides.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT_DIR", help="trained checkpoint to harden")
    parser.add_argument("--defense", required=True, help="saat, atrdh or cgat")
    parser.add_argument("--out", required=True, metavar="DIR", help="directory for the hardened checkpoint")
    parser.add_argument("--preset", choices=("paper", "demo"), help="recipe to start from (default: paper)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting (repeatable), e.g. --set eps=8/255 --set epochs=5")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default)")
    add_data_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from hashguard.defenses import build_defense_config, defend

    # validate the defense and every setting before anything is loaded or written
    build_defense_config(args.defense, None, args.overrides, args.preset)
    result = defend(
        args.checkpoint,
        args.defense,
        args.out,
        None,
        args.overrides,
        preset=args.preset,
        resume=args.resume,
        device=args.device,
        data=data_config_from_args(args),
    )
    last = result.history[-1] if result.history else {}
    loss = f", final loss {last['loss']:.4f}" if "loss" in last else ""
    print(f"{args.defense.lower()}: {result.epochs_done} epochs{loss}; wrote {result.out_dir}")
    return 0
