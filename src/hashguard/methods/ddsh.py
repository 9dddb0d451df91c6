"""DDSH: deep discrete supervised hashing (docs/methods.md).

Reference: Q.-Y. Jiang, X. Cui, W.-J. Li, "Deep Discrete Supervised Hashing", IEEE TIP 2018 (arXiv
1707.09905). The supervision guides both a discrete coding procedure and the network. Every outer iteration
samples m training items, the columns Omega; the rest are Gamma. The codes B_Omega in {-1, +1}^(m x c) are
free discrete variables, B_Gamma = sign(F(X_Gamma)) the network's codes, and both minimise

    J = ||c S_GammaOmega - B_Gamma B_Omega^T||^2 + ||c S_OmegaOmega - B_Omega B_Omega^T||^2

with the rebalanced similarity S_ij = 1 for items that share a label and -r otherwise, r = (#similar pairs) /
(#dissimilar pairs) over the n x m pairs of the iteration, so that similar and dissimilar pairs weigh the same.

* Discrete coding step (:func:`code_columns`): bit by bit, with the other bits fixed, column k of B_Omega is
  the binary quadratic program min z^T Q z + p^T z with Q = -2 (c S_OmegaOmega - sum_{t != k} z_t z_t^T)
  and p = -2 R^T g_k, R = c S_GammaOmega - sum_{t != k} g_t z_t^T, g_t = bit t of B_Gamma; solved by
  :func:`hashguard.methods.bqp.solve_approximate` (exact enumeration for tests) from the current column, so
  J never increases.
* Network step (this class's loss): B_Gamma relaxed to u = tanh(F(x)), per mini-batch of Gamma items

    L = 1/(|batch| m) sum_{i in batch, j in Omega} ( u_i^T b_j / c - S_ij )^2

  (the first term of J divided by c^2 and averaged, so its scale does not depend on c, m or the batch).
  Batch items that are columns themselves are left out, as in the paper (the network trains on Gamma).

The method keeps the current columns (their codes, labels and training indices) and r as buffers, so the
loss is a function of the batch alone and can serve as the benign loss of adversarial training:
:meth:`DDSH.preinstall` (called with the trained model's codes of the training split before SAAT, ATRDH or
CgAT) draws m columns from those codes. The training loop runs :class:`DDSHStep` (see
:mod:`hashguard.methods.ddsh_step`): a coding step at the start of every ``inner_epochs``-th epoch, then
network training. At test time the model is the plain encoder sign(F(x)).
"""

from __future__ import annotations

from typing import Annotated

import torch

from hashguard.methods.base import HashingMethod, label_similarity
from hashguard.methods.bqp import objective, solve_approximate, solve_exact
from hashguard.methods.registry import METHODS
from hashguard.registry import Choices, Range

SOLVERS = ("approximate", "exact")


def rebalanced_similarity(labels_a: torch.Tensor, labels_b: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(S, r): S_ij = 1 where items share a label, -r elsewhere, r = #similar / #dissimilar pairs (0 if none
    is dissimilar)."""
    similar = label_similarity(labels_a, labels_b)
    positives = float(similar.sum())
    negatives = float(similar.numel()) - positives
    ratio = positives / negatives if negatives > 0 else 0.0
    return similar - ratio * (1.0 - similar), ratio


def coding_objective(
    s_rest: torch.Tensor, s_cols: torch.Tensor, codes_rest: torch.Tensor, codes_cols: torch.Tensor
) -> float:
    """J = ||c S_GammaOmega - B_Gamma B_Omega^T||^2 + ||c S_OmegaOmega - B_Omega B_Omega^T||^2."""
    c = codes_cols.shape[1]
    first = (c * s_rest - codes_rest @ codes_cols.t()).pow(2).sum()
    second = (c * s_cols - codes_cols @ codes_cols.t()).pow(2).sum()
    return float(first + second)


def bit_problem(
    target_rest: torch.Tensor, target_cols: torch.Tensor, codes_rest: torch.Tensor, codes_cols: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q, p) of bit k: J as a function of column k of B_Omega is z^T Q z + p^T z plus a constant.

    ``target_rest`` = c S_GammaOmega, ``target_cols`` = c S_OmegaOmega. With the residuals
    R = c S_GammaOmega - sum_{t != k} g_t z_t^T and R' = c S_OmegaOmega - sum_{t != k} z_t z_t^T,
    ||R - g_k z^T||^2 = const - 2 (R^T g_k)^T z and ||R' - z z^T||^2 = const - 2 z^T R' z (z^T z = m)."""
    z, g_k = codes_cols[:, k], codes_rest[:, k]
    residual_cols = target_cols - codes_cols @ codes_cols.t() + torch.outer(z, z)
    residual_rest = target_rest - codes_rest @ codes_cols.t() + torch.outer(g_k, z)
    return -2.0 * residual_cols, -2.0 * residual_rest.t() @ g_k


