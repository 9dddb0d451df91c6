"""Tolerant read access to a study's results card (``results.json``, format ``hashguard-study/1``).

A partial study may lack any field; every accessor here returns ``None`` or an empty container instead of
raising, so the report can leave out what is missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hashguard.report.formatting import as_float

#: Display names of the attacks and defenses, as the plug-ins declare them: read from the card's ``names``
#: (written by the study from the registries) by :func:`use_card_names`; a name the card does not list is shown
#: as it is.
_DISPLAY: dict[str, str] = {}
#: The defenses in the order the card lists them (the registry's), after the undefended model.
_MODEL_ORDER: list[str] = ["undefended", "original"]


def use_card_names(card: Mapping[str, Any]) -> None:
    """Take the display names and the model order from ``card["names"]`` (absent in old cards: raw names)."""
    _DISPLAY.clear()
    del _MODEL_ORDER[2:]
    for kind in ("attacks", "defenses"):
        for pair in dig(card, "names", kind) or []:
            if isinstance(pair, Sequence) and not isinstance(pair, str) and len(pair) == 2:
                _DISPLAY[str(pair[0])] = str(pair[1])
                if kind == "defenses":
                    _MODEL_ORDER.append(str(pair[0]))


def display_name(name: str) -> str:
    """The name shown in tables and legends for an attack or a defense ``name``."""
    return _DISPLAY.get(name, name)


#: Canonical order of attacks (the paper's Table I: competitors first, the mainstay attack last) and of models.
ATTACK_ORDER = (
    "hag", "sdha", "mainstay", "p2p", "dhta", "prosgan", "pros-gan", "tha", "sdha-targeted", "mainstay-targeted"
)


def _canonical(names: Sequence[str], order: Sequence[str]) -> list[str]:
    """``names`` with the known ones first, in ``order``, then the others as they came (JSON may sort keys)."""
    known = [n for n in order if n in names]
    return known + [n for n in names if n not in order]


def dig(mapping: Any, *keys: str | int) -> Any:
    """``mapping[k1][k2]...``, or ``None`` as soon as a level is missing or of the wrong type."""
    current = mapping
    for key in keys:
        if isinstance(key, int):
            if not isinstance(current, Sequence) or isinstance(current, str) or not -len(current) <= key < len(current):
                return None
            current = current[key]
        else:
            if not isinstance(current, Mapping) or key not in current:
                return None
            current = current[key]
    return current


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a mapping, else an empty dict."""
    return dict(value) if isinstance(value, Mapping) else {}


def attack_display_name(name: str) -> str:
    """The name shown in tables and legends for attack ``name``."""
    return display_name(name)


@dataclass(frozen=True)
class Curve:
    """A curve ready to plot: matching x and y lists of finite numbers."""

    x: list[float]
    y: list[float]


def read_curve(value: Any, x_key: str, y_key: str) -> Curve | None:
    """The curve ``value[x_key]`` vs ``value[y_key]``; pairs with a missing coordinate are dropped."""
    xs, ys = dig(value, x_key), dig(value, y_key)
    if not isinstance(xs, Sequence) or not isinstance(ys, Sequence) or isinstance(xs, str) or isinstance(ys, str):
        return None
    points = [(as_float(x), as_float(y)) for x, y in zip(xs, ys, strict=False)]
    points = [(x, y) for x, y in points if x is not None and y is not None]
    if not points:
        return None
    return Curve([p[0] for p in points], [p[1] for p in points])


@dataclass(frozen=True)
class AttackEntry:
    """One attack against one model, as stored in the card."""

    name: str
    raw: dict[str, Any]

    @property
    def display(self) -> str:
        """The attack's display name."""
        return attack_display_name(self.name)

    @property
    def targeted(self) -> bool:
        """Whether the attack is targeted (falls back to the presence of a t-mAP)."""
        flag = self.raw.get("targeted")
        if isinstance(flag, bool):
            return flag
        return as_float(self.raw.get("adv_tmap")) is not None and as_float(self.raw.get("adv_map")) is None

    @property
    def metric(self) -> str:
        """``"t-mAP"`` for targeted attacks, else ``"mAP"``."""
        return "t-mAP" if self.targeted else "mAP"

    @property
    def adv(self) -> float | None:
        """The attack's score: t-mAP of a targeted attack, mAP of a non-targeted one."""
        return as_float(self.raw.get("adv_tmap" if self.targeted else "adv_map"))

    @property
    def clean(self) -> float | None:
        """The same metric for the clean queries."""
        return as_float(self.raw.get("clean_tmap" if self.targeted else "clean_map"))

    @property
    def theory(self) -> float | None:
        """The same metric for the ideal (theory) query codes."""
        return as_float(self.raw.get("theory_tmap" if self.targeted else "theory_map"))

    def value(self, key: str) -> float | None:
        """A top-level number of the result, e.g. ``bits_flipped`` or ``wall_time_s``."""
        return as_float(self.raw.get(key))

    def perceptibility(self, key: str) -> float | None:
        """One perceptibility measure: ``linf``, ``l2``, ``mse``, ``psnr`` or ``ssim``."""
        return as_float(dig(self.raw, "perceptibility", key))

    def curve(self, kind: str) -> Curve | None:
        """The adversarial ``"pr"`` or ``"pn"`` curve."""
        return _curve(dig(self.raw, "curves"), kind)

    def clean_curve(self, kind: str) -> Curve | None:
        """The clean queries' curve as the attack judged it (for targeted attacks: against the target labels)."""
        return _curve(dig(self.raw, "clean_curves"), kind)


