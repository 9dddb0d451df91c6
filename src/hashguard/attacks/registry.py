"""The attack registry: name -> (objective, default optimizer and budget, declared parameters) (SPEC §6.8).

Parameters are declared with a type, a default and a range (ART style) and validated by :func:`build_attack`;
unknown names or bad values raise :class:`~hashguard.errors.ConfigError` with a one-line message. Every
default
of SPEC §6.8 can be overridden, including the optimizer (e.g. ``optimizer="sini"`` for the mainstay
objective).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from hashguard.attacks.anchor import AnchorObjective, P2PObjective
from hashguard.attacks.base import AttackContext, HashAttack, Objective
from hashguard.attacks.hag import HAGObjective
from hashguard.attacks.mainstay_attack import MainstayObjective, TargetedMainstayObjective
from hashguard.attacks.optimizers import OPTIMIZERS, build_optimizer
from hashguard.attacks.prosgan import ProSGANAttack, ProSGANObjective
from hashguard.attacks.sdha import SDHAObjective, TargetedSDHAObjective
from hashguard.attacks.tha import THAObjective
from hashguard.errors import ConfigError


@dataclass(frozen=True)
class Param:
    """A declared attack parameter: type, default, optional bounds or choices, and a help line."""

    name: str
    kind: type
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None

    def validate(self, value: Any, attack: str) -> Any:
        """``value`` converted to ``kind`` and checked; :class:`ConfigError` names the attack and
        parameter."""
        if value is None and self.default is None:
            return None
        try:
            if self.kind is bool:
                if isinstance(value, str):
                    if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                        raise ValueError(value)
                    value = value.lower() in ("1", "true", "yes")
                converted = bool(value)
            elif self.kind is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            else:
                converted = self.kind(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{attack}: parameter {self.name} must be {self.kind.__name__}, got {value!r}"
            ) from None
        if self.choices is not None and converted not in self.choices:
            raise ConfigError(f"{attack}: {self.name} must be one of {self.choices}, got {value!r}")
        if self.low is not None and converted < self.low or self.high is not None and converted > self.high:
            raise ConfigError(f"{attack}: {self.name} must be in [{self.low}, {self.high}], got {value!r}")
        return converted


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack: its objective, defaults (SPEC §6.8) and objective parameters."""

    name: str
    objective: type[Objective]
    reference: str
    eps: float
    iterations: int
    optimizer: str
    step: float
    objective_params: tuple[Param, ...] = ()
    optimizer_defaults: dict[str, Any] = field(default_factory=dict)
    #: the attack class built by :func:`build_attack` (ProS-GAN replaces the optimizer by a generator)
    attack_class: type[HashAttack] = HashAttack

    @property
    def targeted(self) -> bool:
        return self.objective.targeted

    def common_params(self) -> tuple[Param, ...]:
        return (
            Param("eps", float, self.eps, "L-infinity radius in [0, 1] pixel space", 0.0, 1.0),
            Param("iterations", int, self.iterations, "optimizer iterations", 0, None),
            Param("seed", int, 0, "seed of the attack's generator"),
            Param("optimizer", str, self.optimizer, "perturbation optimizer", choices=tuple(OPTIMIZERS)),
            Param("step", float, self.step, "sign step size (or learning rate of sgd/adam)", 0.0, None),
            Param("alpha_schedule", bool, True, "use the SAAT alpha schedule (SPEC §6.0)"),
            Param("alpha", float, 1.0, "fixed tanh scale when the schedule is off", 0.0, None),
        )

    def describe(self) -> str:
        kind = "targeted" if self.targeted else "non-targeted"
        extra = ", ".join(f"{p.name}={p.default}" for p in self.objective_params)
        line = f"{self.name} ({kind}; {self.optimizer}, eps={self.eps:.4g}, iterations={self.iterations}"
        return line + (f"; {extra}" if extra else "") + f") - {self.reference}"


