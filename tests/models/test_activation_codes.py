"""Activation codes (He et al., arXiv 2101.05490): ReLU patterns of a trained network read as hash codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from hashguard.activation_codes import (
    ActivationCodeModel,
    attack_flips,
    balanced_selection,
    correlated_bit_ratio,
    find_sites,
    fit_activation_codes,
    kmeans_accuracy,
    knn_accuracy,
    non_constant_units,
    random_selection,
    redundancy_ratio,
    relu_flips,
    unit_states,
)
from hashguard.activation_codes.checkpoint import save_activation_code_model
from hashguard.api import encode
from hashguard.errors import CheckpointError, ConfigError
from hashguard.models import load_model
from hashguard.retrieval import mean_average_precision
from hashguard.testing import stack_split, torch_threads, train_tiny_csq

BITS = 16
FC = "fc.2"  # the ReLU after the small CNN's 256-unit fully connected layer


@pytest.fixture(scope="module")
def trained(tiny_splits):
    """A 16-bit CSQ small CNN, 3 epochs on the 300 tiny training digits (seed 0), and its fitting images."""
    with torch_threads(1):
        model, _ = train_tiny_csq(tiny_splits, bits=BITS, epochs=3, seed=0)
    images, _ = stack_split(tiny_splits.train)
    return model, images


def test_sites_of_the_small_cnn_follow_its_layers(trained):
    model, images = trained
    sites = find_sites(model, images[:2])
    # three conv blocks at 28x28, 14x14, 7x7 (32/64/64 channels) and the 256-unit fc layer
    expected = [("features.2", 32 * 28 * 28), ("features.6", 64 * 14 * 14), ("features.10", 64 * 7 * 7), (FC, 256)]
    assert sites == expected


@pytest.mark.parametrize("variant", ["balanced", "random", "projection"])
def test_codes_are_deterministic_for_a_seed(trained, variant):
    model, images = trained
    fit = images[:100]
    first = fit_activation_codes(model, fit, BITS, variant=variant, layers=[FC, -2], seed=3)
    second = fit_activation_codes(model, fit, BITS, variant=variant, layers=[FC, -2], seed=3)
    assert torch.equal(first.units, second.units)
    assert torch.equal(first.encode(fit), second.encode(fit))
    other = fit_activation_codes(model, fit, BITS, variant=variant, layers=[FC, -2], seed=4)
    if variant == "balanced":  # no randomness: the seed changes nothing
        assert torch.equal(first.encode(fit), other.encode(fit))
    else:
        assert not torch.equal(first.encode(fit), other.encode(fit))


def test_balanced_and_random_codes_are_the_selected_relu_states(trained):
    """sign(logits) is the binarised ReLU output of the selected units, read independently by unit_states."""
    model, images = trained
    for variant in ("balanced", "random"):
        codes = fit_activation_codes(model, images[:100], BITS, variant=variant, layers=[FC, -2], seed=1)
        sites = codes.code.site_names
        states = unit_states(model, images[100:200], sites)[:, codes.units]
        assert torch.equal(codes.encode(images[100:200]), torch.where(states, 1, -1).to(torch.int8))
        x = images[:4].clone().requires_grad_(True)
        codes(x).sum().backward()  # the attack surrogate: gradients reach the image
        assert x.grad is not None and float(x.grad.abs().sum()) > 0


def _with_dead_and_saturated_units(model):
    """A copy of ``model`` whose fc unit 5 is always off (pre-activation -1) and unit 9 always on (+1)."""
    import copy

    network = copy.deepcopy(model)
    linear = network.backbone.fc[1]
    with torch.no_grad():
        for unit, bias in ((5, -1.0), (9, 1.0)):
            linear.weight[unit] = 0.0
            linear.bias[unit] = bias
    return network


def test_constant_units_are_never_selected(trained):
    model, images = trained
    network = _with_dead_and_saturated_units(model)
    fit = images[:200]
    states = unit_states(network, fit, [FC])
    kept = non_constant_units(states)
    assert 5 not in kept.tolist() and 9 not in kept.tolist()
    varying = [j for j in range(256) if 0 < int(states[:, j].sum()) < states.shape[0]]
    assert kept.tolist() == varying  # brute force
    for variant in ("balanced", "random", "projection"):
        # every varying unit is asked for: a constant one would have to be taken if it were a candidate
        bits = len(varying) if variant != "projection" else BITS
        codes = fit_activation_codes(network, fit, bits, variant=variant, layers=[FC], seed=0)
        assert codes.code.candidates == len(varying)
        assert 5 not in codes.units.tolist() and 9 not in codes.units.tolist()
    with pytest.raises(ConfigError, match="vary over the fitting set"):
        fit_activation_codes(network, fit, len(varying) + 1, variant="random", layers=[FC])


def test_non_constant_units_on_a_hand_built_pattern():
    states = torch.tensor([[1, 0, 1, 0], [1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
    assert non_constant_units(states).tolist() == [1, 2]


def _greedy_reference(states: np.ndarray, bits: int, weight: float) -> list[int]:
    """The balanced rule written out with numpy's corrcoef, one candidate at a time."""
    x = states.astype(np.float64)
    p = x.mean(axis=0)
    corr = np.corrcoef(x, rowvar=False)
    chosen: list[int] = []
    for _ in range(bits):
        best, best_cost = -1, np.inf
        for j in range(x.shape[1]):
            if j in chosen:
                continue
            worst = max((abs(corr[j, s]) for s in chosen), default=0.0)
            cost = 2 * abs(p[j] - 0.5) + weight * worst
            if cost < best_cost - 1e-12:
                best, best_cost = j, cost
        chosen.append(best)
    return sorted(chosen)


