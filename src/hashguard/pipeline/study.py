"""``hashguard study``: the main job, as cached stages in one run directory.

train (or load ``checkpoint``) -> clean evaluation (encode query and database) -> target labels -> attack
suite and eps sweep against the trained model -> retrieval grid -> for each defense: adversarial training
(SAAT, ATRDH, CgAT), encode + clean evaluation of the hardened model, its attacks -> ``results.json``,
``report.md`` and ``report.html``.

Run directory::

    model/                      trained checkpoint (or absent when ``checkpoint`` names one)
    clean/                      clean codes and metrics of the trained model
    targets/target_labels.json  seeded target labels, shared by every targeted attack of the study
    models/<key>/attacks/<name> one directory per attack (result + adversarial codes), <key> = undefended,
    models/<key>/sweep/...      saat, ...; eps-sweep points
    grid/retrieval_grid.npz     the report's retrieval grid
    defenses/<name>/            hardened checkpoints (resumable), defenses/<name>/clean/ their clean metrics
    results.json report.md report.html

Every stage is skipped when its configuration is unchanged (``stage.json``) and an interrupted stage resumes.
The stages downstream of a model (its clean evaluation, attacks, defenses) are keyed by the model's fingerprint
(``cache_identity``: ``functional``, the default, or ``weights``; :mod:`hashguard.pipeline.fingerprint`), not by
how it was trained or where its checkpoint lies: a re-saved checkpoint or a copy reuses them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from hashguard.attacks import attack_spec, build_attack, load_or_create_target_labels
from hashguard.data.base import DatasetSplits
from hashguard.devices import resolve_device
from hashguard.encoding import encode_dataset
from hashguard.errors import ConfigError, DataError
from hashguard.io_utils import atomic_write_json
from hashguard.models.hash_model import HashModel
from hashguard.pipeline import adsh_study, detection_stage
from hashguard.pipeline.attack_stage import AttackedModel, attack_cost, attack_model, attack_settings, stage_name
from hashguard.pipeline.checkpoint import OpenedCheckpoint, open_checkpoint
from hashguard.pipeline.claims import study_claims
from hashguard.pipeline.evaluate import database_of, evaluate_codes
from hashguard.pipeline.fingerprint import study_identity
from hashguard.pipeline.progress import StagePlan, format_seconds, stage_cost
from hashguard.pipeline.stages import digest, forget_stage, run_stage, stage_done
from hashguard.pipeline.study_config import (
    StudyConfig,
    budget_table,
    defense_settings,
    eps_label,
    load_study_config,
    resolved_budgets,
)
from hashguard.pipeline.summary import summary_table
from hashguard.pipeline.train import model_spec_for, open_splits, run_training
from hashguard.plugins import display_names
from hashguard.protocol import PROTOCOL_NAME, departures, protocol_card
from hashguard.pseudo_labels import pseudo_label_spec_of
from hashguard.retrieval import save_codes
from hashguard.versions import environment_versions

__all__ = ["StudyConfig", "build_plan", "dry_run", "load_study_config", "protocol_lines", "run_study"]

CARD_FORMAT = "hashguard-study/1"


def _train_key(config: StudyConfig, splits: DatasetSplits) -> Any:
    """What the trained model depends on: the experiment as written (paths unresolved) and the data content."""
    if config.checkpoint is not None:
        return {"checkpoint": str(config.checkpoint)}
    experiment = config.experiment(resolve=False)
    dumped = experiment.model_dump(exclude={"device": True, "train": {"progress", "num_workers"}})
    if experiment.labels.budget is None:  # every label: the same key as a study cached before label budgets
        dumped.pop("labels")
    return {"experiment": dumped, "data": splits.fingerprint(), **_runtime_key()}


def _runtime_key() -> dict[str, Any]:
    """The forward-pass runtime in a stage key when it is not the default (float32, contiguous), so a bf16 study
    never reuses float32 results or the other way round (:mod:`hashguard.precision`)."""
    from hashguard.precision import Runtime, current_runtime

    runtime = current_runtime()
    return {} if runtime == Runtime() else {"runtime": runtime.describe()}


def _num_queries(config: StudyConfig, splits: DatasetSplits) -> int:
    return len(splits.query) if config.attacks.queries is None else min(config.attacks.queries, len(splits.query))


def build_plan(config: StudyConfig, splits: DatasetSplits, log: Callable[[str], None] = print) -> StagePlan:
    """Every stage of the study in order with a rough cost (image passes), for progress and the ETA."""
    val = config.train.val_fraction
    fit_items = len(splits.train) - int(round(len(splits.train) * val))
    encode_items = len(splits.query) + len(splits.database)
    queries = _num_queries(config, splits)
    suite = config.attacks
    costs: dict[str, float] = {}
    if config.checkpoint is None:
        costs["train"] = stage_cost(fit_items, 3 * config.train.epochs)
    costs["clean evaluation"] = stage_cost(encode_items, 1)
    costs["target labels"] = 1.0

    def add_attacks(key: str, names: list[str], sweep: bool) -> None:
        for index, name in enumerate(names):
            context = len(splits.train) + len(splits.database) if index == 0 else 0
            costs[stage_name(key, name)] = 3 * attack_cost(suite, name, queries) + context
        if sweep:
            for name in suite.sweep.attacks:
                for eps in suite.sweep.eps:
                    own = attack_settings(name, suite.params_for(name))
                    if name in names and attack_settings(name, suite.params_for(name, eps=eps)) == own:
                        continue
                    costs[stage_name(key, name, eps)] = 3 * attack_cost(suite, name, queries)

    add_attacks("undefended", [e.key for e in suite.suite], True)
    if adsh_study.runs_other_source(config, adsh_study.study_is_adsh(config)):
        costs[adsh_study.other_stage_name(config)] = adsh_study.other_stage_cost(config, queries)
    if config.report.grid_queries > 0:
        costs["retrieval grid"] = 3 * attack_cost(suite, config.report.grid_attack, config.report.grid_queries)
    for entry in config.defenses.run:
        settings, _ = defense_settings(config, entry)
        items = min(fit_items, settings.train_items or fit_items)
        costs[f"defend {entry.name}"] = stage_cost(items, settings.epochs * (3 * settings.iterations + 6))
        costs[f"clean evaluation ({entry.name})"] = stage_cost(encode_items, 1)
        add_attacks(entry.name, config.defense_attacks(), config.defenses.sweep)
    if config.detection.enabled and config.detection.adaptive:
        for key in ["undefended", *(entry.name for entry in config.defenses.run)]:
            costs[stage_name(key, detection_stage.ADAPTIVE)] = detection_stage.adaptive_cost(config, queries)
    costs["report"] = 1.0
    return StagePlan(costs, log=log)


def _check_attacks(config: StudyConfig, model: HashModel) -> None:
    """Build every attack of the study once (no context needed): unknown names and parameters fail here."""
    names = [e.key for e in config.attacks.suite] + list(config.attacks.sweep.attacks) + config.defense_attacks()
    for name in dict.fromkeys(names):
        build_attack(name, model, **config.attacks.params_for(name))
    adsh_study.check_sources(config, adsh_study.study_is_adsh(config))
    if config.report.grid_queries > 0 and attack_spec(config.report.grid_attack).targeted:
        raise ConfigError(f"report.grid_attack must be a non-targeted attack, not {config.report.grid_attack!r}")
    detection_stage.check_detection(config)


def _check_data(config: StudyConfig, images: bool = False) -> DatasetSplits:
    """Open the study's dataset; ``images``: also decode every listed image (the dry run's full check)."""
    data = config.experiment().data
    if data.root is not None and data.source == "listfile":
        from hashguard.data.check import check_dataset

        report = check_dataset(data.root, images=images)
        if not report.ok:
            raise DataError(f"{data.root}: {report.problems[0]}")
    splits = open_splits(data)
    for part in ("train", "query", "database"):
        if len(splits.split(part)) == 0:
            raise DataError(f"{data.source}: the {part} split is empty")
    return splits


def _base_model(config: StudyConfig, splits: DatasetSplits) -> HashModel:
    """The model the study will attack, built (untrained) or read from ``checkpoint``, checked against data."""
    if config.checkpoint is not None:
        return _open_model(config, config.checkpoint, splits, "cpu").model
    from hashguard.methods import build_method

    spec = model_spec_for(config.experiment(), splits)
    build_method(config.method.name, spec.bits, splits.num_classes, len(splits.train), seed=config.seed,
                 **config.method.params)
    return HashModel(spec)


def _open_model(config: StudyConfig, directory: Path, splits: DatasetSplits, device: Any) -> OpenedCheckpoint:
    """A checkpoint of the study opened with the study's data, its images and label width checked."""
    opened = open_checkpoint(directory, device=device, data=config.experiment().data, splits=splits)
    opened.check_classes(splits.num_classes)
    return opened


