"""The one training loop (:func:`hashguard.training.loop.fit`) against the loops it replaced, on resume, and with a
step that keeps state of its own.

The oracle is ``legacy_loops.py`` beside this file: the clean and adversarial loops as they were before they
became steps of one loop. Both are run here with the same seeds on the same machine, so their results must be
bit-identical (``torch.equal``), whatever the CPU or thread count.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from legacy_loops import legacy_adversarial_train, legacy_train_model  # the pre-refactor loops, beside this file
from torch import nn
from torch.utils.data import TensorDataset

from hashguard.config import TrainConfig
from hashguard.data.base import SubsetDataset
from hashguard.defenses import DefenseConfig, adversarial_train, build_defense
from hashguard.errors import HashguardError
from hashguard.methods import build_method, method_class
from hashguard.models import HashModel, ModelSpec
from hashguard.models.checkpoint import load_state_file
from hashguard.training import LoopSettings, StepOutput, TrainingStep, fit, train_model
from hashguard.training.state import latest_checkpoint, read_checkpoint

MODEL_SPEC = dict(backbone="small_cnn", bits=16, in_channels=1, image_size=28, mean=[0.13], std=[0.31])
CLEAN = dict(
    recipe="fast", epochs=2, batch_size=25, optimizer="sgd", lr=0.01, momentum=0.9, select="best",
    eval_topk=None, progress=False, val_fraction=0,
)
METHODS = [("dpsh", {}), ("hashnet", {"step_size": 2})]  # memory banks; HashNet's alpha moves every 2 steps
DEFENSES = {
    # protocol mode (inner attack in train mode), crop-and-flip from the step's generator, SGD, 4 steps: the
    # integer milestones 2 and 3 both fall inside the run
    "saat": dict(epochs=2, batch_size=32, iterations=2, eps=16 / 255, step=4 / 255, augment=True, lr=0.01),
    # online PrototypeNet with its own Adam, the outer Adam, banks refreshed every batch
    "atrdh": dict(preset="demo", epochs=2, batch_size=32, iterations=2, prototype_hidden=32, memory_init="zeros"),
}


def _model(method: str) -> HashModel:
    torch.manual_seed(123)
    return HashModel(ModelSpec(**MODEL_SPEC, **method_class(method).model_overrides()))


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _records(history: list[dict]) -> list[dict]:
    """History without the wall-clock field."""
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


def _clean(train, splits, out, name, params, **run):
    """2 epochs of 4 batches of 25 items, validated on 40 other digits."""
    data, val = SubsetDataset(splits.train, np.arange(100)), SubsetDataset(splits.query, np.arange(40))
    model = _model(name)
    method = build_method(name, 16, 10, len(data), seed=0, **params)
    result = train(model, method, data, TrainConfig(**CLEAN), out, seed=7, val_set=val, log=None, **run)
    return model, method, result


def _adversarial(train, splits, out, name, **run):
    """2 epochs of 2 batches of 32 items."""
    data = SubsetDataset(splits.train, np.arange(64))
    model = _model("dpsh")
    method = build_method("dpsh", 16, 10, len(data), seed=0)
    config = DefenseConfig(defense=name, progress=False, **DEFENSES[name])
    defense = build_defense(name, config)
    result = train(model, method, defense, data, config, out, describe={"base": "test"}, log=None, **run)
    return model, method, defense, result


def _last_checkpoint(out):
    return read_checkpoint(latest_checkpoint(out))


# ------------------------------------------------------------------------------------ (a) clean: legacy == new


@pytest.mark.parametrize("name, params", METHODS)
def test_clean_step_reproduces_the_legacy_loop(tiny_splits, tmp_path, name, params):
    old_model, old_method, old = _clean(legacy_train_model, tiny_splits, tmp_path / "old", name, params)
    new_model, new_method, new = _clean(train_model, tiny_splits, tmp_path / "new", name, params)
    assert not torch.equal(new_model.backbone.hash_layer.weight, _model(name).backbone.hash_layer.weight)
    assert new_method.bank.U.abs().sum() > 0  # the bank was written: its comparison below is not vacuous
    _same(old_model.state_dict(), new_model.state_dict())
    _same(old_method.state_dict(), new_method.state_dict())
    assert _records(old.history) == _records(new.history)
    assert [r["epoch"] for r in new.history] == [1, 2] and all("val_map" in r for r in new.history)
    assert (old.epochs_done, old.best_epoch, old.best_score) == (new.epochs_done, new.best_epoch, new.best_score)
    for file in ("model.safetensors", "best.safetensors"):
        _same(load_state_file(tmp_path / "old" / file), load_state_file(tmp_path / "new" / file))
    old_tensors, old_meta = _last_checkpoint(tmp_path / "old")
    new_tensors, new_meta = _last_checkpoint(tmp_path / "new")
    _same(old_tensors, new_tensors)  # model, method bank and SGD momentum, under the same names
    assert _records(old_meta.pop("history")) == _records(new_meta.pop("history"))
    assert old_meta == new_meta
    old_json = json.loads((tmp_path / "old" / "model.json").read_text())["training"]
    new_json = json.loads((tmp_path / "new" / "model.json").read_text())["training"]
    assert _records(old_json.pop("history")) == _records(new_json.pop("history")) and old_json == new_json


# -------------------------------------------------------------------------------- (b) adversarial: legacy == new


@pytest.mark.parametrize("name", sorted(DEFENSES))
def test_adversarial_step_reproduces_the_legacy_loop(tiny_splits, tmp_path, name):
    old_model, old_method, old_defense, old = _adversarial(legacy_adversarial_train, tiny_splits, tmp_path / "o", name)
    new_model, new_method, new_defense, new = _adversarial(adversarial_train, tiny_splits, tmp_path / "n", name)
    assert new.finished and new.epochs_done == 2
    assert not torch.equal(new_model.backbone.hash_layer.weight, _model("dpsh").backbone.hash_layer.weight)
    _same(old_model.state_dict(), new_model.state_dict())
    _same(old_method.state_dict(), new_method.state_dict())
    _same(old_defense.state_tensors(), new_defense.state_tensors())  # banks; ATRDH's PrototypeNet and its Adam
    assert old_defense.state_meta() == new_defense.state_meta()
    assert _records(old.history) == _records(new.history)
    assert [r["lr"] for r in new.history] == [r["lr"] for r in old.history]
    _same(load_state_file(tmp_path / "o" / "model.safetensors"), load_state_file(tmp_path / "n" / "model.safetensors"))
    old_tensors, old_meta = _last_checkpoint(tmp_path / "o")
    new_tensors, new_meta = _last_checkpoint(tmp_path / "n")
    _same(old_tensors, new_tensors)
    assert _records(old_meta.pop("history")) == _records(new_meta.pop("history")) and old_meta == new_meta
    old_json = json.loads((tmp_path / "o" / "model.json").read_text())["defense"]
    new_json = json.loads((tmp_path / "n" / "model.json").read_text())["defense"]
    assert _records(old_json.pop("history")) == _records(new_json.pop("history")) and old_json == new_json


# --------------------------------------------------------------------- (c) interrupted + resumed == uninterrupted


def test_resumed_clean_run_equals_the_uninterrupted_one(tiny_splits, tmp_path):
    """HashNet (bank, continuation) with best-epoch selection, paused after epoch 1 by the new loop and by the
    legacy one (the checkpoint format is unchanged), resumed by the new loop."""
    hashnet = ("hashnet", {"step_size": 2})
    straight_model, straight_method, straight = _clean(train_model, tiny_splits, tmp_path / "a", *hashnet)
    for pause_with, out in ((train_model, tmp_path / "new"), (legacy_train_model, tmp_path / "legacy")):
        _, _, paused = _clean(pause_with, tiny_splits, out, *hashnet, stop_after_epoch=1)
        assert paused.epochs_done == 1 and not (out / "model.safetensors").exists()
        model, method, resumed = _clean(train_model, tiny_splits, out, *hashnet, resume=True)
        assert resumed.epochs_done == 2 and (out / "model.safetensors").exists()
        _same(straight_model.state_dict(), model.state_dict())
        _same(straight_method.state_dict(), method.state_dict())
        assert _records(straight.history) == _records(resumed.history)
        assert (straight.best_epoch, straight.best_score) == (resumed.best_epoch, resumed.best_score)


def test_resumed_adversarial_run_equals_the_uninterrupted_one(tiny_splits, tmp_path):
    """ATRDH: model, bank, outer Adam, PrototypeNet and its Adam and the milestone schedule across the pause,
    paused by the new loop and by the legacy one, resumed by the new loop."""
    straight_model, straight_method, straight_defense, straight = _adversarial(
        adversarial_train, tiny_splits, tmp_path / "a", "atrdh"
    )
    for pause_with, out in ((adversarial_train, tmp_path / "new"), (legacy_adversarial_train, tmp_path / "legacy")):
        _, _, _, paused = _adversarial(pause_with, tiny_splits, out, "atrdh", stop_after_epoch=1)
        assert not paused.finished and paused.epochs_done == 1
        model, method, defense, resumed = _adversarial(adversarial_train, tiny_splits, out, "atrdh", resume=True)
        assert resumed.finished and resumed.epochs_done == 2
        _same(straight_model.state_dict(), model.state_dict())
        _same(straight_method.state_dict(), method.state_dict())
        _same(straight_defense.state_tensors(), defense.state_tensors())
        assert _records(straight.history) == _records(resumed.history)


# ----------------------------------------------------------------------- (d) a step with state of its own


ITEMS, DIM, BITS = 40, 6, 4


class CodeTableStep(TrainingStep):
    """A toy scheme in the manner of ADSH / two-view hashing: the codes of the training items are free variables
    (a table the optimiser updates beside the network), a network with dropout sees a second, noisy view drawn
    from the step's generator, and a counter records how often each item was visited."""

    name = "toy"

    def __init__(self) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(DIM, 16), nn.Dropout(0.3), nn.Linear(16, BITS))
        self.table = nn.Parameter(torch.zeros(ITEMS, BITS))
        self.seen = torch.zeros(ITEMS, dtype=torch.long)
        self.finished = False

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def parameters(self) -> list[nn.Parameter]:
        return [*self.net.parameters(), self.table]

    def lr(self, step_index: int, epoch: int) -> float:
        return 0.5 / (1 + step_index)

    def begin_epoch(self, epoch: int, generator: torch.Generator) -> None:
        super().begin_epoch(epoch, generator)
        self.generator = generator

    def __call__(self, batch, step_index: int) -> StepOutput:
        x, index = batch
        view = x + 0.1 * torch.randn(x.shape, generator=self.generator)
        u = torch.tanh(self.net(view))
        self.seen[index] += 1
        loss = ((u - torch.tanh(self.table[index])) ** 2).mean() + 0.1 * ((self.table[index].abs() - 1) ** 2).mean()
        return StepOutput(loss, {"table": float(self.table.detach().abs().mean())}, x.shape[0])

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"table": self.table.detach(), "seen": self.seen}

    def state_meta(self) -> dict:
        return {"visits": int(self.seen.sum())}

    def load_state(self, tensors, meta) -> None:
        with torch.no_grad():
            self.table.copy_(tensors["table"])
        self.seen.copy_(tensors["seen"])
        assert meta["visits"] == int(self.seen.sum())

    def finish(self, history) -> None:
        self.finished = True


