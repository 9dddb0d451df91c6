"""A model trained without labels (BTHash) under label-needing attacks and SAAT: k-means pseudo-labels stand in for
the labels, no training label is ever read, and SAAT with them hardens the model against the mainstay attack."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from hashguard.attacks import build_attack, build_context
from hashguard.attacks.evaluate import evaluate_attack
from hashguard.attacks.pseudo_labelled import PseudoLabelledObjective, use_pseudo_labels
from hashguard.config import TrainConfig
from hashguard.data import SubsetDataset
from hashguard.data.base import HashingDataset
from hashguard.errors import ConfigError
from hashguard.mainstay_codes import mainstay_codes
from hashguard.methods import build_method
from hashguard.models import load_model
from hashguard.pseudo_labels import PseudoLabelSpec, kmeans, pseudo_label_spec_of
from hashguard.seeding import seed_everything
from hashguard.testing import small_cnn_model, torch_threads
from hashguard.training import train_model

EPS = 32 / 255
BITS = 16


class Unlabelled(HashingDataset):
    """The images of ``parent`` with every label NaN."""

    def __init__(self, parent: HashingDataset) -> None:
        self.parent = parent
        self.labels = np.full(parent.labels.shape, np.nan, dtype=np.float32)
        self.image_shape = parent.image_shape

    def load_image(self, index: int) -> torch.Tensor:
        return self.parent.load_image(index)


def train_base(train: HashingDataset, splits, out: Path, seed: int, epochs: int = 3, data: dict | None = None) -> None:
    """BTHash, small CNN with BatchNorm on the code logits, Adam 5e-4, batch 32, written to ``out`` (``data``: the
    data description stored in ``model.json``)."""
    seed_everything(seed)
    model = small_cnn_model(splits, BITS, seed=seed, hash_norm="batchnorm")
    method = build_method("bthash", BITS, splits.num_classes, len(train), seed=seed)
    config = TrainConfig(recipe="fast", epochs=epochs, batch_size=32, lr=5e-4, progress=False, val_fraction=0.0,
                         select="last")
    train_model(model, method, train, config, out, seed=seed, log=None,
                describe={"data": data or {"source": "demo-mnist", "seed": 0}})


def robust_map(checkpoint: Path, splits, queries: int = 100, iterations: int = 10) -> tuple[float, float]:
    """(clean mAP, mAP under the mainstay attack with pseudo-labels) of the first tiny queries against the tiny
    database (labels read only to score the ranking)."""
    model, meta = load_model(checkpoint)
    spec = pseudo_label_spec_of(meta)
    assert spec == PseudoLabelSpec(10, 0)
    context = build_context(model, Unlabelled(splits.train), splits.database)
    attack = build_attack("mainstay", model, context, eps=EPS, iterations=iterations, step=EPS / 4, seed=0)
    use_pseudo_labels(attack, spec)
    run = evaluate_attack(attack, splits.query[:queries], context.database_codes, context.database_labels)
    return run.result.clean_map, run.result.adv_map


@dataclass
class Outcome:
    clean: float
    robust: float
    saat_clean: float
    saat_robust: float


def saat_outcome(splits, root: Path, seed: int, epochs: int = 1) -> Outcome:
    """BTHash on the 300 tiny training digits (labels NaN), then ``epochs`` SAAT epochs of the demo preset on them."""
    from hashguard.defenses import defend

    train = Unlabelled(splits.train)
    train_base(train, splits, root / "base", seed)
    defend(root / "base", "saat", root / "saat", {"epochs": epochs, "seed": seed, "progress": False}, preset="demo",
           train_set=train, device="cpu", log=None)
    return Outcome(*robust_map(root / "base", splits), *robust_map(root / "saat", splits))


# Measured on x86-64, one torch thread, seeds 0-4 (base model, SAAT and batch order; seeds stand in for CPUs), mAP
# of 100 queries against 600 database digits under the mainstay attack with pseudo-labels (eps 32/255, 10 steps):
#   undefended            0.150 0.132 0.155 0.175 0.181   (clean 0.35-0.42)
#   one SAAT epoch        0.173 0.182 0.165 0.201 0.178   gain +0.023 +0.050 +0.010 +0.027 -0.003
#   two SAAT epochs       0.223 0.230 0.246 0.300 0.257   gain +0.073 +0.098 +0.091 +0.125 +0.076 (clean 0.30-0.36)
# One epoch helps on average but not on every seed; the test runs two, with a margin of about half the smallest
# two-epoch gain.
SAAT_EPOCHS = 2
SAAT_MARGIN = 0.035


def test_saat_with_pseudo_labels_hardens_the_unsupervised_model(tiny_splits, tmp_path: Path) -> None:
    with torch_threads(1):
        outcome = saat_outcome(tiny_splits, tmp_path, seed=0, epochs=SAAT_EPOCHS)
    assert outcome.saat_robust > outcome.robust + SAAT_MARGIN, outcome
    assert outcome.saat_clean > 0.2, outcome  # random codes score 0.11 on these queries: SAAT kept a ranking


def test_saat_reads_no_training_label(tiny_splits, tmp_path: Path) -> None:
    """SAAT of a BTHash model on NaN labels ends with the very weights it reaches on the true labels."""
    from hashguard.defenses import defend
    from hashguard.models.checkpoint import load_state_file

    train = SubsetDataset(tiny_splits.train, np.arange(64))
    with torch_threads(1):
        train_base(train, tiny_splits, tmp_path / "base", seed=0, epochs=1)
        for name, split in (("labelled", train), ("blind", Unlabelled(train))):
            defend(tmp_path / "base", "saat", tmp_path / name, {"epochs": 1, "batch_size": 32, "progress": False},
                   preset="demo", train_set=split, device="cpu", log=None)
    labelled = load_state_file(tmp_path / "labelled" / "model.safetensors")
    blind = load_state_file(tmp_path / "blind" / "model.safetensors")
    assert labelled.keys() == blind.keys()
    for key in labelled:
        assert torch.equal(labelled[key], blind[key]), key
    assert any(not torch.equal(blind[k], load_state_file(tmp_path / "base" / "model.safetensors")[k]) for k in blind)


def test_attack_uses_clusters_of_the_training_codes(tiny_splits) -> None:
    """The substituted context and query labels are the k-means clusters, and the attack's target is the mainstay
    code of the query's cluster computed from them (an independent call of the mainstay function)."""
    torch.manual_seed(0)
    model = small_cnn_model(tiny_splits, BITS, seed=0, hash_norm="batchnorm").eval()
    context = build_context(model, tiny_splits.train, tiny_splits.database)
    attack = build_attack("mainstay", model, context, eps=EPS, iterations=1, step=EPS / 4, seed=0)
    spec = PseudoLabelSpec(4, 1)
    use_pseudo_labels(attack, spec)
    clusters = kmeans(context.train_codes, 4, seed=1)
    assert isinstance(attack.objective, PseudoLabelledObjective)
    assert torch.equal(attack.context.train_labels, clusters.one_hot(context.train_codes))
    assert torch.equal(context.train_labels, torch.as_tensor(tiny_splits.train.labels))  # the shared one is intact
    images, labels = tiny_splits.query[:6].tensors()
    query_codes = model.encode(images).float()
    expected = -mainstay_codes(clusters.one_hot(query_codes), context.train_codes, attack.context.train_labels)
    with torch.no_grad():
        prepared = attack.objective.prepare(model, images, torch.full_like(labels, float("nan")), None,
                                            attack.context, attack.generator)
    assert torch.equal(prepared.theory_codes, expected)
    assert prepared.info["pseudo_label_clusters"] == 4
    # the query labels are never read: NaN labels give the same adversarial codes as the true ones
    first = attack.run(images, labels).adv_codes
    attack.reset()
    assert torch.equal(attack.run(images, torch.full_like(labels, float("nan"))).adv_codes, first)