def protocol_lines(config: StudyConfig) -> list[str]:
    """The resolved per-attack budgets and the departures from the paper protocol, as printed lines."""
    lines = ["attack budgets (each attack's own unless attacks.override or its params set them):"]
    lines += [f"  {line}" for line in budget_table(config).splitlines()]
    found = departures(config)
    if found:
        lines.append(f"departures from the {PROTOCOL_NAME} protocol ({len(found)}):")
        lines += [f"  - {line}" for line in found]
    else:
        lines.append(f"departures from the {PROTOCOL_NAME} protocol: none")
    return lines


def dry_run(config: StudyConfig, log: Callable[[str], None] = print) -> StagePlan:
    """Print the resolved attack budgets and the protocol departures; validate the configuration, the dataset,
    the model, every attack and defense; print the plan."""
    for line in protocol_lines(config):
        log(line)
    splits = _check_data(config, images=True)
    model = _base_model(config, splits)
    _check_attacks(config, model)
    for entry in config.defenses.run:
        defense_settings(config, entry)
    plan = build_plan(config, splits, log)
    log(
        f"study {config.name!r}: {splits.name}, {len(splits.train)} train / {len(splits.query)} query / "
        f"{len(splits.database)} database items, {splits.num_classes} classes, image "
        f"{'x'.join(map(str, splits.image_shape))}; {config.method.name}, {model.bits} bits; "
        f"L-inf attacks on {_num_queries(config, splits)} queries, mAP@{_topk_label(config.evaluation.topk)}"
    )
    total = sum(plan.costs.values())
    for index, (name, cost) in enumerate(plan.costs.items(), 1):
        log(f"  {index:>2}. {name:<48} {100 * cost / total:5.1f}% of the work")
    log(f"cache identity: {config.cache_identity} fingerprints key the stages downstream of each model")
    log("configuration, dataset, model, attacks and defenses are valid (dry run: nothing was trained)")
    return plan


