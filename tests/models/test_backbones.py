import pytest
import torch

from hashguard.errors import CheckpointError, ConfigError
from hashguard.models import HashModel, ModelSpec
from hashguard.models.backbones import BACKBONES, wants_rgb_imagenet

torchvision = pytest.importorskip("torchvision")


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_registered_backbone_builds_with_its_hash_head(name):
    """Contract of the backbone registry: K-unit hash layer, (B, K) codes in [-1, 1]; SAAT heads for torchvision."""
    torch.manual_seed(0)
    model = HashModel(ModelSpec(backbone=name, bits=12, in_channels=3, image_size=64)).eval()
    assert model.backbone.hash_layer.out_features == 12
    if not wants_rgb_imagenet(name):
        pass
    elif name.startswith("resnet"):
        weight = model.backbone.hash_layer.weight
        assert torch.all(model.backbone.hash_layer.bias == 0)
        assert 0.005 < weight.std().item() < 0.015  # N(0, 0.01^2)
    else:
        assert model.backbone.hash_layer.in_features == 4096
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 12)
    assert torch.all(out.abs() <= 1)


def test_grey_images_are_repeated_for_rgb_backbones():
    model = HashModel(ModelSpec(backbone="resnet18", bits=8, in_channels=1, image_size=32)).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 32, 32)).shape == (2, 8)


def test_pretrained_weights_come_from_a_local_file(tmp_path):
    torch.manual_seed(3)
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = HashModel(ModelSpec(backbone="resnet18", bits=8, image_size=32, pretrained=str(path)))
    assert torch.equal(model.backbone.trunk[0].weight, reference.conv1.weight)


def test_pretrained_file_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "alexnet.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    with pytest.raises(CheckpointError, match="not resnet18 weights"):
        HashModel(ModelSpec(backbone="resnet18", bits=8, image_size=32, pretrained=str(path)))


def test_missing_pretrained_file_and_small_cnn_pretrained_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        HashModel(ModelSpec(backbone="vgg11", bits=8, image_size=32, pretrained=str(tmp_path / "x.pth")))
    with pytest.raises(ConfigError, match="no pretrained"):
        HashModel(ModelSpec(backbone="small_cnn", bits=8, pretrained="x"))
