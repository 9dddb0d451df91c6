"""The attack registry: name -> (objective, default optimizer and budget, declared parameters).

The defaults are the paper protocol's (:data:`hashguard.protocol.ATTACKS`, ``docs/protocol.md``): each attack
keeps its own eps, iterations, optimizer and step. Parameters are declared with a type, a default and a range
(ART style) and validated by :func:`build_attack`; unknown names or bad values raise
:class:`~hashguard.errors.ConfigError` with a one-line message. Every default can be overridden, including
the optimizer (e.g. ``optimizer="sini"`` for the mainstay objective).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from hashguard.attacks.anchor import AnchorObjective, P2PObjective
from hashguard.attacks.base import AttackContext, HashAttack, Objective, OptimizerAttack
from hashguard.attacks.hag import HAGObjective
from hashguard.attacks.mainstay_attack import MainstayObjective, TargetedMainstayObjective
from hashguard.attacks.optimizers import OPTIMIZERS, build_optimizer
from hashguard.attacks.prosgan import ProSGANAttack, ProSGANObjective
from hashguard.attacks.sdha import SDHAObjective, TargetedSDHAObjective
from hashguard.attacks.tha import THAObjective
from hashguard.errors import ConfigError
from hashguard.protocol import ATTACKS as PROTOCOL
from hashguard.protocol import PROSGAN_REC_WEIGHT_DEFAULT


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
        # written so that NaN fails both bounds
        if self.low is not None and not converted >= self.low or self.high is not None and not converted <= self.high:
            raise ConfigError(f"{attack}: {self.name} must be in [{self.low}, {self.high}], got {value!r}")
        return converted


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack: its objective, defaults (the paper protocol's) and objective parameters."""

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
    attack_class: type[HashAttack] = OptimizerAttack

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
            Param("alpha_schedule", bool, True, "use the SAAT alpha schedule (Yuan et al., TIFS 2023)"),
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
_SDHA = PROTOCOL["sdha"]
_SDHA_PARAMS = (
    Param("weight", float, _SDHA["weight"], "weight of the surrogate term (times 1/K)", 0.0, None),
    Param(
        "min_distance",
        float,
        _SDHA["min_distance"],
        "d_H floor of the non-targeted weight (d_H + 1e-8)^-1/2; 1 = guard against the 1e4 weight of identical codes",
        1e-12,
        None,
    ),
    Param("mse_weight", float, _SDHA["mse_weight"], "weight of the MSE(x', x) term", 0.0, None),
)
def _prototype_params(protocol: dict[str, Any], prefix: str = "") -> tuple[Param, ...]:
    """The PrototypeNet training parameters of THA and ProS-GAN (named ``{prefix}epochs``, ...) and its width."""
    return (
        Param(f"{prefix}epochs", int, protocol[f"{prefix}epochs"], "PrototypeNet epochs", 0, None),
        Param(f"{prefix}steps", int, protocol[f"{prefix}steps"], "PrototypeNet steps per epoch", 1, None),
        Param(f"{prefix}batch_size", int, protocol[f"{prefix}batch_size"], "PrototypeNet label batch", 1, None),
        Param(f"{prefix}lr", float, protocol[f"{prefix}lr"], "PrototypeNet Adam learning rate", 0.0, None),
        Param("hidden", int, protocol["hidden"], "PrototypeNet hidden width", 1, None),
    )


_THA = PROTOCOL["tha"]
_THA_PARAMS = (
    *_prototype_params(_THA),
    Param("gamma", float, _THA["gamma"], "circle-loss scale", 0.0, None),
)

_PROS = PROTOCOL["prosgan"]
_PROSGAN_PARAMS = (
    *_prototype_params(_PROS, "proto_"),
    Param("epochs", int, _PROS["epochs"], "GAN epochs (constant lr for the first half, then linear decay)", 0, None),
    Param("gan_steps", int, 0, "cap on GAN batches per epoch (0 = the whole training set)", 0, None),
    Param("batch_size", int, _PROS["batch_size"], "GAN batch size", 1, None),
    Param("lr", float, _PROS["lr"], "G and D Adam learning rate", 0.0, None),
    Param(
        "rec_weight",
        float,
        PROSGAN_REC_WEIGHT_DEFAULT,
        "reconstruction weight w_rec (protocol: 100 FLICKR-25K, 50 NUS-WIDE / MS-COCO; default 50)",
        0.0,
        None,
    ),
    Param("hash_weight", float, _PROS["hash_weight"], "weight of the prototype hash term", 0.0, None),
    Param("width", int, 64, "generator image-encoder width", 1, None),
    Param("label_width", int, 128, "generator label-encoder width", 1, None),
    Param("disc_width", int, 64, "discriminator width", 1, None),
    Param("res_blocks", int, 3, "residual blocks in the encoder and in the decoder", 0, None),
    Param(
        "project",
        bool,
        _PROS["project"],
        "project onto the eps ball and [0, 1] (a bounded departure; the original generator is unbounded)",
    ),
)


def _budget(name: str) -> tuple[float, int, str, float]:
    """(eps, iterations, optimizer, step) of attack ``name`` in the paper protocol."""
    settings = PROTOCOL[name]
    return settings["eps"], settings["iterations"], settings["optimizer"], settings["step"]


