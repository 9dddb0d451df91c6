"""Perceptibility (docs/attacks.md): real perturbation norms and SSIM."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hashguard.attacks.evaluate import perceptibility, ssim


def test_norms_of_a_known_perturbation():
    clean = torch.full((2, 1, 4, 4), 0.5)
    adv = clean.clone()
    adv[0, 0, 0, 0] += 0.1
    adv[1] -= 0.05
    p = perceptibility(clean, adv)
    assert p["linf"] == pytest.approx(0.1)
    assert p["l2"] == pytest.approx((0.1 + 0.05 * 4) / 2)
    assert p["mse"] == pytest.approx((0.01 / 16 + 0.0025) / 2)
    assert p["psnr"] == pytest.approx((10 * math.log10(16 / 0.01) + 10 * math.log10(1 / 0.0025)) / 2)
    same = perceptibility(clean, clean)
    assert same["linf"] == 0 and same["psnr"] == 100.0 and same["ssim"] == pytest.approx(1.0)


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(3, 2, 28, 28, generator=g)
    adv = (clean + 0.1 * torch.randn(3, 2, 28, 28, generator=g)).clamp(0, 1)
    mine = ssim(clean, adv)
    for i in range(3):
        ref = np.mean(
            [
                metrics.structural_similarity(
                    clean[i, c].numpy(),
                    adv[i, c].numpy(),
                    gaussian_weights=True,
                    sigma=1.5,
                    use_sample_covariance=False,
                    data_range=1.0,
                )
                for c in range(2)
            ]
        )
        assert float(mine[i]) == pytest.approx(ref, abs=1e-6)
