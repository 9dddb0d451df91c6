"""The neurons-merging layer (NMLayer) of Fu, Song, Wu, Wang and He, "Neurons Merging Layer: Towards Progressive
Redundancy Reduction for Deep Supervised Hashing", IJCAI 2019, pp. 2322-2328.

A neurons-merging layer sits after the hash layer of a :class:`~hashguard.models.hash_model.HashModel`. It holds a
partition of the K_in hash-layer neurons into groups (a union-find structure: the paper's adjacency graph over the
output neurons, of which only the connected components matter for the output); each output bit is the mean of its
group's pre-activations. Because a mean of affine maps is affine, the merged head folds into a plain hash layer:
row g of the new weight is the mean of the group's rows of W, and likewise for the bias. :func:`fold` builds that
plain :class:`HashModel` with ``bits = K_out`` and no extra parameters, so every attack and defense runs on the
compressed model unchanged. A BatchNorm code head (``hash_norm="batchnorm"``) is merged after the normalisation: its
eval map (z = s * (W x + b - mu) + beta, s = gamma / sqrt(var + eps), affine per neuron) is folded into the hash
layer and a K_out-wide BatchNorm whose eval map is the identity follows it, so the folded model has exactly the
architecture of a model trained at K_out bits with the same spec, and BatchNorm for later fine-tuning.

How the groups are chosen (the active phase) and the stage schedule are in :mod:`hashguard.models.nmlayer_compress`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from hashguard.errors import ConfigError
from hashguard.models.hash_model import CodesFromLogits, HashModel


class NeuronPartition:
    """A union-find partition of ``size`` neurons; groups are listed in the order of their smallest member."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ConfigError(f"a neuron partition needs at least one neuron, got {size}")
        self.size = size
        self._parent = list(range(size))

    def find(self, neuron: int) -> int:
        """The representative (smallest member) of ``neuron``'s group."""
        if not 0 <= neuron < self.size:
            raise ConfigError(f"neuron {neuron} is outside 0..{self.size - 1}")
        root = neuron
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[neuron] != root:  # path compression
            self._parent[neuron], neuron = root, self._parent[neuron]
        return root

    def union(self, a: int, b: int) -> bool:
        """Merge the groups of ``a`` and ``b``; False when they already were one group."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        low, high = min(ra, rb), max(ra, rb)
        self._parent[high] = low  # the smaller index stays the representative
        return True

    @property
    def num_groups(self) -> int:
        return sum(1 for i in range(self.size) if self.find(i) == i)

    def groups(self) -> list[list[int]]:
        """Every group as a sorted list of neurons, ordered by the smallest member."""
        members: dict[int, list[int]] = {}
        for neuron in range(self.size):
            members.setdefault(self.find(neuron), []).append(neuron)
        return [members[root] for root in sorted(members)]

    def merge_matrix(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The (K_out, K_in) averaging matrix M with M[g, i] = 1/|g| for i in group g, else 0."""
        groups = self.groups()
        matrix = torch.zeros(len(groups), self.size, dtype=dtype)
        for row, members in enumerate(groups):
            matrix[row, members] = 1.0 / len(members)
        return matrix

    @classmethod
    def from_groups(cls, groups: Iterable[Sequence[int]], size: int) -> NeuronPartition:
        """A partition with the given groups (neurons not named stay alone)."""
        partition = cls(size)
        for members in groups:
            members = list(members)
            for other in members[1:]:
                partition.union(members[0], other)
        return partition


def hash_layer(model: HashModel) -> nn.Linear:
    """The model's final hash layer (``backbone.hash_layer``), or one ConfigError line."""
    layer = getattr(model.backbone, "hash_layer", None)
    if not isinstance(layer, nn.Linear):
        raise ConfigError(f"backbone {model.spec.backbone} has no linear hash_layer to merge neurons of")
    return layer


