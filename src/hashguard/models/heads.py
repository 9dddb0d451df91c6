"""Code heads: what a hash model puts between its backbone's K code logits z and the codes (``model.hash_norm``).

A head is a registered factory ``(bits) -> nn.Module`` that maps the logits z to normalised logits z'; the
model then returns tanh(alpha z') (relaxed codes) or, for a head registered with ``straight_through=True``,
sign(z') with the identity gradient, and its retrieval codes are always sign(z'). The module is stored under the
model's ``hash_norm`` attribute, so its state-dict keys are ``hash_norm.*``; a head registered with
``batchnorm=True`` holds a BatchNorm1d there (what checkpoint checks and NMLayer's fold look for).

Built in: ``none`` (the identity), ``batchnorm`` (BatchNorm1d with its affine map: the from-scratch recipe of
docs/methods.md) and ``bn-sign`` (HashVFL's head: BatchNorm1d without affine map, then sign with a straight-through
gradient). A third-party head registers itself the same way (``@HEADS.register("name", batchnorm=...,
straight_through=...)``; docs/plugins.md) and is then a value of ``model.hash_norm``.
"""

from __future__ import annotations

from torch import nn

from hashguard.registry import Registry

#: name -> factory ``(bits) -> nn.Module``; attributes ``batchnorm`` (holds a BatchNorm1d) and ``straight_through``
HEADS: Registry[nn.Module] = Registry("code head", fixed=("bits",))


@HEADS.register("none", batchnorm=False, straight_through=False)
def plain_head(bits: int) -> nn.Module:
    """The plain relaxed sign tanh(alpha z): no module between the hash layer and the codes."""
    return nn.Identity()


@HEADS.register("batchnorm", batchnorm=True, straight_through=False)
def batchnorm_head(bits: int) -> nn.Module:
    """BatchNorm1d on the code logits, then tanh(alpha BN(z)): keeps every bit centred, which lets every method
    learn from scratch on small data (docs/methods.md)."""
    return nn.BatchNorm1d(bits)


@HEADS.register("bn-sign", reference="Qiu et al., IEEE TIFS 2024", batchnorm=True, straight_through=True)
def bn_sign_head(bits: int) -> nn.Module:
    """HashVFL's head: BatchNorm1d without affine map (its shift would undo the bit balance), then sign with a
    straight-through gradient (Qiu et al., IEEE TIFS 2024; docs/detection.md)."""
    return nn.BatchNorm1d(bits, affine=False)


def holds_batchnorm(name: str) -> bool:
    """Whether the head ``name`` keeps a BatchNorm1d under ``hash_norm``."""
    return bool(HEADS.entry(name).attributes.get("batchnorm"))


def is_straight_through(name: str) -> bool:
    """Whether the head ``name`` returns straight-through sign codes instead of tanh(alpha z')."""
    return bool(HEADS.entry(name).attributes.get("straight_through"))
