"""Evaluating an attack on a query split: mAP / t-mAP, theory mAP, bits flipped, perceptibility, wall time.

Metrics (docs/metrics.md, computed by :mod:`hashguard.retrieval`, ranking by (Hamming distance, database index)):

* non-targeted: mAP of the clean and of the adversarial query codes against the true labels (lower = stronger);
* targeted: t-mAP (relevance judged against the target labels) of the clean and adversarial codes (higher =
  stronger), plus the adversarial mAP against the true labels;
* theory mAP / t-mAP: the same metric for the attack's ideal code (docs/metrics.md);
* bits flipped: mean number of bits where the adversarial code differs from the clean code;
* perceptibility as real perturbation norms (docs/attacks.md): L-inf = max |delta| over all elements,
  mean per-image L2 norm, MSE, mean per-image PSNR (data range 1; identical images count as 100 dB), and mean
  SSIM (Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, per channel, valid region; the window shrinks to the
  image for images smaller than 11 pixels), matching ``skimage.metrics.structural_similarity`` with
  ``gaussian_weights=True, use_sample_covariance=False, data_range=1``.

Under ``torchrun`` the query batches are shared out over the processes and every number equals the one-process
run (:func:`evaluate_attack`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from hashguard.attacks.base import HashAttack
from hashguard.attacks.optimizers import uses_sign_steps
from hashguard.distributed.collectives import gather_rows
from hashguard.distributed.sharding import batch_shard
from hashguard.distributed.world import World, current_world
from hashguard.errors import ConfigError
from hashguard.progress_bar import progress_bar, progress_scope
from hashguard.protocol import eps_label
from hashguard.retrieval import sharded_mean_average_precision

PSNR_CAP = 100.0


def _gaussian_window(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return g.view(1, 1, -1, 1) * g.view(1, 1, 1, -1)


def ssim(clean: torch.Tensor, adv: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM (B,) of images in [0, 1], averaged over channels (Wang et al., IEEE TIP 2004)."""
    if clean.shape != adv.shape or clean.dim() != 4:
        raise ConfigError(f"SSIM needs two (B, C, H, W) batches of one shape, got {clean.shape}, {adv.shape}")
    size = min(window, clean.shape[-1], clean.shape[-2])
    size = size if size % 2 == 1 else size - 1
    x = clean.double().flatten(0, 1).unsqueeze(1)
    y = adv.double().flatten(0, 1).unsqueeze(1)
    w = _gaussian_window(size, sigma, x.device, x.dtype)
    mu_x, mu_y = F.conv2d(x, w), F.conv2d(y, w)
    xx, yy, xy = F.conv2d(x * x, w), F.conv2d(y * y, w), F.conv2d(x * y, w)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.mean(dim=(1, 2, 3)).view(clean.shape[0], clean.shape[1]).mean(dim=1)


def perceptibility(clean: torch.Tensor, adv: torch.Tensor) -> dict[str, float]:
    """Perturbation norms of a batch: linf, l2 (mean per image), mse, psnr (mean per image), ssim (mean)."""
    sums = perceptibility_sums(clean, adv)
    n = max(sums.pop("count"), 1)
    return {"linf": sums["linf"], **{k: v / n for k, v in sums.items() if k != "linf"}}


def perceptibility_sums(clean: torch.Tensor, adv: torch.Tensor) -> dict[str, float]:
    """Per-batch sums (and the max for linf) so that batches can be accumulated."""
    delta = (adv.detach() - clean.detach()).double().flatten(1)
    mse = (delta**2).mean(dim=1)
    psnr = torch.where(mse > 0, 10 * torch.log10(1.0 / mse.clamp_min(1e-300)), torch.full_like(mse, PSNR_CAP))
    return {
        "count": int(delta.shape[0]),
        "linf": float(delta.abs().max()) if delta.numel() else 0.0,
        "l2": float(delta.norm(dim=1).sum()),
        "mse": float(mse.sum()),
        "psnr": float(psnr.clamp_max(PSNR_CAP).sum()),
        "ssim": float(ssim(clean.detach(), adv.detach()).sum()),
    }