class ForgetfulStep(CodeTableStep):
    """The same scheme without restoring its own state: the control that shows the checkpoint carries it."""

    def load_state(self, tensors, meta) -> None:
        pass


def _toy_data() -> TensorDataset:
    x = torch.randn(ITEMS, DIM, generator=torch.Generator().manual_seed(1))
    return TensorDataset(x, torch.arange(ITEMS))


def _toy_fit(step, out, **run):
    settings = LoopSettings(epochs=3, batch_size=16, seed=5)
    return fit(step, _toy_data(), settings, out, identity="toy", log=None,
               make_optimizer=lambda params: torch.optim.SGD(params, lr=0.5, momentum=0.9), **run)


def test_a_step_with_its_own_state_survives_checkpoint_and_resume(tmp_path):
    straight = CodeTableStep()
    result = _toy_fit(straight, tmp_path / "a")
    assert result.finished and straight.finished
    assert torch.equal(straight.seen, torch.full((ITEMS,), 3))  # every item once per epoch
    assert straight.table.detach().abs().min() > 0  # the table learned

    paused = CodeTableStep()
    assert not _toy_fit(paused, tmp_path / "b", stop_after_epoch=1).finished and not paused.finished
    resumed = CodeTableStep()
    again = _toy_fit(resumed, tmp_path / "b", resume=True)
    assert again.finished and resumed.finished
    assert torch.equal(resumed.seen, straight.seen)
    assert torch.equal(resumed.table, straight.table)
    _same(straight.net.state_dict(), resumed.net.state_dict())
    assert _records(again.history) == _records(result.history)
    assert set(result.history[0]) == {"epoch", "loss", "table", "lr", "seconds"}

    forgetful = ForgetfulStep()
    _toy_fit(forgetful, tmp_path / "b", resume=True)  # resumes after epoch 3: nothing left to run
    _toy_fit(ForgetfulStep(), tmp_path / "c", stop_after_epoch=1)
    forgetful = ForgetfulStep()
    _toy_fit(forgetful, tmp_path / "c", resume=True)
    assert torch.equal(forgetful.seen, torch.full((ITEMS,), 2))  # its counter restarted at the pause
    assert not torch.equal(forgetful.table, straight.table)


