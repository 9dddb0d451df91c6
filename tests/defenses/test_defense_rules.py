"""The defenses' per-batch rules against hand-computed values and loop references.

* SAAT (Yuan et al., IEEE TIFS 2023): the inner attack's mainstay code is computed from the code bank *before*
  the current batch refreshes it; the outer term uses the code recomputed *after* U_ben[idx] <- sign(u). Checked on
  a hand-made bank where the two codes differ, and through the trainer by recording the bank each call sees.
* ATRDH (Wang et al., SIGIR 2021): the pair term w (1 / (N B)) sum_ij (<f(x_adv)_i, U_j> / K - s_ij)^2 with
  s_ij = +1 for items sharing a label and -1 otherwise, against a loop reference; the inner loss is the targeted
  plain loss towards sign(PrototypeNet(t)) after one Adam step of the PrototypeNet on THA's loss.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from defense_stubs import Identity, MeanSquare  # a test helper beside this file

from hashguard.attacks import mainstay_attack
from hashguard.attacks.prototype import circle_prototype_loss as prototype_loss
from hashguard.data.base import ArrayDataset
from hashguard.defenses import Batch, DefenseConfig, build_defense
from hashguard.defenses import saat as saat_module
from hashguard.defenses.trainer import adversarial_train
from hashguard.methods import build_method
from hashguard.models import HashModel, ModelSpec

# ------------------------------------------------------------------------------------------------------- SAAT

BANK = torch.tensor([[1.0, 1, -1, -1], [1, -1, 1, -1], [-1, -1, -1, 1]])
BANK_LABELS = torch.tensor([[1.0, 0], [1, 0], [0, 1]])
BATCH_LABELS = torch.tensor([[1.0, 0], [0, 1]])  # items 0 (class 0) and 2 (class 1)
BENIGN = torch.tensor([[0.5, 0.5, -0.5, -0.5], [-0.5, 0.5, -0.5, 0.5]])  # sign: row 0 unchanged, row 2 changes
ADV = torch.tensor([[0.2, -0.4, 0.6, -0.8], [0.5, 0.25, -0.5, 0.75]])
# mainstay of class 0 = sign(mean(row 0, row 1) - row 2), of class 1 = sign(row 2 - mean(row 0, row 1)):
# before the refresh (row 2 = [-1, -1, -1, 1]): [1, 0, 0, -1] - row 2 = [2, 1, 1, -2]
OLD_CODE = torch.tensor([[1.0, 1, 1, -1], [-1, -1, -1, 1]])
# after (row 2 = sign(u_2) = [-1, 1, -1, 1]): [1, 0, 0, -1] - row 2 = [2, -1, 1, -2]
NEW_CODE = torch.tensor([[1.0, -1, 1, -1], [-1, 1, -1, 1]])


def _saat(**overrides):
    config = DefenseConfig(defense="saat", progress=False, **overrides)
    defense = build_defense("saat", config)
    defense.setup(BANK.clone(), BANK_LABELS.clone(), bits=4, seed=0)
    return defense


def test_saat_inner_step_uses_the_bank_before_the_refresh_and_the_outer_term_after():
    defense = _saat(adv_weight=1.0, quant_weight=0.0)
    batch = Batch(BENIGN.clone(), BATCH_LABELS.clone(), torch.tensor([0, 2]))
    inner = defense.inner_loss(Identity(), batch, torch.Generator().manual_seed(0), 1.0)
    # the inner loss is the plain mean(f(x + delta) * m) with the stale code
    assert inner(ADV, ADV).item() == pytest.approx(float((ADV * OLD_CODE).mean()), rel=1e-6)
    assert float((ADV * OLD_CODE).mean()) != pytest.approx(float((ADV * NEW_CODE).mean()))
    out = defense.outer_loss(Identity(), MeanSquare(), batch, ADV.clone())
    assert out.parts["adv"] == pytest.approx(-float((ADV * NEW_CODE).mean()), rel=1e-6)
    assert torch.equal(defense.bank[2], torch.tensor([-1.0, 1, -1, 1]))
    # the next batch's inner step sees the refreshed bank
    inner_next = defense.inner_loss(Identity(), batch, torch.Generator().manual_seed(0), 1.0)
    assert inner_next(ADV, ADV).item() == pytest.approx(float((ADV * NEW_CODE).mean()), rel=1e-6)


def test_saat_without_refresh_keeps_the_stale_code():
    defense = _saat(adv_weight=1.0, quant_weight=0.0, refresh_bank=False)
    batch = Batch(BENIGN.clone(), BATCH_LABELS.clone(), torch.tensor([0, 2]))
    out = defense.outer_loss(Identity(), MeanSquare(), batch, ADV.clone())
    assert out.parts["adv"] == pytest.approx(-float((ADV * OLD_CODE).mean()), rel=1e-6)
    assert torch.equal(defense.bank, BANK)


@pytest.fixture(scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_trainer_calls_the_inner_step_on_the_old_bank_and_refreshes_before_the_outer_term(
    tiny_splits, tmp_path, monkeypatch, _one_thread
):
    """Through the trainer (3 batches of 16): record the bank each mainstay computation receives.

    Per batch b: the inner code is computed from the bank the previous batch left; the outer code from that bank
    with rows idx_b replaced by the batch's fresh sign codes (and no other row touched)."""
    calls: list[tuple[str, torch.Tensor]] = []
    inner_original, outer_original = mainstay_attack.mainstay_codes, saat_module.mainstay_codes

    def recorder(kind, original):
        def wrapped(labels, train_codes, train_labels, **kwargs):
            calls.append((kind, train_codes.detach().clone()))
            return original(labels, train_codes, train_labels, **kwargs)

        return wrapped

    monkeypatch.setattr(mainstay_attack, "mainstay_codes", recorder("inner", inner_original))
    monkeypatch.setattr(saat_module, "mainstay_codes", recorder("outer", outer_original))
    train = ArrayDataset(tiny_splits.train.images[:48], tiny_splits.train.labels[:48])
    torch.manual_seed(0)
    spec = ModelSpec(backbone="small_cnn", bits=8, in_channels=1, image_size=28, mean=[0.13], std=[0.3])
    model = HashModel(spec)
    config = DefenseConfig(defense="saat", epochs=1, batch_size=16, iterations=1, progress=False)
    defense = build_defense("saat", config)
    indices: list[torch.Tensor] = []
    outer = defense.outer_loss

    def outer_recording(model, method, batch, adv_images):
        indices.append(batch.index.clone())
        return outer(model, method, batch, adv_images)

    defense.outer_loss = outer_recording  # type: ignore[method-assign]
    method = build_method("csq", 8, 10, 48, seed=0)
    initial = torch.from_numpy(np.asarray(model.encode(torch.stack([train.load_image(i) for i in range(48)]))))
    adversarial_train(model, method, defense, train, config, tmp_path / "run", log=None)
    assert [kind for kind, _ in calls] == ["inner", "outer"] * 3
    previous = initial.float()
    changed_rows = 0
    for b in range(3):
        inner_bank, outer_bank = calls[2 * b][1], calls[2 * b + 1][1]
        assert torch.equal(inner_bank, previous), b
        untouched = torch.ones(48, dtype=torch.bool)
        untouched[indices[b]] = False
        assert torch.equal(outer_bank[untouched], inner_bank[untouched])
        changed_rows += int((outer_bank != inner_bank).any(dim=1).sum())
        previous = outer_bank
    assert changed_rows > 0  # the refresh did change codes, so "old" and "new" banks were distinguishable
    assert torch.equal(defense.bank, previous)


