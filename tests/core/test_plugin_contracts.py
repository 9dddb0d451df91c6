"""Contracts every registered plug-in must meet, parametrised over the registries themselves.

A new method, backbone, defense or dataset source is tested here the moment it registers: no test lists names
by hand. (Optimizers: tests/attacks/test_optimizers.py walks OPTIMIZERS; tests/attacks/test_attacks_demo.py runs every
iterative attack.)
"""

from __future__ import annotations

import pytest
import torch

from hashguard.attacks import ATTACKS, OPTIMIZERS, attack_spec
from hashguard.attacks.registry import resolve_attack_params
from hashguard.cli import main
from hashguard.data import SOURCES, open_dataset
from hashguard.defenses import DEFENSES, DefenseConfig, build_defense
from hashguard.defenses.base import Batch
from hashguard.defenses.trainer import run_inner_attack
from hashguard.errors import ConfigError, DataError
from hashguard.methods import METHODS
from hashguard.models import HashModel, ModelSpec
from hashguard.models.checkpoint import load_model, save_model
from hashguard.models.heads import HEADS
from hashguard.plugins import load_plugins, registries

load_plugins()  # third-party plug-ins ($HASHGUARD_PLUGINS, entry points) are held to the same contracts

BITS, CLASSES, ITEMS = 16, 4, 12


def _labels(rows: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.arange(rows) % CLASSES, CLASSES).float()


@pytest.mark.parametrize("name", list(METHODS))
def test_method_contract(name):
    """Defaults build; params() round-trips through the registry; the loss is a finite scalar with finite
    gradients; every declared parameter has a default the registry accepts."""
    entry = METHODS.entry(name)
    method = METHODS.build(name, bits=BITS, num_classes=CLASSES, num_train=ITEMS, seed=0)
    assert set(method.params()) == {p.name for p in entry.parameters()}
    again = METHODS.build(name, bits=BITS, num_classes=CLASSES, num_train=ITEMS, seed=0, **method.params())
    assert again.params() == method.params()
    assert entry.reference, f"{name} declares no paper reference"
    torch.manual_seed(0)
    u = torch.tanh(torch.randn(6, BITS)).requires_grad_(True)
    loss = method(u, _labels(6), torch.arange(6))
    assert loss.dim() == 0 and torch.isfinite(loss)
    (grad,) = torch.autograd.grad(loss, u)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def _tiny_model() -> HashModel:
    torch.manual_seed(0)
    return HashModel(ModelSpec(backbone="small_cnn", bits=BITS, in_channels=1, image_size=16, mean=[0.5], std=[0.5]))


@pytest.mark.parametrize("name", list(HEADS))
def test_head_contract(name, tmp_path):
    """A code head keeps the K logits' shape; its attributes say what it holds (a BatchNorm1d under ``hash_norm``
    exactly when ``batchnorm``); relaxed codes are the straight-through sign of the head's logits or tanh(alpha z');
    the retrieval codes are their signs; gradients reach the backbone; the model survives a checkpoint."""
    attributes = HEADS.entry(name).attributes
    torch.manual_seed(0)
    model = HashModel(ModelSpec(backbone="small_cnn", bits=BITS, in_channels=1, image_size=16, mean=[0.5],
                                std=[0.5], hash_norm=name))
    assert isinstance(model.hash_norm, torch.nn.BatchNorm1d) == bool(attributes["batchnorm"])
    images = torch.rand(6, 1, 16, 16)
    model.train()
    u = model(images, alpha=2.0)
    z = model.logits(images)
    assert u.shape == (6, BITS)
    if attributes["straight_through"]:
        assert torch.equal(u, torch.where(z >= 0, 1.0, -1.0))
    else:
        torch.testing.assert_close(u, torch.tanh(2.0 * z))
    u.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.backbone.parameters())
    model.eval()
    codes = model.encode(images)
    assert torch.equal(codes, torch.where(model.logits(images) >= 0, 1, -1).to(torch.int8))
    save_model(tmp_path / "run", model)
    again, _ = load_model(tmp_path / "run")
    assert torch.equal(again.encode(images), codes)


