"""Attack randomness in an evaluation is seeded per query batch: batch b draws from (seed, b) only."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset

from hashguard.attacks import build_attack
from hashguard.attacks.evaluate import evaluate_attack

EPS = 8 / 255


def _attack(bench, seed: int = 4):
    return build_attack("mainstay", bench.model, bench.context, eps=EPS, iterations=2, step=2 / 255,
                        optimizer="pgd", random_start=True, seed=seed)


def test_a_query_batch_is_attacked_as_its_own_seed_says(attack_bench):
    b = attack_bench
    queries = TensorDataset(b.query_images[:10], b.query_labels[:10], torch.arange(10))
    db_codes, db_labels = b.context.database_codes, b.context.database_labels
    run = evaluate_attack(_attack(b), queries, db_codes, db_labels, batch_size=4, progress=False)
    # batch 2 (queries 8, 9) alone, by a fresh attack seeded for that batch: the same adversarial codes
    fresh = _attack(b)
    fresh.setup()
    fresh.seed_batch(2)
    alone = fresh.run(b.query_images[8:10], b.query_labels[8:10])
    np.testing.assert_array_equal(alone.adv_codes.cpu().numpy(), run.adv_codes[8:10])
    # stopping after fewer batches changes nothing in the batches attacked
    shorter = evaluate_attack(_attack(b), queries, db_codes, db_labels, batch_size=4, limit=6, progress=False)
    np.testing.assert_array_equal(shorter.adv_codes, run.adv_codes[:6])
    # the batch number does reach the random start: another batch number, other adversarial images
    images, labels = b.query_images[8:10], b.query_labels[8:10]
    fresh.seed_batch(2)
    again = fresh(images, labels)
    fresh.seed_batch(3)
    other = fresh(images, labels)
    assert torch.equal(again, alone.adv_images) and not torch.equal(other, again)
