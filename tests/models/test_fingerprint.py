"""Model fingerprints (Gillard et al., "Unified Functional Hashing in Automatic Machine Learning", 2023): the
functional fingerprint survives every change of representation (re-save, renamed keys, float64 round trip,
device and memory-layout copies) and moves with any change of behaviour; the strict one hashes exact bytes;
``hashguard fingerprint`` prints them."""

from __future__ import annotations

import copy
import json
import struct

import pytest
import torch

from hashguard.cli import main
from hashguard.methods.adsh import DATABASE_CODES_FILE
from hashguard.models import HashModel, ModelSpec, load_model, save_model
from hashguard.models.checkpoint import WEIGHTS_FILE, save_state_file
from hashguard.models.fingerprint import (
    MANTISSA_BITS,
    PROBE_COUNT,
    RANDOM_PROBES,
    functional_fingerprint,
    probe_batch,
    round_mantissa,
    weights_fingerprint,
)
from hashguard.pipeline.fingerprint import checkpoint_fingerprint


def tiny_model(seed: int = 0, hash_norm: str = "batchnorm") -> HashModel:
    torch.manual_seed(seed)
    spec = ModelSpec(backbone="small_cnn", bits=8, in_channels=1, image_size=16, mean=[0.5], std=[0.25],
                     hash_norm=hash_norm)
    model = HashModel(spec)
    # non-trivial batch-norm statistics, so that a train-mode (batch-statistics) pass would differ from eval
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def bits_of(value: float) -> int:
    return struct.unpack("<q", struct.pack("<d", value))[0]


def test_round_mantissa_by_hand():
    """Round half away from zero at 16 explicit mantissa bits (a step of 2^-16 between 1 and 2)."""
    step = 2.0**-16
    values = torch.tensor([1.0, 1 + step / 4, 1 + step / 2, 1 + 3 * step / 4, -1.5 - step / 2, 2 - step / 4,
                           -0.0, 0.0, float("inf"), float("nan"), -float("nan")], dtype=torch.float64)
    got = round_mantissa(values, 16)
    expected = [1.0, 1.0, 1 + step, 1 + step, -1.5 - step, 2.0, 0.0, 0.0, float("inf")]
    assert got[:9].tolist() == [bits_of(v) for v in expected]
    assert got[9] == got[10]  # every NaN one pattern
    # float32 input: the same value as float64
    assert round_mantissa(torch.tensor([1 + step / 2], dtype=torch.float32), 16)[0] == bits_of(1 + step)
    assert MANTISSA_BITS == 16


def test_probe_batch_is_fixed_and_in_range():
    probes = probe_batch(3, 12, 10)
    assert probes.shape == (PROBE_COUNT, 3, 12, 10) and probes.dtype == torch.float64
    assert float(probes.min()) >= 0.0 and float(probes.max()) <= 1.0
    assert torch.equal(probes, probe_batch(3, 12, 10))
    black, white, ramp, checker = probes[RANDOM_PROBES:]
    assert float(black.abs().max()) == 0.0 and float(white.min()) == 1.0
    assert float(ramp[0, 0, 0]) == 0.0 and float(ramp[0, -1, -1]) == 1.0
    assert set(checker.unique().tolist()) == {0.0, 1.0} and float(checker[0, 0, 4]) == 1.0
    assert not torch.equal(probes[0], probes[1])  # the random probes are distinct images


def test_representation_changes_keep_the_functional_fingerprint(tmp_path):
    model = tiny_model()
    reference = functional_fingerprint(model)
    strict = weights_fingerprint(model)

    save_model(tmp_path / "a", model, method={"name": "dpsh"}, num_classes=3)
    reloaded, _ = load_model(tmp_path / "a")
    save_model(tmp_path / "b", reloaded, method={"name": "dpsh"}, num_classes=3)  # saved again
    resaved, _ = load_model(tmp_path / "b")

    renamed = {f"module.{key}": value for key, value in model.state_dict().items()}  # a DataParallel-style dict
    from_renamed = tiny_model(seed=7)
    from_renamed.load_state_dict({key.removeprefix("module."): value for key, value in renamed.items()})

    round_trip = copy.deepcopy(model).double().float()
    layout = copy.deepcopy(model).to(memory_format=torch.channels_last)
    assert layout.backbone.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    moved = copy.deepcopy(model).to("cpu")
    for other in (reloaded, resaved, from_renamed, round_trip, layout, moved):
        assert functional_fingerprint(other).digest == reference.digest
        assert weights_fingerprint(other).digest == strict.digest  # the same bytes, whatever the layout
    # a float64 model computes the same function (the fingerprint runs in float64 anyway) but its bytes differ
    as_double = copy.deepcopy(model).double()
    assert functional_fingerprint(as_double).digest == reference.digest
    assert weights_fingerprint(as_double).digest != strict.digest
    assert reference.mode == "functional" and strict.mode == "weights" and len(reference.digest) == 64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_copy_has_the_same_fingerprints():
    """Weights moved to the GPU (and trained there) are fingerprinted like their CPU twin: the hash is taken of a
    float64 CPU copy, and moving tensors between devices is exact; the model stays on its device."""
    model = tiny_model()
    on_gpu = copy.deepcopy(model).to("cuda")
    assert functional_fingerprint(on_gpu).digest == functional_fingerprint(model).digest
    assert weights_fingerprint(on_gpu).digest == weights_fingerprint(model).digest
    assert on_gpu.mean.device.type == "cuda"
    optimizer = torch.optim.SGD(on_gpu.parameters(), lr=0.01)
    on_gpu.train()
    on_gpu(torch.rand(4, 1, 16, 16, device="cuda")).pow(2).mean().backward()
    optimizer.step()
    assert functional_fingerprint(on_gpu.eval()).digest != functional_fingerprint(model).digest
    back = copy.deepcopy(on_gpu).cpu()
    assert functional_fingerprint(back).digest == functional_fingerprint(on_gpu).digest