def test_state_under_the_loops_names_is_refused(tmp_path):
    class Clashing(CodeTableStep):
        def state_tensors(self):
            return {"net.0.weight": torch.zeros(1)}

    with pytest.raises(HashguardError, match=r"net\.0\.weight"):
        _toy_fit(Clashing(), tmp_path / "run")


class EvenShard:
    """Process 0 of 2: the even items, in a seeded order of its own."""

    def num_items(self) -> int:
        return ITEMS // 2

    def order(self, epoch: int) -> list[int]:
        return (2 * torch.randperm(ITEMS // 2, generator=torch.Generator().manual_seed(epoch))).tolist()


class TwinProcesses:
    """A reducer as if a second process had the same sums; that process writes, this one does not."""

    is_main = False

    def __init__(self) -> None:
        self.calls: list[dict[str, float]] = []

    def sum(self, values: dict[str, float]) -> dict[str, float]:
        self.calls.append(dict(values))
        return {k: 2 * v for k, v in values.items()}


def test_the_sampler_and_the_reducer_replace_the_one_process_defaults(tmp_path):
    step, reducer = CodeTableStep(), TwinProcesses()
    result = _toy_fit(step, tmp_path / "run", sampler=EvenShard(), reducer=reducer)
    assert step.plan.steps_per_epoch == math.ceil(ITEMS / 2 / 16) and not step.plan.is_main
    assert torch.equal(step.seen[0::2], torch.full((ITEMS // 2,), 3)) and step.seen[1::2].sum() == 0
    assert [call["items"] for call in reducer.calls] == [ITEMS // 2] * 3
    for call, record in zip(reducer.calls, result.history, strict=True):
        assert record["loss"] == pytest.approx(call["loss"] / call["items"], rel=1e-12)  # 2x / 2x
    assert not (tmp_path / "run").exists()  # only the main process writes
