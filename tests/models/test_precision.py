"""bfloat16 mixed precision and the channels-last memory format (``--precision bf16``, ``--channels-last``) run on
CPU and give the float32 codes up to a few bits.

Measured on x86-64 (a CSQ small CNN, 32 bits, trained 2 epochs on 400 digits; 300 query digits; seeds 0, 1, 2):
bf16 changes 0.09-0.10 % of the code bits (a logit within bfloat16's rounding of zero flips) and moves the mAP
against 1,500 database digits by at most 0.0012; channels-last changed no bit (only the order of float
additions differs). The tests allow 3 % and 0.5 % of the bits.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hashguard.attacks import build_optimizer, mainstay_loss
from hashguard.errors import ConfigError
from hashguard.precision import Runtime, current_runtime, use_runtime
from hashguard.testing import stack_split, train_tiny_csq


@pytest.fixture(scope="module")
def trained(demo_splits):
    model, _ = train_tiny_csq(demo_splits, bits=32, epochs=2, train_items=400, seed=0)
    images, labels = stack_split(demo_splits.query, 300)
    return model.eval(), images, labels


def _flipped(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a != b).float().mean())


def test_bf16_codes_are_the_float32_codes_up_to_a_few_bits(trained):
    model, images, _ = trained
    reference = model.encode(images)
    with use_runtime("bf16"), torch.no_grad():
        assert current_runtime().precision == "bf16"
        low = model.encode(images)
        logits = model.logits(images)
    assert logits.dtype == torch.float32  # the network ran in bf16, the logits come back as float32
    assert _flipped(reference, low) <= 0.03
    # bf16 did change the arithmetic (not a silent no-op): the logits differ beyond float32 rounding
    with torch.no_grad():
        assert float((logits - model.logits(images)).abs().max()) > 1e-4
    assert current_runtime() == Runtime()  # the block ended


def test_channels_last_gives_the_float32_codes(trained):
    model, images, _ = trained
    reference = model.encode(images)
    with use_runtime("float32", channels_last=True):
        codes = model.encode(images)
    assert _flipped(reference, codes) <= 0.005


def test_an_attack_runs_under_bf16_and_stays_in_its_ball(trained):
    model, images, _ = trained
    target = -model.encode(images[:16]).float()
    with use_runtime("bf16", channels_last=True):
        adv = build_optimizer("pgd", step=2 / 255).run(
            model, images[:16], lambda u, x: mainstay_loss(u, target), eps=8 / 255, iterations=3,
            generator=torch.Generator().manual_seed(0),
        )
    assert float((adv - images[:16]).abs().max()) <= 8 / 255 + 1e-6
    assert np.isfinite(adv.numpy()).all()


def test_an_unknown_precision_is_one_clear_error():
    with pytest.raises(ConfigError, match="precision must be one of float32, bf16"):
        Runtime("fp8")