ATTACKS: dict[str, AttackSpec] = {
    spec.name: spec
    for spec in (
        AttackSpec("mainstay", MainstayObjective, "Yuan et al., IEEE TIFS 2023", *_budget("mainstay"),
                   _MAINSTAY_PARAMS),
        AttackSpec("mainstay-targeted", TargetedMainstayObjective, "Yuan et al., IEEE TIFS 2023",
                   *_budget("mainstay-targeted"), _MAINSTAY_PARAMS),
        AttackSpec(
            "hag",
            HAGObjective,
            "Yang et al., IEEE TCYB 2018",
            *_budget("hag"),
            (Param("beta", float, PROTOCOL["hag"]["beta"], "weight of the bit-balance term", 0.0, None),),
            {"momentum": PROTOCOL["hag"]["momentum"]},
        ),
        AttackSpec("sdha", SDHAObjective, "Lu et al., ICMR 2021", *_budget("sdha"), _SDHA_PARAMS),
        AttackSpec("sdha-targeted", TargetedSDHAObjective, "Lu et al., ICMR 2021", *_budget("sdha-targeted"),
                   _SDHA_PARAMS),
        AttackSpec(
            "dhta",
            AnchorObjective,
            "Bai et al., ECCV 2020",
            *_budget("dhta"),
            (Param("n_anchors", int, PROTOCOL["dhta"]["n_anchors"], "database codes summed into the anchor", 1,
                   None),
             Param("replacement", bool, PROTOCOL["dhta"]["replacement"],
                   "draw the anchor's codes with replacement (False: without, as the original DHTA code)")),
        ),
        AttackSpec(
            "p2p",
            P2PObjective,
            "Bai et al., ECCV 2020",
            *_budget("p2p"),
            (Param("n_anchors", int, PROTOCOL["p2p"]["n_anchors"], "database codes summed into the anchor", 1,
                   None),
             Param("replacement", bool, PROTOCOL["p2p"]["replacement"],
                   "draw the anchor's codes with replacement (False: without, as the original DHTA code)")),
        ),
        AttackSpec("tha", THAObjective, "Wang et al., SIGIR 2021", *_budget("tha"), _THA_PARAMS),
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


def _split_params(spec: AttackSpec, params: dict[str, Any]) -> tuple[dict, dict, dict]:
    """(common, objective, optimizer) values of ``spec``: declared defaults overridden by validated ``params``."""
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
    if values["optimizer"] == spec.optimizer:
        optimizer_values = {**spec.optimizer_defaults, **optimizer_values}
    return values, objective_values, optimizer_values


def _optimizer(spec: AttackSpec, values: dict[str, Any], optimizer_values: dict[str, Any]) -> Any:
    try:
        return build_optimizer(
            values["optimizer"],
            step=values["step"],
            alpha_schedule=values["alpha_schedule"],
            alpha=values["alpha"],
            **optimizer_values,
        )
    except TypeError as exc:
        raise ConfigError(f"{spec.name}: {exc}") from None
    except ConfigError as exc:
        accepted = sorted([*(p.name for p in spec.common_params()), *(p.name for p in spec.objective_params)])
        raise ConfigError(f"{spec.name}: {exc} (attack parameters: {', '.join(accepted)})") from None


def resolve_attack_params(name: str, **params: Any) -> dict[str, Any]:
    """Every setting attack ``name`` runs with: its defaults (the paper protocol's) overridden by ``params``.

    The result holds the common parameters (eps, iterations, seed, optimizer, step, alpha_schedule, alpha),
    the objective's parameters and the optimizer's own (e.g. ``random_start``, ``momentum``), as
    :func:`build_attack` would use them. Bad names or values raise :class:`ConfigError`.
    """
    spec = attack_spec(name)
    values, objective_values, optimizer_values = _split_params(spec, params)
    optimizer = _optimizer(spec, values, optimizer_values)
    resolved = {**values, **objective_values, **optimizer.params()}
    resolved["optimizer"] = values["optimizer"]
    return resolved


def build_attack(
    name: str, model: nn.Module, context: AttackContext | None = None, **params: Any
) -> HashAttack:
    """Build the attack ``name`` on ``model`` with the paper protocol's defaults, overridden by ``params``.

    Common parameters: eps, iterations, seed, optimizer, step, alpha_schedule, alpha. Objective parameters are
    listed by :func:`describe_attacks`; optimizer parameters (random_start, decay, scales, samples, beta,
    resize_rate, diversity_prob, momentum, beta1, beta2) are checked by the chosen optimizer.
    """
    spec = attack_spec(name)
    values, objective_values, optimizer_values = _split_params(spec, params)
    optimizer = _optimizer(spec, values, optimizer_values)
    objective = spec.objective(**objective_values)
    common = {"eps": values["eps"], "seed": values["seed"], "context": context, "name": spec.name}
    if issubclass(spec.attack_class, OptimizerAttack):
        return spec.attack_class(model, objective, optimizer, iterations=values["iterations"], **common)
    return spec.attack_class(model, objective, **common)