@torch.no_grad()
def code_columns(
    s_rest: torch.Tensor,
    s_cols: torch.Tensor,
    codes_rest: torch.Tensor,
    codes_cols: torch.Tensor,
    *,
    sweeps: int = 1,
    solver: str = "approximate",
) -> torch.Tensor:
    """The discrete coding step: ``sweeps`` passes over the bits of B_Omega (``codes_cols``, m x c), each bit
    the binary quadratic program of :func:`bit_problem`; returns the new ±1 B_Omega (J never increases: the
    exact solver keeps the current column on a tie, the approximate one never returns worse than it)."""
    b = codes_cols.clone().to(torch.float64)
    g = codes_rest.to(torch.float64)
    c = b.shape[1]
    target_rest = c * s_rest.to(torch.float64)
    target_cols = c * s_cols.to(torch.float64)
    for _ in range(sweeps):
        for k in range(c):
            q, p = bit_problem(target_rest, target_cols, g, b, k)
            z = b[:, k]
            if solver == "exact":
                new = solve_exact(q, p)
                if objective(q, p, new) >= objective(q, p, z):
                    new = z
            else:
                new = solve_approximate(q, p, start=z)
            b[:, k] = new
    return b.to(codes_cols.dtype)


@METHODS.register(reference="Jiang, Cui and Li, IEEE TIP 2018")
class DDSH(HashingMethod):
    """DDSH: discrete codes of sampled columns (per-bit quadratic programs) alternated with network training."""

    name = "ddsh"
    #: the adversarial-training step fills the columns from the trained model's codes (:meth:`preinstall`)
    uses_memory_bank = True

    def __init__(
        self,
        bits: int,
        num_classes: int,
        num_train: int,
        seed: int = 0,
        columns: Annotated[int, Range(1), "m: training items sampled as discrete columns per outer iteration"] = 100,
        inner_epochs: Annotated[int, Range(1), "epochs of network training per outer iteration"] = 3,
        sweeps: Annotated[int, Range(1), "passes over the bits in a discrete coding step"] = 1,
        solver: Annotated[str, Choices(*SOLVERS), "per-bit solver: the clustering heuristic or enumeration"] = (
            "approximate"
        ),
    ) -> None:
        super().__init__(bits, num_classes, num_train, seed)
        self.columns, self.inner_epochs, self.sweeps, self.solver = int(columns), int(inner_epochs), int(sweeps), solver
        m = self.column_count
        generator = torch.Generator().manual_seed(seed)
        # before the first coding step: seeded random codes, no labels (every pair dissimilar, r = 1)
        self.register_buffer("column_codes", (torch.rand(m, bits, generator=generator) < 0.5).float() * 2 - 1)
        self.register_buffer("column_labels", torch.zeros(m, num_classes))
        self.register_buffer("column_index", torch.full((m,), -1, dtype=torch.long))
        self.register_buffer("ratio", torch.ones(()))

    @property
    def column_count(self) -> int:
        """m, at most the training items less one (Gamma must not be empty)."""
        return max(1, min(self.columns, self.num_train - 1))

    @torch.no_grad()
    def set_columns(self, index: torch.Tensor, codes: torch.Tensor, labels: torch.Tensor, ratio: float) -> None:
        """Install the columns of an outer iteration (training indices, ±1 codes, labels) and r."""
        self.column_index.copy_(index.to(self.column_index))
        self.column_codes.copy_(codes.to(self.column_codes))
        self.column_labels.copy_(labels.to(self.column_labels))
        self.ratio.fill_(ratio)

    @torch.no_grad()
    def preinstall(self, codes: torch.Tensor, labels: torch.Tensor) -> None:
        """Draw the columns (seeded with ``seed``) from the codes and labels of the whole training split."""
        generator = torch.Generator().manual_seed(self.seed)
        index = torch.randperm(codes.shape[0], generator=generator)[: self.column_count].to(codes.device)
        _, ratio = rebalanced_similarity(labels.float(), labels[index].float())
        self.set_columns(index, codes[index].sign() + (codes[index] == 0), labels[index], ratio)

    def forward(self, u: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        similar = label_similarity(labels, self.column_labels)
        target = similar - self.ratio * (1.0 - similar)
        inner = u @ self.column_codes.t() / self.bits
        keep = ~(index.to(self.column_index.device).unsqueeze(1) == self.column_index.unsqueeze(0)).any(1)
        rows = keep.to(u.dtype).unsqueeze(1)
        return ((inner - target) ** 2 * rows).sum() / (rows.sum().clamp_min(1.0) * self.column_count)


from hashguard.methods.ddsh_step import DDSHStep  # noqa: E402  (the step imports this module's helpers)

DDSH.training_step = DDSHStep
