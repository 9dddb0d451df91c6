"""NMLayer: progressive redundancy reduction by merging the neurons of the hash layer (docs/methods.md, "NMLayer").

Reference: C. Fu, L. Song, X. Wu, G. Wang, R. He, "Neurons Merging Layer: Towards Progressive Redundancy
Reduction for Deep Supervised Hashing", IJCAI 2019, pp. 2322-2328.

Training starts with a hash layer of ``start_bits`` neurons (K_in) and ends with a plain ``bits``-bit model (no
extra parameters), so that evaluation, every attack and every defense run on the compressed model unchanged. A
neurons-merging layer after the hash layer holds a partition of the K_in neurons; each output is the mean of its
group's pre-activations (:class:`hashguard.models.nmlayer.MergedHashModel`). The run is one call of the shared
training loop with :class:`NMLayerStep`:

* **warm-up**: the first ``epochs - stages * stage_epochs`` epochs train all K_in neurons with the ``base``
  hashing loss (built for K_in bits);
* **stages** (:func:`hashguard.models.nmlayer_compress.stage_schedule`, ``floor(stage_ratio * K)`` bits per
  stage, never below ``bits``): at the start of a stage's first epoch the *active phase* chooses which groups to
  merge from the current pre-activations of the training split (:func:`~hashguard.models.nmlayer_compress.
  choose_merges`, ``redundancy`` rule, at most ``max_items`` items), then the *frozen phase* trains
  ``stage_epochs`` epochs through the merged outputs with the base loss rebuilt for the stage's bit count (a
  memory bank is refilled from the merged codes of the training split);
* **truncation**: after the last epoch the partition folds into a plain hash layer (group means of the rows of
  W and b; a BatchNorm code head is folded and followed by a ``bits``-wide BatchNorm whose eval map is the identity,
  started at the merged logits' statistics) and the ``bits``-bit model is written.

With P the stage's merging matrix (P[g, i] = 1/|g| for neuron i in group g), the loss of a batch is the base
method's loss on the merged relaxed codes:

    L = L_base(tanh(alpha * P z(x)), y),    z(x) in R^(K_in) the hash layer's pre-activations

The paper's importance measure, edge-update rule, phase lengths and stage sizes were not available to us; what
was chosen in their place is listed in docs/methods.md. As a loss (``method(u, labels, index)``, what the
adversarial defenses call on the compressed model) the method is the base loss at ``bits`` bits.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
from torch import nn

from hashguard.config import TrainConfig
from hashguard.data.base import HashingDataset
from hashguard.encoding import encode_dataset
from hashguard.errors import ConfigError
from hashguard.methods.base import HashingMethod
from hashguard.methods.base_loss import BaseLossMethod
from hashguard.methods.registry import METHODS, method_class
from hashguard.models.checkpoint import save_model
from hashguard.models.hash_model import HashModel
from hashguard.models.nmlayer import MergedHashModel, NeuronPartition, fold, hash_layer, widen
from hashguard.models.nmlayer_compress import choose_merges, split_logits, stage_schedule
from hashguard.registry import Range
from hashguard.training.clean_step import CleanStep
from hashguard.training.loop import Plan, StepOutput, derived_seed

#: checkpoint names of the per-stage base loss's state (a memory bank) and of the partition
STAGE_PREFIX = "nmlayer_stage_method."


@METHODS.register(reference="Fu et al., IJCAI 2019")
class NMLayer(BaseLossMethod):
    """NMLayer: train a wide hash layer, merge redundant neurons stage by stage, end with a plain short head."""

    name = "nmlayer"

    def __init__(
        self,
        bits: int,
        num_classes: int,
        num_train: int,
        seed: int = 0,
        base: Annotated[str, "hashing loss trained at every stage (a method without its own training step)"] = "dpsh",
        base_params: Annotated[str, "parameters of the base loss, KEY=VALUE[,KEY=VALUE...]"] = "",
        start_bits: Annotated[int, Range(2), "width of the hash layer before merging (K_in)"] = 64,
        stage_ratio: Annotated[
            float, Range(0, 0.99, exclusive_low=True), "each stage keeps floor(stage_ratio * K) bits"
        ] = 0.75,
        stage_epochs: Annotated[int, Range(1), "frozen-phase epochs after each merge"] = 1,
        redundancy: Literal["map_drop", "correlation"] = "map_drop",
        max_items: Annotated[int, Range(2), "training items whose pre-activations choose the merges"] = 1000,
    ) -> None:
        super().__init__(bits, num_classes, num_train, seed)
        if start_bits <= bits:
            raise ConfigError(f"method nmlayer: start_bits ({start_bits}) must be larger than bits ({bits})")
        self.start_bits = int(start_bits)
        self.stage_ratio = float(stage_ratio)
        self.stage_epochs = int(stage_epochs)
        self.redundancy = redundancy
        self.max_items = int(max_items)
        self.use_base(base, base_params)

    def stages(self) -> list[int]:
        """The bit count after each stage, ending at ``bits``."""
        return stage_schedule(self.start_bits, self.bits, self.stage_ratio)


class NMLayerStep(CleanStep):
    """NMLayer training (Fu et al., IJCAI 2019) as a step of :func:`hashguard.training.loop.fit`.

    The constructor widens the model's hash layer to ``start_bits`` (seeded); the checkpoint holds the wide model,
    the partition (its groups) and the stage loss's state, so a run resumed after any epoch is exact. The final
    model (written by :meth:`finish`, and left in the caller's model object) is the folded ``bits``-bit model. A
    validation split is scored through the merged outputs, never selected on (the bit count changes).
    """

    name = "nmlayer"
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
        if not isinstance(method, NMLayer):
            raise ConfigError(f"the NMLayer training step needs the nmlayer method, got {method.name!r}")
        if model.bits != method.bits:
            raise ConfigError(f"method nmlayer: a {model.bits}-bit model for a {method.bits}-bit method")
        hash_layer(model)
        for key, value in method_class(method.base).model_overrides().items():
            if getattr(model.spec, key) != value:
                raise ConfigError(f"method nmlayer: base {method.base} needs model.{key}={value}")
        schedule = method.stages()
        warmup = config.epochs - len(schedule) * method.stage_epochs
        if warmup < 1:
            raise ConfigError(
                f"method nmlayer: {method.start_bits} -> {method.bits} bits takes {len(schedule)} stages of "
                f"{method.stage_epochs} epoch(s) plus at least one warm-up epoch; train.epochs is {config.epochs}"
            )
        super().__init__(model, method, train_set, config, seed=seed, val_set=val_set, describe=describe)
        self.nm: NMLayer = method
        self.schedule = schedule
        self.stage_starts = [warmup + i * method.stage_epochs for i in range(len(schedule))]
        widen(model, method.start_bits, derived_seed(seed, 11))
        self.partition = NeuronPartition(method.start_bits)
        self.matrix = self.partition.merge_matrix()
        self.stage_method: HashingMethod = method.base_loss(method.start_bits)
        self.stages_done: list[dict[str, Any]] = []

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def start(self, plan: Plan) -> None:
        super().start(plan)
        self._use_partition(self.partition)

    def _use_partition(self, partition: NeuronPartition, stage_method: HashingMethod | None = None) -> None:
        self.partition = partition
        self.matrix = partition.merge_matrix().to(self.model.device)
        self.stage_method = (stage_method or self.nm.base_loss(partition.num_groups)).to(self.model.device)

    def merged(self) -> MergedHashModel:
        """The wide model behind the current neurons-merging layer."""
        return MergedHashModel(self.model, self.partition)

    def begin_epoch(self, epoch: int, generator: torch.Generator) -> None:
        if epoch in self.stage_starts:
            self._merge(self.stage_starts.index(epoch))
        super().begin_epoch(epoch, generator)

    @torch.no_grad()
    def _merge(self, stage: int) -> None:
        """Active phase of stage ``stage``: choose the merges, rebuild the loss at the new bit count."""
        target = self.schedule[stage]
        logits, labels = split_logits(self.model, self.train_set, self.nm.max_items)
        partition = NeuronPartition.from_groups(self.partition.groups(), self.partition.size)
        bits_before = partition.num_groups
        merges = choose_merges(logits, partition, target, labels, self.nm.redundancy)
        self._use_partition(partition)
        if self.stage_method.uses_memory_bank:
            codes, bank_labels = encode_dataset(self.merged(), self.train_set)
            self.stage_method.preinstall(
                torch.from_numpy(codes).float().to(self.model.device),
                torch.from_numpy(bank_labels).float().to(self.model.device),
            )
        self.stages_done.append({"bits_in": bits_before, "bits_out": target, "merges": [list(m) for m in merges]})
        self.plan.log(f"NMLayer stage {stage + 1}/{len(self.schedule)}: {bits_before} -> {target} bits")

    def __call__(self, batch: Any, step_index: int) -> StepOutput:
        images, labels, index = (t.to(self.model.device) for t in batch)
        z = self.model.logits(images) @ self.matrix.to(images.dtype).T
        u = torch.tanh(self.stage_method.alpha(step_index) * z)
        return StepOutput(self.stage_method(u, labels, index), size=images.shape[0])

    def end_epoch(self, epoch: int, record: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {"bits": self.partition.num_groups}
        finished = epoch + 1
        if self.val_set is not None and (finished % self.config.eval_every == 0 or finished == self.config.epochs):
            from hashguard.training.clean_step import validation_map

            result["val_map"] = validation_map(self.merged(), self.val_set, self.train_set, self.config.eval_topk)
        return result

    def note(self, record: dict[str, Any]) -> str:
        return f", {record['bits']} bits" + super().note(record)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {STAGE_PREFIX + k: v for k, v in self.stage_method.state_dict().items()}

    def state_meta(self) -> dict[str, Any]:
        return {"nmlayer_groups": self.partition.groups(), "nmlayer_stages": self.stages_done}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        partition = NeuronPartition.from_groups(meta["nmlayer_groups"], self.nm.start_bits)
        stage_method = self.nm.base_loss(partition.num_groups)
        own = {k[len(STAGE_PREFIX):]: v for k, v in tensors.items() if k.startswith(STAGE_PREFIX)}
        stage_method.load_state_dict(own)
        self._use_partition(partition, stage_method)
        self.stages_done = list(meta["nmlayer_stages"])

    def finish(self, history: list[dict[str, Any]]) -> None:
        """Fold the partition into a plain ``bits``-bit head (in the caller's model too) and write the model."""
        logits, _ = split_logits(self.merged(), self.train_set, self.nm.max_items)  # type: ignore[arg-type]
        folded = fold(self.model, self.partition, (logits.mean(0).float(), logits.var(0).float()))
        self.model.backbone.hash_layer = folded.backbone.hash_layer
        self.model.hash_norm = folded.hash_norm
        self.model.spec = folded.spec
        out = self.plan.out_dir
        training = self.training_record(history)
        compression = {
            "start_bits": self.nm.start_bits, "bits": self.nm.bits, "stage_starts": self.stage_starts,
            "stages": self.stages_done, "groups": self.partition.groups(),
        }
        if self.plan.is_main:
            save_model(
                out, self.model, method={"name": self.nm.name, "params": self.nm.params()},
                num_classes=self.train_set.num_classes, dataset=self.describe.get("dataset"),
                extra={
                    "training": training, "nmlayer": compression,
                    **{k: v for k, v in self.describe.items() if k != "dataset"},
                },
            )
        self.plan.log(f"wrote {out} ({self.nm.start_bits} neurons merged into a plain {self.nm.bits}-bit head)")


NMLayer.training_step = NMLayerStep
