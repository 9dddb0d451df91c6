"""Binary quadratic programs over ±1 vectors: the per-bit coding problem of DDSH (docs/methods.md).

Reference: Q.-Y. Jiang, X. Cui, W.-J. Li, "Deep Discrete Supervised Hashing", IEEE TIP 2018 (the discrete
coding step). With all bits but one fixed, the sampled columns' codes of that bit, z in {-1, +1}^m, minimise

    f(z) = z^T Q z + p^T z                     (Q symmetric m x m, p in R^m)

Two solvers:

* :func:`solve_exact`: enumeration of all 2^m vectors (for m <= :data:`EXACT_LIMIT`, the tests' reference);
* :func:`solve_approximate` (the default of DDSH): the clustering view of the problem. An auxiliary sign t
  homogenises it, f(z) = x^T H x with x = [z; t] and H = [[Q, p/2], [p^T/2, 0]] (then z = x[:m] * t, which
  leaves f unchanged). Because x^T x = m + 1 is constant, minimising x^T H x is maximising x^T A x with
  A = lambda I - H, where lambda exceeds the largest eigenvalue of H so that A = L L^T is positive definite.
  x^T A x = ||sum_i x_i l_i||^2 over the rows l_i of L: split the rows into two groups with opposite signs
  so that the signed sum is longest. The heuristic is the nearest-centre iteration of that split: with
  centre c = L^T x, each row joins the side whose centre (+c or -c) is nearer, x_i <- sign(<l_i, c>) =
  sign((A x)_i) (computed with A directly; no factorisation is needed). As x^T A x is convex, every
  iteration can only increase it (decrease f). The iteration starts from the warm start (the current codes)
  and from a balanced split (the rows ordered by the top eigenvector of A, the first half +1), and a
  greedy single-flip descent on f finishes each; the better result is returned, so the answer is never
  worse than the warm start.

Ties (a zero) are resolved to +1. Everything returns ±1 tensors of the dtype of ``Q``.
"""

from __future__ import annotations

import torch

#: the largest m :func:`solve_exact` enumerates (2^m candidates)
EXACT_LIMIT = 20


def objective(q: torch.Tensor, p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """f(z) = z^T Q z + p^T z; ``z`` may be a batch of rows (..., m)."""
    return ((z @ q) * z).sum(-1) + z @ p


def _signs(values: torch.Tensor) -> torch.Tensor:
    return torch.where(values >= 0, torch.ones_like(values), -torch.ones_like(values))


def _check(q: torch.Tensor, p: torch.Tensor) -> int:
    m = p.shape[0]
    if q.shape != (m, m):
        raise ValueError(f"Q must be {m} x {m} to match p, got {tuple(q.shape)}")
    return m


def solve_exact(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """The minimiser of z^T Q z + p^T z over z in {-1, +1}^m by enumeration (first minimiser in binary
    counting order, bit 0 = -1); m <= :data:`EXACT_LIMIT`."""
    m = _check(q, p)
    if m > EXACT_LIMIT:
        raise ValueError(f"exact enumeration is for at most {EXACT_LIMIT} variables, got {m}")
    if m == 0:
        return q.new_zeros(0)
    best_value, best = None, None
    chunk = 1 << min(m, 14)
    weights = 1 << torch.arange(m)
    for start in range(0, 1 << m, chunk):
        numbers = torch.arange(start, min(start + chunk, 1 << m)).unsqueeze(1)
        candidates = ((numbers & weights) > 0).to(q.dtype) * 2 - 1
        values = objective(q, p, candidates)
        index = int(torch.argmin(values))
        if best_value is None or values[index] < best_value:
            best_value, best = values[index], candidates[index]
    return best.clone()  # type: ignore[union-attr]


def local_descent(q: torch.Tensor, p: torch.Tensor, z: torch.Tensor, max_flips: int | None = None) -> torch.Tensor:
    """Greedy single-flip descent: flip the variable that lowers f the most until no flip lowers it.

    Flipping z_i changes f by -4 z_i sum_{j != i} Q_ij z_j - 2 p_i z_i."""
    z = z.clone()
    off = q - torch.diag(torch.diagonal(q))
    limit = max_flips if max_flips is not None else 4 * z.shape[0] + 8
    for _ in range(limit):
        change = -4 * z * (off @ z) - 2 * p * z
        index = int(torch.argmin(change))
        if change[index] >= -1e-9 * (1 + change.abs().max()):
            break
        z[index] = -z[index]
    return z


def _nearest_centre(a: torch.Tensor, x: torch.Tensor, iterations: int) -> torch.Tensor:
    """x <- sign(A x) until it stops changing (each step raises x^T A x for positive definite A)."""
    for _ in range(iterations):
        new = _signs(a @ x)
        if torch.equal(new, x):
            break
        x = new
    return x


def solve_approximate(
    q: torch.Tensor, p: torch.Tensor, start: torch.Tensor | None = None, iterations: int = 50
) -> torch.Tensor:
    """An approximate minimiser of z^T Q z + p^T z over ±1 (the clustering heuristic of the module docstring);
    never worse than ``start`` when one is given."""
    m = _check(q, p)
    if m == 0:
        return q.new_zeros(0)
    q = 0.5 * (q + q.t())
    h = q.new_zeros(m + 1, m + 1)
    h[:m, :m] = q - torch.diag(torch.diagonal(q))  # the diagonal only adds the constant trace(Q)
    h[:m, m] = h[m, :m] = 0.5 * p
    eigenvalues, eigenvectors = torch.linalg.eigh(h)
    shift = float(eigenvalues[-1]) + 1e-6 * (1.0 + float(eigenvalues.abs().max()))
    a = shift * torch.eye(m + 1, dtype=q.dtype, device=q.device) - h
    # the top eigenvector of A is the bottom one of H; its order gives the balanced starting split
    order = torch.argsort(eigenvectors[:, 0], descending=True, stable=True)
    balanced = -torch.ones(m + 1, dtype=q.dtype, device=q.device)
    balanced[order[: (m + 1) // 2]] = 1
    starts = [balanced, _signs(eigenvectors[:, 0])]
    if start is not None:
        starts.append(torch.cat([_signs(start.to(q.dtype)), balanced.new_ones(1)]))
    best, best_value = None, None
    for x in starts:
        x = _nearest_centre(a, x, iterations)
        z = local_descent(q, p, x[:m] * x[m])
        value = objective(q, p, z)
        if best_value is None or value < best_value:
            best, best_value = z, value
    if start is not None:
        start_z = _signs(start.to(q.dtype))
        if objective(q, p, start_z) <= best_value:
            return start_z
    return best  # type: ignore[return-value]
