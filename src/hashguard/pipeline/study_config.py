"""Configuration of a robustness study (``hashguard study CONFIG.yaml``).

A study is an :class:`~hashguard.config.ExperimentConfig` (data, model, method, training recipe) plus

* ``checkpoint``: an already trained model to load instead of training one;
* ``cache_identity``: what keys the stages downstream of a model, its functional fingerprint (default) or
  the exact-weights hash (docs/fingerprints.md);
* ``evaluation``: the clean-retrieval cut-off;
* ``attacks``: the attack suite (names of :mod:`hashguard.attacks`, each with optional parameters; every attack
  keeps its own eps, iterations, optimizer and step, the paper protocol's, unless its ``params`` or the
  suite-wide ``override`` set them), the queries attacked, the target-label seed and an eps sweep;
* ``defenses``: adversarial-training runs (SAAT, ATRDH, CgAT) started from the trained model, each attacked
  again with ``defenses.attacks``;
* ``report``: the retrieval grid of the report.

Fractions such as ``8/255`` are accepted wherever an eps or step is expected. Unknown keys are errors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from hashguard.config import (
    ExperimentConfig,
    StrictModel,
    apply_overrides,
    build_config,
    check_config_kind,
    parse_fraction,
    read_yaml,
)
from hashguard.protocol import MAP_TOPK, eps_label

#: The paper's attack suite (Table I): non-targeted mainstay / HAG / SDHA, targeted mainstay / SDHA / DHTA /
#: P2P / THA. ProS-GAN is registered too but trains a GAN; add it explicitly where a GPU is available.
DEFAULT_SUITE = ("mainstay", "hag", "sdha", "mainstay-targeted", "sdha-targeted", "dhta", "p2p", "tha")




def _takes_sign_steps(name: str, params: dict[str, Any]) -> bool:
    """Whether attack ``name`` (with its own ``params``) runs a sign-step optimizer, whose step is in pixels
    (declared by the optimizer's registration, ``sign_steps=True``)."""
    from hashguard.attacks import attack_spec
    from hashguard.attacks.optimizers import uses_sign_steps

    return uses_sign_steps(str(params.get("optimizer") or attack_spec(name).optimizer))


class AttackEntry(StrictModel):
    """One attack of the suite: a registered name and parameters overriding the protocol's and the override's."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @property
    def key(self) -> str:
        """The attack's registered name (``mainstay_targeted`` -> ``mainstay-targeted``)."""
        return self.name.lower().replace("_", "-")


class SweepConfig(StrictModel):
    """mAP of ``attacks`` at each radius of ``eps`` (0 gives the clean mAP)."""

    attacks: list[str] = Field(default_factory=lambda: ["mainstay"])
    eps: list[float] = Field(default_factory=list)

    @field_validator("eps", mode="before")
    @classmethod
    def _fractions(cls, value: Any) -> Any:
        return [parse_fraction(v) for v in value] if isinstance(value, list) else value

    @field_validator("eps")
    @classmethod
    def _in_unit_interval(cls, value: list[float]) -> list[float]:
        for eps in value:
            if not 0.0 <= eps <= 1.0:
                raise ValueError(f"eps {eps} is outside [0, 1]")
        return sorted(set(value))


class BudgetOverride(StrictModel):
    """A suite-wide budget replacing every attack's own (a departure from the paper protocol).

    ``step`` is the pixel step of the sign-step optimizers (PGD, BIM, MI, NI, SI-NI, VMI, DI) only: HAG's SGD
    and SDHA's Adam keep their learning rates (set ``step`` in their own ``params`` to change those). An
    attack's own ``params`` win over the override. Generator attacks (ProS-GAN) have no budget to override.
    """

    eps: float | None = Field(default=None, ge=0, le=1)
    iterations: int | None = Field(default=None, ge=0)
    step: float | None = Field(default=None, gt=0, le=1)

    @field_validator("eps", "step", mode="before")
    @classmethod
    def _fractions(cls, value: Any) -> Any:
        return parse_fraction(value)


_MOVED_KEYS = ("eps", "iterations", "step")


class AttackSuiteConfig(StrictModel):
    """The attack suite run against every model of the study, each attack with its own budget."""

    override: BudgetOverride = Field(default_factory=BudgetOverride)
    seed: int = 0
    queries: int | None = Field(default=None, gt=0, description="attack the first N queries (None: all)")
    batch_size: int = Field(default=128, gt=0)
    target_seed: int = 0
    suite: list[AttackEntry] = Field(default_factory=lambda: [AttackEntry(name=n) for n in DEFAULT_SUITE])
    sweep: SweepConfig = Field(default_factory=SweepConfig)

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for key in _MOVED_KEYS:
                if key in value:
                    raise ValueError(
                        f"attacks.{key} moved to attacks.override.{key} (a suite-wide departure from each "
                        f"attack's own {key}) or to one attack's params"
                    )
        return value

    def entry(self, name: str) -> AttackEntry:
        """The suite's entry for ``name`` (a bare entry when the suite does not list it)."""
        key = name.lower().replace("_", "-")
        for entry in self.suite:
            if entry.key == key:
                return entry
        return AttackEntry(name=key)

    def overridden_keys(self, name: str) -> set[str]:
        """The keys of ``override`` that apply to attack ``name`` (not set by its own params)."""
        from hashguard.attacks import attack_spec

        if not attack_spec(name).iterative:  # a generator: no iterations or step, eps only when it projects
            return set()
        own = self.entry(name).params
        keys = {k for k in ("eps", "iterations") if getattr(self.override, k) is not None and k not in own}
        if self.override.step is not None and "step" not in own and _takes_sign_steps(name, own):
            keys.add("step")
        return keys

    def params_for(self, name: str, eps: float | None = None) -> dict[str, Any]:
        """Parameters of attack ``name``: the override's budget and seed, then the entry's own params.

        ``eps`` is always present (the attack's own radius unless overridden) so that an eps-sweep point at that
        radius is recognised as the suite's own run; other unset keys take the attack's own defaults (the paper
        protocol) in :func:`hashguard.attacks.build_attack`. ``eps`` (the eps sweep) replaces the radius
        whatever the rest says.
        """
        from hashguard.attacks import attack_spec

        params: dict[str, Any] = {"seed": self.seed, "eps": attack_spec(name).eps}
        for key in sorted(self.overridden_keys(name)):
            params[key] = getattr(self.override, key)
        params.update({k: parse_fraction(v) if k in ("eps", "step") else v for k, v in self.entry(name).params.items()})
        if eps is not None:
            params["eps"] = eps
        return params


class DefenseEntry(StrictModel):
    """One adversarial-training run: a defense, its preset and settings (see ``hashguard.defenses``)."""

    name: str
    preset: str = "paper"
    settings: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value.lower()}
        if isinstance(value, dict) and isinstance(value.get("name"), str):
            return {**value, "name": value["name"].lower()}
        return value

    @field_validator("name")
    @classmethod
    def _registered(cls, value: str) -> str:
        from hashguard.defenses import DEFENSES

        return DEFENSES.key(value)


