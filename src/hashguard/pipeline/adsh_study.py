"""What a study adds for an ADSH model (Jiang and Li, "Asymmetric Deep Supervised Hashing", AAAI 2018).

* which retrieval protocol the model follows (``card["adsh"]``, one line of the report): ADSH's own (the training
  pool is the database and its codes are the learned V) or the SAAT protocol (a separate database split encoded
  by the network);
* where the mainstay codes (DMFL of SAAT, Yuan et al., IEEE TIFS 2023) come from: ``mainstay_from`` of the
  mainstay attacks and of SAAT / CgAT is ``network`` (the network's sign codes of the training items, the paper's
  protocol) or ``database`` (V with the pool's labels). ``database`` is refused, in one line, before anything
  runs when the study's model is not an ADSH model;
* for an ADSH model whose suite has the non-targeted mainstay attack, that attack once more against the undefended
  model with mainstay codes from the other source (one extra attack stage), so the report gives the clean and
  attacked mAP with mainstay codes from both sources once (``card["mainstay_codes"]``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hashguard.attacks.registry import resolve_attack_params
from hashguard.errors import CheckpointError, ConfigError
from hashguard.models.checkpoint import read_model_config
from hashguard.pipeline.attack_stage import AttackedModel, attack_cost, attack_settings, run_one_attack, stage_name
from hashguard.pipeline.progress import StagePlan
from hashguard.pipeline.stages import run_stage
from hashguard.pipeline.study_config import StudyConfig

MAINSTAY = "mainstay"
#: the report's words for the two protocols of an ADSH model
PROTOCOL_LINES = {
    "adsh": "ADSH's own: the training pool is the database, its codes are V",
    "saat": "SAAT protocol: separate database split, encoded by the network",
}


def study_is_adsh(config: StudyConfig) -> bool:
    """Whether the study's model is an ADSH model: its checkpoint records ``"adsh"``, or it trains method adsh."""
    if config.checkpoint is not None:
        try:
            return bool(read_model_config(config.checkpoint).get("adsh"))
        except CheckpointError:  # an unreadable checkpoint fails later with its own message
            return False
    return config.method.name.lower() == "adsh"


def attack_source(config: StudyConfig, name: str = MAINSTAY) -> str:
    """``mainstay_from`` of attack ``name`` as the study runs it."""
    return str(resolve_attack_params(name, **config.attacks.params_for(name)).get("mainstay_from", "network"))


def defense_sources(config: StudyConfig) -> dict[str, str]:
    """``{defense: mainstay_from}`` for the study's defenses that build mainstay (or centre) codes."""
    from hashguard.pipeline.study_config import defense_settings

    sources = {}
    for entry in config.defenses.run:
        value = defense_settings(config, entry)[0].defense_params().get("mainstay_from")
        if value is not None:
            sources[entry.name] = str(value)
    return sources


def check_sources(config: StudyConfig, adsh: bool) -> None:
    """Refuse ``mainstay_from=database`` anywhere in the study (attack params, defense settings) when the study's
    model is not an ADSH model: one :class:`ConfigError` line, before anything runs."""
    if adsh:
        return
    from hashguard.pipeline.study_config import defense_settings

    users = [
        f"attack {entry.key}" for entry in config.attacks.suite if entry.params.get("mainstay_from") == "database"
    ]
    users += [
        f"defense {entry.name}" for entry in config.defenses.run
        if defense_settings(config, entry)[0].defense_params().get("mainstay_from") == "database"
    ]
    if users:
        raise ConfigError(
            f"mainstay_from=database ({', '.join(users)}) needs an ADSH model (its learned database codes V); the "
            f"study's model is {config.method.name if config.checkpoint is None else config.checkpoint}: use "
            "mainstay_from=network (the default)"
        )


def runs_other_source(config: StudyConfig, adsh: bool) -> bool:
    """Whether the study adds the mainstay attack with the other source (an ADSH model with mainstay in its suite)."""
    return adsh and any(entry.key == MAINSTAY for entry in config.attacks.suite)


def other_source(source: str) -> str:
    return "database" if source == "network" else "network"


def other_stage_name(config: StudyConfig) -> str:
    """The printed name of the extra stage."""
    return stage_name("undefended", f"{MAINSTAY}, mainstay codes from {other_source(attack_source(config))}")


def other_stage_cost(config: StudyConfig, queries: int) -> float:
    """The extra stage's cost for the plan (the same as the suite's mainstay stage)."""
    return 3 * attack_cost(config.attacks, MAINSTAY, queries)


def run_other_source(
    config: StudyConfig,
    target: AttackedModel,
    main_result: dict[str, Any],
    topk: int | None,
    plan: StagePlan,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Run the non-targeted mainstay attack on the undefended ADSH model with mainstay codes from the other source
    (a cached stage under ``attacks/mainstay-from-<source>``) and return ``card["mainstay_codes"]``: the source
    of the suite's mainstay attacks, the defenses' sources and, for both sources, the clean and attacked mAP."""
    used = attack_source(config)
    other = other_source(used)
    params = {**config.attacks.params_for(MAINSTAY), "mainstay_from": other}
    key = {
        "model": target.identity,
        **attack_settings(MAINSTAY, params),
        "queries": config.attacks.queries,
        "topk": topk,
    }
    directory: Path = target.directory / "attacks" / f"{MAINSTAY}-from-{other}"
    result = run_stage(
        other_stage_name(config), directory, key,
        lambda d: run_one_attack(target, MAINSTAY, params, config.attacks, None, topk, d, log), log, plan,
    )

    def summary(source: str, outcome: dict[str, Any]) -> dict[str, Any]:
        keys = ("clean_map", "adv_map", "num_queries", "topk")
        return {"source": source, **{k: outcome.get(k) for k in keys}}

    return {
        "attack_source": used,
        "defense_sources": defense_sources(config),
        "model": target.key,
        "results": [summary(used, main_result), summary(other, result)],
    }


def protocol_record(meta: dict[str, Any]) -> dict[str, Any] | None:
    """``card["adsh"]`` from the model's ``model.json``: its protocol, the pool size and the report's line."""
    record = meta.get("adsh")
    if not isinstance(record, dict):
        return None
    protocol = str(record.get("protocol", "adsh"))
    return {
        "protocol": protocol,
        "pool_items": record.get("pool_items"),
        "line": PROTOCOL_LINES.get(protocol, protocol),
    }
