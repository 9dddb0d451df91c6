"""Label propagation over a kNN graph (Zhou, Bousquet, Lal, Weston and Schoelkopf, "Learning with Local and
Global Consistency", NIPS 2004), run progressively.

One propagation solves F = (I - alpha S)^-1 Y (Zhou et al., section 2, the closed form of their iteration
F <- alpha S F + (1 - alpha) Y up to the factor 1 - alpha), with S the normalised affinity of the graph and Y
the labelled items' multi-hot rows (zero rows elsewhere), by conjugate gradients on each column (I - alpha S is
symmetric positive definite for 0 < alpha < 1). The same solve on the indicator of the labelled items gives
each item's *mass* m = (I - alpha S)^-1 1_L; since (I - alpha S)^-1 has no negative entry, P = F / m is, row by
row, a weighted average of the labelled label vectors: P[i, c] in [0, 1] estimates "item i has class c".

Decoding P into labels:

* **single-label pools** (every labelled row has exactly one positive): the class of largest P; confidence =
  that largest P;
* **multi-label pools**: every class with P >= 0.5 (if none, the class of largest P: every item has a label);
  confidence = min over classes of |2 P - 1|, so that one undecided class makes the whole row uncertain.

An item with no path to any labelled item (m = 0) gets the labelled items' most common label set and
confidence 0.

**Progressive rounds** (after Yan et al., arXiv 2108.06070, 2021, who add labels to the graph in rounds): round
r of R propagates from the labelled items, then accepts the most confident 1 / (R - r + 1) of the items still
unlabelled with their decoded labels, which stay fixed in the later rounds; the last round labels every
remaining item. Acceptance is class-balanced (as in class-balanced self-training, Zou et al., ECCV 2018): of the
items accepted in a round, about a share prior[c] have top class c, prior being the class frequencies of the
given labels (ties: higher in-degree first, then lower index). Without it, the easiest class (a dense cluster
such as the digit 1) is accepted first and then outvotes the others in the next rounds. R = 1 is one plain
propagation. Where Yan et al. predict with a graph neural network retrained each round, this uses the
closed-form propagation: it has no weights to train, is deterministic, and equals a hand computation on small
graphs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hashguard.errors import ConfigError
from hashguard.labeling.graph import KnnGraph, NormalisedAffinity

#: the weight of the graph against the given labels. Zhou et al. use 0.99; on cosine kNN graphs of raw pixels
#: 0.9 labelled the demo digits better at every budget (0.99 lets high-degree items pull their neighbours'
#: labels towards their own class; see docs/labeling.md)
ALPHA = 0.9
#: progressive rounds by default (1: one propagation; more rounds did not label the demo digits better)
ROUNDS = 1


def solve_propagation(
    operator: NormalisedAffinity, targets: torch.Tensor, alpha: float = ALPHA, tol: float = 1e-10,
    max_iterations: int = 2000,
) -> torch.Tensor:
    """(I - alpha S)^-1 ``targets`` (N, C), one conjugate-gradient solve per column (stops when every
    column's residual is below ``tol`` times its right-hand side's norm)."""
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"the propagation alpha must be in (0, 1), got {alpha}")
    b = targets
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = (r * r).sum(dim=0)
    limit = (tol * b.norm(dim=0)) ** 2
    for _ in range(max_iterations):
        if bool((rs <= limit).all()):
            break
        ap = p - alpha * operator(p)
        curvature = (p * ap).sum(dim=0)
        step = torch.where(curvature > 0, rs / curvature.clamp_min(1e-300), torch.zeros_like(rs))
        x = x + step * p
        r = r - step * ap
        rs_next = (r * r).sum(dim=0)
        p = r + torch.where(rs > 0, rs_next / rs.clamp_min(1e-300), torch.zeros_like(rs)) * p
        rs = rs_next
    return x


def class_scores(
    operator: NormalisedAffinity, labels: torch.Tensor, labelled: torch.Tensor, alpha: float = ALPHA
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(P (N, C), mass (N,))``: P = F / m, the propagated average of the labelled rows of ``labels`` (rows
    of unlabelled items are ignored; ``labelled`` is an (N,) bool mask)."""
    mask = labelled.to(labels.dtype).unsqueeze(1)
    solved = solve_propagation(operator, torch.cat([labels * mask, mask], dim=1), alpha)
    mass = solved[:, -1]
    reached = mass > 1e-12 * mass.abs().max().clamp_min(1e-300)
    scores = torch.where(reached.unsqueeze(1), solved[:, :-1] / mass.clamp_min(1e-300).unsqueeze(1), 0.0)
    return scores.clamp(0.0, 1.0), torch.where(reached, mass, torch.zeros_like(mass))


def is_single_label(labels: torch.Tensor) -> bool:
    """Whether every row of ``labels`` has exactly one positive entry."""
    return bool(((labels > 0.5).sum(dim=1) == 1).all())


