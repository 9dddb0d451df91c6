"""BTHash: unsupervised hashing with the Barlow Twins redundancy-reduction objective (docs/methods.md).

Reference: J. Zbontar, L. Jing, I. Misra, Y. LeCun, S. Deny, "Barlow Twins: Self-Supervised Learning via
Redundancy Reduction", ICML 2021 (arXiv 2103.03230), Section 2, Eq. (1) and (2). The paper learns embeddings;
here the embedding is the K-unit code layer of the hashing network, and a quantisation term pulls the relaxed
codes to +-1 (the paper has none).

Training never reads a label. Per batch, two random views x^A, x^B of the images (seeded crop/shift, optional
flip, noise; :mod:`hashguard.methods.views`) give code logits z^A, z^B (B x K). Each code unit is standardised
over the batch (mean 0, biased variance 1, eps 1e-5 under the root: a batch norm without affine parameters),
and with C_ij = (1/B) sum_b zhat^A_bi zhat^B_bj (the K x K cross-correlation of the two views)

    L_BT = sum_i (1 - C_ii)^2 + lambda sum_i sum_{j != i} C_ij^2
    Q    = 1/2 (Q(z^A) + Q(z^B)),   Q(z) = (1/B) sum_b ||tanh(z_b) - sign(z_b)||^2   (sign: no gradient)
    L    = L_BT + eta Q

The diagonal term makes every bit invariant to the augmentations, the off-diagonal term decorrelates the bits
(redundancy reduction); the standardisation also centres every bit over the batch, which balances the bits.
lambda (``redundancy_weight``) defaults to 1/K: the paper's 0.0051 is for 8,192 units, and 1/K keeps the ratio
of the off-diagonal to the diagonal sum (K - 1 terms against 1 per unit) the same for any code length.

One view only (``method(u, labels, index)``, the hashing loss the adversarial defenses add to their own terms):
L = L_BT(u, u) + eta Q with u the relaxed codes; the diagonal of C is then 1 up to the eps, so this keeps the
bits decorrelated, balanced and quantised, and the labels and indices are ignored.

Attacks and defenses that need class semantics use k-means pseudo-labels of the model's training codes instead
of labels (:mod:`hashguard.pseudo_labels`; ``clusters``, ``cluster_seed``).
"""

from __future__ import annotations

from typing import Annotated, Any

import torch

from hashguard.config import TrainConfig
from hashguard.data.base import HashingDataset
from hashguard.errors import ConfigError
from hashguard.methods.base import HashingMethod
from hashguard.methods.registry import METHODS
from hashguard.methods.views import ViewSettings, two_views
from hashguard.models.hash_model import HashModel
from hashguard.registry import Range
from hashguard.training.clean_step import CleanStep
from hashguard.training.loop import Plan, StepOutput

#: added to the batch variance before the square root (as a batch norm's eps)
STANDARDISE_EPS = 1e-5


def standardise(z: torch.Tensor, eps: float = STANDARDISE_EPS) -> torch.Tensor:
    """Each column of ``z`` (B, K) centred and divided by sqrt(biased variance + eps), over the batch."""
    centred = z - z.mean(dim=0, keepdim=True)
    return centred / torch.sqrt((centred**2).mean(dim=0, keepdim=True) + eps)


def cross_correlation(z_a: torch.Tensor, z_b: torch.Tensor, eps: float = STANDARDISE_EPS) -> torch.Tensor:
    """C = standardise(z_a)^T standardise(z_b) / B, shape (K, K)."""
    if z_a.shape != z_b.shape or z_a.dim() != 2:
        raise ValueError(f"two (B, K) views of one shape are needed, got {tuple(z_a.shape)} and {tuple(z_b.shape)}")
    return standardise(z_a, eps).t() @ standardise(z_b, eps) / z_a.shape[0]


