"""The SAAT paper's experimental protocol in one place: every constant the ``paper`` presets use.

Sources: X. Yuan, Z. Zhang, X. Wang, L. Wu, "Semantic-Aware Adversarial Training for Reliable Deep Hashing
Retrieval", IEEE TIFS 18:4681-4694, 2023 (Tables I and II, and the authors' public code that produced them),
and the papers of the compared methods (cited per entry). ``docs/protocol.md`` restates every constant as a
table; ``tests/pipeline/test_protocol.py`` checks the resolved configuration of every ``configs/paper`` file
against that table.

The attack registry (:mod:`hashguard.attacks.registry`), the defense defaults
(:mod:`hashguard.defenses.config`) and the training recipe (:mod:`hashguard.config`) read their paper defaults
from here. :func:`departures` compares a resolved study configuration with this protocol and returns one
human sentence per departure (the results card's ``protocol.departures``).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from hashguard.pipeline.study_config import StudyConfig

PROTOCOL_NAME = "paper"

#: mAP@5000 on every dataset (the cut-off of the paper's code), ties broken by (distance, database index)
MAP_TOPK = 5000
TIE_RULE = "stable by (Hamming distance, database index)"

#: Clean training of every hashing method (paper code's recipe): SGD, lr divided by 10 after every
#: floor(epochs / 3) finished epochs, the whole training split, the last epoch kept.
TRAINING: dict[str, Any] = {
    "epochs": 100,
    "batch_size": 32,
    "optimizer": "sgd",
    "lr": 0.01,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "lr_gamma": 0.1,
    "val_fraction": 0.0,
    "select": "last",
}

#: Per-attack budget: eps, iterations, optimizer, step (sign step in pixels, or learning rate of SGD / Adam),
#: random start, alpha schedule, and the reference-specific objective parameters.
ATTACKS: dict[str, dict[str, Any]] = {
    "mainstay": {
        "eps": 8 / 255, "iterations": 100, "optimizer": "pgd", "step": 1 / 255, "random_start": True,
        "alpha_schedule": True, "loss": "masked", "weighting": "cosine",
    },
    "mainstay-targeted": {
        "eps": 8 / 255, "iterations": 100, "optimizer": "pgd", "step": 1 / 255, "random_start": True,
        "alpha_schedule": True, "loss": "masked", "weighting": "cosine",
    },
    "hag": {
        "eps": 8 / 255, "iterations": 2000, "optimizer": "sgd", "step": 100.0, "momentum": 0.9,
        "alpha_schedule": True, "beta": 1.0,
    },
    "sdha": {
        "eps": 8 / 255, "iterations": 1500, "optimizer": "adam", "step": 0.01, "alpha_schedule": True,
        "weight": 25.0, "min_distance": 1e-8, "mse_weight": 1.0,
    },
    "sdha-targeted": {
        "eps": 8 / 255, "iterations": 1500, "optimizer": "adam", "step": 0.01, "alpha_schedule": True,
        "weight": 25.0, "min_distance": 1e-8, "mse_weight": 1.0,
    },
    "dhta": {
        "eps": 0.032, "iterations": 2000, "optimizer": "bim", "step": 1 / 255, "alpha_schedule": True,
        "n_anchors": 9, "replacement": True,
    },
    "p2p": {
        "eps": 0.032, "iterations": 2000, "optimizer": "bim", "step": 1 / 255, "alpha_schedule": True,
        "n_anchors": 1, "replacement": True,
    },
    "tha": {
        "eps": 8 / 255, "iterations": 100, "optimizer": "bim", "step": 1 / 255, "alpha_schedule": True,
        "epochs": 100, "steps": 300, "batch_size": 128, "lr": 1e-4, "hidden": 4096, "gamma": 1.0,
    },
    "prosgan": {
        "proto_epochs": 100, "proto_steps": 300, "proto_batch_size": 64, "proto_lr": 1e-4, "hidden": 4096,
        "epochs": 100, "batch_size": 24, "lr": 1e-4, "hash_weight": 5.0, "project": False,
    },
}

#: ProS-GAN's reconstruction weight per dataset (Wang et al., CVPR 2021); 50 elsewhere (the registry default).
PROSGAN_REC_WEIGHT: dict[str, float] = {"FLICKR-25K": 100.0, "NUS-WIDE": 50.0, "MS-COCO": 50.0}
PROSGAN_REC_WEIGHT_DEFAULT = 50.0

#: Adversarial training (``inner_bn`` / ``inner_dropout``: the inner attack runs in train mode, batch norm on
#: batch statistics and updating its running statistics, dropout on).
_INNER = {"eps": 8 / 255, "step": 2 / 255, "iterations": 7, "random_start": True, "inner_bn": "update",
          "inner_dropout": True, "milestones": [0.5, 0.75], "lr_gamma": 0.1, "batch_size": 32}
DEFENSES: dict[str, dict[str, Any]] = {
    "saat": {
        **_INNER, "epochs": 20, "optimizer": "sgd", "lr": 0.05, "momentum": 0.0, "weight_decay": 1e-5,
        "adv_weight": 1.0, "quant_weight": 1e-4, "augment": False,
    },
    "atrdh": {
        **_INNER, "epochs": 100, "optimizer": "adam", "lr": 1e-4, "betas": (0.5, 0.999), "weight_decay": 0.0,
        "adv_weight": 2.0, "quant_weight": 0.0, "memory_init": "zeros", "augment": False,
        "prototype_hidden": 4096, "prototype_lr": 1e-4, "prototype_gamma": 1.0,
    },
    "cgat": {
        **_INNER, "epochs": 30, "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4,
        "adv_weight": 1.0, "quant_weight": 0.0, "augment": True,
    },
}

#: Settings of a defense that are not protocol constants (bookkeeping) and never count as departures.
_DEFENSE_BOOKKEEPING = frozenset({"defense", "preset", "seed", "checkpoint_every", "num_workers", "progress"})


def prosgan_rec_weight(dataset: str | None) -> float:
    """ProS-GAN's reconstruction weight for ``dataset`` (100 FLICKR-25K, 50 NUS-WIDE / MS-COCO / others)."""
    key = (dataset or "").upper()
    return PROSGAN_REC_WEIGHT.get(key, PROSGAN_REC_WEIGHT_DEFAULT)