def decode(scores: torch.Tensor, single_label: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(labels (N, C) in {0, 1}, confidence (N,) in [0, 1])`` from class scores (see the module text)."""
    best = scores.argmax(dim=1)
    top = torch.zeros_like(scores).scatter_(1, best.unsqueeze(1), 1.0)
    if single_label:
        return top, scores.max(dim=1).values
    chosen = (scores >= 0.5).to(scores.dtype)
    chosen = torch.where(chosen.sum(dim=1, keepdim=True) > 0, chosen, top)
    return chosen, (2.0 * scores - 1.0).abs().min(dim=1).values


@dataclass
class Propagation:
    """The labels of a whole pool after progressive propagation."""

    labels: torch.Tensor  #: (N, C) in {0, 1}: the given labels of the seed items, decoded ones elsewhere
    confidence: torch.Tensor  #: (N,) confidence when accepted (1 for seed items)
    round: torch.Tensor  #: (N,) round in which an item was labelled (0: a seed item)
    single_label: bool


def propagate_labels(
    graph: KnnGraph,
    seeds: torch.Tensor,
    seed_labels: torch.Tensor,
    rounds: int = ROUNDS,
    alpha: float = ALPHA,
) -> Propagation:
    """Label every item of ``graph`` from the items ``seeds`` (indices) with ``seed_labels`` (multi-hot rows),
    in ``rounds`` progressive rounds (see the module text)."""
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise ConfigError(f"the number of propagation rounds must be a positive integer, got {rounds!r}")
    size = graph.size
    seeds = torch.as_tensor(seeds, dtype=torch.long, device=graph.neighbours.device).reshape(-1)
    if seeds.numel() == 0:
        raise ConfigError("label propagation needs at least one labelled item")
    if seeds.unique().numel() != seeds.numel() or int(seeds.min()) < 0 or int(seeds.max()) >= size:
        raise ConfigError(f"labelled items must be distinct indices in [0, {size})")
    operator = graph.operator()
    dtype = operator.weights.dtype
    given = torch.as_tensor(seed_labels, dtype=dtype, device=seeds.device)
    if given.ndim != 2 or given.shape[0] != seeds.numel():
        raise ConfigError(f"expected one label row per labelled item ({seeds.numel()}), got {tuple(given.shape)}")
    single = is_single_label(given)
    labels = torch.zeros(size, given.shape[1], dtype=dtype, device=seeds.device)
    labels[seeds] = (given > 0.5).to(dtype)
    labelled = torch.zeros(size, dtype=torch.bool, device=seeds.device)
    labelled[seeds] = True
    confidence = torch.zeros(size, dtype=dtype, device=seeds.device)
    confidence[seeds] = 1.0
    round_of = torch.zeros(size, dtype=torch.long, device=seeds.device)
    fallback = _most_common_row(labels[seeds])
    degree = graph.in_degree().to(dtype)
    prior = labels[seeds].sum(dim=0) / labels[seeds].sum().clamp_min(1.0)
    for current in range(1, rounds + 1):
        open_items = torch.nonzero(~labelled).squeeze(1)
        if open_items.numel() == 0:
            break
        scores, mass = class_scores(operator, labels, labelled, alpha)
        decoded, sure = decode(scores, single)
        unreached = mass <= 0
        decoded[unreached] = fallback
        sure[unreached] = 0.0
        take = -(-open_items.numel() // (rounds - current + 1))  # ceil: the last round takes the rest
        accepted = _balanced_acceptance(open_items, scores.argmax(dim=1), sure, degree, prior, take)
        labels[accepted] = decoded[accepted]
        confidence[accepted] = sure[accepted]
        round_of[accepted] = current
        labelled[accepted] = True
    return Propagation(labels, confidence, round_of, single)


def _balanced_acceptance(
    open_items: torch.Tensor, predicted: torch.Tensor, confidence: torch.Tensor, degree: torch.Tensor,
    prior: torch.Tensor, take: int,
) -> torch.Tensor:
    """``take`` of ``open_items``: for each class c, the most confident items whose top class is c, about
    ``take * prior[c]`` of them; places a class cannot fill go to the most confident items left."""
    if take >= open_items.numel():
        return open_items
    order = _confident_first(confidence[open_items], degree[open_items], open_items)
    ranked = open_items[order]
    quota = torch.floor(prior * take).long()
    keep = torch.zeros(ranked.numel(), dtype=torch.bool, device=ranked.device)
    classes = predicted[ranked]
    for c in range(prior.numel()):
        members = torch.nonzero(classes == c).squeeze(1)
        keep[members[: int(quota[c])]] = True
    missing = take - int(keep.sum())
    if missing > 0:
        rest = torch.nonzero(~keep).squeeze(1)
        keep[rest[:missing]] = True
    return ranked[keep]


def _confident_first(confidence: torch.Tensor, degree: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Positions ordered by confidence, then in-degree (both descending), then index (ascending)."""
    order = torch.argsort(index, stable=True)
    order = order[torch.argsort(-degree[order], stable=True)]
    return order[torch.argsort(-confidence[order], stable=True)]


def _most_common_row(rows: torch.Tensor) -> torch.Tensor:
    """The most frequent row of ``rows`` (ties: the first to appear)."""
    unique, inverse, counts = torch.unique(rows, dim=0, return_inverse=True, return_counts=True)
    first = torch.full((unique.shape[0],), rows.shape[0], dtype=torch.long, device=rows.device)
    first = first.scatter_reduce(0, inverse, torch.arange(rows.shape[0], device=rows.device), reduce="amin")
    best = max(range(unique.shape[0]), key=lambda u: (int(counts[u]), -int(first[u])))
    return unique[best]