def redundancy_reduction(c: torch.Tensor, weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum_i (1 - C_ii)^2, sum_{i != j} C_ij^2) of a square cross-correlation matrix."""
    diagonal = torch.diagonal(c)
    invariance = ((1 - diagonal) ** 2).sum()
    redundancy = (c**2).sum() - (diagonal**2).sum()
    return invariance, redundancy


def barlow_twins_loss(z_a: torch.Tensor, z_b: torch.Tensor, weight: float) -> torch.Tensor:
    """L_BT = sum_i (1 - C_ii)^2 + weight * sum_{i != j} C_ij^2 of two views (Zbontar et al., ICML 2021, Eq. 1)."""
    invariance, redundancy = redundancy_reduction(cross_correlation(z_a, z_b), weight)
    return invariance + weight * redundancy


def quantisation_gap(u: torch.Tensor) -> torch.Tensor:
    """(1/B) sum_b ||u_b - sign(u_b)||^2 for relaxed codes ``u`` (sign without gradient; sign(0) = +1)."""
    target = torch.where(u.detach() >= 0, 1.0, -1.0).to(u.dtype)
    return ((u - target) ** 2).sum(dim=1).mean()


@METHODS.register(reference="Zbontar et al., ICML 2021", aliases=("barlow-twins",))
class BTHash(HashingMethod):
    """BTHash: unsupervised hashing, Barlow Twins cross-correlation of two views driven to the identity."""

    name = "bthash"
    supervised = False

    def __init__(
        self,
        bits: int,
        num_classes: int,
        num_train: int,
        seed: int = 0,
        redundancy_weight: Annotated[
            float | None, Range(0), "lambda, weight of the off-diagonal correlations (None: 1 / bits)"
        ] = None,
        quant_weight: Annotated[float, Range(0), "eta, weight of the quantisation term ||tanh(z) - sign(z)||^2"] = 0.1,
        min_scale: Annotated[float, Range(0, 1, exclusive_low=True), "smallest crop side of a view (fraction)"] = 0.8,
        shift: Annotated[float, Range(0, 1), "largest shift of a view (fraction of the side)"] = 0.1,
        flip: Annotated[bool, "flip views horizontally at random (natural images; never for digits)"] = False,
        noise: Annotated[float, Range(0), "standard deviation of the Gaussian noise added to a view"] = 0.05,
        clusters: Annotated[
            int | None, Range(2), "k of the k-means pseudo-labels for attacks and defenses (None: classes of the data)"
        ] = None,
        cluster_seed: Annotated[int, Range(0), "seed of the k-means seeding of the pseudo-labels"] = 0,
    ) -> None:
        super().__init__(bits, num_classes, num_train, seed)
        self.redundancy_weight = None if redundancy_weight is None else float(redundancy_weight)
        self.quant_weight = float(quant_weight)
        self.min_scale, self.shift, self.flip, self.noise = float(min_scale), float(shift), bool(flip), float(noise)
        self.clusters = None if clusters is None else int(clusters)
        self.cluster_seed = int(cluster_seed)
        self.views = ViewSettings(self.min_scale, self.shift, self.flip, self.noise)

    @property
    def lam(self) -> float:
        """lambda in use: ``redundancy_weight``, or 1 / K when unset."""
        return 1.0 / self.bits if self.redundancy_weight is None else self.redundancy_weight

    def two_view_loss(self, z_a: torch.Tensor, z_b: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """L = L_BT(z^A, z^B) + eta Q of the code logits of two views, with its parts (floats)."""
        invariance, redundancy = redundancy_reduction(cross_correlation(z_a, z_b), self.lam)
        quant = 0.5 * (quantisation_gap(torch.tanh(z_a)) + quantisation_gap(torch.tanh(z_b)))
        loss = invariance + self.lam * redundancy + self.quant_weight * quant
        parts = {
            "invariance": float(invariance.detach()), "redundancy": float(redundancy.detach()),
            "quant": float(quant.detach()),
        }
        return loss, parts

    def forward(self, u: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """One view (module docstring): L_BT(u, u) + eta Q(u); ``labels`` and ``index`` are not read."""
        return barlow_twins_loss(u, u, self.lam) + self.quant_weight * quantisation_gap(u)


class BTHashStep(CleanStep):
    """BTHash training as a step of :func:`hashguard.training.loop.fit` (Zbontar et al., ICML 2021).

    Each batch yields two seeded random views drawn from the epoch's generator, and one optimiser step on
    :meth:`BTHash.two_view_loss` of their code logits. Only the images of a batch are read: its labels (and a
    validation split, whose mAP needs labels) are never touched, so the last epoch's weights are the model.
    """

    name = "bthash"
    data_parallel = False  # its own per-batch work does not gather the global batch (one process only)

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
        if not isinstance(method, BTHash):
            raise ConfigError(f"the BTHash training step needs the bthash method, got {method.name!r}")
        super().__init__(model, method, train_set, config, seed=seed, val_set=val_set, describe=describe)
        self.bt: BTHash = method
        self.generator = torch.Generator()

    def start(self, plan: Plan) -> None:
        super().start(plan)
        if self.val_set is not None and len(self.val_set):
            plan.log(f"{self.name}: trains without labels; the {len(self.val_set)} validation items are not scored "
                     "and the last epoch is kept")

    def begin_epoch(self, epoch: int, generator: torch.Generator) -> None:
        super().begin_epoch(epoch, generator)
        self.generator = generator

    def __call__(self, batch: Any, step_index: int) -> StepOutput:
        images = batch[0].to(self.model.device)  # the images only: never the labels
        view_a, view_b = two_views(images, self.generator, self.bt.views)
        loss, parts = self.bt.two_view_loss(self.model.logits(view_a), self.model.logits(view_b))
        return StepOutput(loss, parts, size=images.shape[0])

    def end_epoch(self, epoch: int, record: dict[str, Any]) -> dict[str, Any]:
        return {}  # no labelled validation

    def note(self, record: dict[str, Any]) -> str:
        return f", invariance {record['invariance']:.3f}, redundancy {record['redundancy']:.3f}"


BTHash.training_step = BTHashStep