_MAINSTAY_PARAMS = (
    Param(
        "loss",
        str,
        "masked",
        "masked quadratic loss (attack) or plain mean (SAAT inner)",
        choices=("masked", "plain"),
    ),
    Param(
        "weighting",
        str,
        "cosine",
        "cosine (DMFL) or uniform (CgAT centre code)",
        choices=("cosine", "uniform"),
    ),
    Param(
        "tie_break",
        str,
        None,
        "resolve mainstay ties: positive, negative or random",
        choices=(None, "positive", "negative", "random"),
    ),
)
_SDHA_PARAMS = (
    Param("weight", float, 25.0, "weight of the surrogate term (times 1/K)", 0.0, None),
    Param(
        "min_distance", float, 1.0, "floor of d_H in the non-targeted weight (1e-8 = reference)", 1e-12, None
    ),
    Param("mse_weight", float, 1.0, "weight of the MSE(x', x) term", 0.0, None),
)
_THA_PARAMS = (
    Param("epochs", int, 100, "PrototypeNet epochs", 0, None),
    Param("steps", int, 300, "PrototypeNet steps per epoch", 1, None),
    Param("batch_size", int, 128, "PrototypeNet label batch", 1, None),
    Param("lr", float, 1e-4, "PrototypeNet Adam learning rate", 0.0, None),
    Param("hidden", int, 4096, "PrototypeNet hidden width", 1, None),
    Param("gamma", float, 1.0, "circle-loss scale", 0.0, None),
)

_PROSGAN_PARAMS = (
    Param("proto_epochs", int, 100, "PrototypeNet epochs", 0, None),
    Param("proto_steps", int, 300, "PrototypeNet steps per epoch", 1, None),
    Param("proto_batch_size", int, 64, "PrototypeNet label batch", 1, None),
    Param("proto_lr", float, 1e-4, "PrototypeNet Adam learning rate", 0.0, None),
    Param("hidden", int, 4096, "PrototypeNet hidden width", 1, None),
    Param("epochs", int, 100, "GAN epochs (constant lr for the first half, then linear decay)", 0, None),
    Param("gan_steps", int, 0, "cap on GAN batches per epoch (0 = the whole training set)", 0, None),
    Param("batch_size", int, 24, "GAN batch size", 1, None),
    Param("lr", float, 1e-4, "G and D Adam learning rate", 0.0, None),
    Param("rec_weight", float, 50.0, "reconstruction weight w_rec (100 FLICKR-25K, 50 NUS-WIDE / MS-COCO)", 0.0, None),
    Param("hash_weight", float, 5.0, "weight of the prototype hash term", 0.0, None),
    Param("width", int, 64, "generator image-encoder width", 1, None),
    Param("label_width", int, 128, "generator label-encoder width", 1, None),
    Param("disc_width", int, 64, "discriminator width", 1, None),
    Param("res_blocks", int, 3, "residual blocks in the encoder and in the decoder", 0, None),
    Param("project", bool, True, "project onto the eps ball and [0, 1] (False = unbounded original)"),
)