class DefensesConfig(StrictModel):
    """Defenses to train from the study's model and the attacks run against each hardened model."""

    run: list[DefenseEntry] = Field(default_factory=list)
    attacks: list[str] | None = Field(default=None, description="None: the non-targeted attacks of the suite")
    sweep: bool = True


class EvaluationConfig(StrictModel):
    """The study's one mAP cut-off: clean evaluation, attacks, sweeps, summary and report (paper: 5000)."""

    topk: int | None = Field(default=MAP_TOPK, gt=0)


class ReportConfig(StrictModel):
    """The retrieval grid (paper Fig. 5): ``grid_queries`` queries, their top-``grid_topk`` before and after."""

    grid_queries: int = Field(default=4, ge=0)
    grid_topk: int = Field(default=10, gt=0)
    grid_attack: str = "mainstay"


class DetectionConfig(StrictModel):
    """Query detection (off unless enabled; on in the CPU demo): a registered detector scores the clean and the
    attacked queries of every model of the study; ``adaptive`` also runs the detector-aware mainstay attack
    (``mainstay-adaptive``) against each model, with the suite's mainstay budget and ``adaptive_params``
    (docs/detection.md)."""

    enabled: bool = False
    detector: str = "hamming"
    params: dict[str, Any] = Field(default_factory=dict)
    adaptive: bool = True
    adaptive_params: dict[str, Any] = Field(default_factory=dict)