def _topk_label(topk: int | None) -> str:
    return "all" if topk is None else str(topk)


def _threat_eps(config: StudyConfig, budgets: dict[str, dict[str, Any]]) -> float:
    """The radius the report draws as "the threat model's eps": the override's, else the first swept (or
    first suite) attack's own."""
    if config.attacks.override.eps is not None:
        return config.attacks.override.eps
    for name in [*config.attacks.sweep.attacks, *(e.key for e in config.attacks.suite)]:
        if name in budgets and attack_spec(name).iterative:
            return budgets[name]["eps"]
    return 8 / 255


def _clean_stage(
    name: str, model: HashModel, splits: DatasetSplits, directory: Path, key: Any, topk: int | None,
    plan: StagePlan, log: Callable[[str], None], database: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """Encode query and database with ``model`` and evaluate clean retrieval (metrics with curves); ``database``
    (codes, labels) replaces the encoded database split (an ADSH-protocol model's learned codes V)."""

    def work(out: Path) -> dict[str, Any]:
        codes = {}
        for split in ("query", "database"):
            if split == "database" and database is not None:
                codes[split] = database
            else:
                codes[split] = encode_dataset(model, splits.split(split), progress=True, description=split)
            save_codes(out / f"{split}.npz", *codes[split], meta={"split": split})
        (query_codes, query_labels), (db_codes, db_labels) = codes["query"], codes["database"]
        metrics = evaluate_codes(query_codes, db_codes, query_labels, db_labels, topk)
        atomic_write_json(out / "metrics.json", metrics)
        return _clean_summary(metrics)

    return run_stage(name, directory, key, work, log, plan)


def _clean_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    keys = ("map", "map_tie_aware", "map_all", "topk", "n_queries", "precision_at_n", "pr_curve")
    return {key: metrics.get(key) for key in keys}


def _learned_codes(meta: dict[str, Any], directory: Path) -> tuple[Any, Any] | None:
    """An ADSH model's learned database codes V and the pool's labels (either protocol), else None."""
    if not meta.get("adsh"):
        return None
    from hashguard.methods.adsh import load_database_codes

    return load_database_codes(directory)


def _identity(
    config: StudyConfig, opened: OpenedCheckpoint, directory: Path, fit_set: Any, splits: DatasetSplits, what: str,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """The cache identity of an opened model (:func:`hashguard.pipeline.fingerprint.study_identity`), logged."""
    identity, found = study_identity(opened.model, opened.meta, directory, config.cache_identity,
                                     fit_set.fingerprint(), splits.fingerprint())
    log(f"cache identity of {what}: {found.mode} fingerprint {found.short} (cache_identity: {config.cache_identity})")
    return {**identity, **_runtime_key()}


def _defense_base(identity: dict[str, Any], opened: OpenedCheckpoint) -> dict[str, Any]:
    """What adversarial training from a model depends on besides the defense's settings: the model's identity
    and its hashing method's record and training seed (the method's loss and CSQ / DPN centres)."""
    return {**identity, "method": opened.meta.get("method") or {}, "training_seed": opened.training_seed}


def _digest_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def run_study(
    config: StudyConfig, out_dir: str | Path, log: Callable[[str], None] = print, report: bool = True
) -> dict[str, Any]:
    """Run (or resume) every stage of the study into ``out_dir`` and return the results card."""
    out = Path(out_dir)
    splits = _check_data(config)
    _check_attacks(config, _base_model(config, splits))
    plan = build_plan(config, splits, log)
    out.mkdir(parents=True, exist_ok=True)  # only once the configuration and the data are known to be usable
    device = resolve_device(config.device)
    topk = config.evaluation.topk
    train_key = _train_key(config, splits)
    training: dict[str, Any] = {}
    if config.checkpoint is None:
        experiment = config.experiment()

        def _train(directory: Path) -> dict[str, Any]:
            result = run_training(experiment, directory, resume=True, splits=splits, log=log)
            return {"best_epoch": result.best_epoch, "best_val_map": result.best_score}

        model_dir = out / "model"
        training = run_stage("train", model_dir, train_key, _train, log, plan)
    else:
        model_dir = Path(config.checkpoint)
    opened = _open_model(config, model_dir, splits, device)
    model, meta = opened.model, opened.meta
    fit_set = opened.training_split()  # the items the model was fitted on (its validation items held out)
    stored = database_of(meta, model_dir)  # ADSH protocol: the database is the training pool's learned codes V
    learned = _learned_codes(meta, model_dir)
    database_labels = splits.database.labels if stored is None else stored[1]

    identity = _identity(config, opened, model_dir, fit_set, splits, "the study's model", log)
    clean_key = {"model": identity, "evaluation": config.evaluation.model_dump(), "data": splits.fingerprint()}
    clean = _clean_stage("clean evaluation", model, splits, out / "clean", clean_key, topk, plan, log, stored)

    targets_path = out / "targets" / "target_labels.json"

    def _targets(directory: Path) -> dict[str, Any]:
        targets = load_or_create_target_labels(
            targets_path, splits.query.labels, database_labels, seed=config.attacks.target_seed
        )
        return {"count": int(targets.shape[0]), "seed": config.attacks.target_seed}

    targets_key = {"data": splits.fingerprint(), "seed": config.attacks.target_seed}
    run_stage("target labels", targets_path.parent, targets_key, _targets, log, plan)
    target_labels = load_or_create_target_labels(
        targets_path, splits.query.labels, database_labels, seed=config.attacks.target_seed
    )
    targets_digest = _digest_file(targets_path)

    models: dict[str, Any] = {}
    undefended = AttackedModel(
        "undefended", model, splits, fit_set, identity, out / "models" / "undefended", database=stored,
        learned=learned, pseudo=pseudo_label_spec_of(meta),
    )
    attacked = attack_model(
        undefended, [e.key for e in config.attacks.suite], config.attacks, target_labels, targets_digest, topk,
        True, plan, log,
    )
    mainstay_codes = None
    if adsh_study.runs_other_source(config, learned is not None):  # both sources of mainstay codes, once
        mainstay_codes = adsh_study.run_other_source(
            config, undefended, attacked["attacks"][adsh_study.MAINSTAY], topk, plan, log
        )
    method_name = str((meta.get("method") or {}).get("name", config.method.name))
    models["undefended"] = {"label": f"{method_name.upper()} (undefended)", "defense": None, "clean": clean,
                            **attacked}

    grid_info = None
    if config.report.grid_queries > 0:
        from hashguard.pipeline.grid import build_grid

        grid_dir = out / "grid"
        grid_params = config.attacks.params_for(config.report.grid_attack)
        grid_key = {"model": identity, **attack_settings(config.report.grid_attack, grid_params),
                    "report": config.report.model_dump()}
        run_stage(
            "retrieval grid", grid_dir, grid_key,
            lambda d: build_grid(undefended, config.report.grid_attack, grid_params, config.report.grid_queries,
                                 config.report.grid_topk, d / "retrieval_grid.npz"),
            log, plan,
        )
        grid_info = {"file": "grid/retrieval_grid.npz", "model": "undefended", "attack": config.report.grid_attack}

    attacked_models = [undefended]
    for entry in config.defenses.run:
        models[entry.name] = _defend_and_attack(
            config, entry, model_dir, _defense_base(identity, opened), splits, fit_set, target_labels,
            targets_digest, out, device, method_name, plan, log, attacked_models,
        )
    detection = None
    if config.detection.enabled:  # query detection against every model's attacks (pipeline/detection_stage.py)
        from hashguard.pipeline.detect import model_class_codes

        class_codes = model_class_codes(opened, len(fit_set))
        detection = detection_stage.detection_card(config, {
            t.key: {"label": models[t.key]["label"], **detection_stage.detect_model(
                config, t, models[t.key], class_codes, topk, plan, log)}
            for t in attacked_models
        })

    budgets = resolved_budgets(config)
    threat_eps = _threat_eps(config, budgets)
    card = {
        "format": CARD_FORMAT,
        "study": config.name,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "threat_model": {
            "norm": "Linf",
            "eps": threat_eps,
            "eps_label": eps_label(threat_eps),
            "iterations": config.attacks.override.iterations,
            "queries": _num_queries(config, splits),
            "topk": clean.get("topk"),
            "target_seed": config.attacks.target_seed,
            "attacks": budgets,
        },
        "protocol": protocol_card(config),
        "names": display_names(),
        "dataset": meta.get("dataset"),
        "model": {"backbone": (meta.get("spec") or {}).get("backbone", config.model.backbone), "bits": model.bits},
        "method": meta.get("method") or {"name": config.method.name},
        "config": config.model_dump(mode="json"),
        "versions": environment_versions(),
        "training": training,
        "clean": {k: clean.get(k) for k in ("map", "map_tie_aware", "map_all", "topk")},
        "models": models,
        "retrieval_grid": grid_info,
        "stages": plan.timings,
    }
    adsh = adsh_study.protocol_record(meta)
    card.update({k: v for k, v in (("adsh", adsh), ("mainstay_codes", mainstay_codes), ("detection", detection))
                 if v is not None})
    card["claims"] = study_claims(models, out)  # paired verdicts on the paper's claims (pipeline/claims.py)
    atomic_write_json(out / "results.json", card)
    if report:
        _report_stage(card, out, plan, log)
        card["stages"] = plan.timings
        atomic_write_json(out / "results.json", card)
    for line in summary_table(card).splitlines():
        log(line)
    log(f"study finished in {format_seconds(time.perf_counter() - plan.started)}; results in {out / 'results.json'}")
    return card


def _report_stage(card: dict[str, Any], out: Path, plan: StagePlan, log: Callable[[str], None]) -> None:
    """``report.md`` and ``report.html`` from the card (cached on the card's content, timings excluded)."""
    try:
        from hashguard.report import write_report
    except ImportError as exc:  # the report extra (matplotlib) is missing
        log(f"report skipped: {exc} (from the hashguard clone: pip install -e '.[report]')")
        return
    directory = out / "figures"
    content = {key: value for key, value in card.items() if key not in ("created", "stages", "versions")}
    reports_exist = (out / "report.html").is_file() and (out / "report.md").is_file()
    if not reports_exist or stage_done(directory, digest(content)) is None:
        forget_stage(directory)  # the report is rewritten in place, never set aside

    def work(_: Path) -> dict[str, Any]:
        paths = write_report(card, out)
        return {name: path.name for name, path in paths.items()}

    run_stage("report", directory, content, work, log, plan)


def _defend_and_attack(
    config: StudyConfig,
    entry: Any,
    model_dir: Path,
    base: dict[str, Any],
    splits: DatasetSplits,
    fit_set: Any,
    target_labels: np.ndarray,
    targets_digest: str,
    out: Path,
    device: Any,
    method_name: str,
    plan: StagePlan,
    log: Callable[[str], None],
    attacked_models: list[AttackedModel] | None = None,
) -> dict[str, Any]:
    """Adversarially train one defense from the study's model, evaluate it clean and attack it (the attacked
    model is appended to ``attacked_models`` when given)."""
    from hashguard.defenses import defend

    settings, threat = defense_settings(config, entry)
    defense_dir = out / "defenses" / entry.name
    defense_key = {"base": base, "defense": settings.identity()}

    def _defend(directory: Path) -> dict[str, Any]:
        started = time.perf_counter()
        result = defend(model_dir, entry.name, directory, config=settings, resume=True, train_set=fit_set,
                        device=config.device, log=log)
        return {"epochs": result.epochs_done, "seconds": time.perf_counter() - started}

    defended = run_stage(f"defend {entry.name}", defense_dir, defense_key, _defend, log, plan)
    hardened_checkpoint = _open_model(config, defense_dir, splits, device)
    hardened, hardened_meta = hardened_checkpoint.model, hardened_checkpoint.meta
    stored = database_of(hardened_meta, defense_dir)  # ADSH protocol: the base model's V, kept by the defense
    identity = _identity(config, hardened_checkpoint, defense_dir, fit_set, splits, f"the {entry.name} model", log)
    clean = _clean_stage(
        f"clean evaluation ({entry.name})", hardened, splits, defense_dir / "clean",
        {"model": identity, "evaluation": config.evaluation.model_dump(), "data": splits.fingerprint()},
        config.evaluation.topk, plan, log, stored,
    )
    target = AttackedModel(
        entry.name, hardened, splits, fit_set, identity, out / "models" / entry.name, database=stored,
        learned=_learned_codes(hardened_meta, defense_dir), pseudo=pseudo_label_spec_of(hardened_meta),
    )
    attacked = attack_model(
        target, config.defense_attacks(), config.attacks, target_labels, targets_digest, config.evaluation.topk,
        config.defenses.sweep, plan, log,
    )
    if attacked_models is not None:
        attacked_models.append(target)
    provenance = hardened_meta.get("defense") or {}
    return {
        "label": f"{method_name.upper()} + {entry.name.upper()}",
        "defense": {
            "name": entry.name,
            "reference": provenance.get("reference"),
            "config": settings.model_dump(mode="json"),
            "threat": threat,
            "seconds": defended.get("seconds"),
        },
        "clean": clean,
        **attacked,
    }
