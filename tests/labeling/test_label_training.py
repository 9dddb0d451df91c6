"""Training on propagated labels: the relabelled split, ``labels.budget`` in a training run (the trainer sees
the propagated labels, model.json records the labelling) and the command line's one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hashguard.cli import main
from hashguard.config import load_experiment_config
from hashguard.errors import CheckpointError, ConfigError
from hashguard.labeling import RelabeledDataset, label_pool
from hashguard.labeling.store import LABELS_FILE, relabeled_split

TINY_RUN = [
    "data.options.train_size=120", "data.options.query_size=20", "data.options.database_size=200",
    "model.bits=8", "method.name=dpsh", "train.epochs=1", "train.progress=false", "device=cpu",
]


def test_relabelled_split_keeps_images_and_order(tiny_splits) -> None:
    parent = tiny_splits.train
    labels = np.roll(parent.labels, 1, axis=1)
    view = RelabeledDataset(parent, labels)
    image, label, index = view[5]
    assert torch.equal(image, parent[5][0]) and index == 5
    assert torch.equal(label, torch.as_tensor(labels[5])) and not torch.equal(label, parent[5][1])
    part = view.subset([7, 2])
    assert np.array_equal(part.labels, labels[[7, 2]]) and torch.equal(part[0][0], parent[7][0])
    assert view.fingerprint() != RelabeledDataset(parent, parent.labels).fingerprint()
    with pytest.raises(ValueError, match="shape"):
        RelabeledDataset(parent, labels[:10])


def test_a_budgeted_run_trains_on_the_propagated_labels(tmp_path: Path, monkeypatch) -> None:
    from hashguard.pipeline import train as train_pipeline
    from hashguard.pipeline.train import open_splits, run_training

    seen = {}
    real_train_model = train_pipeline.train_model

    def spy(model, method, train_set, *args, **kwargs):
        seen["fit"], seen["val"] = train_set, kwargs["val_set"]
        return real_train_model(model, method, train_set, *args, **kwargs)

    monkeypatch.setattr(train_pipeline, "train_model", spy)
    config = load_experiment_config(None, [*TINY_RUN, "labels.budget=12", "train.val_fraction=0.25"], default=True)
    lines: list[str] = []
    run_training(config, tmp_path / "run", log=lines.append)
    splits = open_splits(config.data)
    expected = label_pool(splits.train, 12, "representative", seed=config.seed)
    record = json.loads((tmp_path / "run" / "model.json").read_text())["labels"]
    assert record["labelled"] == 12 and record["pool"] == 120 and record["selected"] == expected.selected.tolist()
    assert record["label_accuracy"] == pytest.approx(expected.summary["label_accuracy"])
    assert any(line.startswith("labels: 12 of 120 training items labelled") for line in lines)
    # both the fitted part and the validation part carry propagated labels, not the split's own
    for part in (seen["fit"], seen["val"]):
        assert isinstance(part.parent, RelabeledDataset)
        assert np.array_equal(part.labels, expected.labels[part.indices])
        assert np.array_equal(part[0][1].numpy(), expected.labels[part.indices[0]])  # what a loader yields
    assert len(seen["fit"]) + len(seen["val"]) == 120
    assert not np.array_equal(expected.labels, splits.train.labels)  # else the check above proves nothing
    assert np.array_equal(expected.labels[expected.selected], splits.train.labels[expected.selected])
    # later stages (attacks' mainstay codes, defenses) read the checkpoint's fitted split: the same labels
    from hashguard.pipeline.checkpoint import open_checkpoint

    fitted = open_checkpoint(tmp_path / "run", device="cpu").training_split()
    assert np.array_equal(fitted.indices, seen["fit"].indices)
    assert np.array_equal(fitted.labels, seen["fit"].labels)


def test_activation_codes_keep_the_propagated_labels_through_a_defense(tmp_path: Path) -> None:
    """An activation-code run on a label budget, its hardened network and its hardened code open the same fitted
    split with the propagated labels (the labels record and file travel with the code and the defense)."""
    from hashguard.defenses.api import defend
    from hashguard.pipeline.checkpoint import open_checkpoint
    from hashguard.pipeline.train import run_training

    config = load_experiment_config(
        None, [*TINY_RUN, "method.name=activation-codes", "method.params.layers=fc.2", "labels.budget=12"],
        default=True,
    )
    run_training(config, tmp_path / "run", log=lambda _line: None)
    fitted = open_checkpoint(tmp_path / "run", device="cpu").training_split()
    assert isinstance(fitted.parent, RelabeledDataset)
    defend(tmp_path / "run", "saat", tmp_path / "saat", {"epochs": 1, "progress": False, "train_items": 16},
           preset="demo", device="cpu", log=None)
    for hardened in (tmp_path / "saat", tmp_path / "saat" / "network"):  # the code, and the hardened network
        again = open_checkpoint(hardened, device="cpu").training_split()
        assert np.array_equal(again.indices, fitted.indices) and np.array_equal(again.labels, fitted.labels)


def test_no_budget_leaves_the_labels_alone(tmp_path: Path) -> None:
    from hashguard.pipeline.train import run_training

    config = load_experiment_config(None, TINY_RUN, default=True)
    assert config.labels.budget is None
    run_training(config, tmp_path / "run", log=None)
    assert "labels" not in json.loads((tmp_path / "run" / "model.json").read_text())
    assert not (tmp_path / "run" / LABELS_FILE).exists()


@pytest.mark.parametrize(
    ("flag", "message"),
    [("0", "at least 1 label"), ("-5", "at least 1 label"), ("121", "exceeds the pool of 120"),
     ("2.5", "fraction must be in (0, 1]"), ("lots", "neither a count")],
)
def test_bad_budgets_on_the_command_line(tmp_path: Path, capsys, flag: str, message: str) -> None:
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), *[a for s in TINY_RUN for a in ("--set", s)], f"--label-budget={flag}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hashguard: error:") and message in err and "\n" not in err
    assert not out.exists()  # refused before anything was written


def test_label_flags_are_settings() -> None:
    from hashguard.cli import build_parser
    from hashguard.commands import train

    args = build_parser().parse_args(["train", "--out", "o", "--label-budget", "5%", "--label-selection", "random"])
    config = load_experiment_config(None, train.overrides_of(args), default=True)
    assert config.labels.budget == pytest.approx(0.05) and config.labels.selection == "random"
    args = build_parser().parse_args(["train", "--out", "o", "--label-budget", "40"])
    assert load_experiment_config(None, train.overrides_of(args), default=True).labels.budget == 40


def test_stored_labels_must_fit_the_split(tmp_path: Path, tiny_splits) -> None:
    from hashguard.labeling.store import save_pool_labels

    train = tiny_splits.train
    save_pool_labels(tmp_path, train.labels[::-1], np.arange(3))
    assert np.array_equal(relabeled_split(tmp_path, train).labels, train.labels[::-1])
    save_pool_labels(tmp_path, train.labels[:5], np.arange(3))
    with pytest.raises(CheckpointError, match="do not fit"):
        relabeled_split(tmp_path, train)


def test_a_study_takes_the_same_labels_section() -> None:
    from hashguard.pipeline.study import load_study_config

    root = Path(__file__).resolve().parents[2]
    config = load_study_config(root / "configs" / "demo.yaml", ["labels.budget=5%", "labels.selection=random"])
    assert config.experiment().labels.budget == pytest.approx(0.05)
    assert config.experiment().labels.selection == "random"
    with pytest.raises(ConfigError, match="labels.budget"):
        load_study_config(root / "configs" / "demo.yaml", ["labels.budget=0"])
    # the cache key of the training stage: unchanged without a budget (studies cached before stay valid)
    from hashguard.pipeline.study import _train_key

    class Splits:
        def fingerprint(self) -> str:
            return "f"

    plain = load_study_config(root / "configs" / "demo.yaml")
    assert "labels" not in _train_key(plain, Splits())["experiment"]
    assert _train_key(config, Splits())["experiment"]["labels"]["selection"] == "random"
