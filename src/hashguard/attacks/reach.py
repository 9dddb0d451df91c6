"""Whether an attack's iterations can reach the edge of its eps ball: one rule, one warning line.

A sign-gradient optimizer (registered with ``sign_steps=True``: PGD, BIM, MI-, NI-, SI-NI-, VMI- and DI-FGSM)
moves every pixel by at most ``step`` per iteration, so after ``iterations`` steps a pixel lies at most
``step x iterations`` from where the iterations started. The rule, with ``reach = step x iterations``:

* no random start (the iterations start at the clean image: BIM, MI-, NI-, SI-NI-, VMI-FGSM, or PGD / DI-FGSM
  with ``random_start=False``): when ``reach < eps`` no pixel can get further than ``reach`` from the clean image,
  so the attack cannot reach the edge of its eps ball - it runs a smaller attack than the one it reports;
* random start (PGD, DI-FGSM: the start is uniform in the ball, Madry et al., ICLR 2018): a pixel that starts
  near the edge may end on it, so the reach is not bounded the same way, but when ``reach < eps`` the iterations
  cannot carry a pixel from the clean value (the ball's centre) to its edge, i.e. they cannot traverse the ball;
  the attack leans on where the random start happened to put each pixel;
* ``reach >= eps`` (equality up to rounding counts as reachable), ``eps = 0``, pixel-space optimizers (SGD with
  momentum, Adam: their step is a learning rate, not a pixel distance) and generator attacks (ProS-GAN, no
  iterations): no warning.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hashguard.attacks.optimizers import uses_sign_steps
from hashguard.protocol import eps_label

__all__ = ["reach_warning"]



def reach_warning(params: Mapping[str, Any], attack: str = "attack") -> str | None:
    """One warning line when the resolved settings ``params`` of ``attack`` (as returned by
    :func:`~hashguard.attacks.registry.resolve_attack_params`: ``eps``, ``step``, ``iterations``, ``optimizer``
    and, for PGD / DI-FGSM, ``random_start``) cannot reach the edge of the eps ball; None otherwise (the rule is
    in the module docstring)."""
    optimizer = params.get("optimizer")
    if optimizer is None or "iterations" not in params or "step" not in params:
        return None  # a generator attack: no iterations to bound
    if not uses_sign_steps(str(optimizer)):
        return None
    eps, step, iterations = float(params["eps"]), float(params["step"]), int(params["iterations"])
    reach = step * iterations
    if reach >= eps or math.isclose(reach, eps, rel_tol=1e-9, abs_tol=1e-12):
        return None
    budget = (
        f"{attack}: step {eps_label(step)} x {iterations} iterations = {eps_label(reach)} "
        f"< eps {eps_label(eps)}"
    )
    if params.get("random_start", False):
        return (
            f"{budget}; from its random start a pixel moves at most {eps_label(reach)}, so the iterations "
            "cannot traverse the eps ball (raise the iterations or the step)"
        )
    return f"{budget}; the attack cannot reach the edge of its eps ball (raise the iterations or the step)"