@torch.no_grad()
def head_affine(model: HashModel) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, b) of the code head in eval mode: the hash layer, followed by the BatchNorm code head (running
    statistics) when the model has one. Shapes (K, D) and (K,)."""
    layer = hash_layer(model)
    weight = layer.weight
    bias = layer.bias if layer.bias is not None else weight.new_zeros(weight.shape[0])
    norm = model.hash_norm
    if isinstance(norm, nn.BatchNorm1d):
        if norm.running_mean is None or norm.running_var is None:
            raise ConfigError("a batch-norm code head without running statistics cannot be folded")
        scale = torch.rsqrt(norm.running_var + norm.eps)
        shift = -norm.running_mean * scale
        if norm.affine:
            scale, shift = scale * norm.weight, shift * norm.weight + norm.bias
        weight, bias = weight * scale[:, None], bias * scale + shift
    return weight, bias


@torch.no_grad()
def widen(model: HashModel, bits: int, seed: int) -> None:
    """Give ``model`` (in place) a fresh hash layer of ``bits`` outputs (and a fresh BatchNorm code head of that
    width if it has one), initialised like ``nn.Linear`` from a generator seeded with ``seed``."""
    layer = hash_layer(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        wide = nn.Linear(layer.in_features, bits, bias=layer.bias is not None)
    model.backbone.hash_layer = wide.to(device=layer.weight.device, dtype=layer.weight.dtype)
    if isinstance(model.hash_norm, nn.BatchNorm1d):
        old = model.hash_norm
        model.hash_norm = nn.BatchNorm1d(bits, eps=old.eps, momentum=old.momentum, affine=old.affine).to(
            device=layer.weight.device
        )
    model.spec = dataclasses.replace(model.spec, bits=bits)
    model.spec.validate()


class MergedHashModel(CodesFromLogits):
    """A :class:`HashModel` followed by a neurons-merging layer: z_g(x) = mean_{i in g} z_i(x) (Fu et al., 2019).

    The wrapped model keeps all K_in hash-layer neurons; the partition decides the K_out outputs. ``fold()``
    returns the equivalent plain HashModel.
    """

    def __init__(self, base: HashModel, partition: NeuronPartition | None = None) -> None:
        super().__init__()
        hash_layer(base)
        self.base = base
        self.partition = partition if partition is not None else NeuronPartition(base.bits)
        if self.partition.size != base.bits:
            raise ConfigError(f"partition over {self.partition.size} neurons for a {base.bits}-bit model")

    @property
    def bits(self) -> int:
        return self.partition.num_groups

    @property
    def device(self) -> torch.device:
        return self.base.device

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Merged pre-activations, shape (B, K_out)."""
        z = self.base.logits(x)
        return z @ self.partition.merge_matrix(z.dtype).to(z.device).T

    def fold(self) -> HashModel:
        """The plain HashModel with ``bits = K_out`` whose hash layer holds the group means of W and b."""
        return fold(self.base, self.partition)


@torch.no_grad()
def fold(
    base: HashModel, partition: NeuronPartition, statistics: tuple[torch.Tensor, torch.Tensor] | None = None
) -> HashModel:
    """A copy of ``base`` whose code head has one neuron per group: the architecture of a ``K_out``-bit model of the
    same spec (no extra parameters), whose eval-mode logits equal the merged model's (up to float rounding).

    Plain head: the hash layer holds the group means of the rows of W and b. BatchNorm code head: the merged eval
    map (the group means of the BatchNorm-folded rows, :func:`head_affine`) goes into the hash layer, and the new
    K_out-wide BatchNorm gets running statistics (m, v) and affine parameters gamma = sqrt(v + eps), beta = m, so
    that its eval map is the identity. ``statistics`` = (m, v) should be the mean and variance of the merged logits
    on the training data, so that train-mode batch statistics (fine-tuning, adversarial training) start close to
    the eval map; without them m = 0, v = 1.
    """
    layer = hash_layer(base)
    if partition.size != base.bits:
        raise ConfigError(f"partition over {partition.size} neurons for a {base.bits}-bit model")
    weight, bias = head_affine(base)
    matrix = partition.merge_matrix(layer.weight.dtype).to(layer.weight.device)
    groups = partition.num_groups
    spec = dataclasses.replace(base.spec, bits=groups)
    spec.validate()
    folded = copy.deepcopy(base)
    folded.spec = spec
    norm = base.hash_norm
    keeps_bias = layer.bias is not None or isinstance(norm, nn.BatchNorm1d)
    new_layer = nn.Linear(layer.in_features, groups, bias=keeps_bias)
    new_layer = new_layer.to(device=layer.weight.device, dtype=layer.weight.dtype)
    new_layer.weight.copy_(matrix @ weight)
    if keeps_bias:
        new_layer.bias.copy_(matrix @ bias)
    folded.backbone.hash_layer = new_layer
    if isinstance(norm, nn.BatchNorm1d):
        if not norm.affine:
            raise ConfigError("folding a batch-norm code head needs its affine parameters (affine=True)")
        mean = torch.zeros(groups) if statistics is None else statistics[0].detach().reshape(-1)
        var = torch.ones(groups) if statistics is None else statistics[1].detach().reshape(-1)
        if mean.numel() != groups or var.numel() != groups:
            raise ConfigError(f"statistics of {mean.numel()} merged logits for {groups} groups")
        new_norm = nn.BatchNorm1d(groups, eps=norm.eps, momentum=norm.momentum).to(layer.weight.device)
        new_norm.running_mean.copy_(mean)
        new_norm.running_var.copy_(var)
        new_norm.weight.copy_(torch.sqrt(var + norm.eps))
        new_norm.bias.copy_(mean)
        folded.hash_norm = new_norm
    folded.train(base.training)
    return folded