def test_balanced_selection_matches_the_greedy_rule():
    generator = np.random.default_rng(0)
    # on-counts over 60 items whose distances to balance (30) are all different: no ties in the balance term
    counts = [31, 28, 33, 26, 35, 24, 37, 22, 39, 20, 41, 18]
    states = np.zeros((60, 12), dtype=bool)
    for j, count in enumerate(counts):
        states[generator.permutation(60)[:count], j] = True
    states[:, 7] = states[:, 3]  # an exact duplicate: never chosen together with its twin at weight 1
    for weight in (0.0, 0.5, 1.0):
        chosen = balanced_selection(torch.from_numpy(states), 5, weight).tolist()
        assert chosen == _greedy_reference(states, 5, weight)
    chosen = balanced_selection(torch.from_numpy(states), 5, 1.0).tolist()
    assert not {3, 7} <= set(chosen)


def test_balanced_bits_are_closer_to_balance_than_random_subsets(trained):
    """With corr_weight 0 the balanced choice is the K units nearest balance, so its mean |p - 1/2| is at most
    that of any K-subset of the same candidates - in particular of every random subset."""
    model, images = trained
    fit = images[:200]
    states = unit_states(model, fit, [FC])
    kept = non_constant_units(states)
    imbalance = (states[:, kept].double().mean(dim=0) - 0.5).abs()
    balanced = balanced_selection(states[:, kept], BITS, corr_weight=0.0)
    for seed in range(5):
        subset = random_selection(kept.numel(), BITS, seed)
        assert float(imbalance[balanced].mean()) <= float(imbalance[subset].mean())
    # the fitted model uses the same rule on the same candidates
    codes = fit_activation_codes(model, fit, BITS, variant="balanced", layers=[FC], corr_weight=0.0)
    assert torch.equal(codes.units, kept[balanced])


def test_random_selection_is_seeded_and_distinct():
    first = random_selection(100, 10, seed=7)
    assert torch.equal(first, random_selection(100, 10, seed=7))
    assert not torch.equal(first, random_selection(100, 10, seed=8))
    assert first.unique().numel() == 10 and bool((first[1:] > first[:-1]).all())