def attack_protocol(name: str, dataset: str | None = None) -> dict[str, Any]:
    """The protocol's settings of attack ``name`` (ProS-GAN's reconstruction weight depends on ``dataset``)."""
    settings = dict(ATTACKS[name])
    if name == "prosgan":
        settings["rec_weight"] = prosgan_rec_weight(dataset)
    return settings


def eps_label(eps: float) -> str:
    """``8/255`` for multiples of 1/255 (up to rounding), otherwise the number with 4 significant digits."""
    if eps == 0:
        return "0"
    scaled = eps * 255
    if abs(scaled - round(scaled)) < 1e-6:
        return f"{round(scaled)}/255"
    return f"{eps:.4g}"


def format_value(value: Any) -> str:
    """A protocol value as written in ``docs/protocol.md`` (``8/255`` for multiples of 1/255)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, float):
        scaled = value * 255
        if 0 < value < 1 and abs(scaled - round(scaled)) < 1e-9:
            return f"{round(scaled)}/255"
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value)
    return str(value)


def same(value: Any, reference: Any) -> bool:
    """Whether a resolved value equals a protocol value (floats with a relative tolerance)."""
    if isinstance(reference, bool) or isinstance(value, bool):
        return bool(value) == bool(reference) and isinstance(value, bool) == isinstance(reference, bool)
    if isinstance(reference, (int, float)) and isinstance(value, (int, float)):
        return abs(float(value) - float(reference)) <= 1e-9 * max(1.0, abs(float(reference)))
    if isinstance(reference, (list, tuple)) and isinstance(value, (list, tuple)):
        return len(value) == len(reference) and all(same(v, r) for v, r in zip(value, reference, strict=True))
    if isinstance(reference, str) and isinstance(value, str):
        return value.lower() == reference.lower()
    return bool(value == reference)


def parse_value(text: str) -> Any:
    """Inverse of :func:`format_value` for one cell of ``docs/protocol.md``."""
    text = text.strip().strip("`")
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    if "," in text:
        return [parse_value(part) for part in text.split(",")]
    try:
        number = Fraction(text)
    except (ValueError, ZeroDivisionError):
        return text
    return int(number) if number.denominator == 1 and "." not in text and "e" not in lowered else float(number)


def dataset_key(config: StudyConfig) -> str | None:
    """The dataset's directory name (``FLICKR-25K``, ``NUS-WIDE``, ``MS-COCO``) of a list-file study."""
    root = config.data.root
    return PurePath(root).name.upper() if root else None


def _iteration_range() -> str:
    values = [s["iterations"] for s in ATTACKS.values() if "iterations" in s]
    return f"{min(values)}-{max(values)}"


def _eps_values() -> str:
    values = sorted({s["eps"] for s in ATTACKS.values() if "eps" in s})
    return " or ".join(format_value(v) for v in values)


def _override_departures(override: Any) -> list[str]:
    lines = []
    if override.eps is not None:
        lines.append(f"attacks.override.eps = {format_value(override.eps)} (protocol: each attack's own, "
                     f"{_eps_values()})")
    if override.iterations is not None:
        lines.append(f"attacks.override.iterations = {override.iterations} (protocol: each attack's own, "
                     f"{_iteration_range()})")
    if override.step is not None:
        lines.append(f"attacks.override.step = {format_value(override.step)} (protocol: each attack's own, "
                     "1/255 for sign steps)")
    return lines


