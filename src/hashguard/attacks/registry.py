"""The attack registry: name -> code-space objective, with its budget and engine declared at registration.

An attack is one file: an :class:`~hashguard.attacks.base.Objective` subclass decorated with
``@ATTACKS.register(name, display=..., reference=..., budget=Budget(...))`` and one import line in
``hashguard/attacks/__init__.py``. The objective's own parameters (weights, anchor counts, PrototypeNet
settings) are its constructor's keyword arguments, whose defaults are the paper protocol's
(:data:`hashguard.protocol.ATTACKS`, ``docs/protocol.md``) and whose ranges and help are read from the
signature (:mod:`hashguard.registry`). The budget (eps, iterations, optimizer, step) is the attack's own
protocol budget; any of it can be overridden, including the optimizer (``optimizer="sini"`` for the mainstay
objective). ``attack_class`` declares what perturbs a batch: :class:`~hashguard.attacks.base.OptimizerAttack`
(default; an iterative perturbation optimizer) or a generator such as ProS-GAN's, which has no iterations,
optimizer or step. ``optimizer_defaults`` are settings of the default optimizer the attack's paper fixes (HAG's
momentum).

Unknown names or bad values raise :class:`~hashguard.errors.ConfigError` with a one-line message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from hashguard.attacks.base import AttackContext, HashAttack, Objective, OptimizerAttack
from hashguard.attacks.optimizers import OPTIMIZERS, build_optimizer
from hashguard.attacks.threat import check_eps
from hashguard.errors import ConfigError
from hashguard.protocol import ATTACKS as PROTOCOL
from hashguard.registry import Entry, Parameter, Registry

#: every registered attack objective (names are case-insensitive; ``_`` and ``-`` are interchangeable)
ATTACKS: Registry[Objective] = Registry("attack", normalise=lambda name: name.lower().replace("_", "-"))


@dataclass(frozen=True)
class Budget:
    """An attack's own search budget: the L-infinity radius, iterations, optimizer and its step."""

    eps: float
    iterations: int = 0
    optimizer: str | None = None
    step: float | None = None

    @classmethod
    def protocol(cls, name: str) -> Budget:
        """The paper protocol's budget of attack ``name`` (:data:`hashguard.protocol.ATTACKS`)."""
        settings = PROTOCOL[name]
        return cls(settings["eps"], settings["iterations"], settings["optimizer"], settings["step"])


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack as the rest of the toolkit sees it: objective, budget, engine and declarations."""

    name: str
    objective: type[Objective]
    reference: str
    display: str
    budget: Budget
    attack_class: type[HashAttack] = OptimizerAttack
    optimizer_defaults: dict[str, Any] = field(default_factory=dict)
    objective_params: tuple[Parameter, ...] = ()

    @property
    def targeted(self) -> bool:
        return self.objective.targeted

    @property
    def iterative(self) -> bool:
        """True when an optimizer perturbs the batch (False: a generator, no iterations / optimizer / step)."""
        return issubclass(self.attack_class, OptimizerAttack)

    @property
    def eps(self) -> float:
        return self.budget.eps

    @property
    def iterations(self) -> int:
        return self.budget.iterations

    @property
    def optimizer(self) -> str | None:
        return self.budget.optimizer

    @property
    def step(self) -> float | None:
        return self.budget.step

    def common_params(self) -> tuple[Parameter, ...]:
        """The parameters every attack of this kind takes besides the objective's."""
        common = [
            Parameter("eps", float, self.eps, "L-infinity radius in [0, 1] pixel space", 0.0, 1.0),
            Parameter("seed", int, 0, "seed of the attack's generator"),
        ]
        if self.iterative:
            common += [
                Parameter("iterations", int, self.iterations, "optimizer iterations", 0, None),
                Parameter("optimizer", str, self.optimizer, "perturbation optimizer", choices=tuple(OPTIMIZERS)),
                Parameter("step", float, self.step, "sign step size (or learning rate of sgd/adam)", 0.0, None,
                          exclusive_low=True),
                Parameter("alpha_schedule", bool, True, "use the SAAT alpha schedule (Yuan et al., TIFS 2023)"),
                Parameter("alpha", float, 1.0, "fixed tanh scale when the schedule is off", 0.0, None,
                          exclusive_low=True),
            ]
        return tuple(common)

    def describe(self) -> str:
        kind = "targeted" if self.targeted else "non-targeted"
        extra = ", ".join(f"{p.name}={p.default}" for p in self.objective_params)
        if self.iterative:
            budget = f"{self.optimizer}, eps={self.eps:.4g}, iterations={self.iterations}"
        else:
            budget = f"generator, eps={self.eps:.4g}"
        return f"{self.name} ({kind}; {budget}" + (f"; {extra}" if extra else "") + f") - {self.reference}"