@dataclass
class AttackResult:
    """The measured outcome of one attack on a query split (written as JSON by ``hashguard attack``)."""

    attack: str
    targeted: bool
    params: dict[str, Any]
    num_queries: int
    topk: int | None
    clean_map: float
    adv_map: float
    theory_map: float | None = None
    clean_tmap: float | None = None
    adv_tmap: float | None = None
    theory_tmap: float | None = None
    bits_flipped: float = 0.0
    perceptibility: dict[str, float] = field(default_factory=dict)
    wall_time_s: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line: the metric before and after the attack (t-mAP for a targeted attack), the queries, the L-inf
        norm and the seconds spent attacking (the one-off training excluded)."""
        cut = "all" if self.topk is None else self.topk
        metric = f"t-mAP@{cut}" if self.targeted else f"mAP@{cut}"
        before = self.clean_tmap if self.targeted else self.clean_map
        after = self.adv_tmap if self.targeted else self.adv_map
        return (
            f"{self.attack}: {metric} {before:.4f} -> {after:.4f} on {self.num_queries} queries "
            f"(L-inf {self.perceptibility.get('linf', 0.0):.4f}, {self.wall_time_s:.1f} s)"
        )


@dataclass
class AttackRun:
    """Result plus the per-query codes (numpy int8 +-1) of a run."""

    result: AttackResult
    clean_codes: np.ndarray
    adv_codes: np.ndarray
    theory_codes: np.ndarray
    labels: np.ndarray
    target_labels: np.ndarray | None


def describe_run(attack: HashAttack, queries: int, batch_size: int) -> str:
    """One line saying what is about to run: the attack, the queries and batches, eps and, for an iterative
    attack, the iterations, the optimizer and its step (or learning rate) and random start."""
    params = attack.params()
    batches = -(-int(queries) // max(int(batch_size), 1))
    kind = "targeted" if attack.targeted else "non-targeted"
    line = (
        f"attack {attack.name} ({kind}): {queries} queries in {batches} batch{'' if batches == 1 else 'es'} "
        f"of up to {batch_size}; eps {eps_label(float(params['eps']))}"
    )
    if "iterations" in params and "optimizer" in params:
        step = float(params["step"])
        size = f"step {eps_label(step)}" if uses_sign_steps(str(params["optimizer"])) else f"learning rate {step:g}"
        start = ", random start" if params.get("random_start") else ""
        line += f", {params['iterations']} iterations of {params['optimizer']} ({size}{start})"
    else:
        line += ", a generator trained once before the first batch"
    return line


def evaluate_attack(
    attack: HashAttack,
    queries: Dataset,
    database_codes: Any,
    database_labels: Any,
    *,
    target_labels: Any = None,
    batch_size: int = 128,
    topk: int | None = None,
    limit: int | None = None,
    progress: bool | None = None,
    world: World | None = None,
) -> AttackRun:
    """Attack every query of ``queries`` (in index order, batch by batch) and measure the outcome.

    ``target_labels`` (Q x C) is required for a targeted attack (see :mod:`hashguard.attacks.targets`).
    ``limit`` attacks only the first ``limit`` queries. ``topk`` is the mAP cut-off (None: whole ranking).
    ``progress`` draws bars with an ETA on stderr over the query batches and over the attack's one-off training
    (THA's PrototypeNet, ProS-GAN's GAN): True always, False never, None (default) when stderr is a terminal
    (:mod:`hashguard.progress_bar`); in a multi-process run on rank 0 only.

    Randomness: the one-off preparation (:meth:`HashAttack.setup`) draws from the generator as the attack's seed
    left it; before query batch ``b`` (queries ``[b*B, (b+1)*B)``, B = ``batch_size``) the generator is re-seeded
    from ``(seed, b)`` (:meth:`HashAttack.seed_batch`). An adversarial example therefore depends on the seed, the
    attack batch size (which batch it falls in, and which other queries share that batch) and the batch number,
    never on the batches attacked before it.

    More than one process (``world``, default :func:`~hashguard.distributed.world.current_world`; a collective
    call, every rank makes it with the same arguments): every rank runs the one-off preparation identically,
    attacks a contiguous run of whole query batches (:func:`~hashguard.distributed.sharding.batch_shard`), and
    the clean, adversarial and theory codes, the labels and the per-batch perceptibility sums and info counters
    are gathered in query order; the mAP values are computed from the gathered codes (the queries shared out
    again, :func:`~hashguard.retrieval.metrics.sharded_mean_average_precision`). Every rank returns the same
    :class:`AttackRun`, equal to the one-process run: the world size changes no adversarial example (the batch
    size does, as above). ``wall_time_s`` is the time spent attacking summed over the batches of every rank
    (the one-off preparation excluded), i.e. the same measure as in one process, not the shorter elapsed time of
    the multi-process run.
    """
    world = world or current_world()
    n = len(queries) if limit is None else min(int(limit), len(queries))
    if n < 1:
        raise ConfigError(
            "no queries to attack" if limit is None or limit > 0
            else f"the number of queries to attack (--queries / --limit) must be positive, got {limit}"
        )
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be positive, got {batch_size}")
    targets = None
    if target_labels is not None:
        targets = torch.as_tensor(np.asarray(target_labels, dtype=np.float32))
        if targets.shape[0] < n:
            raise ConfigError(f"{targets.shape[0]} target labels for {n} queries")
        targets = targets[:n]
    if attack.targeted and targets is None:
        raise ConfigError(f"attack {attack.name} is targeted: target labels are needed")
    show = progress if world.is_main else False
    with progress_scope(show):
        attack.setup()
    first, last = batch_shard(n, batch_size, world.size, world.rank)
    loader = DataLoader(torch.utils.data.Subset(queries, range(first, last)), batch_size=batch_size, shuffle=False)
    clean, adv, theory, labels = [], [], [], []
    records: list[dict[str, Any]] = []  # per batch: perceptibility sums, numeric info, seconds
    batches = progress_bar(loader, total=len(loader), desc=f"{attack.name} queries", unit="batch", progress=show)
    for number, (images, batch_labels, index) in enumerate(batches, start=first // batch_size):
        batch_targets = None if targets is None else targets[index]
        attack.seed_batch(number)
        device_sync(attack.device)
        start = time.perf_counter()
        out = attack.run(images, batch_labels, batch_targets)
        device_sync(attack.device)
        seconds = time.perf_counter() - start
        clean.append(attack.model.encode(images).cpu())
        adv.append(out.adv_codes.cpu())
        theory.append(out.theory_codes.cpu())
        labels.append(batch_labels.float())
        records.append({
            "sums": perceptibility_sums(images.to(out.adv_images.device), out.adv_images),
            "info": {key: value for key, value in out.info.items() if isinstance(value, (int, float))},
            "seconds": seconds,
        })
    sums: dict[str, float] = {}
    info: dict[str, Any] = {}
    elapsed = 0.0
    for record in gather_records(records, world):  # every batch of every rank, in batch order
        for key, value in record["sums"].items():
            sums[key] = max(sums.get(key, 0.0), value) if key == "linf" else sums.get(key, 0.0) + value
        for key, value in record["info"].items():
            info[key] = info.get(key, 0) + value
        elapsed += record["seconds"]
    if not clean:  # a rank with no batch (fewer batches than ranks): empty parts of the right widths
        image, label, _ = queries[0]
        code = attack.model.encode(torch.as_tensor(image)[None]).cpu()[:0]
        clean, adv, theory, labels = [code], [code], [code], [torch.as_tensor(label).float()[None][:0]]
    clean_codes, adv_codes = (gather_rows(torch.cat(parts), world).numpy() for parts in (clean, adv))
    theory_codes, query_labels = (gather_rows(torch.cat(parts), world).numpy() for parts in (theory, labels))
    db_codes = np.asarray(torch.as_tensor(database_codes).cpu().numpy())
    db_labels = np.asarray(torch.as_tensor(database_labels).cpu().numpy(), dtype=np.float32)
    count = sums.pop("count")
    percept = {"linf": sums["linf"], **{k: v / count for k, v in sums.items() if k != "linf"}}

    def score(codes: np.ndarray, relevance: np.ndarray) -> float:
        return sharded_mean_average_precision(codes, db_codes, relevance, db_labels, topk, world=world)

    result = AttackResult(
        attack=attack.name,
        targeted=attack.targeted,
        params=attack.params(),
        num_queries=n,
        topk=topk,
        clean_map=score(clean_codes, query_labels),
        adv_map=score(adv_codes, query_labels),
        bits_flipped=float((clean_codes != adv_codes).sum(axis=1).mean()),
        perceptibility=percept,
        wall_time_s=elapsed,
        info=info,
    )
    target_array = None if targets is None else targets.numpy()
    if attack.targeted:
        assert target_array is not None
        result.clean_tmap = score(clean_codes, target_array)
        result.adv_tmap = score(adv_codes, target_array)
        result.theory_tmap = score(theory_codes, target_array)
    else:
        result.theory_map = score(theory_codes, query_labels)
    if any(math.isnan(v) for v in percept.values()):
        raise ConfigError(f"attack {attack.name} produced NaN perturbations")
    return AttackRun(result, clean_codes, adv_codes, theory_codes, query_labels, target_array)


def gather_records(records: list[dict[str, Any]], world: World) -> list[dict[str, Any]]:
    """Every rank's list of JSON-able records (numbers, strings, lists, dicts), concatenated in rank order.

    Sent as JSON text (floats round-trip exactly), so ranks may hold different keys and different numbers of
    records. A collective call; one process: ``records`` itself.
    """
    if not world.distributed:
        return records
    payload = torch.frombuffer(bytearray(json.dumps(records).encode("utf-8")), dtype=torch.uint8)
    sizes = gather_rows(torch.tensor([payload.numel()], dtype=torch.int64), world).tolist()
    data = gather_rows(payload, world).numpy().tobytes()
    gathered: list[dict[str, Any]] = []
    offset = 0
    for size in sizes:
        gathered.extend(json.loads(data[offset : offset + size].decode("utf-8")))
        offset += size
    return gathered


def device_sync(device: torch.device) -> None:
    """Wait for queued kernels on accelerators (for honest timings); a no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
