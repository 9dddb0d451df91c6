"""One data-parallel step on 2 Gloo ranks with uneven shares (16 and 17 of 33 items) equals the one-process step:
the global-batch loss, every parameter gradient after the reduction (batch norm synchronised over the ranks in
the forward and the backward pass, outputs gathered, gradients summed) and every running statistic.

Measured on x86-64: the largest gradient difference is 5.9e-7 against gradients up to 0.14, the largest
running-statistic difference 6e-8; the loss is equal. Tolerance: 1e-5 of the largest gradient of the model
(the hash layer's bias, followed by a batch norm, has a zero gradient up to rounding), 1e-5 relative for the
statistics. Without the synchronisation the per-rank batch statistics change the gradients by about 1e-2
(checked by the last test, which also keeps this one from passing vacuously).
"""

from __future__ import annotations

import batch_norm_worker
import numpy as np
import pytest
import torch
from launch import spawn_ranks

from hashguard.testing import torch_threads

pytestmark = pytest.mark.filterwarnings("ignore")
SIZE = 2
TIMEOUT_S = 120


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bn")
    with torch_threads(1):
        batch_norm_worker.single(folder)
    spawn_ranks(batch_norm_worker.worker, folder, SIZE, TIMEOUT_S)

    def load(name: str) -> dict[str, np.ndarray]:
        with np.load(folder / f"{name}.npz") as archive:
            return {key: archive[key] for key in archive.files}

    return load("single"), [load(f"rank{r}") for r in range(SIZE)]


def test_every_rank_takes_the_one_process_step(steps):
    single, ranks = steps
    for rank, values in enumerate(ranks):
        assert values.keys() == single.keys()
        np.testing.assert_allclose(values["loss"], single["loss"], rtol=1e-6, err_msg=f"rank {rank}")
        gradient_scale = max(float(np.abs(v).max()) for k, v in single.items() if k.startswith("grad."))
        for key in single:
            # gradients against the largest gradient of the model (a bias before a batch norm has a zero gradient
            # up to rounding); statistics and the loss against their own size
            scale = gradient_scale if key.startswith("grad.") else max(float(np.abs(single[key]).max()), 1e-3)
            np.testing.assert_allclose(
                values[key], single[key], rtol=0, atol=1e-5 * scale, err_msg=f"rank {rank}: {key}"
            )


def test_the_ranks_agree_exactly_with_each_other(steps):
    _, ranks = steps
    for key in ranks[0]:
        np.testing.assert_array_equal(ranks[0][key], ranks[1][key], err_msg=key)


def test_per_rank_statistics_would_change_the_gradients(steps):
    """The reference itself: the same step with each half of the batch normalised by its own statistics (what
    plain batch norm on two ranks computes) differs from the global-batch step far beyond the tolerance."""
    single, _ = steps
    torch.manual_seed(0)
    from hashguard.methods import build_method
    from hashguard.models.backbones import SmallCNN

    with torch_threads(1):
        model = torch.nn.Sequential(SmallCNN(16, 1, 28), torch.nn.BatchNorm1d(16))
        images = torch.rand(33, 1, 28, 28, generator=torch.Generator().manual_seed(1))
        labels = torch.nn.functional.one_hot(torch.arange(33) % 10, 10).float()
        method = build_method("csq", bits=16, num_classes=10, num_train=33, seed=0)
        u = torch.cat([torch.tanh(model(images[:16])), torch.tanh(model(images[16:]))])
        method(u, labels, torch.arange(33)).backward()
    key = "grad.0.features.0.weight"
    local = dict(model.named_parameters())["0.features.0.weight"].grad.numpy()
    scale = float(np.abs(single[key]).max())
    assert float(np.abs(local - single[key]).max()) > 100 * 1e-5 * scale