def test_fingerprinting_leaves_the_model_as_it_was():
    model = tiny_model().train()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    state = torch.random.get_rng_state()
    functional_fingerprint(model)
    assert model.training and model.mean.dtype == torch.float32
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random stream is not consumed


def test_eval_mode_is_what_is_hashed():
    """A model fingerprinted in train mode has its eval-mode fingerprint (batch norm uses running statistics)."""
    model = tiny_model()
    assert functional_fingerprint(model.train()).digest == functional_fingerprint(model.eval()).digest


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_optimizer_step_changes_both_fingerprints(seed):
    model = tiny_model(seed)
    before, strict = functional_fingerprint(model).digest, weights_fingerprint(model).digest
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    images = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(seed))
    model.train()
    optimizer.zero_grad()
    model(images).pow(2).mean().backward()
    optimizer.step()
    model.eval()
    assert functional_fingerprint(model).digest != before
    assert weights_fingerprint(model).digest != strict


def test_a_small_change_of_one_output_changes_it():
    """Adding 1e-3 to one bias of the code layer moves that logit of every probe by 1e-3, over a hundred times
    the 16-bit rounding step (2^-17 relative, logits here are below 10 in magnitude)."""
    model = tiny_model(hash_norm="none")
    reference = functional_fingerprint(model).digest
    with torch.no_grad():
        assert float(model.logits(probe_batch(1, 16, 16).float()).abs().max()) < 10
        model.backbone.hash_layer.bias[3] += 1e-3
    assert functional_fingerprint(model).digest != reference


def test_model_description_is_part_of_the_fingerprint():
    """Same probe logits, another declared input (a model is only comparable at its own input shape)."""
    model = tiny_model()
    other = copy.deepcopy(model)
    other.spec = ModelSpec(**{**model.spec.to_dict(), "image_size": 17})
    assert functional_fingerprint(other).input_shape == (1, 17, 17)
    assert functional_fingerprint(other).digest != functional_fingerprint(model).digest


def _adsh_checkpoint(directory, model, codes):
    save_model(directory, model, method={"name": "adsh"}, num_classes=3, extra={"adsh": {"protocol": "adsh"}})
    save_state_file(directory / DATABASE_CODES_FILE, {"codes": codes, "labels": torch.eye(3)[[0, 1, 2, 0]]})


def test_adsh_database_codes_are_part_of_the_function(tmp_path):
    model = tiny_model()
    codes = torch.tensor([[1, -1] * 4, [-1, 1] * 4, [1] * 8, [-1] * 8], dtype=torch.int8)
    _adsh_checkpoint(tmp_path / "a", model, codes)
    _adsh_checkpoint(tmp_path / "b", model, codes.float())  # V stored in another dtype: the same function
    flipped = codes.clone()
    flipped[2, 5] = -1
    _adsh_checkpoint(tmp_path / "c", model, flipped)
    a, b, c = (checkpoint_fingerprint(tmp_path / name) for name in "abc")
    assert a.digest == b.digest != c.digest
    assert a.details["includes"] == ["database_codes", "database_labels"]
    assert a.digest != functional_fingerprint(model).digest  # V is hashed in
    strict = [checkpoint_fingerprint(tmp_path / name, strict=True).digest for name in "abc"]
    assert strict[0] == strict[1] != strict[2]  # strict: the network's exact bytes and V's values


def test_cli_prints_the_fingerprint(tmp_path, capsys):
    model = tiny_model()
    save_model(tmp_path / "ck", model, method={"name": "dpsh"}, num_classes=3)
    assert main(["fingerprint", str(tmp_path / "ck"), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["fingerprint"] == functional_fingerprint(model).digest
    assert payload["mode"] == "functional" and payload["bits"] == 8 and payload["input_shape"] == [1, 16, 16]
    assert main(["fingerprint", str(tmp_path / "ck"), "--strict"]) == 0
    out = capsys.readouterr().out
    assert weights_fingerprint(model).digest in out and out.startswith("weights fingerprint")


def test_cli_missing_or_corrupt_checkpoint_is_one_line(tmp_path, capsys):
    assert main(["fingerprint", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err and "not found" in err
    save_model(tmp_path / "ck", tiny_model(), method={"name": "dpsh"}, num_classes=3)
    (tmp_path / "ck" / WEIGHTS_FILE).write_bytes(b"not safetensors")
    assert main(["fingerprint", str(tmp_path / "ck"), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "corrupt" in captured.err
    assert "Traceback" not in captured.err