def test_targeted_label_attacks_are_refused_and_others_untouched(tiny_splits) -> None:
    model = small_cnn_model(tiny_splits, BITS, seed=0, hash_norm="batchnorm").eval()
    context = build_context(model, tiny_splits.train, tiny_splits.database)
    targeted = build_attack("mainstay-targeted", model, context, eps=EPS, iterations=1, step=EPS / 4)
    with pytest.raises(ConfigError, match="trained without labels"):
        use_pseudo_labels(targeted, PseudoLabelSpec(4, 0))
    hag = build_attack("hag", model, context, eps=EPS, iterations=1)
    objective = hag.objective
    assert use_pseudo_labels(hag, PseudoLabelSpec(4, 0)).objective is objective  # reads no training label
    supervised = build_attack("mainstay", model, context, eps=EPS, iterations=1, step=EPS / 4)
    assert use_pseudo_labels(supervised, None).context is context


def test_cli_attack_on_an_unsupervised_checkpoint(tiny_splits, tmp_path: Path) -> None:
    """``hashguard attack`` (run_attack) substitutes the pseudo-labels by itself and refuses a targeted label attack."""
    from hashguard.pipeline.attack import run_attack

    train = SubsetDataset(tiny_splits.train, np.arange(64))
    with torch_threads(1):
        small = {"source": "demo-mnist", "seed": 0, "options": {"query_size": 20, "train_size": 100,
                                                                  "database_size": 200}}
        train_base(train, tiny_splits, tmp_path / "base", seed=0, epochs=1, data=small)
        result = run_attack(tmp_path / "base", "sdha", tmp_path / "attack", params={"iterations": 2}, limit=4,
                            topk=None, batch_size=4, device="cpu", progress=False, log=lambda _line: None)
        assert result["num_queries"] == 4 and 0 <= result["adv_map"] <= 1
        with pytest.raises(ConfigError, match="trained without labels"):
            run_attack(tmp_path / "base", "mainstay-targeted", tmp_path / "attack", params={"iterations": 2},
                       limit=4, topk=None, batch_size=4, device="cpu", progress=False, log=lambda _line: None)


def test_study_attacks_an_unsupervised_model_with_pseudo_labels(tmp_path: Path) -> None:
    """A study of ``bthash`` trains without labels and its mainstay attack stage runs on k-means pseudo-labels."""
    import json

    from hashguard.pipeline.study import run_study
    from hashguard.pipeline.study_config import StudyConfig

    config = {
        "name": "bthash",
        "data": {"source": "demo-mnist", "seed": 0,
                 "options": {"train_size": 64, "database_size": 100, "query_size": 20}},
        "model": {"backbone": "small_cnn", "bits": 8, "hash_norm": "batchnorm"},
        "method": {"name": "bthash", "params": {"clusters": 5}},
        "train": {"recipe": "fast", "epochs": 1, "val_fraction": 0.0, "select": "last", "progress": False},
        "evaluation": {"topk": 50},
        "attacks": {"override": {"iterations": 2}, "queries": 4, "suite": ["mainstay"]},
        "defenses": {"run": []},
        "report": {"grid_queries": 0},
    }
    with torch_threads(1):
        run_study(StudyConfig.model_validate(config), tmp_path, log=lambda _line: None, report=False)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["models"]["undefended"]["attacks"]["mainstay"]["info"]["pseudo_label_clusters"] == 5
