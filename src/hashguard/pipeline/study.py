"""``hashguard study``: the main job, as cached stages in one run directory.

Stages so far: train (or resume) -> encode query and database -> clean evaluation -> ``results.json``.
Later stages (attacks, defenses, report) plug in after the clean evaluation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field

from hashguard.config import ExperimentConfig, StrictModel, apply_overrides, build_config, read_yaml
from hashguard.devices import resolve_device
from hashguard.encoding import encode_dataset
from hashguard.io_utils import atomic_write_json
from hashguard.models.checkpoint import load_model
from hashguard.pipeline.evaluate import evaluate_codes
from hashguard.pipeline.stages import run_stage
from hashguard.pipeline.train import open_splits, run_training
from hashguard.retrieval import save_codes
from hashguard.versions import environment_versions


class EvaluationConfig(StrictModel):
    topk: int | None = Field(default=5000, gt=0)


class StudyConfig(ExperimentConfig):
    """A whole robustness study: the experiment to train plus what to evaluate."""

    name: str = "study"
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)

    def experiment(self) -> ExperimentConfig:
        return ExperimentConfig(**{k: getattr(self, k) for k in ExperimentConfig.model_fields})


def load_study_config(path: str | os.PathLike[str], overrides: list[str] | None = None) -> StudyConfig:
    payload = apply_overrides(read_yaml(path), list(overrides or []))
    return build_config(StudyConfig, payload, str(path))


def run_study(config: StudyConfig, out_dir: str | Path, log: Any = print) -> dict[str, Any]:
    """Run (or resume) every stage of the study into ``out_dir`` and return the results card."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    experiment = config.experiment()
    splits = open_splits(config.data)
    model_dir = out / "model"

    def _train(directory: Path) -> dict[str, Any]:
        result = run_training(experiment, directory, resume=True, splits=splits, log=log)
        return {"best_epoch": result.best_epoch, "best_val_map": result.best_score}

    train_key = experiment.model_dump(exclude={"device": True, "train": {"progress", "num_workers"}})
    training = run_stage("train", model_dir, train_key, _train, log)

    model, meta = load_model(model_dir, device=resolve_device(config.device))
    codes_dir = out / "codes"

    def _encode(directory: Path) -> dict[str, Any]:
        for split in ("query", "database"):
            codes, labels = encode_dataset(model, splits.split(split), progress=True, description=split)
            save_codes(directory / f"{split}.npz", codes, labels, meta={"split": split, "stage": "clean"})
        return {"fingerprint": splits.fingerprint()}

    run_stage("encode", codes_dir, {"train": train_key, "data": splits.fingerprint()}, _encode, log)

    def _evaluate(directory: Path) -> dict[str, Any]:
        from hashguard.retrieval import load_codes

        query, database = load_codes(codes_dir / "query.npz"), load_codes(codes_dir / "database.npz")
        metrics = evaluate_codes(query.codes, database.codes, query.labels, database.labels, config.evaluation.topk)
        atomic_write_json(directory / "metrics.json", metrics)
        return {key: metrics[key] for key in ("map", "map_tie_aware", "map_all", "topk")}

    clean = run_stage(
        "clean evaluation", out / "clean", {"train": train_key, "evaluation": config.evaluation.model_dump()},
        _evaluate, log,
    )
    card = {
        "study": config.name,
        "config": config.model_dump(),
        "versions": environment_versions(),
        "dataset": meta.get("dataset"),
        "training": training,
        "clean": clean,
    }
    atomic_write_json(out / "results.json", card)
    topk = clean["topk"] if clean["topk"] is not None else "all"
    log(f"clean mAP@{topk} {clean['map']:.4f} (tie-aware {clean['map_tie_aware']:.4f})")
    log(f"results in {out / 'results.json'}")
    return card