# ------------------------------------------------------------------------------------------------------ ATRDH


def _atrdh(adv_weight: float):
    config = DefenseConfig(defense="atrdh", adv_weight=adv_weight, prototype_hidden=8, progress=False)
    defense = build_defense("atrdh", config)
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 2, (6, 4), generator=g).float() * 2 - 1
    labels = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0], [1, 0, 1]])
    defense.setup(codes, labels, bits=4, seed=0)
    return defense, codes, labels


@pytest.mark.parametrize("adv_weight", [1.0, 2.0])
def test_atrdh_pair_term_matches_the_loop_reference(adv_weight):
    defense, codes, labels = _atrdh(adv_weight)
    g = torch.Generator().manual_seed(1)
    memory = torch.tanh(torch.randn(6, 4, generator=g))
    defense.memory = memory.clone()  # explicit U_ben, whatever the initialisation
    benign = torch.tanh(torch.randn(2, 4, generator=g))
    adv = torch.tanh(torch.randn(2, 4, generator=g)).requires_grad_(True)
    batch_labels = torch.tensor([[1.0, 0, 0], [0, 0, 1]])
    index = torch.tensor([1, 3])
    out = defense.outer_loss(Identity(), MeanSquare(), Batch(benign, batch_labels, index), adv)
    # U_ben[idx] <- u (continuous) before the pair term; B_train[idx] <- sign(u)
    refreshed = memory.clone()
    refreshed[index] = benign
    assert torch.equal(defense.memory, refreshed)
    assert torch.equal(defense.codes[index], torch.where(benign >= 0, 1.0, -1.0))
    adv_ref = adv.detach().clone().requires_grad_(True)
    total = torch.zeros((), dtype=torch.float64)
    for i in range(2):
        for j in range(6):
            shares = float(batch_labels[i] @ labels[j]) > 0
            s = 1.0 if shares else -1.0
            inner = sum(adv_ref[i, k].double() * refreshed[j, k].double() for k in range(4)) / 4
            total = total + (inner - s) ** 2
    pair = total / (6 * 2)
    assert out.parts["adv"] == pytest.approx(pair.item(), rel=1e-6)
    expected = float((benign**2).mean()) + adv_weight * pair.item()
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    (g_mine,) = torch.autograd.grad(out.loss, adv)
    (g_ref,) = torch.autograd.grad(adv_weight * pair, adv_ref)
    assert torch.allclose(g_mine.double(), g_ref.double(), rtol=1e-5, atol=1e-7)