class StudyConfig(ExperimentConfig):
    """A whole robustness study: the experiment to train plus what to attack, defend and report."""

    name: str = "study"
    #: a relative ``data.root`` is read below ``data_dir`` and a relative ``model.pretrained`` below
    #: ``weights_dir`` (so a paper config runs unchanged with ``--set data_dir=/datasets``)
    data_dir: str | None = None
    weights_dir: str | None = None
    checkpoint: str | None = None
    #: what keys the cached stages downstream of a model: ``functional`` (its functional fingerprint, the
    #: default: a re-saved or copied checkpoint reuses them) or ``weights`` (the exact-weights hash)
    cache_identity: Literal["functional", "weights"] = "functional"
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    attacks: AttackSuiteConfig = Field(default_factory=AttackSuiteConfig)
    defenses: DefensesConfig = Field(default_factory=DefensesConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    detection: DetectionConfig = Field(default_factory=DetectionConfig)

    def experiment(self, resolve: bool = True) -> ExperimentConfig:
        """The training part of the study (``resolve``: relative data / weight paths joined to their dirs)."""
        experiment = ExperimentConfig(**{k: getattr(self, k) for k in ExperimentConfig.model_fields})
        if not resolve:
            return experiment
        data = experiment.data
        if data.root is not None and self.data_dir is not None and not Path(data.root).is_absolute():
            data = data.model_copy(update={"root": str(Path(self.data_dir) / data.root)})
        model = experiment.model
        pretrained = model.pretrained
        if pretrained is not None and self.weights_dir is not None and not Path(pretrained).is_absolute():
            model = model.model_copy(update={"pretrained": str(Path(self.weights_dir) / pretrained)})
        return experiment.model_copy(update={"data": data, "model": model})

    def defense_attacks(self) -> list[str]:
        """Attacks run against each hardened model."""
        if self.defenses.attacks is not None:
            return [a.lower().replace("_", "-") for a in self.defenses.attacks]
        from hashguard.attacks import attack_spec

        return [entry.key for entry in self.attacks.suite if not attack_spec(entry.key).targeted]


def load_study_config(path: str | os.PathLike[str], overrides: list[str] | None = None) -> StudyConfig:
    """Read a study YAML file, apply ``key.path=value`` overrides and validate it."""
    payload = read_yaml(path)
    check_config_kind(payload, str(path), "study")
    payload = apply_overrides(payload, list(overrides or []))
    return build_config(StudyConfig, payload, str(path))


def defense_settings(config: StudyConfig, entry: DefenseEntry) -> tuple[Any, dict[str, Any]]:
    """The resolved :class:`~hashguard.defenses.DefenseConfig` of one defense of the study, and where its inner
    attack's radius and step come from.

    The inner attack follows the study's threat model: a suite-wide ``attacks.override`` eps (and step) is
    also the defense's, unless the defense's own ``settings`` set it. Otherwise the defense keeps its preset's
    value (the paper preset's is the protocol's 8/255). The second value, ``{"eps", "step", "eps_from",
    "step_from"}``, is written to the results card and shown in the report.
    """
    from hashguard.defenses import build_defense_config

    settings = dict(entry.settings)
    origin: dict[str, str] = {}
    for key in ("eps", "step"):
        study_value = getattr(config.attacks.override, key)
        if key in entry.settings:
            origin[key] = "the defense's settings"
        elif study_value is not None:
            settings[key] = study_value
            origin[key] = "the study's threat model (attacks.override)"
        else:
            origin[key] = f"the {entry.preset} preset of {entry.name}"
    resolved = build_defense_config(entry.name, settings, preset=entry.preset)
    threat = {"eps": resolved.eps, "step": resolved.step, "eps_from": origin["eps"], "step_from": origin["step"]}
    return resolved, threat


def resolved_budgets(config: StudyConfig) -> dict[str, dict[str, Any]]:
    """``{attack: {eps, eps_label, iterations, optimizer, step, targeted}}`` for every attack the study runs,
    as resolved (the attack's own protocol budget < ``attacks.override`` < its ``params``)."""
    from hashguard.attacks import attack_spec
    from hashguard.attacks.registry import resolve_attack_params
    from hashguard.protocol import study_attacks

    budgets: dict[str, dict[str, Any]] = {}
    for name in study_attacks(config):
        resolved = resolve_attack_params(name, **config.attacks.params_for(name))
        budgets[name] = {
            "eps": float(resolved["eps"]),
            "eps_label": eps_label(float(resolved["eps"])),
            # a generator attack (ProS-GAN) has no iterations, optimizer or step
            "iterations": int(resolved.get("iterations", 0)),
            "optimizer": str(resolved.get("optimizer", "generator")),
            "step": float(resolved["step"]) if "step" in resolved else None,
            "targeted": bool(attack_spec(name).targeted),
        }
    return budgets


def budget_warnings(config: StudyConfig) -> list[str]:
    """One line per attack (and per eps-sweep point) of the study whose iterations cannot reach the edge of its
    eps ball (:func:`hashguard.attacks.reach.reach_warning`); empty when every budget is reachable."""
    from hashguard.attacks.reach import reach_warning
    from hashguard.attacks.registry import resolve_attack_params
    from hashguard.protocol import study_attacks

    runs = [(name, name, config.attacks.params_for(name)) for name in study_attacks(config)]
    if config.attacks.sweep.eps:
        for name in config.attacks.sweep.attacks:
            for eps in config.attacks.sweep.eps:
                runs.append((name, f"{name} @ eps {eps_label(eps)}", config.attacks.params_for(name, eps=eps)))
    lines: list[str] = []
    for name, label, params in runs:
        warning = reach_warning(resolve_attack_params(name, **params), label)
        if warning is not None and warning not in lines:
            lines.append(warning)
    return lines


def budget_table(config: StudyConfig) -> str:
    """The resolved per-attack budgets as a fixed-width table (printed by ``hashguard study --dry-run``), then one
    ``warning:`` line per budget whose iterations cannot reach the edge of its eps ball (:func:`budget_warnings`)."""
    from hashguard.attacks import attack_spec
    from hashguard.attacks.registry import resolve_attack_params
    from hashguard.protocol import format_value

    header = ["attack", "targeted", "eps", "iterations", "optimizer", "step"]
    rows = []
    for name, budget in resolved_budgets(config).items():
        if not attack_spec(name).iterative:
            projected = resolve_attack_params(name, **config.attacks.params_for(name)).get("project", False)
            eps = budget["eps_label"] if projected else "-"
            rows.append([name, "yes" if budget["targeted"] else "no", eps, "-", "generator", "-"])
            continue
        rows.append([
            name, "yes" if budget["targeted"] else "no", budget["eps_label"], str(budget["iterations"]),
            budget["optimizer"], format_value(budget["step"]),
        ])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += [f"warning: {line}" for line in budget_warnings(config)]
    return "\n".join(lines)