ATTACKS: dict[str, AttackSpec] = {
    spec.name: spec
    for spec in (
        AttackSpec(
            "mainstay",
            MainstayObjective,
            "Yuan et al., IEEE TIFS 2023",
            8 / 255,
            100,
            "pgd",
            1 / 255,
            _MAINSTAY_PARAMS,
        ),
        AttackSpec(
            "mainstay-targeted",
            TargetedMainstayObjective,
            "Yuan et al., IEEE TIFS 2023",
            8 / 255,
            100,
            "pgd",
            1 / 255,
            _MAINSTAY_PARAMS,
        ),
        AttackSpec(
            "hag",
            HAGObjective,
            "Yang et al., IEEE TCYB 2018",
            8 / 255,
            2000,
            "sgd",
            100.0,
            (Param("beta", float, 1.0, "weight of the bit-balance term", 0.0, None),),
            {"momentum": 0.9},
        ),
        AttackSpec("sdha", SDHAObjective, "Lu et al., ICMR 2021", 8 / 255, 1500, "adam", 0.01, _SDHA_PARAMS),
        AttackSpec(
            "sdha-targeted",
            TargetedSDHAObjective,
            "Lu et al., ICMR 2021",
            8 / 255,
            1500,
            "adam",
            0.01,
            _SDHA_PARAMS,
        ),
        AttackSpec(
            "dhta",
            AnchorObjective,
            "Bai et al., ECCV 2020",
            0.032,
            2000,
            "bim",
            1 / 255,
            (Param("n_anchors", int, 9, "database codes summed into the anchor", 1, None),),
        ),
        AttackSpec(
            "p2p",
            P2PObjective,
            "Bai et al., ECCV 2020",
            0.032,
            2000,
            "bim",
            1 / 255,
            (Param("n_anchors", int, 1, "database codes summed into the anchor", 1, None),),
        ),
        AttackSpec("tha", THAObjective, "Wang et al., SIGIR 2021", 8 / 255, 100, "bim", 1 / 255, _THA_PARAMS),
        AttackSpec(
            "prosgan",
            ProSGANObjective,
            "Wang et al., CVPR 2021",
            8 / 255,
            0,
            "bim",
            1 / 255,
            _PROSGAN_PARAMS,
            attack_class=ProSGANAttack,
        ),
    )
}


def attack_spec(name: str) -> AttackSpec:
    """The registered attack ``name`` (case-insensitive; ``_`` and ``-`` are interchangeable)."""
    key = name.lower().replace("_", "-")
    if key not in ATTACKS:
        raise ConfigError(f"unknown attack {name!r}; choose one of {', '.join(ATTACKS)}")
    return ATTACKS[key]


def describe_attacks() -> str:
    """One line per registered attack with its defaults."""
    return "\n".join(spec.describe() for spec in ATTACKS.values())


def build_attack(
    name: str, model: nn.Module, context: AttackContext | None = None, **params: Any
) -> HashAttack:
    """Build the attack ``name`` on ``model`` with the defaults of SPEC §6.8, overridden by ``params``.

    Common parameters: eps, iterations, seed, optimizer, step, alpha_schedule, alpha. Objective parameters are
    listed by :func:`describe_attacks`; optimizer parameters (random_start, decay, scales, samples, beta,
    resize_rate, diversity_prob, momentum, beta1, beta2) are checked by the chosen optimizer.
    """
    spec = attack_spec(name)
    common = {p.name: p for p in spec.common_params()}
    objective_decl = {p.name: p for p in spec.objective_params}
    values = {key: p.default for key, p in common.items()}
    objective_values = {key: p.default for key, p in objective_decl.items()}
    optimizer_values: dict[str, Any] = {}
    for key, value in params.items():
        if key in common:
            values[key] = common[key].validate(value, spec.name)
        elif key in objective_decl:
            objective_values[key] = objective_decl[key].validate(value, spec.name)
        else:
            optimizer_values[key] = value
    optimizer_name = values["optimizer"]
    if optimizer_name == spec.optimizer:
        optimizer_values = {**spec.optimizer_defaults, **optimizer_values}
    try:
        optimizer = build_optimizer(
            optimizer_name,
            step=values["step"],
            alpha_schedule=values["alpha_schedule"],
            alpha=values["alpha"],
            **optimizer_values,
        )
    except TypeError as exc:
        raise ConfigError(f"{spec.name}: {exc}") from None
    except ConfigError as exc:
        accepted = sorted([*common, *objective_decl])
        raise ConfigError(f"{spec.name}: {exc} (attack parameters: {', '.join(accepted)})") from None
    objective = spec.objective(**objective_values)
    return spec.attack_class(
        model,
        objective,
        optimizer,
        eps=values["eps"],
        iterations=values["iterations"],
        seed=values["seed"],
        context=context,
        name=spec.name,
    )
