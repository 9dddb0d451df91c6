"""One training loop for every kind of training: :func:`fit` runs epochs of a :class:`TrainingStep`.

The loop owns everything that is the same for clean training of a hashing method, adversarial training
(SAAT, ATRDH, CgAT) and any later scheme: the run identity check, resumption from the newest checkpoint,
the seeded order of the items of each epoch, the global seed of each epoch, the learning rate of each step,
the optimiser step, the divergence check, the progress bar, the epoch means of the loss and its parts,
checkpoints (:mod:`hashguard.training.state`), ``history.json`` and the end-of-run hand-off. What happens to
one batch is the step's.

A step (:class:`TrainingStep`) provides:

* ``name``: a word for logs and errors (``"training"``, ``"saat"``, ...);
* ``modules()``: the ``nn.Module`` objects whose ``state_dict`` is checkpointed, by prefix
  (``{"model": model, "method": method}`` stores ``model.*`` and ``method.*``);
* ``parameters()``: what the optimiser updates (default: the parameters of ``modules()`` in order);
* ``start(plan)``: called once, after the output directory is checked and before the optimiser is built or a
  checkpoint restored; the :class:`Plan` says where the run writes, its epochs, steps per epoch, seed,
  whether this process writes files (``is_main``) and how to log;
* ``lr(step_index, epoch)``: the learning rate of a global step (0-based over the whole run), a pure function
  so that a resumed run continues the schedule exactly;
* ``begin_epoch(epoch, generator)``: before the batches of an epoch (default: ``train()`` on every module);
  ``generator`` is a CPU generator seeded from ``(seed, epoch)`` for the step's own randomness (attack
  starts, augmentations, a second view);
* ``__call__(batch, step_index) -> StepOutput``: the loss of one batch as the data loader yields it, with its
  parts (floats, for the history) and the number of items it weighs in the epoch means; the loop checks it is
  finite, then zeroes the gradients, back-propagates and steps the optimiser;
* ``end_epoch(epoch, record) -> dict``: extra history fields of a finished epoch (a validation mAP);
  ``note(record)`` adds them to the epoch's log line;
* ``state_tensors()`` / ``state_meta()`` / ``load_state(tensors, meta)``: state of its own kept in the
  checkpoint beside the modules and the optimiser (code banks, database codes learned as variables, an
  auxiliary network and its optimiser, the session of a lifelong run, a best score); tensor names must not
  start with a module prefix or ``optimizer.`` and meta keys must not be the loop's own (:data:`LOOP_META`);
  ``load_state`` gets the whole checkpoint;
* ``finish(history)``: the end-of-run hand-off (write the final model), called once every epoch is done.

Batches: the items of an epoch are cut into batches of ``batch_size`` in the sampler's order; when that
would leave a last batch of a single item (``n = batch_size * k + 1``, ``k >= 1``), that item joins the batch
before it, which then holds ``batch_size + 1`` items. A batch of one item cannot be trained on by a batch-norm
hash head (its batch statistics need two items) nor by losses that compare the items of a batch with each
other (OrthoHash); every other epoch size gives exactly the batches it gave before (:func:`epoch_batches`).

Determinism: epoch ``e`` seeds the global generator with ``derived_seed(seed, e, 1)`` (dropout), hands the
step a generator seeded with ``derived_seed(seed, e, 2)`` and draws its order from the sampler (default
:class:`SeededPermutation`: ``randperm`` seeded with ``derived_seed(seed, e, 0)``). With the optimiser, the
modules and the step's own state in the checkpoint, a run interrupted after any finished epoch and resumed
ends with the same weights as an uninterrupted run on the same machine.

More than one process (``world``, a :class:`~hashguard.distributed.world.World` of ``torchrun``): data
parallelism with the arithmetic of ``DistributedDataParallel``. Every rank draws the same global order and cuts
the same global batches; rank ``r`` loads the ``r``-th contiguous share of each batch
(:func:`~hashguard.distributed.sharding.shard_bounds`), so ``batch_size`` is the global batch and must be at
least the world size. The step runs its model on its share and calls ``plan.gather`` on the outputs, labels
and indices (:func:`~hashguard.distributed.collectives.gather_live`): the global batch in one-process order,
with this rank's rows still carrying gradients. Its loss is then the one-process loss of the global batch,
computed identically on every rank (memory banks and code banks see the whole batch, so they stay identical
on every rank). After ``backward`` the gradients of ``step.sharded_parameters()`` (the parameters upstream of
the gather: the network) are summed over ranks and the others averaged, in one all-reduce, so every rank
takes the one-process optimiser step. Batch norm layers of the sharded modules are synchronised
(:mod:`hashguard.distributed.batch_norm`); every rank starts from rank 0's weights. Only rank 0 writes
checkpoints, ``history.json`` and the log, and a checkpoint written by any world size resumes under any other.
Dropout masks are drawn per rank (the global seed of the epoch is the same everywhere), so a model with
dropout is equal in distribution, not bit for bit, to its one-process run. A step declares that it follows
this contract with ``data_parallel = True``; the loop refuses more than one process for any other step.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from hashguard.distributed.batch_norm import synchronise_batch_norm
from hashguard.distributed.collectives import barrier, broadcast_module, gather_live, reduce_gradients, sum_floats
from hashguard.distributed.sharding import shard_bounds
from hashguard.distributed.world import World, current_world, single_process
from hashguard.errors import HashguardError
from hashguard.io_utils import atomic_write_json, check_output_directory
from hashguard.training.state import CHECKPOINT_DIR, existing_run, optimizer_to_flat, restore_modules, write_checkpoint

HISTORY_FILE = "history.json"
#: checkpoint metadata keys the loop writes itself
LOOP_META = ("identity", "epochs_done", "history", "optimizer")


def derived_seed(*parts: int) -> int:
    """A 63-bit seed derived deterministically from integers (stable across runs and platforms)."""
    digest = hashlib.sha256(",".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def config_digest(payload: dict[str, Any]) -> str:
    """A short digest of a JSON-able run description: the identity a resumed run must match."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Plan:
    """What a step learns about its run before the first epoch."""

    out_dir: Path
    epochs: int
    steps_per_epoch: int
    seed: int
    is_main: bool = True
    log: Callable[[str], None] = field(default=lambda _msg: None)
    #: the global batch of per-rank tensors, as a tuple (as given in one process; see the module docstring)
    gather: Callable[..., tuple[torch.Tensor, ...]] = field(default=lambda *tensors: tensors)
    #: the processes of the run (one process unless launched by torchrun)
    world: World = field(default_factory=single_process)


