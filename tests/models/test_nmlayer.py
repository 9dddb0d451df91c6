"""Neurons-merging layer (Fu et al., IJCAI 2019): union-find merging, folding into a plain head, bit statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hashguard.errors import ConfigError, DataError
from hashguard.models.hash_model import HashModel
from hashguard.models.nmlayer import MergedHashModel, NeuronPartition, fold
from hashguard.models.nmlayer_compress import choose_merges, compress, stage_schedule
from hashguard.retrieval.bit_stats import (
    bit_balance,
    bit_correlation,
    bit_statistics,
    correlation_summary,
    leave_one_bit_out_map,
)
from hashguard.retrieval.metrics import mean_average_precision
from hashguard.testing import slice_dataset, small_cnn_model, tiny_splits


@pytest.fixture(scope="module")
def splits():
    return tiny_splits(sizes=(64, 16, 32))


def _images(count: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(count, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


# --- union-find -------------------------------------------------------------------------------------------


def test_partition_union_find_groups_and_matrix() -> None:
    partition = NeuronPartition(6)
    assert partition.union(4, 1) and partition.union(1, 5) and partition.union(2, 3)
    assert not partition.union(5, 4)  # already one group
    assert partition.groups() == [[0], [1, 4, 5], [2, 3]]
    assert partition.num_groups == 3
    assert partition.find(5) == 1
    expected = torch.tensor(
        [[1, 0, 0, 0, 0, 0], [0, 1 / 3, 0, 0, 1 / 3, 1 / 3], [0, 0, 0.5, 0.5, 0, 0]], dtype=torch.float64
    )
    assert torch.allclose(partition.merge_matrix(torch.float64), expected)
    with pytest.raises(ConfigError):
        partition.find(6)


@pytest.mark.parametrize(("bits_in", "target", "redundancy"), [(16, 5, "correlation"), (12, 3, "map_drop")])
def test_choose_merges_reaches_exactly_the_target(bits_in: int, target: int, redundancy: str) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(40, bits_in, generator=generator, dtype=torch.float64)
    labels = np.eye(4, dtype=np.float32)[np.arange(40) % 4]
    partition = NeuronPartition(bits_in)
    merges = choose_merges(logits, partition, target, labels, redundancy)  # type: ignore[arg-type]
    assert partition.num_groups == target
    assert len(merges) == bits_in - target
    assert sorted(n for g in partition.groups() for n in g) == list(range(bits_in))


def test_correlation_merges_the_duplicated_neuron_first() -> None:
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(50, 5, generator=generator, dtype=torch.float64)
    logits[:, 3] = 2.0 * logits[:, 1]  # neuron 3 is a scaled copy of neuron 1: same sign, tanh-correlated
    partition = NeuronPartition(5)
    merges = choose_merges(logits, partition, 4, redundancy="correlation")
    assert merges == [(1, 3)]
    assert partition.groups() == [[0], [1, 3], [2], [4]]


def test_stage_schedule() -> None:
    assert stage_schedule(64, 16) == [48, 36, 27, 20, 16]
    assert stage_schedule(8, 7) == [7]
    assert stage_schedule(4, 1, ratio=0.9) == [3, 2, 1]  # at least one bit per stage
    with pytest.raises(ConfigError):
        stage_schedule(8, 9)


# --- folding ----------------------------------------------------------------------------------------------


def test_fold_reproduces_the_merged_model_exactly(splits) -> None:
    base = small_cnn_model(splits, bits=12, seed=0).eval()
    partition = NeuronPartition.from_groups([[0, 5, 7], [2, 11], [3, 4, 8, 9]], 12)
    merged = MergedHashModel(base, partition).eval()
    plain = merged.fold()
    assert isinstance(plain, HashModel) and plain.bits == 6 == merged.bits
    assert plain.backbone.hash_layer.weight.shape == (6, base.backbone.hash_layer.in_features)
    # no extra parameters: the folded model has exactly the parameters of a fresh 6-bit model
    fresh = small_cnn_model(splits, bits=6, seed=1)
    assert [p.shape for p in plain.parameters()] == [p.shape for p in fresh.parameters()]
    # a standard HashModel rebuilt from the spec and state dict gives the same codes
    rebuilt = HashModel(plain.spec)
    rebuilt.load_state_dict(plain.state_dict())
    rebuilt.eval()
    x = _images(20)
    with torch.no_grad():
        z_merged, z_plain, z_rebuilt = merged.logits(x), plain.logits(x), rebuilt.logits(x)
    assert torch.allclose(z_plain, z_merged, atol=1e-6, rtol=0)
    assert torch.equal(z_rebuilt, z_plain)
    # sign codes can only differ where a logit is within rounding of 0; none is here
    assert z_merged.abs().min() > 1e-5
    assert torch.equal(plain.encode(x), merged.encode(x))
    assert torch.equal(rebuilt.encode(x), merged.encode(x))
    # the base model is untouched
    assert base.bits == 12 and base.backbone.hash_layer.weight.shape[0] == 12


def test_folded_model_round_trips_through_a_checkpoint(splits, tmp_path) -> None:
    from hashguard.models.checkpoint import load_model, save_model

    base = small_cnn_model(splits, bits=8, seed=6).eval()
    plain = fold(base, NeuronPartition.from_groups([[0, 1], [2, 6, 7]], 8))
    save_model(tmp_path / "ckpt", plain, method={"name": "dpsh", "params": {}}, num_classes=10)
    loaded, payload = load_model(tmp_path / "ckpt")
    assert payload["model"]["bits"] == 5 == loaded.bits
    x = _images(10, seed=8)
    assert torch.equal(loaded.encode(x), plain.encode(x))


def test_merging_two_identical_neurons_changes_no_code(splits) -> None:
    base = small_cnn_model(splits, bits=6, seed=2).eval()
    layer = base.backbone.hash_layer
    with torch.no_grad():
        layer.weight[4] = layer.weight[1]
        layer.bias[4] = layer.bias[1]
    plain = fold(base, NeuronPartition.from_groups([[1, 4]], 6))
    x = _images(16, seed=5)
    codes_before = base.encode(x)
    codes_after = plain.encode(x)
    keep = [0, 1, 2, 3, 5]  # the group {1, 4} sits at neuron 1's position; neuron 4 was its copy
    assert torch.equal(codes_after, codes_before[:, keep])


def test_compress_merges_a_duplicated_neuron_without_changing_codes(splits) -> None:
    base = small_cnn_model(splits, bits=6, seed=4).eval()
    layer = base.backbone.hash_layer
    with torch.no_grad():
        layer.weight[2] = layer.weight[5]
        layer.bias[2] = layer.bias[5]
    result = compress(base, slice_dataset(splits.train, 24), 5, redundancy="correlation", frozen_epochs=0)
    assert result.stages[0]["groups"] == [[0], [1], [2, 5], [3], [4]]
    x = _images(12, seed=7)
    assert torch.equal(result.model.encode(x), base.encode(x)[:, [0, 1, 2, 3, 4]])


def test_merged_model_splits_the_gradient_equally_within_a_group(splits) -> None:
    base = small_cnn_model(splits, bits=4, seed=0)
    merged = MergedHashModel(base, NeuronPartition.from_groups([[0, 3]], 4))
    logits = merged.logits(_images(3))
    assert logits.shape == (3, 3)
    logits[:, 0].sum().backward()  # per item d mean(z0, z3) / d b_i = 1/2 for i in {0, 3}; 3 items
    grad = base.backbone.hash_layer.bias.grad
    assert torch.allclose(grad, torch.tensor([1.5, 0.0, 0.0, 1.5]))


def test_bad_settings_are_one_config_error(splits) -> None:
    model = small_cnn_model(splits, bits=6, seed=0)
    train = slice_dataset(splits.train, 8)
    with pytest.raises(ConfigError, match="target bits"):
        compress(model, train, 7, frozen_epochs=0)
    with pytest.raises(ConfigError, match="redundancy"):
        choose_merges(torch.zeros(4, 6), NeuronPartition(6), 3, redundancy="entropy")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="partition"):
        MergedHashModel(model, NeuronPartition(5))


def test_fold_folds_a_batchnorm_head_with_its_running_statistics(splits) -> None:
    base = small_cnn_model(splits, bits=6, seed=0, hash_norm="batchnorm")
    with torch.no_grad():  # running statistics and affine parameters away from their defaults
        base.hash_norm.running_mean.copy_(torch.linspace(-0.5, 0.5, 6))
        base.hash_norm.running_var.copy_(torch.linspace(0.5, 2.0, 6))
        base.hash_norm.weight.copy_(torch.linspace(0.8, 1.3, 6))
        base.hash_norm.bias.copy_(torch.linspace(-0.2, 0.3, 6))
    base.eval()
    partition = NeuronPartition.from_groups([[0, 4], [1, 2, 5]], 6)
    statistics = (torch.tensor([0.3, -0.2, 0.1]), torch.tensor([0.5, 1.5, 2.0]))
    plain = fold(base, partition, statistics)
    assert plain.spec.hash_norm == "batchnorm" and plain.bits == 3
    # the architecture of a fresh 3-bit model with a batch-norm head; its eval map is the identity
    fresh = small_cnn_model(splits, bits=3, seed=1, hash_norm="batchnorm")
    assert [p.shape for p in plain.parameters()] == [p.shape for p in fresh.parameters()]
    assert torch.equal(plain.hash_norm.running_mean, statistics[0])
    assert torch.equal(plain.hash_norm.bias, statistics[0])
    assert torch.allclose(plain.hash_norm.weight, torch.sqrt(statistics[1] + plain.hash_norm.eps))
    x = _images(12, seed=2)
    with torch.no_grad():
        z = base.backbone((x - base.mean) / base.std)  # hash-layer outputs before the BatchNorm head
        norm = base.hash_norm
        by_hand = (z - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps) * norm.weight + norm.bias
        expected = by_hand @ partition.merge_matrix().T
        assert torch.allclose(plain.logits(x), expected, atol=1e-5, rtol=0)
        assert torch.allclose(plain.logits(x), MergedHashModel(base, partition).eval().logits(x), atol=1e-5, rtol=0)
        assert torch.allclose(fold(base, partition).logits(x), expected, atol=1e-5, rtol=0)  # default (0, 1)


def test_compress_ends_with_a_plain_model_of_the_target_bits(splits) -> None:
    model = small_cnn_model(splits, bits=12, seed=0)
    train = slice_dataset(splits.train, 32)
    result = compress(model, train, 6, method="dpsh", frozen_epochs=1, redundancy="map_drop", seed=0)
    assert isinstance(result.model, HashModel) and result.model.bits == 6
    assert [s["bits_out"] for s in result.stages] == stage_schedule(12, 6) == [9, 6]
    assert all(len(s["groups"]) == s["bits_out"] for s in result.stages)
    assert all(len(s["frozen_history"]) == 1 for s in result.stages)  # one frozen epoch per stage
    assert model.bits == 12  # the input is not modified
    codes = result.model.encode(_images(5))
    assert codes.shape == (5, 6) and set(codes.unique().tolist()) <= {-1, 1}
    with pytest.raises(ConfigError):
        compress(model, train, 4, stages=[8, 6], frozen_epochs=0)


# --- bit statistics ---------------------------------------------------------------------------------------

CODES = np.array([[1, 1, -1], [1, 1, 1], [-1, -1, 1], [1, 1, 1]])


def test_bit_balance_and_correlation_by_hand() -> None:
    assert np.allclose(bit_balance(CODES), [0.5, 0.5, 0.5])
    corr = bit_correlation(CODES)
    # bits 0 and 1 are identical; bit 2 vs bit 0: centred [.5,.5,-1.5,.5] and [-1.5,.5,.5,.5] -> -1/3
    assert np.allclose(corr, [[1, 1, -1 / 3], [1, 1, -1 / 3], [-1 / 3, -1 / 3, 1]])
    summary = correlation_summary(corr)
    assert summary["max_pair"] == (0, 1)
    assert summary["max_abs"] == pytest.approx(1.0)
    assert summary["mean_abs"] == pytest.approx((1 + 1 / 3 + 1 / 3) / 3)
    constant = bit_correlation(np.array([[1, 1], [1, -1], [1, 1]]))
    assert np.allclose(constant, np.eye(2))  # a constant bit correlates with nothing
    with pytest.raises(DataError):
        bit_balance(np.zeros((0, 3)))


def test_leave_one_bit_out_map_by_hand() -> None:
    # one query [1, 1]; database: a relevant item [1, -1] and an irrelevant one [-1, 1]
    query = np.array([[1, 1]])
    database = np.array([[1, -1], [-1, 1]])
    q_labels, db_labels = np.array([[1, 0]]), np.array([[1, 0], [0, 1]])
    full, drops = leave_one_bit_out_map(query, database, q_labels, db_labels)
    # all bits: both at distance 1, tie broken by index -> relevant first, AP = 1
    # without bit 0: distances (1, 0) -> relevant second, AP = 1/2; without bit 1: distances (0, 1) -> AP = 1
    assert full == pytest.approx(1.0)
    assert np.allclose(drops, [0.5, 0.0])
    assert full == pytest.approx(mean_average_precision(query, database, q_labels, db_labels))
    stats = bit_statistics(database, query, q_labels, db_labels)
    assert stats.bits == 2 and stats.map_drop == pytest.approx([0.5, 0.0])
    assert stats.balance == pytest.approx([0.0, 0.0]) and stats.correlation["max_abs"] == pytest.approx(1.0)
    with pytest.raises(DataError):
        bit_statistics(database, query)  # labels missing