def _curve(curves: Any, kind: str) -> Curve | None:
    if kind == "pr":
        return read_curve(dig(curves, "pr_curve"), "recall", "precision")
    return read_curve(dig(curves, "precision_at_n"), "n", "precision")


@dataclass(frozen=True)
class ModelResult:
    """One model of the study (the undefended one or a defended one)."""

    key: str
    raw: dict[str, Any]
    attacks: dict[str, AttackEntry] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The label given by the pipeline, or the key."""
        label = self.raw.get("label")
        return str(label) if label else self.key

    @property
    def defense(self) -> dict[str, Any] | None:
        """The defense record, ``None`` for the undefended model."""
        value = self.raw.get("defense")
        return dict(value) if isinstance(value, Mapping) else None

    @property
    def defended(self) -> bool:
        """Whether this model was adversarially trained."""
        return self.defense is not None or self.key not in ("undefended", "original")

    @property
    def clean_map(self) -> float | None:
        """Clean mAP of this model."""
        return as_float(dig(self.raw, "clean", "map"))

    @property
    def attacked_clean_map(self) -> float | None:
        """Clean mAP of the queries that were attacked (a subset of the query split), else :attr:`clean_map`."""
        for attack in self.attacks.values():
            value = as_float(attack.raw.get("clean_map"))
            if not attack.targeted and value is not None:
                return value
        return self.clean_map

    @property
    def attacked_queries(self) -> int | None:
        """How many queries the attacks used, when the card says."""
        for attack in self.attacks.values():
            value = as_float(attack.raw.get("num_queries"))
            if value is not None:
                return int(value)
        return None

    def clean_curve(self, kind: str) -> Curve | None:
        """The clean ``"pr"`` or ``"pn"`` curve."""
        return _curve(dig(self.raw, "clean"), kind)

    def sweep(self) -> dict[str, list[tuple[float, float, bool]]]:
        """Per attack, the ε sweep as ``(eps, score, targeted)`` points sorted by ε."""
        result: dict[str, list[tuple[float, float, bool]]] = {}
        sweeps = {str(k): v for k, v in as_dict(self.raw.get("eps_sweep")).items()}
        for name in _canonical(list(sweeps), ATTACK_ORDER):
            points = sweeps[name]
            if not isinstance(points, Sequence) or isinstance(points, str):
                continue
            attack = self.attacks.get(name)
            targeted = attack.targeted if attack is not None else False
            rows = []
            for point in points:
                eps = as_float(dig(point, "eps"))
                adv_map, adv_tmap = as_float(dig(point, "adv_map")), as_float(dig(point, "adv_tmap"))
                if attack is None and adv_map is None and adv_tmap is not None:
                    targeted = True
                score = adv_tmap if targeted else adv_map
                if eps is not None and score is not None:
                    rows.append((eps, score, targeted))
            if rows:
                result[str(name)] = sorted(rows)
        return result


def read_models(card: Mapping[str, Any]) -> list[ModelResult]:
    """The card's models in order (undefended first, as the pipeline writes them)."""
    models = []
    for key, raw in as_dict(card.get("models")).items():
        if not isinstance(raw, Mapping):
            continue
        raw_attacks = {str(k): v for k, v in as_dict(raw.get("attacks")).items() if isinstance(v, Mapping)}
        attacks = {n: AttackEntry(n, dict(raw_attacks[n])) for n in _canonical(list(raw_attacks), ATTACK_ORDER)}
        models.append(ModelResult(str(key), dict(raw), attacks))
    by_key = {m.key: m for m in models}
    return [by_key[k] for k in _canonical(list(by_key), _MODEL_ORDER)]


def attack_order(models: Sequence[ModelResult]) -> tuple[list[str], list[str]]:
    """Non-targeted and targeted attack names, each in first-seen order across the models."""
    seen: dict[str, bool] = {}
    for model in models:
        for name, attack in model.attacks.items():
            seen.setdefault(name, attack.targeted)
    return [n for n, t in seen.items() if not t], [n for n, t in seen.items() if t]
