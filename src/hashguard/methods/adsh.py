"""ADSH: asymmetric deep supervised hashing (docs/methods.md).

Reference: Q.-Y. Jiang, W.-J. Li, "Asymmetric Deep Supervised Hashing", AAAI 2018 (arXiv 1707.08325).

A network F encodes *queries* only; the binary codes V in {-1, +1}^(N x K) of the N items of the training
pool (which is also the retrieval database in the paper's protocol) are learned directly as discrete
variables. With u_i = tanh(F(x_i)) for a sampled query subset Omega of the pool (m items) the objective is

    J(Theta, V) = sum_{i in Omega} sum_{j in pool} (u_i^T v_j - K S_ij)^2 + gamma sum_{i in Omega} ||v_i - u_i||^2

(the paper's objective), minimised alternately: a network step (T_in passes of mini-batch SGD over Omega with V
fixed), then a closed-form update of V with Theta fixed, bit by bit (discrete cyclic coordinate descent):
with Q = -2K S^T U - 2 gamma U_bar (U_bar: U in the rows of Omega, zero elsewhere),

    V_{:,k} <- -sign(2 V_hat_k U_hat_k^T U_{:,k} + Q_{:,k})

where the hats drop column k. Each column update minimises J exactly over that column, so J never increases
in the V step. The per-batch loss used for the network (and by the adversarial defenses, which call
``method(u, labels, index)``) is J restricted to the batch and divided by B * N * K^2:

    L = 1/(B N K^2) [ sum_{i in batch} sum_j (u_i^T v_j - K S_ij)^2 + gamma sum_{i in batch} ||v_i - u_i||^2 ]

(the paper sums; the authors' code divides by B * N; the further 1/K^2 makes the loss of the order of 1 like the
other methods', so that a shared learning rate and the adversarial defenses' weights of their own terms apply;
the minimisers are unchanged).

S is the rebalanced similarity: 1 for items sharing a label, -r otherwise, with r = #similar / #dissimilar
pairs of the pool (``similarity="rebalanced"``; ``"plain"`` gives the paper's +1 / -1). Test time: a query's
code is sign(F(x)); under ``protocol="adsh"`` the database is the training pool and its codes are V (stored
beside the weights in ``database_codes.safetensors``), under ``protocol="saat"`` the database is a separate
split encoded by the network like every other method (the protocol of the adversarial-hashing comparisons, Yuan et
al., IEEE TIFS 2023); both are offered because the paper's protocol and the comparison protocol differ.

SAAT's mainstay codes (DMFL) are defined from the network's codes of the training items; for ADSH those are not
the stored database codes, so the mainstay attacks and SAAT / CgAT take ``mainstay_from="database"`` to build them
from V with the pool's labels instead (:func:`learned_codes_of` reads V for them; the default stays the network's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch

from hashguard.config import TrainConfig
from hashguard.data.base import HashingDataset
from hashguard.encoding import encode_dataset
from hashguard.errors import CheckpointError, ConfigError
from hashguard.methods.base import HashingMethod, label_similarity
from hashguard.methods.registry import METHODS
from hashguard.models.checkpoint import load_state_file, save_model, save_state_file
from hashguard.models.hash_model import HashModel
from hashguard.registry import Range
from hashguard.training.clean_step import CleanStep
from hashguard.training.loop import Plan, StepOutput, derived_seed

#: the learned database codes V and the pool's labels, beside ``model.safetensors``
DATABASE_CODES_FILE = "database_codes.safetensors"
PROTOCOLS = ("adsh", "saat")


def similarity_balance(labels: torch.Tensor, chunk: int = 256) -> float:
    """r = #similar / #dissimilar ordered pairs (i, j) of the pool (self pairs included); 1 when no pair is
    dissimilar (then -r is never used). Counted in row chunks so that a large pool needs no N x N matrix."""
    labels = labels.float()
    similar = 0.0
    for start in range(0, labels.shape[0], chunk):
        similar += float(label_similarity(labels[start : start + chunk], labels).sum())
    total = float(labels.shape[0]) ** 2
    dissimilar = total - similar
    return similar / dissimilar if dissimilar > 0 else 1.0


def adsh_similarity(labels_a: torch.Tensor, labels_b: torch.Tensor, balance: float | torch.Tensor) -> torch.Tensor:
    """S_ij = 1 for items sharing a label, -balance otherwise."""
    dtype = labels_a.dtype if labels_a.is_floating_point() else torch.float32
    similar = label_similarity(labels_a, labels_b).to(dtype)  # exact 0 / 1, in the labels' precision
    return similar * (1 + balance) - balance


def adsh_objective(
    u: torch.Tensor, codes: torch.Tensor, omega: torch.Tensor, similarity: torch.Tensor, gamma: float
) -> torch.Tensor:
    """J = sum_{i in omega, j} (u_i^T v_j - K S_ij)^2 + gamma sum_i ||v_{omega_i} - u_i||^2 (un-normalised).

    ``u`` (m, K) holds the relaxed codes of the items ``omega`` (m,) of the pool, ``codes`` is V (N, K) and
    ``similarity`` S (m, N)."""
    bits = codes.shape[1]
    return ((u @ codes.t() - bits * similarity) ** 2).sum() + gamma * ((codes[omega] - u) ** 2).sum()


@torch.no_grad()
def dcc_update(
    codes: torch.Tensor,
    u: torch.Tensor,
    omega: torch.Tensor,
    similarity: torch.Tensor,
    gamma: float,
    columns: list[int] | None = None,
) -> torch.Tensor:
    """One sweep of discrete cyclic coordinate descent over the bit columns of V (all K in order unless
    ``columns`` names some); returns a new tensor.

    Column k minimises J over that column with the others fixed (a linear function of the column, because
    ||v_j||^2 = K is constant): V_{:,k} = -sign(2 V_hat_k U_hat_k^T U_{:,k} + Q_{:,k}). Where the coefficient
    is exactly 0 both values are optimal and the current bit is kept, so V stays in {-1, +1}."""
    codes = codes.clone()
    bits = codes.shape[1]
    u = u.to(codes.dtype)
    u_bar = torch.zeros_like(codes)
    u_bar[omega] = u
    q = -2.0 * bits * similarity.to(codes.dtype).t() @ u - 2.0 * gamma * u_bar
    gram = u.t() @ u  # (K, K): U_hat_k^T U_{:,k} is column k of it without row k
    for k in range(bits) if columns is None else columns:
        cross = gram[:, k].clone()
        cross[k] = 0.0
        coefficient = 2.0 * codes @ cross + q[:, k]
        codes[:, k] = torch.where(coefficient == 0, codes[:, k], -torch.sign(coefficient))
    return codes


def random_codes(rows: int, bits: int, seed: int) -> torch.Tensor:
    """Uniform random {-1, +1} codes (rows, K), seeded: the initial V."""
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randint(0, 2, (rows, bits), generator=generator).float() * 2 - 1


def load_database_codes(directory: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(V (N, K) float {-1, +1}, labels (N, C) float) of an ADSH checkpoint directory."""

    path = Path(directory) / DATABASE_CODES_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; an ADSH checkpoint keeps its database codes V there")
    state = load_state_file(path)
    if "codes" not in state or "labels" not in state:
        raise CheckpointError(f"{path}: holds no 'codes' and 'labels' tensors")
    return state["codes"].float(), state["labels"].float()


