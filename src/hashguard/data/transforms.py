"""The SAAT protocol's image pre-processing (README, Data) without torchvision, with PIL and NumPy.

``preprocess_image`` reproduces ``Resize(256) -> CenterCrop(224) -> ToTensor()`` on a PIL image: the
shorter side is resized (bilinear) to ``resize``, the centre ``image_size`` x ``image_size`` window is cut
out (zero padding if the image is smaller, as torchvision does), and the result becomes a float CHW tensor
in [0, 1]. No normalisation: the mean/std live inside the model.

``decode_image`` opens a file and decodes every pixel (``Image.verify()`` reads only the header and the
checksums, so a truncated JPEG would pass it); ``unit_image`` brings any PIL mode to [0, 1] by its bit depth:
8-bit modes become RGB (0..255), 16-bit grey images (PNG / TIFF modes ``I;16*`` and ``I``) become a float
image of ``value / 65535``, float images (mode ``F``) must already lie in [0, 1].

``resize_tensor`` scales an in-memory image (demo digits, IDX, CIFAR arrays) to a square size.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

#: the largest value of a 16-bit image: its pixels are divided by this (65535 -> 1.0)
MAX_16BIT = 65535.0
#: PIL modes of 16-bit grey images (``I`` is how some Pillow versions open 16-bit PNGs)
HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")

#: the protocol's sizes: resize the shorter side to 256, then crop the centre 224 x 224.
DEFAULT_IMAGE_SIZE = 224
DEFAULT_RESIZE = 256


def default_resize(image_size: int) -> int:
    """The resize length that keeps the protocol's 256/224 ratio for a crop of ``image_size``."""
    return int(round(image_size * DEFAULT_RESIZE / DEFAULT_IMAGE_SIZE))


def decode_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open ``path`` and decode every pixel, then :func:`unit_image`; a truncated or corrupt file raises
    (``OSError``, ``ValueError``, ``SyntaxError`` or PIL's ``DecompressionBombError``)."""
    with Image.open(path) as image:
        image.load()  # decodes the pixel data: a truncated file fails here, not hours later
        return unit_image(image)


def unit_image(image: Image.Image) -> Image.Image:
    """``image`` as an 8-bit RGB image, or, for 16-bit and float grey images, a float image (mode ``F``)
    holding values in [0, 1]: 16-bit values are divided by 65535 (their bit depth), not clipped at 255.

    Raises ``ValueError`` for 32-bit integer images with values above 65535 and for float images outside
    [0, 1] (their scale is unknown)."""
    if image.mode in HIGH_DEPTH_MODES:
        low, high = image.getextrema()
        if low < 0 or high > MAX_16BIT:
            raise ValueError(
                f"{image.mode} image with values in [{low}, {high}]; only 16-bit values (0..65535) are supported"
            )
        array = np.asarray(image).astype(np.float32) / np.float32(MAX_16BIT)
        return Image.fromarray(array)
    if image.mode == "F":
        low, high = image.getextrema()
        if low < 0 or high > 1:
            raise ValueError(f"float image with values in [{low}, {high}]; float images must lie in [0, 1]")
        return image.copy()
    return image.copy() if image.mode == "RGB" else image.convert("RGB")


def resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    """Resize so that the shorter side is ``size`` pixels, keeping the aspect ratio (bilinear)."""
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    if short == size:
        return image
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    return image.resize((new_w, new_h), Image.BILINEAR)


def center_crop(array: np.ndarray, size: int) -> np.ndarray:
    """The centre ``size`` x ``size`` window of an HWC array, zero-padded when the array is smaller."""
    height, width = array.shape[:2]
    if height < size or width < size:
        pad_h, pad_w = max(size - height, 0), max(size - width, 0)
        array = np.pad(
            array, ((pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2), (0, 0)), mode="constant"
        )
        height, width = array.shape[:2]
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return array[top : top + size, left : left + size]


def preprocess_image(
    image: Image.Image, image_size: int = DEFAULT_IMAGE_SIZE, resize: int | None = None
) -> torch.Tensor:
    """The protocol's pre-processing: RGB, shorter side to ``resize``, centre crop ``image_size``, [0, 1] CHW.

    8-bit images are divided by 255; 16-bit grey images by 65535 and float grey images are taken as they are
    (:func:`unit_image`), their one channel repeated to three."""
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    resize = default_resize(image_size) if resize is None else int(resize)
    if resize <= 0:
        raise ValueError(f"resize must be positive, got {resize}")
    image = resize_shorter_side(unit_image(image), resize)
    if image.mode == "F":  # already in [0, 1]: keep the precision, repeat the grey channel
        grey = center_crop(np.array(image, dtype=np.float32)[:, :, None], image_size)
        tensor = torch.from_numpy(np.ascontiguousarray(grey.transpose(2, 0, 1)))
        return tensor.repeat(3, 1, 1).clamp_(0.0, 1.0)
    array = center_crop(np.asarray(image, dtype=np.uint8), image_size)
    tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
    return tensor.float().div_(255.0)


def resize_tensor(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a CHW float image to ``size`` x ``size`` (bilinear, antialiased), clamped to [0, 1]."""
    if image.shape[-2:] == (size, size):
        return image
    out = F.interpolate(
        image.unsqueeze(0), size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )
    return out.squeeze(0).clamp_(0.0, 1.0)
