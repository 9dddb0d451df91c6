"""The activation-code hash model: a trained network whose ReLU pattern, reduced to K bits, is the code.

He, Lei, Ji & Tao ("Neural networks behave as hash encoders: An empirical study", arXiv 2101.05490, 2021)
observe that the activation pattern of a network trained for classification - which ReLU units are on -
already behaves as a hash code: nearly every training example gets its own pattern, and simple K-NN or
K-Means on the patterns categorise test data well. :func:`fit_activation_codes` turns any trained network
into a K-bit hash model without training anything:

1. read the pre-activations of the chosen ReLU sites (:mod:`hashguard.activation_codes.patterns`) for every
   item of a fitting set (the training split);
2. drop the units that are on for every item or off for every item;
3. keep K units (``variant="balanced"`` or ``"random"``, :mod:`hashguard.activation_codes.selection`), or
   project all kept units onto K seeded Gaussian directions (``variant="projection"``).

The result, :class:`ActivationCodeModel`, is a :class:`~hashguard.models.hash_model.HashModel`: its
``logits(x)`` are the pre-activations of the K selected units (balanced / random) - so ``sign`` of them is
the activation code (on = +1) - or the K projections of the standardised ReLU outputs (projection). Both are
differentiable functions of the image, so every attack runs on it unchanged: the gradient the attack follows
goes through the selected units' pre-activations (the surrogate of the step function). Its codes are
evaluated with the same retrieval protocol as every learned model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from hashguard.activation_codes.patterns import find_sites, resolve_sites, tap_sites
from hashguard.activation_codes.selection import balanced_selection, non_constant_units, random_selection
from hashguard.errors import ConfigError
from hashguard.models.hash_model import HashModel

__all__ = ["VARIANTS", "ActivationCodeSpec", "ActivationCodeModel", "fit_activation_codes"]

#: the three reductions to K bits
VARIANTS = ("balanced", "random", "projection")
Variant = Literal["balanced", "random", "projection"]


@dataclass
class ActivationCodeSpec:
    """How an activation code was built (stored in ``model.json`` under ``activation_codes``)."""

    variant: str = "balanced"
    bits: int = 32
    #: ``[site, units]`` of the ReLU sites read, in execution order (site names are relative to the backbone)
    sites: list[list[Any]] = field(default_factory=list)
    seed: int = 0
    corr_weight: float = 1.0
    #: items of the fitting set, and how many units varied over it (the candidates)
    fit_items: int = 0
    candidates: int = 0

    def validate(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError(f"activation-code variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if self.bits < 1:
            raise ConfigError(f"code length must be positive, got {self.bits}")
        if not self.sites:
            raise ConfigError("activation codes need at least one ReLU site")

    @property
    def site_names(self) -> list[str]:
        return [str(site) for site, _ in self.sites]

    @property
    def total_units(self) -> int:
        return sum(int(units) for _, units in self.sites)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> ActivationCodeSpec:
        known = set(cls.__dataclass_fields__)
        unknown = set(payload) - known
        if unknown:
            raise ConfigError(f"unknown activation-code fields: {', '.join(sorted(unknown))}")
        spec = cls(**payload)
        spec.sites = [[str(site), int(units)] for site, units in spec.sites]
        spec.validate()
        return spec


class ActivationCodeModel(HashModel):
    """A trained network read as a K-bit activation-code hash model (He et al., arXiv 2101.05490, 2021).

    ``units`` are indices into the concatenated units of ``code.sites``. For the balanced and random variants
    they are the K selected units and ``logits(x)`` returns their pre-activations (an exact zero, whose ReLU
    output is 0, is returned as the smallest negative float so that sign gives -1, "off"). For the projection
    variant they are every non-constant unit and ``logits(x) = ((relu(pre) - unit_mean) / unit_scale) @ projection``
    with ``projection`` (units, K) seeded Gaussian. The wrapped network is ``base_model`` (the network itself,
    not a copy); its weights are unchanged.
    """

    def __init__(
        self,
        base: HashModel,
        code: ActivationCodeSpec,
        units: torch.Tensor,
        *,
        mean: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
        weight: torch.Tensor | None = None,
    ) -> None:
        nn.Module.__init__(self)
        code.validate()
        self.base_model = base
        self.code = code
        self.spec = dataclasses.replace(base.spec, bits=code.bits)
        units = torch.as_tensor(units, dtype=torch.int64).flatten()
        total = code.total_units
        if units.numel() and (int(units.min()) < 0 or int(units.max()) >= total):
            raise ConfigError(f"activation-code unit index out of range (the sites hold {total} units)")
        if units.numel() > 1 and not bool((units[1:] > units[:-1]).all()):
            raise ConfigError("activation-code unit indices must be strictly ascending")
        self.register_buffer("units", units)
        if code.variant == "projection":
            if mean is None or scale is None or weight is None:
                raise ConfigError("the projection variant needs mean, scale and weight")
            if weight.shape != (units.numel(), code.bits) or mean.shape != units.shape or scale.shape != units.shape:
                raise ConfigError("projection mean/scale/weight do not fit the kept units and the code length")
            # not "mean": a HashModel's ``mean`` is its input normalisation
            self.register_buffer("unit_mean", mean.float())
            self.register_buffer("unit_scale", scale.float())
            self.register_buffer("projection", weight.float())
        elif units.numel() != code.bits:
            raise ConfigError(f"{code.variant} activation codes select {code.bits} units, got {units.numel()}")
        # the units of each site, local to that site (derived, not saved)
        self._local_names: list[str] = []
        start = 0
        for site, count in code.sites:
            inside = units[(units >= start) & (units < start + count)] - start
            if inside.numel():
                name = f"_local_{len(self._local_names)}"
                self.register_buffer(name, inside, persistent=False)
                self._local_names.append(str(site))
            start += count

    @property
    def device(self) -> torch.device:
        return self.units.device

    def _site_indices(self) -> dict[str, torch.Tensor]:
        return {site: getattr(self, f"_local_{i}") for i, site in enumerate(self._local_names)}

    def unit_pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-activations of the units ``units`` for images ``x`` in [0, 1], shape (B, len(units))."""
        local = self._site_indices()
        captured: dict[str, torch.Tensor] = {}

        def grab(site: str, pre: torch.Tensor) -> None:
            captured[site] = pre[:, local[site]]  # a gathered copy: the in-place ReLU cannot overwrite it

        with tap_sites(self.base_model, list(local), grab):
            self.base_model.logits(x)
        return torch.cat([captured[site] for site in local], dim=1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The K real values whose signs are the code (see the class docstring), shape (B, K)."""
        values = self.unit_pre_activations(x)
        if self.code.variant == "projection":
            return ((torch.relu(values) - self.unit_mean) / self.unit_scale) @ self.projection
        tiny = torch.finfo(values.dtype).tiny
        return torch.where(values > 0, values, values.clamp(max=-tiny))


def _batches(data: torch.Tensor | Dataset, batch_size: int) -> Any:
    if isinstance(data, torch.Tensor):
        return (data[start : start + batch_size] for start in range(0, data.shape[0], batch_size))
    loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    return (batch[0] for batch in loader)


@torch.no_grad()
def _fit_statistics(
    network: HashModel, data: torch.Tensor | Dataset, sites: list[str], batch_size: int, keep_values: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(bool states (N, units), float ReLU outputs (N, units) or None) over the fitting set, on the CPU."""
    states: list[torch.Tensor] = []
    values: list[torch.Tensor] = []
    captured: dict[str, torch.Tensor] = {}

    def grab(site: str, pre: torch.Tensor) -> None:
        captured[site] = pre.clone()

    with tap_sites(network, sites, grab):
        for images in _batches(data, batch_size):
            captured.clear()
            network.logits(images.to(network.device))
            pre = torch.cat([captured[site] for site in sites], dim=1).cpu()
            states.append(pre > 0)
            if keep_values:
                values.append(torch.relu(pre))
    if not states:
        raise ConfigError("activation codes need a non-empty fitting set")
    return torch.cat(states), (torch.cat(values) if keep_values else None)


def fit_activation_codes(
    network: HashModel,
    data: torch.Tensor | Dataset,
    bits: int,
    *,
    variant: Variant = "balanced",
    layers: list[str | int] | None = None,
    seed: int = 0,
    corr_weight: float = 1.0,
    batch_size: int = 256,
) -> ActivationCodeModel:
    """Build the ``bits``-bit activation-code model of the trained ``network`` from the fitting set ``data``
    (images in [0, 1] as a tensor, or a dataset of ``(image, label, index)`` items: the training split).

    ``layers`` chooses the ReLU sites (positions, site names or module names, relative to the backbone, e.g.
    ``"fc.2"`` or ``-1``; default: every ReLU site, as in He et al., arXiv 2101.05490). ``variant``:
    ``"balanced"`` (greedy, cost 2|p - 1/2| + corr_weight * max |rho|; no randomness), ``"random"`` (a subset
    drawn with ``seed``) or ``"projection"`` (sign of ``bits`` Gaussian projections drawn with ``seed`` of the
    ReLU outputs of the non-constant units, each centred and scaled to unit variance on the fitting set).
    Units constant over the fitting set are never used. The network is put in eval mode and wrapped, not
    copied or changed; the same inputs and seed give the same model.
    """
    if variant not in VARIANTS:
        raise ConfigError(f"activation-code variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    if bits < 1:
        raise ConfigError(f"code length must be positive, got {bits}")
    network.eval()
    first = next(iter(_batches(data, 2)), None)
    if first is None or len(first) == 0:
        raise ConfigError("activation codes need a non-empty fitting set")
    sites = resolve_sites(find_sites(network, first.to(network.device)), layers)
    names = [site for site, _ in sites]
    states, values = _fit_statistics(network, data, names, batch_size, keep_values=variant == "projection")
    kept = non_constant_units(states)
    code = ActivationCodeSpec(
        variant=variant,
        bits=bits,
        sites=[[site, units] for site, units in sites],
        seed=int(seed),
        corr_weight=float(corr_weight),
        fit_items=int(states.shape[0]),
        candidates=int(kept.numel()),
    )
    if variant == "balanced":
        units = kept[balanced_selection(states[:, kept], bits, corr_weight)]
        model = ActivationCodeModel(network, code, units)
    elif variant == "random":
        units = kept[random_selection(kept.numel(), bits, seed)]
        model = ActivationCodeModel(network, code, units)
    else:
        if kept.numel() == 0:
            raise ConfigError("no ReLU unit varies over the fitting set: nothing to project")
        assert values is not None
        chosen = values[:, kept].double()
        mean = chosen.mean(dim=0)
        scale = chosen.std(dim=0, unbiased=False)
        generator = torch.Generator().manual_seed(int(seed))
        weight = torch.randn(kept.numel(), bits, generator=generator, dtype=torch.float64)
        model = ActivationCodeModel(network, code, kept, mean=mean.float(), scale=scale.float(), weight=weight.float())
    model.to(network.device)
    model.eval()
    return model