def test_activation_codes_beat_random_codes(trained, tiny_splits):
    """mAP (whole ranking) of 16-bit activation codes of the fc ReLU vs random +-1 codes, 100 queries against
    600 database digits.

    Measured with base models and draws of seeds 0-4 (3 CSQ epochs, 1 thread; seeds stand in for CPUs):
    random codes 0.108-0.112; balanced 0.314-0.368, random subset 0.216-0.274, projection 0.357-0.434 (from
    all ReLU sites instead: 0.177-0.246). The smallest gap to random codes is 0.104; the margin is 0.05.
    """
    model, images = trained
    _, query_labels = encode(model, tiny_splits.query)
    _, db_labels = encode(model, tiny_splits.database)
    generator = np.random.default_rng(0)
    chance = np.mean([
        mean_average_precision(
            np.where(generator.random((len(query_labels), BITS)) < 0.5, 1, -1),
            np.where(generator.random((len(db_labels), BITS)) < 0.5, 1, -1),
            query_labels,
            db_labels,
        )
        for _ in range(5)
    ])
    for variant in ("balanced", "random", "projection"):
        codes = fit_activation_codes(model, images, BITS, variant=variant, layers=[FC], seed=0)
        query, _ = encode(codes, tiny_splits.query)
        database, _ = encode(codes, tiny_splits.database)
        score = mean_average_precision(query, database, query_labels, db_labels)
        assert score > chance + 0.05, (variant, score, chance)


@pytest.mark.parametrize("variant", ["balanced", "projection"])
def test_checkpoint_round_trip(trained, tmp_path, variant):
    model, images = trained
    codes = fit_activation_codes(model, images[:200], BITS, variant=variant, layers=[FC], seed=2)
    base_meta = {"num_classes": 10, "data": {"source": "demo-mnist", "seed": 0}, "method": {"name": "csq"}}
    save_activation_code_model(tmp_path / "ac", codes, base_meta=base_meta)
    loaded, meta = load_model(tmp_path / "ac")
    assert isinstance(loaded, ActivationCodeModel) and loaded.bits == BITS
    assert torch.equal(loaded.encode(images), codes.encode(images))
    assert meta["model"]["bits"] == BITS and meta["method"] == {} and meta["data"] == base_meta["data"]
    assert meta["activation_codes"]["code"]["variant"] == variant
    assert meta["activation_codes"]["base_model"]["bits"] == model.bits
    # a tampered selection is refused with one line, never loaded half-way
    description = json.loads((tmp_path / "ac" / "model.json").read_text())
    description["activation_codes"]["code"]["sites"] = [["fc.2", 8]]
    (tmp_path / "ac" / "model.json").write_text(json.dumps(description))
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_model(tmp_path / "ac")


def test_defend_refuses_a_code_whose_network_method_is_unknown(trained, tiny_splits, tmp_path):
    """A code saved without its network's hashing method cannot be hardened: one error line that names the
    source network, and nothing written."""
    from hashguard.defenses import defend

    model, images = trained
    codes = fit_activation_codes(model, images[:100], BITS, layers=[FC])
    base_meta = {"num_classes": 10, "data": {"source": "demo-mnist", "seed": 0}}
    save_activation_code_model(tmp_path / "ac", codes, base_meta=base_meta, source=str(tmp_path / "csq-run"))
    with pytest.raises(CheckpointError, match=r"records no hashing method .*harden the network") as caught:
        defend(tmp_path / "ac", "saat", tmp_path / "out", {"epochs": 1, "progress": False}, preset="demo",
               train_set=tiny_splits.train, device="cpu", log=None)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_layer_choice_errors_are_one_line(trained):
    model, images = trained
    with pytest.raises(ConfigError, match="no ReLU site named 'fc.9'"):
        fit_activation_codes(model, images[:50], BITS, layers=["fc.9"])
    with pytest.raises(ConfigError, match="out of range"):
        fit_activation_codes(model, images[:50], BITS, layers=[4])
    with pytest.raises(ConfigError, match="variant"):
        fit_activation_codes(model, images[:50], BITS, variant="itq")  # type: ignore[arg-type]


