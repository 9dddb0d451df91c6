"""Every method of SAAT's comparison set learns on the demo data (CPU, seconds per method).

Measured (16 bits, 1,000 training digits, in-batch pairs): on the single-label demo every method clears
random codes by more than 0.3 mAP after 3 epochs. On the multi-label demo (2x2 grids scaled to 28 px) CSQ and
OrthoHash clear random codes by 0.2-0.3 after 6 epochs; HashNet, HSWD and DPN stay within 0.04 of random
there (0.39 / 0.39 / 0.36 against 0.35), so they are not asserted on it: a known gap of learning from scratch
with pairwise losses and DPN's thresholded multi-label targets.
"""

from __future__ import annotations

import pytest

METHODS_AND_PARAMS = [
    ("hashnet", {"pairs": "batch"}),
    ("csq", {}),
    ("dpn", {}),
    ("hswd", {"pairs": "batch"}),
    ("orthohash", {}),
]


@pytest.mark.parametrize("name, params", METHODS_AND_PARAMS, ids=[m for m, _ in METHODS_AND_PARAMS])
def test_method_beats_random_codes_on_single_label_digits(train_demo, name, params):
    outcome = train_demo(name, "demo-mnist", bits=16, epochs=3, **params)
    assert outcome.map > outcome.random_map + 0.25, (outcome.map, outcome.random_map)


@pytest.mark.parametrize("name", ["csq", "orthohash"])
def test_method_beats_random_codes_on_multi_label_grids(train_demo, name):
    outcome = train_demo(name, "demo-mnist-multi", bits=16, epochs=6)
    assert outcome.map > outcome.random_map + 0.12, (outcome.map, outcome.random_map)