@dataclass
class StepOutput:
    """The loss of one batch, its parts (floats for the history) and the items it weighs in the epoch means."""

    loss: torch.Tensor
    parts: dict[str, float] = field(default_factory=dict)
    size: int = 1


class TrainingStep(ABC):
    """The per-batch work of a training scheme (see the module docstring for the contract)."""

    name: str = "training"
    plan: Plan
    #: True when the step gathers its outputs with ``plan.gather`` and can run on several processes
    data_parallel: bool = False

    @abstractmethod
    def modules(self) -> dict[str, nn.Module]:
        """The checkpointed modules by prefix."""

    def parameters(self) -> list[nn.Parameter]:
        return [p for module in self.modules().values() for p in module.parameters()]

    def sharded_modules(self) -> list[nn.Module]:
        """The modules each rank runs on its own share of the batch (upstream of ``plan.gather``): their
        gradients are summed over ranks and their batch norm is synchronised. Default: the ``model`` module."""
        model = self.modules().get("model")
        return [] if model is None else [model]

    def start(self, plan: Plan) -> None:
        self.plan = plan

    @abstractmethod
    def lr(self, step_index: int, epoch: int) -> float:
        """The learning rate of global step ``step_index`` (in ``epoch``)."""

    def begin_epoch(self, epoch: int, generator: torch.Generator) -> None:
        for module in self.modules().values():
            module.train()

    @abstractmethod
    def __call__(self, batch: Any, step_index: int) -> StepOutput:
        """The loss of one batch."""

    def end_epoch(self, epoch: int, record: dict[str, Any]) -> dict[str, Any]:
        return {}

    def note(self, record: dict[str, Any]) -> str:
        return ""

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def state_meta(self) -> dict[str, Any]:
        return {}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Inverse of :meth:`state_tensors` / :meth:`state_meta`; gets the whole checkpoint."""
        return None

    def finish(self, history: list[dict[str, Any]]) -> None:
        """Write the final result (only where ``self.plan.is_main``)."""
        return None


class Sampler(Protocol):
    """The items this process visits in an epoch, in order."""

    def num_items(self) -> int: ...

    def order(self, epoch: int) -> list[int]: ...


class Reducer(Protocol):
    """Sums of the epoch numbers over processes; ``is_main`` marks the process that writes files."""

    is_main: bool

    def sum(self, values: dict[str, float]) -> dict[str, float]: ...


class SeededPermutation:
    """One process: every item once per epoch, in ``randperm`` order seeded with ``derived_seed(seed, e, 0)``."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed = size, seed

    def num_items(self) -> int:
        return self.size

    def order(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(derived_seed(self.seed, epoch, 0))
        return torch.randperm(self.size, generator=generator).tolist()


class WorldReducer:
    """Several processes: sums all-reduced over the ranks; rank 0 writes."""

    def __init__(self, world: World) -> None:
        self.world, self.is_main = world, world.is_main

    def sum(self, values: dict[str, float]) -> dict[str, float]:
        return sum_floats(values, self.world)


@dataclass
class GradientGroups:
    """The parameters whose gradients are summed over ranks (the sharded network) and those averaged."""

    summed: list[nn.Parameter]
    averaged: list[nn.Parameter]
    world: World

    def reduce(self) -> None:
        reduce_gradients(self.summed, self.averaged, self.world)


class SingleProcess:
    """One process: sums are already totals and this process writes."""

    is_main = True

    def sum(self, values: dict[str, float]) -> dict[str, float]:
        return dict(values)


@dataclass(frozen=True)
class LoopSettings:
    """The loop's own settings (the step holds everything else)."""

    epochs: int
    batch_size: int
    seed: int
    checkpoint_every: int = 1
    num_workers: int = 0
    progress: bool = False


@dataclass
class FitResult:
    """What a finished (or paused) run produced."""

    out_dir: Path
    epochs_done: int
    finished: bool
    history: list[dict[str, Any]] = field(default_factory=list)


def fit(
    step: TrainingStep,
    dataset: Dataset,
    settings: LoopSettings,
    out_dir: str | Path,
    *,
    identity: str,
    make_optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer],
    resume: bool = False,
    stop_after_epoch: int | None = None,
    log: Callable[[str], None] | None = print,
    what: str = "a training run",
    sampler: Sampler | None = None,
    reducer: Reducer | None = None,
    world: World | None = None,
) -> FitResult:
    """Run ``step`` over ``dataset`` for ``settings.epochs`` epochs, checkpointing into ``out_dir``.

    ``identity`` (see :func:`config_digest`) must match to resume; ``make_optimizer`` builds the optimiser
    over ``step.parameters()``. ``stop_after_epoch`` pauses the run after that many epochs, exactly as an
    interruption would; ``resume=True`` continues from the newest checkpoint (``what`` names the run in the
    refusal to overwrite one). ``world`` (default: :func:`~hashguard.distributed.world.current_world`) runs
    the step data-parallel over ``torchrun``'s processes (see the module docstring).
    """
    out = Path(out_dir)
    world = world or current_world()
    if world.distributed and not step.data_parallel:
        raise HashguardError(
            f"{step.name}: this training step runs on one process only; launch it without torchrun "
            f"(or with --nproc_per_node 1), got {world.size} processes"
        )
    if world.distributed and settings.batch_size < world.size:
        raise HashguardError(
            f"the batch size {settings.batch_size} is the global batch of {world.size} processes and must be "
            f"at least {world.size}"
        )
    say = (log or (lambda _msg: None)) if world.is_main else (lambda _msg: None)
    sampler = sampler or SeededPermutation(len(dataset), settings.seed)  # type: ignore[arg-type]
    reducer = reducer or (WorldReducer(world) if world.distributed else SingleProcess())
    if settings.batch_size < 1:
        raise HashguardError(f"batch size must be positive, got {settings.batch_size}")
    steps_per_epoch = batch_count(sampler.num_items(), settings.batch_size)
    if reducer.is_main:
        check_output_directory(out / CHECKPOINT_DIR)  # a file in the way fails now, not after the first epoch
    barrier(world)
    existing = existing_run(out, resume, what)
    gather = partial(gather_live, world=world)
    step.start(Plan(out, settings.epochs, steps_per_epoch, settings.seed, reducer.is_main, say, gather, world))
    for module in step.sharded_modules():
        synchronise_batch_norm(module, world)
    optimizer = make_optimizer(step.parameters())
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if resume and existing is not None:
        tensors, meta = restore_modules(existing, identity, step.modules(), optimizer)
        step.load_state(tensors, meta)
        start_epoch, history = int(meta["epochs_done"]), list(meta["history"])
        say(f"resuming {out} after epoch {start_epoch}")
    elif resume:
        say(f"nothing to resume in {out}; starting a new run")
    for module in step.modules().values():
        broadcast_module(module, world)  # the same start on every rank (a no-op for one process)
    sharded = {id(p) for module in step.sharded_modules() for p in module.parameters()}
    parameters = step.parameters()
    grads = GradientGroups(
        [p for p in parameters if id(p) in sharded], [p for p in parameters if id(p) not in sharded], world
    )

    end_epoch = settings.epochs if stop_after_epoch is None else min(settings.epochs, stop_after_epoch)
    for epoch in range(start_epoch, end_epoch):
        record = _run_epoch(step, dataset, settings, optimizer, sampler, reducer, epoch, steps_per_epoch, grads)
        history.append(record)
        finished = epoch + 1
        say(
            f"{step.name} epoch {finished}/{settings.epochs}: loss {record['loss']:.4f}{step.note(record)} "
            f"({record['seconds']:.1f} s)"
        )
        if reducer.is_main and (finished % settings.checkpoint_every == 0 or finished == end_epoch):
            write_checkpoint(out, finished, *_checkpoint(step, optimizer, identity, finished, history))
        if reducer.is_main:
            atomic_write_json(out / HISTORY_FILE, history)

    epochs_done = max(end_epoch, start_epoch)
    done = epochs_done >= settings.epochs
    if done:
        step.finish(history)
    barrier(world)  # rank 0's files are complete before any rank goes on to read them
    return FitResult(out, epochs_done, done, history)


