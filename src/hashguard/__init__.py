"""hashguard: train, index, attack, harden and benchmark deep hashing retrieval models.

Implements SAAT, "Semantic-Aware Adversarial Training for Reliable Deep Hashing Retrieval"
(Yuan, Zhang, Wang, Wu, IEEE TIFS 2023), and the methods, attacks and defenses it is compared against.

The public Python surface (imported on first use, so ``import hashguard`` stays cheap)::

    import hashguard as hg

    splits = hg.open_dataset("demo-mnist")            # train / query / database splits
    model = hg.create_model(backbone="small_cnn", bits=32, data=splits)   # or hg.load_model(CHECKPOINT_DIR)
    hg.evaluate(model, splits)["map"]                 # mAP@5000 of the query split against the database
    images, labels = splits.query[0:8].tensors()      # a slice of a split is a dataset
    adv = hg.attack(model, images, labels, name="hag", eps=8 / 255)
    index = hg.HammingIndex(bits=32)                  # exact / FAISS Hamming search
    hg.list_plugins("attacks")                        # registered names of every kind
    hg.fingerprint(model).digest                      # functional fingerprint (docs/fingerprints.md)
    hg.defend("runs/csq", "saat", "runs/csq-saat", preset="demo")   # harden a checkpoint (docs/defenses.md)
    hg.label_pool(splits.train, "5%")                 # representative labelling + propagation (docs/labeling.md)
    hg.fit_activation_codes(model, splits.train, 16)  # a trained network's ReLU pattern as a code (docs/methods.md)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from hashguard.errors import CheckpointError, ConfigError, DataError, HashguardError

#: public name -> module it lives in; imported on first attribute access (PEP 562)
_LAZY = {
    "create_model": "hashguard.api",
    "load_model": "hashguard.api",
    "encode": "hashguard.api",
    "evaluate": "hashguard.api",
    "build_attack": "hashguard.api",
    "attack": "hashguard.api",
    "list_plugins": "hashguard.api",
    "open_dataset": "hashguard.data",
    "HammingIndex": "hashguard.retrieval",
    "HashModel": "hashguard.models",
    "DatasetSplits": "hashguard.data",
    "defend": "hashguard.defenses",
    "fingerprint": "hashguard.models.fingerprint",
    "label_pool": "hashguard.labeling",
    "fit_activation_codes": "hashguard.activation_codes",
}

__all__ = [
    "__version__",
    "HashguardError",
    "DataError",
    "ConfigError",
    "CheckpointError",
    "create_model",
    "load_model",
    "encode",
    "evaluate",
    "build_attack",
    "attack",
    "list_plugins",
    "open_dataset",
    "HammingIndex",
    "HashModel",
    "DatasetSplits",
    "defend",
    "fingerprint",
    "label_pool",
    "fit_activation_codes",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time these load lazily through __getattr__
    from hashguard.activation_codes import fit_activation_codes
    from hashguard.api import attack, build_attack, create_model, encode, evaluate, list_plugins, load_model
    from hashguard.data import DatasetSplits, open_dataset
    from hashguard.defenses import defend
    from hashguard.labeling import label_pool
    from hashguard.models import HashModel
    from hashguard.models.fingerprint import fingerprint
    from hashguard.retrieval import HammingIndex


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hashguard' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