def attack_departures(config: StudyConfig) -> list[str]:
    """One line per attack setting of the study that differs from the protocol (overrides once, up front)."""
    from hashguard.attacks.registry import resolve_attack_params

    suite = config.attacks
    dataset = dataset_key(config)
    lines = _override_departures(suite.override)
    overridden = {key for key in ("eps", "iterations", "step") if getattr(suite.override, key) is not None}
    for name in study_attacks(config):
        if name not in ATTACKS:
            lines.append(f"attack {name}: not part of the protocol (a plug-in or an addition)")
            continue
        resolved = resolve_attack_params(name, **suite.params_for(name))
        for key, reference in attack_protocol(name, dataset).items():
            if key in overridden and key in suite.overridden_keys(name):
                continue
            if key not in resolved or same(resolved[key], reference):
                continue
            lines.append(f"{name} {key} = {format_value(resolved[key])} (protocol {format_value(reference)})")
    return lines


def study_attacks(config: StudyConfig) -> list[str]:
    """Every attack the study runs: the suite, the sweep's, the hardened models' and the retrieval grid's."""
    names = [entry.key for entry in config.attacks.suite]
    if config.attacks.sweep.eps:
        names += [name.lower().replace("_", "-") for name in config.attacks.sweep.attacks]
    if config.defenses.run:
        names += config.defense_attacks()
    if config.report.grid_queries > 0:
        names.append(config.report.grid_attack.lower().replace("_", "-"))
    return list(dict.fromkeys(names))


def training_departures(config: StudyConfig) -> list[str]:
    """The clean-training recipe's departures (none when the study loads a ``checkpoint``)."""
    if config.checkpoint is not None:
        return []
    train = config.train
    lines = []
    for key in ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "lr_gamma"):
        value, reference = getattr(train, key), TRAINING[key]
        if key == "momentum" and train.optimizer != "sgd":
            continue
        if not same(value, reference):
            lines.append(f"train.{key} = {format_value(value)} (protocol {format_value(reference)})")
    step = train.decay_step()
    if step != max(train.epochs // 3, 1):
        when = "never decayed" if step is None else f"decayed every {step} epochs"
        lines.append(f"train: learning rate {when} (protocol: / 10 every floor(epochs / 3) epochs)")
    if train.val_fraction > 0:  # without a validation part "select: best" keeps the last epoch anyway
        lines.append(f"train.val_fraction = {format_value(train.val_fraction)}, select {train.select} "
                     "(protocol: whole training split, last epoch)")
    return lines


def defense_departures(name: str, settings: Any) -> list[str]:
    """The departures of one resolved :class:`~hashguard.defenses.config.DefenseConfig` from the protocol."""
    if name not in DEFENSES:
        return [f"defense {name}: not part of the protocol (a plug-in or an addition)"]
    reference = DEFENSES[name]
    lines = []
    if (settings.inner_bn, settings.inner_dropout) != (reference["inner_bn"], reference["inner_dropout"]):
        if settings.inner_bn == "frozen" and not settings.inner_dropout:
            lines.append(f"defense {name}: inner attack in eval mode (protocol: train mode)")
        else:
            lines.append(f"defense {name}: inner attack with inner_bn = {settings.inner_bn}, inner_dropout = "
                         f"{format_value(settings.inner_dropout)} (protocol: train mode, update, true)")
    for key, value in settings.model_dump().items():
        if key in _DEFENSE_BOOKKEEPING or key in ("inner_bn", "inner_dropout"):
            continue
        if key == "train_items":
            if value is not None:
                lines.append(f"defense {name}: train_items = {value} (protocol: the whole training split)")
            continue
        if key == "refresh_bank":
            if not value:
                lines.append(f"defense {name}: refresh_bank = false (protocol true)")
            continue
        if key not in reference:
            continue
        if key == "momentum" and settings.optimizer != "sgd":
            continue
        if key == "betas" and settings.optimizer != "adam":
            continue
        if not same(value, reference[key]):
            lines.append(f"defense {name}: {key} = {format_value(value)} (protocol {format_value(reference[key])})")
    return lines


def departures(config: StudyConfig) -> list[str]:
    """Every departure of a resolved study configuration from the paper protocol, one sentence each."""
    from hashguard.pipeline.study_config import defense_settings

    lines = training_departures(config)
    if config.evaluation.topk != MAP_TOPK:
        shown = "all" if config.evaluation.topk is None else config.evaluation.topk
        lines.append(f"evaluation.topk = {shown} (protocol {MAP_TOPK})")
    if config.attacks.queries is not None:
        lines.append(f"attacks.queries = {config.attacks.queries} (protocol: all queries)")
    lines += attack_departures(config)
    for entry in config.defenses.run:
        lines += defense_departures(entry.name, defense_settings(config, entry)[0])
    return lines


def protocol_card(config: StudyConfig) -> dict[str, Any]:
    """``{"name": ..., "departures": [...]}`` for the results card."""
    return {"name": PROTOCOL_NAME, "departures": departures(config)}