def learned_codes_of(
    meta: dict[str, Any], directory: str | Path, option: str = "mainstay_from=database"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(V, the pool's labels) of the checkpoint ``directory`` whose ``model.json`` is ``meta``, for ``option``;
    one :class:`ConfigError` line when it is not an ADSH checkpoint (no learned database codes to read)."""
    if not meta.get("adsh"):
        method = (meta.get("method") or {}).get("name", "unknown")
        raise ConfigError(
            f"{option} needs an ADSH checkpoint (its learned database codes V); {directory} holds a {method} model "
            f"without them: use {option.split('=')[0]}=network (the default)"
        )
    return load_database_codes(directory)


@METHODS.register(reference="Jiang and Li, AAAI 2018")
class ADSH(HashingMethod):
    """ADSH: a query network against database codes V learned as discrete variables (asymmetric)."""

    name = "adsh"
    uses_memory_bank = True  # V and the pool's labels play the part of a bank for the adversarial defenses

    def __init__(
        self,
        bits: int,
        num_classes: int,
        num_train: int,
        seed: int = 0,
        gamma: Annotated[float, Range(0), "weight of ||v_i - u_i||^2 (a query's code vs its database code)"] = 200.0,
        num_samples: Annotated[int, Range(1), "query items sampled from the pool per outer iteration (m)"] = 2000,
        inner_epochs: Annotated[int, Range(1), "passes over the sampled queries per outer iteration (T_in)"] = 3,
        similarity: Literal["rebalanced", "plain"] = "rebalanced",
        protocol: Literal["adsh", "saat"] = "adsh",
    ) -> None:
        super().__init__(bits, num_classes, num_train, seed)
        self.gamma = float(gamma)
        self.num_samples = int(num_samples)
        self.inner_epochs = int(inner_epochs)
        self.similarity = similarity
        self.protocol = protocol
        self.register_buffer("V", random_codes(num_train, bits, seed))
        self.register_buffer("Y", torch.zeros(num_train, num_classes))
        self.register_buffer("balance", torch.tensor(1.0))
        self.codes_from_checkpoint = False

    @torch.no_grad()
    def install_labels(self, labels: torch.Tensor) -> None:
        """Set the pool's labels and the similarity balance r computed from them."""
        if labels.shape != self.Y.shape:
            raise ValueError(f"ADSH holds labels {tuple(self.Y.shape)}, got {tuple(labels.shape)}")
        self.Y.copy_(labels.to(self.Y))
        value = similarity_balance(labels) if self.similarity == "rebalanced" else 1.0
        self.balance.fill_(value)

    @torch.no_grad()
    def install_checkpoint(self, directory: str | Path) -> None:
        """Use the learned V of a trained ADSH checkpoint (its first ``num_train`` rows: the defenses may train
        on the first items of the pool only)."""
        codes, labels = load_database_codes(directory)
        if codes.shape[0] < self.num_train or codes.shape[1] != self.bits:
            raise CheckpointError(
                f"{directory}: database codes are {tuple(codes.shape)}, need at least {self.num_train} x {self.bits}"
            )
        self.V.copy_(codes[: self.num_train].to(self.V))
        self.install_labels(labels[: self.num_train])
        self.codes_from_checkpoint = True

    def preinstall(self, codes: torch.Tensor, labels: torch.Tensor) -> None:
        """Adversarial training: the pool's labels, and V = the given sign codes unless the learned V of the
        checkpoint was installed (:meth:`install_checkpoint`)."""
        self.install_labels(labels)
        if not self.codes_from_checkpoint:
            self.V.copy_(codes.sign().to(self.V))

    def pair_similarity(self, labels: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """S between ``labels`` and the pool (or the pool rows ``rows``)."""
        pool = self.Y if rows is None else self.Y[rows]
        return adsh_similarity(labels.to(pool.dtype), pool, self.balance)

    def forward(self, u: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        codes = self.V.to(u.dtype)
        similarity = self.pair_similarity(labels).to(u.dtype)
        square = ((u @ codes.t() - self.bits * similarity) ** 2).sum()
        quantisation = self.gamma * ((codes[index.to(codes.device).long()] - u) ** 2).sum()
        return (square + quantisation) / (u.shape[0] * self.num_train * self.bits**2)

    def describe_protocol(self) -> dict[str, Any]:
        """What ``model.json`` records about the asymmetric codes."""
        return {"protocol": self.protocol, "database_codes": DATABASE_CODES_FILE, "pool_items": self.num_train}


class OmegaSampler:
    """The items of outer iteration ``e``: the sampled queries Omega_e (m items of the pool, drawn with a
    generator seeded from ``(seed, e)``), visited ``inner_epochs`` times, each time in a fresh seeded order.
    A pure function of the seed and the epoch, so that a resumed run samples exactly the same subsets."""

    def __init__(self, pool: int, samples: int, inner_epochs: int, seed: int) -> None:
        self.pool, self.samples, self.inner_epochs, self.seed = pool, min(samples, pool), inner_epochs, seed

    def num_items(self) -> int:
        return self.samples * self.inner_epochs

    def omega(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(derived_seed(self.seed, epoch, 7))
        return torch.randperm(self.pool, generator=generator)[: self.samples].sort().values

    def order(self, epoch: int) -> list[int]:
        omega = self.omega(epoch)
        order: list[int] = []
        for inner in range(self.inner_epochs):
            generator = torch.Generator().manual_seed(derived_seed(self.seed, epoch, 8 + inner))
            order += omega[torch.randperm(self.samples, generator=generator)].tolist()
        return order


class ADSHStep(CleanStep):
    """ADSH training as a step of :func:`hashguard.training.loop.fit`: one epoch of the loop is one outer
    iteration of the paper's alternating algorithm (Jiang and Li, AAAI 2018).

    The epoch's items are the sampled queries Omega visited ``inner_epochs`` times (:class:`OmegaSampler`),
    each batch is one SGD step on the ADSH loss against the current V, and the end of the epoch updates V in
    closed form (:func:`dcc_update`) with the relaxed codes U of Omega from the epoch's last pass. V, the pool's
    labels and r are buffers of the method, so the loop's checkpoint holds them and a resumed run is exact.
    The final model is the last epoch's (V belongs to it); a validation split is scored, never selected on.
    """

    name = "adsh"
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
        if not isinstance(method, ADSH):
            raise ConfigError(f"the ADSH training step needs the adsh method, got {method.name!r}")
        super().__init__(model, method, train_set, config, seed=seed, val_set=val_set, describe=describe)
        self.omega_sampler = OmegaSampler(len(train_set), method.num_samples, method.inner_epochs, seed)
        self.omega = torch.zeros(0, dtype=torch.long)
        self.relaxed = torch.zeros(0)

    def sampler(self) -> OmegaSampler:
        """The loop's item order (see :class:`OmegaSampler`)."""
        return self.omega_sampler

    def start(self, plan: Plan) -> None:
        labels = torch.as_tensor(np.asarray(self.train_set.labels), dtype=torch.float32)
        self.method.install_labels(labels)  # a resumed run then restores V (and the same labels) from the checkpoint
        super().start(plan)  # moves the method (V, Y) to the model's device

    def begin_epoch(self, epoch: int, generator: torch.Generator) -> None:
        super().begin_epoch(epoch, generator)
        self.omega = self.omega_sampler.omega(epoch).to(self.model.device)
        self.relaxed = torch.zeros(self.method.num_train, self.method.bits, device=self.model.device)

    def __call__(self, batch: Any, step_index: int) -> StepOutput:
        images, labels, index = (t.to(self.model.device) for t in batch)
        u = self.model(images, alpha=self.method.alpha(step_index))
        self.relaxed[index.long()] = u.detach().to(self.relaxed.dtype)
        return StepOutput(self.method(u, labels, index), size=images.shape[0])

    def end_epoch(self, epoch: int, record: dict[str, Any]) -> dict[str, Any]:
        method = self.method
        u = self.relaxed[self.omega].to(method.V.dtype)
        similarity = method.pair_similarity(method.Y[self.omega])
        codes = dcc_update(method.V, u, self.omega, similarity, method.gamma)
        changed = int((codes != method.V).any(dim=1).sum())
        method.V.copy_(codes)
        objective = float(adsh_objective(u, codes, self.omega, similarity, method.gamma))
        result: dict[str, Any] = {"objective": objective, "codes_changed": changed}
        finished = epoch + 1
        if self.val_set is not None and (finished % self.config.eval_every == 0 or finished == self.config.epochs):
            result["val_map"] = self.validation_map()
        return result

    def validation_map(self) -> float:
        """mAP of the validation items (sign of the network) against the pool (V under the ADSH protocol, the
        network's codes under the SAAT protocol)."""
        from hashguard.retrieval import mean_average_precision

        assert self.val_set is not None
        query_codes, query_labels = encode_dataset(self.model, self.val_set)
        if self.method.protocol == "adsh":
            db_codes = self.method.V.detach().cpu().to(torch.int8).numpy()
            db_labels = self.method.Y.detach().cpu().numpy()
        else:
            db_codes, db_labels = encode_dataset(self.model, self.train_set)
        return float(mean_average_precision(query_codes, db_codes, query_labels, db_labels, topk=self.config.eval_topk))

    def note(self, record: dict[str, Any]) -> str:
        text = f", J {record['objective']:.4g}, {record['codes_changed']} codes changed"
        return text + (f", val mAP {record['val_map']:.4f}" if "val_map" in record else "")

    def finish(self, history: list[dict[str, Any]]) -> None:
        """Write ``model.json`` + the network's weights + ``database_codes.safetensors`` (V and the pool's
        labels); ``model.json`` records the protocol under ``"adsh"``."""
        out = self.plan.out_dir
        training = self.training_record(history)
        if self.plan.is_main:
            save_state_file(
                out / DATABASE_CODES_FILE,
                {"codes": self.method.V.detach().to(torch.int8), "labels": self.method.Y.detach().float()},
            )
            save_model(
                out, self.model, method={"name": self.method.name, "params": self.method.params()},
                num_classes=self.train_set.num_classes, dataset=self.describe.get("dataset"),
                extra={
                    "training": training, "adsh": self.method.describe_protocol(),
                    **{k: v for k, v in self.describe.items() if k != "dataset"},
                },
            )
        self.plan.log(f"wrote {out} (query network and {len(self.train_set)} database codes V, protocol "
                      f"{self.method.protocol})")


ADSH.training_step = ADSHStep