def test_code_diagnostics_on_hand_computed_codes():
    codes = np.array([[1, 1, -1], [1, 1, -1], [-1, -1, 1], [-1, -1, -1]])
    assert redundancy_ratio(codes) == pytest.approx(1 / 4)  # 3 distinct codes of 4
    # bits 0 and 1 are identical (rho = 1); bit 2 correlates with them at |rho| = 1/sqrt(3) ~ 0.577
    assert correlated_bit_ratio(codes, threshold=0.9) == pytest.approx(2 / 3)
    assert correlated_bit_ratio(codes, threshold=0.5) == pytest.approx(1.0)
    assert correlated_bit_ratio(np.array([[1, 1], [1, -1]])) == pytest.approx(1 / 2)  # a constant bit counts
    labels = np.eye(2)[[0, 0, 1, 1]]
    # 1-NN: the first two test codes equal references of their class; the last is at distance 1 from
    # references 0, 1 (class 0) and 3 (class 1): the tie goes to the lowest index, class 0, which is wrong
    test = np.array([[1, 1, -1], [-1, -1, 1], [-1, 1, -1]])
    test_labels = np.eye(2)[[0, 1, 1]]
    assert knn_accuracy(codes, labels, test, test_labels, k=1) == pytest.approx(2 / 3)
    # two tight, far-apart groups: K-Means finds them whatever the seed
    groups = np.array([[1] * 8, [1] * 7 + [-1], [-1] * 8, [-1] * 7 + [1]])
    for seed in range(3):
        assert kmeans_accuracy(groups, labels, seed=seed) == 1.0


def test_relu_flips_counts_switched_units_by_hand():
    network = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    with torch.no_grad():
        network[0].weight.copy_(torch.eye(3))
        network[0].bias.zero_()
    clean = torch.tensor([[1.0, -1.0, 2.0], [1.0, 1.0, 1.0]])
    perturbed = torch.tensor([[-1.0, -2.0, 3.0], [-1.0, -1.0, -1.0]])
    flips, units = relu_flips(network, clean, perturbed)
    assert units == 3 and flips.tolist() == [1, 3]


def test_attack_flips_vanish_at_eps_zero(trained, tiny_splits):
    model, _ = trained
    images, labels = stack_split(tiny_splits.query, 4)
    none = attack_flips(model, images, labels, "mainstay", train=tiny_splits.train, eps=0.0, iterations=2, seed=0)
    assert none["flips"] == [0, 0, 0, 0] and none["units"] == 41024
    some = attack_flips(
        model, images, labels, "mainstay", train=tiny_splits.train, eps=8 / 255, iterations=2, step=4 / 255, seed=0
    )
    assert all(isinstance(count, int) and 0 <= count <= some["units"] for count in some["flips"])


def test_the_builder_command_reports_bad_input_in_one_line(tmp_path, capsys):
    from hashguard.activation_codes.__main__ import main

    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "ac"), "--bits", "8"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("hashguard: error:") and "not found" in error and "\n" not in error


def test_activation_codes_beat_random_codes_on_multi_label_grids():
    """The same on 2x2 digit grids (multi-hot labels, scaled to 28 px): 400 training, 100 query and 600
    database grids, a 16-bit CSQ small CNN trained for 8 epochs, codes of the fc ReLU.

    Measured with seeds 0-4 (1 thread): random codes 0.351-0.357 (relevance is common on grids); the CSQ model
    itself 0.49-0.59; projection 0.411-0.431 (smallest gap 0.054), balanced 0.372-0.386 (0.015), random
    subset 0.366-0.399 (0.009, too close to test). Margins: 0.025 and 0.007.
    """
    from hashguard.data import open_dataset
    from hashguard.testing import tiny_splits as make_tiny_splits

    splits = make_tiny_splits(open_dataset("demo-mnist-multi", seed=0, image_size=28), (400, 100, 600))
    with torch_threads(1):
        model, _ = train_tiny_csq(splits, bits=BITS, epochs=8, seed=0)
    images, _ = stack_split(splits.train)
    _, query_labels = encode(model, splits.query)
    _, db_labels = encode(model, splits.database)
    generator = np.random.default_rng(0)
    chance = np.mean([
        mean_average_precision(
            np.where(generator.random((len(query_labels), BITS)) < 0.5, 1, -1),
            np.where(generator.random((len(db_labels), BITS)) < 0.5, 1, -1),
            query_labels,
            db_labels,
        )
        for _ in range(5)
    ])
    for variant, margin in (("projection", 0.025), ("balanced", 0.007)):
        codes = fit_activation_codes(model, images, BITS, variant=variant, layers=[FC], seed=0)
        query, _ = encode(codes, splits.query)
        database, _ = encode(codes, splits.database)
        score = mean_average_precision(query, database, query_labels, db_labels)
        assert score > chance + margin, (variant, score, chance)