def batch_count(items: int, batch_size: int) -> int:
    """The number of batches of an epoch of ``items`` items (see :func:`epoch_batches`)."""
    count = math.ceil(items / batch_size)
    return count - 1 if count > 1 and items % batch_size == 1 else count


def epoch_batches(order: list[int], batch_size: int) -> list[list[int]]:
    """Cut an epoch's item order into consecutive batches of ``batch_size``; a last batch of a single item is
    folded into the batch before it (which then holds ``batch_size + 1`` items). Deterministic: it depends on
    the order and the batch size only."""
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        last = batches.pop()
        batches[-1] = batches[-1] + last
    return batches


def _run_epoch(
    step: TrainingStep,
    dataset: Dataset,
    settings: LoopSettings,
    optimizer: torch.optim.Optimizer,
    sampler: Sampler,
    reducer: Reducer,
    epoch: int,
    steps_per_epoch: int,
    grads: GradientGroups,
) -> dict[str, Any]:
    """One epoch of ``step``; its history record."""
    started = time.perf_counter()
    torch.manual_seed(derived_seed(settings.seed, epoch, 1))
    generator = torch.Generator().manual_seed(derived_seed(settings.seed, epoch, 2))
    batches_of_epoch = epoch_batches(sampler.order(epoch), settings.batch_size)
    world = grads.world
    if world.distributed:  # this rank's contiguous share of every global batch
        batches_of_epoch = [
            batch[slice(*shard_bounds(len(batch), world.size, world.rank))] for batch in batches_of_epoch
        ]
    loader = DataLoader(dataset, batch_sampler=batches_of_epoch, num_workers=settings.num_workers)
    step.begin_epoch(epoch, generator)
    sums: dict[str, float] = {"loss": 0.0}
    count = 0
    batches: Iterable[Any] = loader
    if settings.progress and world.is_main:
        from tqdm import tqdm

        batches = tqdm(loader, desc=f"{step.name} epoch {epoch + 1}/{settings.epochs}", leave=False, unit="batch")
    for batch_number, batch in enumerate(batches):
        index = epoch * steps_per_epoch + batch_number
        for group in optimizer.param_groups:
            group["lr"] = step.lr(index, epoch)
        try:
            output = step(batch, index)
        except ValueError as exc:
            if "Expected more than 1 value per channel" not in str(exc):
                raise
            raise HashguardError(
                f"{step.name}: a batch of one item cannot pass the model's batch-norm layers in training; "
                f"use a batch size of at least 2 and at least 2 training items (batch size {settings.batch_size}, "
                f"{sampler.num_items()} items)"
            ) from None
        if not torch.isfinite(output.loss):
            raise HashguardError(
                f"{step.name} diverged at epoch {epoch + 1}, step {index}: loss is {output.loss.item()}; "
                "lower the learning rate"
            )
        optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        grads.reduce()
        optimizer.step()
        count += output.size
        sums["loss"] += float(output.loss.detach()) * output.size
        for key, value in output.parts.items():
            sums[key] = sums.get(key, 0.0) + value * output.size
        if settings.progress and world.is_main:
            batches.set_postfix(loss=f"{sums['loss'] / max(count, 1):.4f}")  # type: ignore[attr-defined]
    totals = reducer.sum({"items": float(count), **sums})
    items = totals.pop("items")
    record: dict[str, Any] = {"epoch": epoch + 1, **{k: v / max(items, 1) for k, v in totals.items()}}
    record["lr"] = step.lr((epoch + 1) * steps_per_epoch - 1, epoch)
    record["seconds"] = round(time.perf_counter() - started, 3)
    record.update(step.end_epoch(epoch, record))
    return record


def _checkpoint(
    step: TrainingStep, optimizer: torch.optim.Optimizer, identity: str, finished: int, history: list[dict[str, Any]]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of a checkpoint after ``finished`` epochs."""
    tensors = {f"{name}.{k}": v for name, module in step.modules().items() for k, v in module.state_dict().items()}
    own = step.state_tensors()
    reserved = tuple(f"{name}." for name in step.modules()) + ("optimizer.",)
    meta = step.state_meta()
    clashes = [k for k in own if k.startswith(reserved) or k in tensors] + [k for k in meta if k in LOOP_META]
    if clashes:
        raise HashguardError(f"step {step.name!r} keeps state under names the loop uses: {', '.join(clashes)}")
    optim_tensors, optim_meta = optimizer_to_flat(optimizer)
    tensors.update(own)
    tensors.update(optim_tensors)
    meta.update({"identity": identity, "epochs_done": finished, "history": history, "optimizer": optim_meta})
    return tensors, meta
