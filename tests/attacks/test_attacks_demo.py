"""Every registered attack on a small trained demo model: effect, guards, seeds, the model untouched.

The budget here (15 iterations at eps 16/255; HAG's own budget is 2,000 iterations, SDHA's 1,500) is far too
short to compare the attacks' strengths, so no ordering between attacks is asserted. What is asserted is that
each attack moves the codes towards its own ideal ("theory") code: the mean agreement <sign f(x'), theory> / K
rises by more than 2 / K, i.e. by more than one bit per query on average. Measured on this fixture (32 bits,
60 queries, seeds 0-4): the rise is 0.112-0.124 for mainstay-targeted (the smallest), 0.130-0.134 mainstay,
0.137 HAG, 0.178 SDHA, 0.198 SDHA-targeted, 0.126-0.134 DHTA, 0.119-0.144 P2P, 0.132-0.138 THA, against the
threshold 2 / 32 = 0.0625. The update rules and loss values themselves are checked exactly in
test_update_rules.py and test_objective_values.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hashguard.attacks import ATTACKS, AttackContext, attack_spec, build_attack
from hashguard.attacks.evaluate import evaluate_attack
from hashguard.data.base import ArrayDataset
from hashguard.errors import ConfigError

EPS = 16 / 255
FAST = {"tha": dict(epochs=1, steps=100, hidden=512, lr=1e-3)}
#: iterative attacks; the generative ProS-GAN needs training images and has its own test (test_attack_prosgan.py)
ITERATIVE = [name for name in ATTACKS if attack_spec(name).iterative]


@pytest.fixture(scope="module")
def outcomes(attack_bench):
    results = {}
    clean = attack_bench.model.encode(attack_bench.query_images)
    for name in ITERATIVE:
        attack = build_attack(
            name, attack_bench.model, attack_bench.context, eps=EPS, iterations=15, **FAST.get(name, {})
        )
        out = attack.run(attack_bench.query_images, attack_bench.query_labels, attack_bench.target_labels)
        results[name] = (attack, out, clean)
    return results


@pytest.mark.parametrize("name", ITERATIVE)
def test_attack_moves_codes_towards_its_theory_code_and_stays_in_the_ball(attack_bench, outcomes, name):
    attack, out, clean = outcomes[name]
    theory = out.theory_codes.float()
    bits = theory.shape[1]
    before = float((clean.float() * theory).mean())
    after = float((out.adv_codes.float() * theory).mean())
    assert after > before + 2 / bits, f"{name}: agreement with the theory code {before:.3f} -> {after:.3f}"
    x = attack_bench.query_images
    assert torch.isfinite(out.adv_images).all()
    assert (out.adv_images - x).abs().max() <= EPS + 1e-6
    assert out.adv_images.min() >= 0 and out.adv_images.max() <= 1
    # the reported code is the code of the returned image, not the code of the last forward pass before the final step
    assert torch.equal(out.adv_codes, attack_bench.model.encode(out.adv_images))
    assert set(out.theory_codes.unique().tolist()) <= {-1, 1}
    assert all(p.grad is None for p in attack_bench.model.parameters())
    assert all(p.requires_grad for p in attack_bench.model.parameters())


def test_same_seed_same_codes(attack_bench):
    def codes(seed):
        attack = build_attack(
            "mainstay", attack_bench.model, attack_bench.context, eps=EPS, iterations=5, optimizer="di", seed=seed
        )
        return attack.run(attack_bench.query_images[:20], attack_bench.query_labels[:20]).adv_codes

    assert torch.equal(codes(1), codes(1))


def test_model_mode_is_restored(attack_bench):
    model = attack_bench.model
    model.train()
    try:
        build_attack("hag", model, eps=EPS, iterations=2)(attack_bench.query_images[:4], attack_bench.query_labels[:4])
        assert model.training
    finally:
        model.eval()


def test_empty_reference_sets_give_no_nan(attack_bench):
    """Training labels lacking the query's / target's classes: SDHA and mainstay fall back, never NaN."""
    ctx = attack_bench.context
    keep = ctx.train_labels[:, :5].sum(dim=1) > 0  # drop every training item of classes 5..9
    train_labels = ctx.train_labels[keep].clone()
    pruned = AttackContext(ctx.train_codes[keep], train_labels, ctx.database_codes, ctx.database_labels)
    images, labels, targets = (
        attack_bench.query_images[:16],
        attack_bench.query_labels[:16],
        attack_bench.target_labels[:16],
    )
    zero = torch.zeros_like(labels)
    for name in ("sdha", "sdha-targeted", "mainstay", "mainstay-targeted"):
        attack = build_attack(name, attack_bench.model, pruned, eps=EPS, iterations=3)
        out = attack.run(images, zero if name == "mainstay" else labels, targets)
        assert torch.isfinite(out.adv_images).all(), name
    empty = AttackContext(ctx.train_codes[:0], ctx.train_labels[:0], ctx.database_codes, ctx.database_labels)
    out = build_attack("mainstay", attack_bench.model, empty, eps=EPS, iterations=2).run(images, labels)
    assert torch.isfinite(out.adv_images).all()


def test_registry_validates_parameters(attack_bench):
    model = attack_bench.model
    with pytest.raises(ConfigError, match="unknown attack"):
        build_attack("fgsm", model)
    with pytest.raises(ConfigError, match="eps"):
        build_attack("mainstay", model, eps=2.0)
    with pytest.raises(ConfigError, match="no parameter"):
        build_attack("mainstay", model, n_anchors=3)
    with pytest.raises(ConfigError, match="needs the train codes"):
        build_attack("mainstay", model, iterations=1).run(attack_bench.query_images[:2], attack_bench.query_labels[:2])
    with pytest.raises(ConfigError, match="targeted"):
        build_attack("p2p", model, attack_bench.context, iterations=1).run(
            attack_bench.query_images[:2], attack_bench.query_labels[:2]
        )
    defaults = build_attack("dhta", model).params()
    assert defaults["eps"] == 0.032 and defaults["iterations"] == 2000 and defaults["n_anchors"] == 9


def test_evaluate_attack_reports_everything(attack_bench):
    images = (attack_bench.query_images[:20].numpy() * 255).round().astype(np.uint8)
    queries = ArrayDataset(images, attack_bench.query_labels[:20].numpy())
    attack = build_attack("mainstay-targeted", attack_bench.model, attack_bench.context, eps=EPS, iterations=5)
    run = evaluate_attack(
        attack,
        queries,
        attack_bench.context.database_codes,
        attack_bench.context.database_labels,
        target_labels=attack_bench.target_labels[:20].numpy(),
        batch_size=8,
    )
    r = run.result
    assert r.num_queries == 20 and r.adv_tmap > r.clean_tmap and r.theory_tmap is not None
    assert 0 < r.perceptibility["linf"] <= EPS + 1e-6 and 0 < r.perceptibility["ssim"] < 1
    assert r.bits_flipped > 0 and r.wall_time_s > 0 and run.adv_codes.shape == (20, 32)
    # the reported clean codes and bit flips are those of the model on the queries (recomputed independently)
    clean = attack_bench.model.encode(torch.stack([queries.load_image(i) for i in range(20)])).numpy()
    assert np.array_equal(run.clean_codes, clean)
    assert r.bits_flipped == pytest.approx(float((clean != run.adv_codes).sum()) / 20)
    # non-targeted: the theory code (-mainstay) is the ideal the attack moves towards
    attack = build_attack("mainstay", attack_bench.model, attack_bench.context, eps=EPS, iterations=5)
    r = evaluate_attack(
        attack, queries, attack_bench.context.database_codes, attack_bench.context.database_labels, batch_size=8
    ).result
    assert r.theory_map is not None and r.theory_map < r.adv_map < r.clean_map
    assert r.clean_tmap is None and r.adv_tmap is None and r.bits_flipped > 0
