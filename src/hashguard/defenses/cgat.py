"""CgAT: centre-guided adversarial training (X. Wang et al., "CgAT: Center-Guided Adversarial Training for Deep
Hashing-Based Retrieval", WWW 2023).

The same training as SAAT (:mod:`hashguard.defenses.saat`) with the centre code of the positives, unweighted
(:func:`hashguard.mainstay.center_codes`), in place of the cosine-weighted mainstay code, and the protocol's
random crop and horizontal flip of every training batch.
"""

from __future__ import annotations

from hashguard.defenses.config import DEMO_COMMON
from hashguard.defenses.registry import DEFENSES
from hashguard.defenses.saat import CodeBankDefense
from hashguard.protocol import DEFENSES as PROTOCOL


# demo: no crop-and-flip, since a mirrored handwritten digit is often another digit (measured on 300 digits, the
# augmentation cost 0.06-0.17 clean mAP and halved CgAT's robust gain; tests/defenses)
@DEFENSES.register(
    display="CgAT",
    summary="CgAT: as SAAT with the unweighted centre code, random crop and flip",
    presets={"paper": PROTOCOL["cgat"], "demo": dict(DEMO_COMMON, epochs=4, augment=False)},
)
class CgAT(CodeBankDefense):
    """CgAT: centre-guided adversarial training (Wang et al., WWW 2023), unweighted centre codes."""

    name = "cgat"
    reference = "Wang et al., CgAT: Center-Guided Adversarial Training for Deep Hashing-Based Retrieval, WWW 2023"
    weighting = "uniform"