def test_atrdh_inner_step_trains_the_prototype_net_once_and_targets_its_sign_code():
    defense, codes, labels = _atrdh(1.0)
    before = copy.deepcopy(defense.net)
    optimizer = torch.optim.Adam(before.parameters(), lr=defense.config.prototype_lr, betas=(0.5, 0.999))
    images = torch.rand(3, 4)
    batch = Batch(images, labels[:3], torch.tensor([0, 1, 2]))
    inner = defense.inner_loss(Identity(), batch, torch.Generator().manual_seed(7), 1.0)
    # replay: the same target draw, one Adam step on THA's loss over all pairs
    pool = torch.unique(labels, dim=0)
    pick = torch.randint(0, pool.shape[0], (3,), generator=torch.Generator().manual_seed(7))
    targets = pool[pick]
    before.train()
    loss = prototype_loss(before, targets, codes, labels, 1.0)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    for (name, mine), (_, ref) in zip(defense.net.state_dict().items(), before.state_dict().items(), strict=True):
        assert torch.allclose(mine, ref, rtol=1e-6, atol=1e-7), name
    before.eval()
    with torch.no_grad():
        prototypes = torch.sign(before(targets))
    u = torch.tanh(torch.randn(3, 4, generator=torch.Generator().manual_seed(8)))
    assert inner(u, images).item() == pytest.approx(-float((u * prototypes).mean()), rel=1e-6)
    assert defense.last_prototype_loss == pytest.approx(loss.item(), rel=1e-6)
