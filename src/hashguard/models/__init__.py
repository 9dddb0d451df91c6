"""Models: backbones, the hash head, checkpoint I/O."""

from hashguard.models.backbones import BACKBONES, TORCHVISION_BACKBONES, SmallCNN, build_backbone
from hashguard.models.hash_model import IMAGENET_MEAN, IMAGENET_STD, HashModel, ModelSpec, sign_codes

__all__ = [
    "BACKBONES",
    "TORCHVISION_BACKBONES",
    "SmallCNN",
    "build_backbone",
    "HashModel",
    "ModelSpec",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "sign_codes",
]

from hashguard.models.checkpoint import load_model, read_model_config, save_model  # noqa: E402

__all__ += ["load_model", "read_model_config", "save_model"]
