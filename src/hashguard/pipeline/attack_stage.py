"""Attacking one model of a study: the attack suite, the eps sweep, curves of the adversarial codes.

Each attack (and each sweep point) is its own cached stage under ``<model dir>/attacks/``; its result is the
:class:`~hashguard.attacks.evaluate.AttackResult` as a dict plus ``curves`` (P@N and the PR curve of the
adversarial query codes; for a targeted attack relevance is judged against the target labels). Beside the
adversarial codes, each stage writes ``per_query.npz``: the AP@k of every attacked query, clean and
adversarial (t-AP against the target labels for a targeted attack), from which the study's paired claims
are computed. The attacked model's training and database codes are computed once per model, and only when a
stage runs (or when a stage cached by an older version lacks ``per_query.npz``).

A stage is keyed by the attacked model's identity (its fingerprint, :mod:`hashguard.pipeline.fingerprint`) and by
:func:`attack_settings`: the attack's registered name and every setting it runs with, resolved through the
registry, so aliased spellings of one configuration share one cached result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hashguard.attacks import AttackContext, attack_spec, build_attack, build_context
from hashguard.attacks.evaluate import describe_run, evaluate_attack
from hashguard.attacks.pseudo_labelled import use_pseudo_labels
from hashguard.attacks.reach import reach_warning
from hashguard.attacks.registry import ATTACKS, resolve_attack_params
from hashguard.config import parse_fraction
from hashguard.data.base import DatasetSplits, HashingDataset
from hashguard.io_utils import atomic_write
from hashguard.models.hash_model import HashModel
from hashguard.pipeline.evaluate import evaluate_codes
from hashguard.pipeline.progress import StagePlan
from hashguard.pipeline.stages import run_stage
from hashguard.pipeline.study_config import AttackSuiteConfig, eps_label
from hashguard.progress_bar import progress_scope
from hashguard.pseudo_labels import PseudoLabelSpec
from hashguard.retrieval import average_precisions, load_codes, save_codes

PER_QUERY = "per_query.npz"
#: significant digits a number of an attack's settings is compared at (8/255 and 0.0313725 are one eps)
SIGNIFICANT_DIGITS = 6


def _canonical(value: Any) -> Any:
    """``value`` with every float at :data:`SIGNIFICANT_DIGITS` significant digits (lists and dicts walked)."""
    if isinstance(value, float):
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    if isinstance(value, dict):
        return {key: _canonical(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    return value


def attack_settings(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The canonical form of one attack configuration, what its cache entry is keyed by.

    The attack's registered name (``mainstay_targeted`` -> ``mainstay-targeted``) and every setting it runs
    with, resolved by the registry (:func:`~hashguard.attacks.registry.resolve_attack_params`): a parameter
    given at its default equals one omitted, an optimizer alias its registered name (``PGD``, ``I-FGSM`` ->
    ``pgd``, ``bim``), a fraction (``"8/255"``) its value; numbers are compared at
    :data:`SIGNIFICANT_DIGITS` significant digits, far below the 1/255 grid of 8-bit images, so ``8/255`` and
    ``0.0313725`` are one radius. Every resolved setting is kept, so a changed default reruns the stage
    instead of reusing a result computed under the old one.
    """
    resolved = resolve_attack_params(name, **{key: parse_fraction(value) for key, value in params.items()})
    if resolved.get("mainstay_from") == "network":  # the default, as before the setting existed: caches stay
        resolved.pop("mainstay_from")
    return {"attack": ATTACKS.key(name), "params": _canonical(resolved)}


@dataclass
class AttackedModel:
    """A model of the study under attack: its key (``undefended``, ``saat``, ...), the data and its identity."""

    key: str
    model: HashModel
    splits: DatasetSplits
    train_set: HashingDataset
    identity: Any
    directory: Path
    #: stored database (int8 codes, labels) that replaces the encoded database split (an ADSH-protocol model's V)
    database: tuple[Any, Any] | None = None
    #: an ADSH model's learned database codes V and the pool's labels (tensors), for the mainstay attacks with
    #: ``mainstay_from="database"``; None for every other model
    learned: tuple[Any, Any] | None = None
    #: k-means pseudo-labels in place of the training labels (a model trained without labels)
    pseudo: PseudoLabelSpec | None = None
    _context: AttackContext | None = field(default=None, repr=False)

    def context(self) -> AttackContext:
        """Training and database codes of this model (computed on first use)."""
        if self._context is None:
            database = self.splits.database if self.database is None else None
            with progress_scope(None):  # encoding bars on a terminal
                self._context = build_context(self.model, self.train_set, database, train_images=True)
            if self.database is not None:
                device = self.model.device
                self._context.database_codes = torch.as_tensor(self.database[0]).to(device)
                self._context.database_labels = torch.as_tensor(self.database[1]).float().to(device)
            if self.learned is not None:
                device = self.model.device
                self._context.learned_codes = torch.as_tensor(self.learned[0]).float().to(device)
                self._context.learned_labels = torch.as_tensor(self.learned[1]).float().to(device)
        return self._context


