"""Clean training of a hashing method as a step of :func:`hashguard.training.loop.fit`.

Per batch: u = f(x; alpha(step)) in train mode and one optimiser step on the method's own loss L(u, y, idx)
(the objectives of docs/methods.md). After every ``eval_every`` epochs (and the last) the held-out part of
the training split (never the query set) is ranked against the training split; the best epoch's weights are
kept in ``best.safetensors`` and become the final model when ``select="best"``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hashguard.config import TrainConfig
from hashguard.data.base import HashingDataset
from hashguard.encoding import encode_dataset
from hashguard.methods.base import HashingMethod
from hashguard.models.checkpoint import load_state_file, save_model, save_state_file
from hashguard.models.hash_model import HashModel
from hashguard.training.loop import Plan, StepOutput, TrainingStep

BEST_WEIGHTS = "best.safetensors"


def validation_map(model: HashModel, val_set: HashingDataset, database: HashingDataset, topk: int | None) -> float:
    """mAP@``topk`` of ``val_set`` ranked against ``database`` by the model's sign codes."""
    from hashguard.retrieval import mean_average_precision

    query_codes, query_labels = encode_dataset(model, val_set)
    db_codes, db_labels = encode_dataset(model, database)
    return float(mean_average_precision(query_codes, db_codes, query_labels, db_labels, topk=topk))


class CleanStep(TrainingStep):
    """One step of a hashing method's loss on a clean batch; best-epoch validation at the end of an epoch."""

    name = "training"
    data_parallel = True

    def __init__(
        self,
        model: HashModel,
        method: HashingMethod,
        train_set: HashingDataset,
        config: TrainConfig,
        *,
        seed: int,
        val_set: HashingDataset | None = None,
        describe: dict[str, Any] | None = None,
    ) -> None:
        self.model, self.method, self.train_set, self.config = model, method, train_set, config
        self.seed, self.val_set, self.describe = seed, val_set, dict(describe or {})
        self.best_epoch: int | None = None
        self.best_score: float | None = None

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, "method": self.method}

    def start(self, plan: Plan) -> None:
        super().start(plan)
        self.method.to(self.model.device)

    def lr(self, step_index: int, epoch: int) -> float:
        return self.config.lr_at_epoch(epoch)

    def __call__(self, batch: Any, step_index: int) -> StepOutput:
        images, labels, index = (t.to(self.model.device) for t in batch)
        u = self.model(images, alpha=self.method.alpha(step_index))
        u, labels, index = self.plan.gather(u, labels, index)  # the global batch (one process: as is)
        return StepOutput(self.method(u, labels, index), size=u.shape[0])

    def end_epoch(self, epoch: int, record: dict[str, Any]) -> dict[str, Any]:
        finished = epoch + 1
        if self.val_set is None or (finished % self.config.eval_every and finished != self.config.epochs):
            return {}
        score = validation_map(self.model, self.val_set, self.train_set, self.config.eval_topk)
        if self.best_score is None or score > self.best_score:
            self.best_score, self.best_epoch = score, finished
            if self.plan.is_main:
                save_state_file(self.plan.out_dir / BEST_WEIGHTS, self.model.state_dict())
        return {"val_map": score}

    def note(self, record: dict[str, Any]) -> str:
        cut = "all" if self.config.eval_topk is None else self.config.eval_topk
        return f", val mAP@{cut} {record['val_map']:.4f}" if "val_map" in record else ""

    def state_meta(self) -> dict[str, Any]:
        return {"best_epoch": self.best_epoch, "best_score": self.best_score}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.best_epoch, self.best_score = meta.get("best_epoch"), meta.get("best_score")

    def training_record(
        self, history: list[dict[str, Any]], selected: str = "last", best_epoch: int | None = None,
        best_score: float | None = None,
    ) -> dict[str, Any]:
        """The ``training`` record of ``model.json``: the recipe, the seed, which weights were kept, the history."""
        return {
            "config": self.config.model_dump(), "seed": self.seed, "epochs": self.config.epochs,
            "selected": selected, "best_epoch": best_epoch, "best_val_map": best_score, "history": history,
        }

    def finish(self, history: list[dict[str, Any]]) -> None:
        """Write ``model.json`` + weights (the last or the best epoch's) and leave them in the model."""
        out, config = self.plan.out_dir, self.config
        final_state = self.model.state_dict()
        selected = "last"
        if config.select == "best" and self.best_epoch is not None and (out / BEST_WEIGHTS).is_file():
            final_state = load_state_file(out / BEST_WEIGHTS)
            selected = f"best (epoch {self.best_epoch}, validation mAP {self.best_score:.4f})"
        training = self.training_record(history, selected, self.best_epoch, self.best_score)
        if self.plan.is_main:
            save_model(
                out, self.model, state=final_state,
                method={"name": self.method.name, "params": self.method.params()},
                num_classes=self.train_set.num_classes, dataset=self.describe.get("dataset"),
                extra={"training": training, **{k: v for k, v in self.describe.items() if k != "dataset"}},
            )
        self.model.load_state_dict(final_state)
        self.plan.log(f"wrote {out} ({selected} weights)")
