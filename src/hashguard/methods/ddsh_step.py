"""DDSH training as a step of the shared loop: a discrete coding step, then network training (docs/methods.md).

Reference: Jiang, Cui and Li, "Deep Discrete Supervised Hashing", IEEE TIP 2018. One outer iteration of the
paper is ``inner_epochs`` epochs of the loop: at the start of epoch e with e % inner_epochs == 0 the step

1. encodes the whole training split with the network (eval mode): B = sign(F(X));
2. samples the m columns Omega with the epoch's generator (seeded from (seed, e) by the loop);
3. computes the rebalanced similarity of every item with the columns, and runs the discrete coding step
   (:func:`hashguard.methods.ddsh.code_columns`) from B_Omega = B[Omega] with B_Gamma = B[Gamma] fixed;
4. installs the columns in the method (its buffers ``column_codes``, ``column_labels``, ``column_index``,
   ``ratio``).

Every batch of the epochs that follow is one optimiser step on the method's loss (the first term of J with
tanh codes, Gamma items only). The columns live in the method's buffers, which the loop checkpoints with the
method (``method.*``), so a run interrupted after any epoch resumes with the same columns; the step keeps
the coding objective before and after the last coding step as its own state (history fields ``coding_before``
and ``coding_after``).
"""

from __future__ import annotations

from typing import Any

import torch

from hashguard.encoding import encode_dataset
from hashguard.training.clean_step import CleanStep


class DDSHStep(CleanStep):
    """A DDSH outer iteration every ``inner_epochs`` epochs, network steps on the method's loss in between."""

    name = "ddsh"
    data_parallel = False  # its own per-batch work does not gather the global batch (one process only)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.coding: dict[str, float] = {}

    def begin_epoch(self, epoch: int, generator: torch.Generator) -> None:
        if epoch % self.method.inner_epochs == 0:
            self.coding_step(generator)
        super().begin_epoch(epoch, generator)

    @torch.no_grad()
    def coding_step(self, generator: torch.Generator) -> None:
        from hashguard.methods.ddsh import code_columns, coding_objective, rebalanced_similarity

        method = self.method
        codes_np, labels_np = encode_dataset(self.model, self.train_set)
        codes = torch.from_numpy(codes_np).double()
        labels = torch.from_numpy(labels_np).double()
        n = codes.shape[0]
        order = torch.randperm(n, generator=generator)
        cols, rest = order[: method.column_count].sort().values, order[method.column_count :].sort().values
        s_all, ratio = rebalanced_similarity(labels, labels[cols])
        s_rest, s_cols = s_all[rest], s_all[cols]
        before = coding_objective(s_rest, s_cols, codes[rest], codes[cols])
        new = code_columns(s_rest, s_cols, codes[rest], codes[cols], sweeps=method.sweeps, solver=method.solver)
        after = coding_objective(s_rest, s_cols, codes[rest], new)
        device = self.model.device
        method.set_columns(cols.to(device), new.to(device), labels[cols].to(device), ratio)
        self.coding = {"coding_before": before, "coding_after": after}

    def end_epoch(self, epoch: int, record: dict[str, Any]) -> dict[str, Any]:
        extra, self.coding = self.coding, {}  # only the epoch that ran a coding step reports it
        extra.update(super().end_epoch(epoch, record))
        return extra