def stage_name(model_key: str, attack: str, eps: float | None = None) -> str:
    """The printed name of an attack stage."""
    where = f" @ eps {eps_label(eps)}" if eps is not None else ""
    return f"attack {attack}{where} ({model_key})"


def _curves(codes: np.ndarray, context: AttackContext, relevance_labels: np.ndarray, topk: int | None) -> dict:
    metrics = evaluate_codes(
        codes,
        context.database_codes.cpu().numpy(),
        relevance_labels,
        context.database_labels.cpu().numpy(),
        topk,
    )
    return {"precision_at_n": metrics["precision_at_n"], "pr_curve": metrics["pr_curve"], "map": metrics["map"]}


def run_one_attack(
    target: AttackedModel,
    name: str,
    params: dict[str, Any],
    suite: AttackSuiteConfig,
    target_labels: np.ndarray | None,
    topk: int | None,
    directory: Path,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Attack the query split of ``target`` with ``name`` and return the result with curves.

    ``log`` receives one line of what is about to run, one warning line when the iterations cannot reach the
    edge of the eps ball and one summary line at the end; progress bars with an ETA are drawn on stderr when it is
    a terminal.
    """
    context = target.context()
    attack = use_pseudo_labels(build_attack(name, target.model, context, **params), target.pseudo)
    if log is not None:
        warning = reach_warning(attack.params(), name)
        if warning is not None:
            log(f"  warning: {warning}")
        queries = len(target.splits.query) if suite.queries is None else min(suite.queries, len(target.splits.query))
        log(f"  {describe_run(attack, queries, suite.batch_size)}")
    run = evaluate_attack(
        attack,
        target.splits.query,
        context.database_codes,
        context.database_labels,
        target_labels=target_labels if attack.targeted else None,
        batch_size=suite.batch_size,
        topk=topk,
        limit=suite.queries,
        progress=None,
    )
    if log is not None:
        log(f"  {run.result.summary()}")
    relevance = run.target_labels if attack.targeted and run.target_labels is not None else run.labels
    save_codes(
        directory / "adversarial_query.npz",
        run.adv_codes,
        run.labels,
        meta={"attack": name, "model": target.key, "params": {k: str(v) for k, v in params.items()}},
    )
    save_per_query(directory / PER_QUERY, run.clean_codes, run.adv_codes, relevance, context, topk)
    result = run.result.to_dict()
    result["curves"] = _curves(run.adv_codes, context, relevance, topk)
    result["clean_curves"] = _curves(run.clean_codes, context, relevance, topk)  # the same queries, unattacked
    return result


def save_per_query(
    path: Path, clean_codes: np.ndarray, adv_codes: np.ndarray, relevance: np.ndarray, context: AttackContext,
    topk: int | None,
) -> None:
    """Write the per-query AP@``topk`` of the clean and the adversarial codes of the attacked queries.

    ``relevance`` is the true labels (non-targeted attack: AP) or the target labels (targeted: t-AP); the
    ranking and the cut-off are those of the study's mAP (:func:`hashguard.retrieval.average_precisions`).
    """
    db_codes = context.database_codes.cpu().numpy()
    db_labels = context.database_labels.cpu().numpy()
    k = None if topk is None else min(int(topk), len(db_codes))
    clean_ap = average_precisions(clean_codes, db_codes, relevance, db_labels, k)
    adv_ap = average_precisions(adv_codes, db_codes, relevance, db_labels, k)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, clean_ap=clean_ap, adv_ap=adv_ap, topk=np.array(-1 if k is None else k))

    atomic_write(path, write)


def load_per_query(path: Path) -> dict[str, np.ndarray] | None:
    """``{"clean_ap", "adv_ap"}`` of a stage's ``per_query.npz``, or None when missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: np.asarray(archive[key], dtype=np.float64) for key in ("clean_ap", "adv_ap")}
    except (OSError, ValueError, KeyError):
        return None


def _backfill_per_query(
    target: AttackedModel, name: str, directory: Path, target_labels: np.ndarray | None, topk: int | None
) -> None:
    """Recompute ``per_query.npz`` of a stage cached before it was written, from its saved adversarial codes
    (the clean codes of the same queries are encoded again with the attacked model)."""
    codes_path = directory / "adversarial_query.npz"
    if (directory / PER_QUERY).is_file() or not codes_path.is_file():
        return
    from torch.utils.data import Subset

    from hashguard.encoding import encode_dataset

    saved = load_codes(codes_path)
    n = int(saved.codes.shape[0])
    clean_codes, labels = encode_dataset(target.model, Subset(target.splits.query, range(n)))
    relevance = labels
    if attack_spec(name).targeted:
        if target_labels is None or len(target_labels) < n:
            return
        relevance = np.asarray(target_labels, dtype=np.float32)[:n]
    save_per_query(directory / PER_QUERY, clean_codes, saved.codes, relevance, target.context(), topk)


def attack_model(
    target: AttackedModel,
    attacks: list[str],
    suite: AttackSuiteConfig,
    target_labels: np.ndarray | None,
    targets_digest: str | None,
    topk: int | None,
    sweep: bool,
    plan: StagePlan,
    log: Any,
) -> dict[str, Any]:
    """Run the suite (and the sweep) against one model; returns ``{"attacks": ..., "eps_sweep": ...}``."""

    def stage_key(name: str, params: dict[str, Any]) -> dict[str, Any]:
        """What an attack stage's result depends on: the model's identity and :func:`attack_settings`."""
        return {
            "model": target.identity,
            **attack_settings(name, params),
            "queries": suite.queries,
            "topk": topk,
            "targets": targets_digest if attack_spec(name).targeted else None,
        }

    results: dict[str, Any] = {}
    for name in attacks:
        params = suite.params_for(name)
        results[name] = run_stage(
            stage_name(target.key, name),
            target.directory / "attacks" / name,
            stage_key(name, params),
            lambda d, n=name, p=params: run_one_attack(target, n, p, suite, target_labels, topk, d, log),
            log,
            plan,
        )
        _backfill_per_query(target, name, target.directory / "attacks" / name, target_labels, topk)
    sweeps: dict[str, list[dict[str, Any]]] = {}
    if sweep and suite.sweep.eps:
        for name in suite.sweep.attacks:
            points = []
            for eps in suite.sweep.eps:
                params = suite.params_for(name, eps=eps)
                own = attack_settings(name, suite.params_for(name))
                if name in results and attack_settings(name, params) == own:  # the suite's own run
                    outcome = results[name]
                else:
                    outcome = run_stage(
                        stage_name(target.key, name, eps),
                        target.directory / "sweep" / f"{name}-eps{eps:.6f}",
                        stage_key(name, params),
                        lambda d, n=name, p=params: _sweep_point(target, n, p, suite, target_labels, topk, d, log),
                        log,
                        plan,
                    )
                points.append({"eps": eps, "adv_map": outcome.get("adv_map"), "adv_tmap": outcome.get("adv_tmap")})
            sweeps[name] = points
    return {"attacks": results, "eps_sweep": sweeps}


def _sweep_point(
    target: AttackedModel,
    name: str,
    params: dict[str, Any],
    suite: AttackSuiteConfig,
    target_labels: np.ndarray | None,
    topk: int | None,
    directory: Path,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """One point of the eps sweep: the attack's mAP numbers only (no curves)."""
    result = run_one_attack(target, name, params, suite, target_labels, topk, directory, log)
    summary = {key: result.get(key) for key in ("adv_map", "adv_tmap", "clean_map", "clean_tmap")}
    return {"eps": params["eps"], **summary}


def attack_cost(suite: AttackSuiteConfig, name: str, num_queries: int, params: dict[str, Any] | None = None) -> float:
    """Forward+backward passes of one attack stage (for the ETA)."""
    spec = attack_spec(name)
    iterations = {**suite.params_for(name), **(params or {})}.get("iterations", spec.iterations)
    return float(num_queries) * max(int(iterations), 1)


def numpy_labels(dataset: HashingDataset) -> np.ndarray:
    """Float labels of a dataset as a numpy array."""
    return np.asarray(dataset.labels, dtype=np.float32)