def _spec(entry: Entry[Objective]) -> AttackSpec:
    attributes = entry.attributes
    return AttackSpec(
        entry.name,
        entry.target,  # type: ignore[arg-type]
        entry.reference,
        attributes.get("display", entry.name),
        attributes["budget"],
        attributes.get("attack_class", OptimizerAttack),
        dict(attributes.get("optimizer_defaults", {})),
        entry.parameters(),
    )


def attack_spec(name: str) -> AttackSpec:
    """The registered attack ``name`` (case-insensitive; ``_`` and ``-`` are interchangeable)."""
    return _spec(ATTACKS.entry(name))


def describe_attacks() -> str:
    """One line per registered attack with its defaults."""
    return "\n".join(attack_spec(name).describe() for name in ATTACKS)


def _split_params(spec: AttackSpec, params: dict[str, Any]) -> tuple[dict, dict, dict]:
    """(common, objective, optimizer) values of ``spec``: declared defaults overridden by validated ``params``."""
    common = {p.name: p for p in spec.common_params()}
    values = {key: p.default for key, p in common.items()}
    objective_keys = {p.name for p in spec.objective_params}
    objective_given: dict[str, Any] = {}
    optimizer_values: dict[str, Any] = {}
    for key, value in params.items():
        if key == "eps":
            values[key] = check_eps(value)
        elif key in common:
            if key == "optimizer" and isinstance(value, str) and value in OPTIMIZERS:
                value = OPTIMIZERS.key(value)  # its registered name: "PGD", "MI-FGSM", "i_fgsm" -> pgd, mi, bim
            values[key] = common[key].validate(value, spec.name)
        elif key in objective_keys:
            objective_given[key] = value
        elif spec.iterative:
            optimizer_values[key] = value
        else:
            accepted = sorted([*common, *objective_keys])
            raise ConfigError(f"{spec.name} has no parameter(s) {key}; it accepts {', '.join(accepted)}")
    objective_values = ATTACKS.entry(spec.name).resolve(objective_given)
    if spec.iterative and values["optimizer"] == spec.optimizer:
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
    except ConfigError as exc:
        accepted = sorted([*(p.name for p in spec.common_params()), *(p.name for p in spec.objective_params)])
        raise ConfigError(f"{spec.name}: {exc} (attack parameters: {', '.join(accepted)})") from None


def resolve_attack_params(name: str, **params: Any) -> dict[str, Any]:
    """Every setting attack ``name`` runs with: its defaults (the paper protocol's) overridden by ``params``.

    The result holds the common parameters (eps, seed and, for iterative attacks, iterations, optimizer, step,
    alpha_schedule, alpha), the objective's parameters and the optimizer's own (e.g. ``random_start``,
    ``momentum``), as :func:`build_attack` would use them. Bad names or values raise :class:`ConfigError`.
    """
    spec = attack_spec(name)
    values, objective_values, optimizer_values = _split_params(spec, params)
    resolved = {**values, **spec.objective(**objective_values).params()}
    if spec.iterative:
        resolved.update(_optimizer(spec, values, optimizer_values).params())
        resolved["optimizer"] = values["optimizer"]
    return resolved


def build_attack(
    name: str, model: nn.Module, context: AttackContext | None = None, **params: Any
) -> HashAttack:
    """Build the attack ``name`` on ``model`` with the paper protocol's defaults, overridden by ``params``.

    Common parameters: eps, seed and, for iterative attacks, iterations, optimizer, step, alpha_schedule,
    alpha. Objective parameters are listed by ``hashguard list attacks -v``; optimizer parameters
    (random_start, decay, scales, samples, beta, resize_rate, diversity_prob, momentum, beta1, beta2) are
    checked by the chosen optimizer.
    """
    spec = attack_spec(name)
    values, objective_values, optimizer_values = _split_params(spec, params)
    objective = spec.objective(**objective_values)
    common = {"eps": values["eps"], "seed": values["seed"], "context": context, "name": spec.name}
    if spec.iterative:
        optimizer = _optimizer(spec, values, optimizer_values)
        return spec.attack_class(model, objective, optimizer, iterations=values["iterations"], **common)
    return spec.attack_class(model, objective, **common)
