"""Read the ReLU activation patterns of a network with forward pre-hooks.

A ReLU network cuts its input space into linear regions, one per activation pattern: which ReLU units are
on (output > 0) and which are off (He, Lei, Ji & Tao, "Neural networks behave as hash encoders: An empirical
study", arXiv 2101.05490, 2021, Sec. 2). This module finds the ReLU *sites* of a network and hands the
pre-activation of every chosen site to a callback during a forward pass.

A *site* is one call of an ``nn.ReLU`` module in a forward pass, named by the module's qualified name; a
module called more than once per forward (torchvision's ResNet blocks call their ``relu`` twice) gives one
site per call, the later ones named ``name#1``, ``name#2``, ... Units of a site are its pre-activation tensor
flattened per image (channels x height x width for a convolutional layer). Only ``nn.ReLU`` modules are seen:
a ``torch.nn.functional.relu`` call inside a forward is invisible to hooks.

The pre-activation is read by a *pre*-hook, before the ReLU runs: an in-place ReLU (``inplace=True``, as in the
small CNN and torchvision) overwrites its input, so a forward hook would see the output instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from hashguard.errors import ConfigError

__all__ = ["trunk_of", "relu_modules", "find_sites", "resolve_sites", "site_key", "tap_sites", "unit_states"]

#: a callback ``(site name, pre-activation flattened to (B, units)) -> None``
SiteFn = Callable[[str, torch.Tensor], None]


def relu_modules(network: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(qualified name, module)`` of every ``nn.ReLU`` module of ``network`` (its trunk: :func:`trunk_of`), in
    registration order."""
    return [(name, module) for name, module in trunk_of(network).named_modules() if isinstance(module, nn.ReLU)]


def trunk_of(network: nn.Module) -> nn.Module:
    """The module whose ReLU sites are read: the backbone of a hash model (site names are relative to it,
    e.g. ``fc.2``), the wrapped network of an activation-code model, any other module itself."""
    from hashguard.models.hash_model import HashModel

    network = getattr(network, "base_model", network)
    return network.backbone if isinstance(network, HashModel) else network


@contextmanager
def tap_sites(network: nn.Module, wanted: Sequence[str] | None, fn: SiteFn) -> Iterator[None]:
    """Within the block, every forward of ``network`` (of its trunk, :func:`trunk_of`) calls ``fn(site, pre)`` for
    each site in ``wanted`` (every site when None) with its pre-activation flattened per image. The call
    counters restart with each forward of the trunk; the hooks are removed on exit."""
    network = trunk_of(network)
    wanted_set = None if wanted is None else set(wanted)
    counts: dict[str, int] = {}
    handles = []

    def restart(_module: nn.Module, _args: tuple) -> None:
        counts.clear()

    def make_hook(name: str) -> Callable[[nn.Module, tuple], None]:
        def hook(_module: nn.Module, args: tuple) -> None:
            index = counts.get(name, 0)
            counts[name] = index + 1
            site = name if index == 0 else f"{name}#{index}"
            if wanted_set is None or site in wanted_set:
                fn(site, args[0].flatten(1))

        return hook

    try:
        handles.append(network.register_forward_pre_hook(restart))
        for name, module in relu_modules(network):
            handles.append(module.register_forward_pre_hook(make_hook(name)))
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def find_sites(network: nn.Module, example: torch.Tensor) -> list[tuple[str, int]]:
    """``(site, units)`` of every ReLU site of ``network`` in execution order, from one forward of
    ``example`` (a batch of images the network accepts; eval mode for the call)."""
    found: list[tuple[str, int]] = []

    def record(site: str, pre: torch.Tensor) -> None:
        found.append((site, int(pre.shape[1])))

    was_training = network.training
    network.eval()
    try:
        with tap_sites(network, None, record):
            getattr(network, "base_model", network)(example)
    finally:
        network.train(was_training)
    if not found:
        raise ConfigError(f"{type(network).__name__} has no nn.ReLU module called in its forward: no activation code")
    return found


def site_key(text: str) -> str | int:
    """A layer as written by a user: a position (``"-1"`` -> -1) or a site or module name (``"fc.2"``)."""
    try:
        return int(text)
    except ValueError:
        return text


def resolve_sites(available: Sequence[tuple[str, int]], layers: Sequence[str | int] | None) -> list[tuple[str, int]]:
    """The chosen sites, in execution order: ``layers`` None means every site; otherwise each entry is a site
    position (int, negative counts from the end), a site name, or a module name (all its calls)."""
    if layers is None:
        return list(available)
    names = [site for site, _ in available]
    chosen: set[str] = set()
    for layer in layers:
        if isinstance(layer, bool):
            raise ConfigError(f"activation-code layer must be a name or an index, got {layer!r}")
        if isinstance(layer, int):
            if not -len(names) <= layer < len(names):
                raise ConfigError(
                    f"activation-code layer index {layer} out of range: the network has {len(names)} ReLU sites"
                )
            chosen.add(names[layer])
            continue
        matches = [site for site in names if site == layer or site.split("#")[0] == layer]
        if not matches:
            raise ConfigError(f"no ReLU site named {layer!r}; the network has: {', '.join(names)}")
        chosen.update(matches)
    if not chosen:
        raise ConfigError("activation codes need at least one ReLU layer")
    return [(site, units) for site, units in available if site in chosen]


def unit_states(network: nn.Module, images: torch.Tensor, sites: Sequence[str]) -> torch.Tensor:
    """The binarised state (True where the ReLU output is > 0, i.e. the pre-activation is > 0) of every unit
    of ``sites`` for each image of ``images``, concatenated in the order of ``sites``: bool (B, units).
    Run under no_grad, in the network's current mode."""
    captured: dict[str, torch.Tensor] = {}

    def record(site: str, pre: torch.Tensor) -> None:
        captured[site] = pre > 0

    with torch.no_grad(), tap_sites(network, sites, record):
        getattr(network, "base_model", network)(images)
    missing = [site for site in sites if site not in captured]
    if missing:
        raise ConfigError(f"ReLU site {missing[0]!r} was not called in the forward pass")
    return torch.cat([captured[site] for site in sites], dim=1)
