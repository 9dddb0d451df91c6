import pytest
import torch

from hashguard.errors import CheckpointError, ConfigError
from hashguard.models import HashModel, ModelSpec, load_model, save_model, sign_codes

GREY = dict(backbone="small_cnn", bits=16, in_channels=1, image_size=28, mean=[0.13], std=[0.31])


def test_forward_is_tanh_of_scaled_logits_and_encode_is_pm1():
    torch.manual_seed(0)
    model = HashModel(ModelSpec(**GREY)).eval()
    x = torch.rand(5, 1, 28, 28)
    z = model.logits(x)
    assert torch.allclose(model(x), torch.tanh(z))
    assert torch.allclose(model(x, alpha=0.1), torch.tanh(0.1 * z))
    codes = model.encode(x)
    assert codes.dtype == torch.int8
    assert set(codes.unique().tolist()) <= {-1, 1}
    assert torch.equal(codes, torch.where(z >= 0, 1, -1).to(torch.int8))


def test_encode_restores_training_mode():
    model = HashModel(ModelSpec(**GREY)).train()
    model.encode(torch.rand(2, 1, 28, 28))
    assert model.training


def test_sign_codes_maps_zero_to_plus_one():
    assert sign_codes(torch.tensor([-0.5, 0.0, 2.0])).tolist() == [-1, 1, 1]


def test_normalisation_lives_in_buffers_and_moves_with_the_model():
    model = HashModel(ModelSpec(**GREY))
    buffers = dict(model.named_buffers())
    assert "mean" in buffers and "std" in buffers
    assert torch.allclose(buffers["mean"].flatten(), torch.tensor([0.13]))
    # normalisation happens inside: shifting the stored mean changes the output
    x = torch.rand(2, 1, 28, 28)
    model.eval()
    before = model.logits(x)
    model.mean.fill_(0.5)
    assert not torch.allclose(before, model.logits(x))


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(bits=0), "code length"),
        (dict(backbone="nope"), "unknown backbone"),
        (dict(in_channels=2), "channels"),
        (dict(mean=[0.1, 0.2]), "mean/std"),
        (dict(std=[0.0]), "positive"),
    ],
)
def test_invalid_specs_are_refused(change, message):
    with pytest.raises(ConfigError, match=message):
        HashModel(ModelSpec(**{**GREY, **change}))


def test_checkpoint_round_trip_gives_identical_codes(tmp_path):
    torch.manual_seed(1)
    model = HashModel(ModelSpec(**GREY))
    x = torch.rand(8, 1, 28, 28)
    save_model(tmp_path / "ckpt", model, method={"name": "dpsh"})
    loaded, meta = load_model(tmp_path / "ckpt")
    assert meta["method"]["name"] == "dpsh"
    assert torch.equal(model.encode(x), loaded.encode(x))
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()


def test_checkpoint_from_another_model_is_refused(tmp_path):
    save_model(tmp_path / "a", HashModel(ModelSpec(**GREY)))
    save_model(tmp_path / "b", HashModel(ModelSpec(**{**GREY, "bits": 32})))
    # weights of the 32-bit model under the description of the 16-bit one
    (tmp_path / "a" / "model.safetensors").write_bytes((tmp_path / "b" / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="expects"):
        load_model(tmp_path / "a")


def test_corrupt_or_missing_checkpoint_files_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing")
    save_model(tmp_path / "c", HashModel(ModelSpec(**GREY)))
    (tmp_path / "c" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(tmp_path / "c")
    (tmp_path / "c" / "model.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        load_model(tmp_path / "c")
