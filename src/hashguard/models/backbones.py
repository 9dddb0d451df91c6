"""Feature extractors that end in the hash layer: a small CPU CNN and the torchvision families.

Every backbone maps a *normalised* image batch to the K real pre-activations z of the hash layer
(docs/methods.md). The heads follow the SAAT reference code:

* AlexNet: pretrained ``features`` -> avgpool -> Dropout, fc6, ReLU, Dropout, fc7, ReLU -> new Linear(4096, K).
* VGG: pretrained ``features`` -> avgpool -> fc6, ReLU, Dropout, fc7, ReLU, Dropout -> new Linear(4096, K).
* ResNet: conv1 ... layer4, global avgpool -> new Linear(d, K) with weights N(0, 0.01^2) and zero bias.

Pretrained weights come only from a local file the user names (a torchvision ``state_dict`` saved with
``torch.save`` or as safetensors); without one the backbone starts from random initialisation. Nothing is
ever downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from hashguard.errors import CheckpointError, ConfigError
from hashguard.registry import Registry

#: every registered backbone: a factory ``(bits, in_channels, image_size, pretrained) -> nn.Module`` ending in
#: the K-unit hash layer. ``rgb_imagenet=True`` declares a network that expects 3-channel ImageNet-normalised
#: input (grey images are repeated to RGB); ``pretrained=True`` that it accepts a local weight file.
BACKBONES: Registry[nn.Module] = Registry("backbone", fixed=("bits", "in_channels", "image_size", "pretrained"))


def wants_rgb_imagenet(name: str) -> bool:
    """True when backbone ``name`` expects 3-channel ImageNet-normalised input."""
    return bool(BACKBONES.entry(name).attributes.get("rgb_imagenet", False))


class SmallCNN(nn.Module):
    """Three [conv3x3 -> BatchNorm -> ReLU -> maxpool] blocks (32/64/64), fc 256, then the K-unit hash layer.

    About 0.2 M parameters at 28x28 input: trains on two CPU cores in seconds per epoch. BatchNorm is
    required: without it the network collapses on MNIST-sized data.
    """

    def __init__(self, bits: int, in_channels: int, image_size: int, width: int = 32) -> None:
        super().__init__()
        channels = (width, 2 * width, 2 * width)
        layers: list[nn.Module] = []
        previous = in_channels
        for out in channels:
            layers += [
                nn.Conv2d(previous, out, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            previous = out
        self.features = nn.Sequential(*layers)
        side = image_size // 8
        if side < 1:
            raise ConfigError(f"small_cnn needs images of at least 8x8 pixels, got {image_size}")
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(previous * side * side, 256), nn.ReLU(inplace=True))
        self.hash_layer = nn.Linear(256, bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hash_layer(self.fc(self.features(x)))


def _import_torchvision():  # noqa: ANN202 - returns the module
    try:
        import torchvision
    except Exception as exc:  # ImportError, or a broken CUDA-only wheel
        raise ConfigError(
            "torchvision backbones need the 'vision' extra: pip install -e '.[vision]' (from the hashguard clone) "
            f"({type(exc).__name__}: {exc})"
        ) from None
    return torchvision


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``state_dict`` from a safetensors file or a torch file, never executing pickled code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: pretrained weight file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable weight file ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a state_dict of tensors")
    return state


class TorchvisionHashNet(nn.Module):
    """A torchvision AlexNet / VGG / ResNet trunk with the SAAT hash head (docs/methods.md)."""

    def __init__(self, name: str, bits: int, pretrained: str | Path | None = None) -> None:
        super().__init__()
        tv = _import_torchvision()
        if name not in TORCHVISION_FAMILIES:
            raise ConfigError(f"unknown torchvision backbone {name!r}; choose one of {', '.join(TORCHVISION_FAMILIES)}")
        net = getattr(tv.models, name)(weights=None)
        if pretrained is not None:
            state = load_state_dict_file(pretrained)
            missing, unexpected = net.load_state_dict(state, strict=False)
            if missing:
                raise CheckpointError(
                    f"{pretrained}: not {name} weights (missing {len(missing)} keys, e.g. {missing[0]!r})"
                )
        self.name = name
        if name == "alexnet":
            self.trunk = nn.Sequential(net.features, net.avgpool, nn.Flatten())
            self.fc = nn.Sequential(
                nn.Dropout(0.5), net.classifier[1], nn.ReLU(inplace=True),
                nn.Dropout(0.5), net.classifier[4], nn.ReLU(inplace=True),
            )
            self.hash_layer = nn.Linear(4096, bits)
        elif name.startswith("vgg"):
            self.trunk = nn.Sequential(net.features, net.avgpool, nn.Flatten())
            self.fc = nn.Sequential(
                net.classifier[0], nn.ReLU(inplace=True), nn.Dropout(0.5),
                net.classifier[3], nn.ReLU(inplace=True), nn.Dropout(0.5),
            )
            self.hash_layer = nn.Linear(4096, bits)
        else:
            self.trunk = nn.Sequential(
                net.conv1, net.bn1, net.relu, net.maxpool,
                net.layer1, net.layer2, net.layer3, net.layer4, net.avgpool, nn.Flatten(),
            )
            self.fc = nn.Identity()
            self.hash_layer = nn.Linear(net.fc.in_features, bits)
            nn.init.normal_(self.hash_layer.weight, 0.0, 0.01)
            nn.init.zeros_(self.hash_layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hash_layer(self.fc(self.trunk(x)))


@BACKBONES.register("small_cnn", summary="three conv blocks (32/64/64) + fc 256; the CPU demo network")
def small_cnn(bits: int, in_channels: int, image_size: int, pretrained: str | Path | None = None) -> nn.Module:
    """:class:`SmallCNN` (no pretrained weights exist for it)."""
    if pretrained is not None:
        raise ConfigError("small_cnn has no pretrained weights; leave 'pretrained' empty")
    return SmallCNN(bits, in_channels, image_size)


#: the torchvision families with the SAAT hash head; each is registered as a backbone below
TORCHVISION_FAMILIES = ("alexnet", "vgg11", "vgg16", "vgg19", "resnet18", "resnet34", "resnet50")


def _register_torchvision(name: str) -> None:
    def factory(bits: int, in_channels: int, image_size: int, pretrained: str | Path | None = None) -> nn.Module:
        return TorchvisionHashNet(name, bits, pretrained)

    factory.__doc__ = f"torchvision {name} trunk with the SAAT hash head (local pretrained weights optional)"
    BACKBONES.register(name, reference="torchvision", rgb_imagenet=True, pretrained=True)(factory)


for _family in TORCHVISION_FAMILIES:
    _register_torchvision(_family)

#: the registered backbones that expect ImageNet-normalised RGB input
TORCHVISION_BACKBONES = tuple(BACKBONES.where(rgb_imagenet=True))


def build_backbone(
    name: str, bits: int, in_channels: int, image_size: int, pretrained: str | Path | None = None
) -> nn.Module:
    """Build the registered backbone ``name`` ending in a ``bits``-unit hash layer."""
    if bits < 1:
        raise ConfigError(f"code length must be positive, got {bits}")
    return BACKBONES.entry(name).target(bits, in_channels, image_size, pretrained)