@pytest.mark.parametrize("name", list(DEFENSES))
@pytest.mark.parametrize("preset", ["paper", "demo"])
def test_defense_contract(name, preset):
    """Every preset resolves; the inner attack stays in its eps ball; the outer loss is finite and trains the
    model; the defense's own settings appear in its config."""
    entry = DEFENSES.entry(name)
    assert {"paper", "demo"} <= set(entry.presets)
    config = DefenseConfig(defense=name, preset=preset, iterations=2, progress=False)
    assert set(config.defense_params()) == {p.name for p in entry.parameters()}
    if "prototype_hidden" in config.defense_params():
        config = DefenseConfig(defense=name, preset=preset, iterations=2, progress=False, prototype_hidden=16)
    defense = build_defense(name, config)
    model = _tiny_model()
    method = METHODS.build("dpsh", bits=BITS, num_classes=CLASSES, num_train=ITEMS, pairs="batch")
    generator = torch.Generator().manual_seed(0)
    codes = torch.sign(torch.randn(ITEMS, BITS, generator=generator))
    codes[codes == 0] = 1
    defense.setup(codes, _labels(ITEMS), BITS, seed=0)
    images = torch.rand(4, 1, 16, 16, generator=generator)
    batch = Batch(images, _labels(4), torch.arange(4))
    inner = defense.inner_loss(model, batch, generator, 1.0)
    adv = run_inner_attack(model, images, inner, config, generator)
    assert (adv - images).abs().max() <= config.eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    model.train()
    outer = defense.outer_loss(model, method, batch, adv)
    assert outer.loss.dim() == 0 and torch.isfinite(outer.loss)
    outer.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", list(SOURCES))
def test_source_contract(name):
    """A source declares a summary; an unknown option is one DataError line naming the source."""
    entry = SOURCES.entry(name)
    assert entry.summary
    with pytest.raises(DataError, match=f"dataset source {name} has no parameter"):
        open_dataset(name, root=".", no_such_option=1)


@pytest.mark.parametrize("name", [n for n, e in SOURCES.items() if n.startswith("demo")])
def test_embedded_sources_open_without_files(name):
    splits = open_dataset(name, query_size=20, train_size=40)
    assert len(splits.query) == 20 and len(splits.train) == 40
    assert splits.train.num_classes == splits.query.num_classes == splits.database.num_classes


def test_list_shows_every_entry_of_every_kind(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for kind, entries in registries().items():
        assert f"{kind}:" in out
        for name in entries:
            assert f"  {name}" in out, (kind, name)
    assert main(["list", "methods", "dpsh"]) == 0
    assert "eta=50" in capsys.readouterr().out
    assert main(["list", "spaceships"]) == 2
    assert "unknown kind 'spaceships'" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_contract(name):
    """An attack declares a display name, a paper and a budget; its objective's params() are its declared
    parameters and round-trip through the registry; bad values are one ConfigError line naming the attack."""
    spec = attack_spec(name)
    assert spec.display and spec.reference and 0 < spec.eps <= 1
    if spec.iterative:
        assert spec.iterations > 0 and spec.optimizer in OPTIMIZERS and spec.step > 0
    objective = spec.objective(**ATTACKS.entry(name).defaults())
    declared = {p.name for p in spec.objective_params}
    assert set(objective.params()) <= declared
    resolved = resolve_attack_params(name, **objective.params())
    assert resolved == resolve_attack_params(name)
    assert {k: resolved[k] for k in objective.params()} == objective.params()
    with pytest.raises(ConfigError, match=r"eps must be in \[0, 1\]"):
        resolve_attack_params(name, eps=2)
    with pytest.raises(ConfigError, match=name):
        resolve_attack_params(name, no_such_parameter=1)
