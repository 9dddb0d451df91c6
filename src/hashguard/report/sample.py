"""A synthetic, complete results card and retrieval grid: for previews (``python -m hashguard.report --sample``)
and tests. The numbers are invented but shaped like a real study's."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

GRID_FILE = "report/retrieval_grid.npz"


def _pr(start: float, end: float, sharpness: float) -> dict[str, list[float]]:
    recall = [round(0.01 * i, 2) for i in range(1, 101)]
    precision = [round(end + (start - end) * (1 - r**sharpness), 4) for r in recall]
    return {"recall": recall, "precision": precision}


def _pn(start: float, decay: float) -> dict[str, list[float]]:
    n = list(range(100, 1001, 100))
    return {"n": n, "precision": [round(start * (1 - decay * i / 10), 4) for i in range(len(n))]}


def _attack(name: str, targeted: bool, clean: float, adv: float, theory: float, seconds: float) -> dict[str, Any]:
    perceptibility = {"linf": 0.1255, "l2": 2.137, "mse": 0.00921, "psnr": 30.36, "ssim": 0.8123}
    record: dict[str, Any] = {
        "attack": name,
        "targeted": targeted,
        "params": {"iterations": 20, "step": 1.0},
        "num_queries": 200,
        "topk": 1000,
        "clean_map": None if targeted else clean,
        "adv_map": None if targeted else adv,
        "theory_map": None if targeted else theory,
        "clean_tmap": clean if targeted else None,
        "adv_tmap": adv if targeted else None,
        "theory_tmap": theory if targeted else None,
        "bits_flipped": round(32 * (0.6 if targeted else 0.55), 2),
        "perceptibility": perceptibility,
        "wall_time_s": seconds,
        "info": {},
        "curves": {"precision_at_n": _pn(adv, 0.3), "pr_curve": _pr(adv, 0.1, 0.5)},
    }
    if targeted:  # the clean queries, judged against the target labels
        record["clean_curves"] = {"precision_at_n": _pn(clean, 0.2), "pr_curve": _pr(clean, 0.1, 0.5)}
    return record


def _model(label: str, clean: float, scores: dict[str, float], defense: dict[str, Any] | None) -> dict[str, Any]:
    attacked = round(clean - 0.0045, 4)  # clean mAP of the attacked queries, a subset of the query split
    attacks = {
        "mainstay": _attack("mainstay", False, attacked, scores["mainstay"], 0.0213, 3.2),
        "hag": _attack("hag", False, attacked, scores["hag"], 0.0377, 2.9),
        "sdha": _attack("sdha", False, attacked, scores["sdha"], None, 4.4),  # type: ignore[arg-type]
        "mainstay-targeted": _attack("mainstay-targeted", True, 0.1012, scores["mainstay-targeted"], 0.9311, 3.5),
        "dhta": _attack("dhta", True, 0.1012, scores["dhta"], 0.8876, 3.1),
    }
    eps = [0.0, 2 / 255, 4 / 255, 8 / 255, 16 / 255, 32 / 255]
    sweep = {}
    for name in ("mainstay", "hag", "mainstay-targeted"):
        final = scores[name]
        start = 0.1012 if name.endswith("targeted") else attacked
        points = [start + (final - start) * min(1.0, (e * 255 / 8) ** 0.7) for e in eps]
        key = "adv_tmap" if name.endswith("targeted") else "adv_map"
        other = "adv_map" if key == "adv_tmap" else "adv_tmap"
        sweep[name] = [{"eps": round(e, 6), key: round(p, 4), other: None} for e, p in zip(eps, points, strict=True)]
    return {
        "label": label,
        "defense": defense,
        "clean": {
            "map": clean,
            "map_tie_aware": round(clean - 0.0071, 4),
            "topk": 1000,
            "precision_at_n": _pn(clean, 0.1),
            "pr_curve": _pr(clean, 0.1, 2.0),
        },
        "attacks": attacks,
        "eps_sweep": sweep,
    }


def sample_card() -> dict[str, Any]:
    """A complete card: an undefended CSQ model and two defenses (SAAT, ATRDH), five attacks, sweeps, a grid."""
    undefended = _model(
        "CSQ (undefended)",
        0.9731,
        {"mainstay": 0.1034, "hag": 0.2247, "sdha": 0.1969, "mainstay-targeted": 0.8862, "dhta": 0.8298},
        None,
    )
    saat = _model(
        "CSQ + SAAT",
        0.9349,
        {"mainstay": 0.6077, "hag": 0.6921, "sdha": 0.6582, "mainstay-targeted": 0.3127, "dhta": 0.2954},
        {
            "name": "saat", "reference": "Yuan et al., IEEE TIFS 2023", "config": {"epochs": 3}, "seconds": 40.1,
            "threat": {"eps": 32 / 255, "step": 8 / 255, "eps_from": "the study's threat model (attacks.override)",
                       "step_from": "the study's threat model (attacks.override)"},
        },
    )
    atrdh = _model(
        "CSQ + ATRDH",
        0.9216,
        {"mainstay": 0.5133, "hag": 0.7045, "sdha": 0.6402, "mainstay-targeted": 0.3561, "dhta": 0.3318},
        {"name": "atrdh", "reference": "Wang et al., SIGIR 2021", "config": {"epochs": 3}, "seconds": 37.8},
    )
    card: dict[str, Any] = {
        "format": "hashguard-study/1",
        "study": "demo",
        # as the study writes them from the registries (hashguard.plugins.display_names)
        "names": {
            "attacks": [
                ["mainstay", "Mainstay"], ["mainstay-targeted", "Mainstay (targeted)"],
                ["mainstay-adaptive", "Mainstay (detector-aware)"], ["hag", "HAG"],
                ["sdha", "SDHA"], ["sdha-targeted", "SDHA (targeted)"], ["dhta", "DHTA"], ["p2p", "P2P"],
                ["tha", "THA"], ["prosgan", "ProS-GAN"],
            ],
            "defenses": [["saat", "SAAT"], ["atrdh", "ATRDH"], ["cgat", "CgAT"]],
        },
        "created": "2026-11-26T12:00:00Z",
        "threat_model": {
            "norm": "Linf",
            "eps": 0.1255,
            "eps_label": "32/255",
            "iterations": 20,
            "queries": 200,
            "topk": 1000,
        },  # fmt: skip
        "dataset": {"name": "demo-mnist", "fingerprint": "3f2a9c", "train": 5000, "query": 200, "database": 2000},
        "model": {"backbone": "small_cnn", "bits": 32},
        "method": {"name": "csq"},
        "config": {
            "study": "demo",
            "seed": 0,
            "train": {"epochs": 5, "lr": 0.001},
            "attacks": ["mainstay", "hag"],
            "note": "<b>not bold</b> & friends",
        },  # fmt: skip
        "versions": {"hashguard": "0.1.0", "torch": "2.14.1", "numpy": "2.4.6", "python": "3.12.1"},
        "stages": [
            {"name": "train", "seconds": 12.3, "cached": False},
            {"name": "encode", "seconds": 0.8, "cached": True},
            {"name": "attack", "seconds": 75.4, "cached": False},
            {"name": "defend", "seconds": 77.9, "cached": False},
        ],
        "models": {"undefended": undefended, "saat": saat, "atrdh": atrdh},
        "retrieval_grid": {"file": GRID_FILE, "model": "undefended", "attack": "mainstay"},
        "claims": sample_claims(),
        "protocol": {
            "name": "demo",
            "departures": [
                "attacks.override.eps = 32/255 (protocol: 8/255 for every attack)",
                "attacks.override.iterations = 20 (protocol: each attack's own, 100-2000)",
            ],
        },
    }
    card["detection"] = sample_detection()
    card["threat_model"]["attacks"] = {
        name: {"eps": 0.1255, "eps_label": "32/255", "iterations": 20, "optimizer": optimizer, "step": step,
               "targeted": name in ("mainstay-targeted", "dhta")}
        for name, optimizer, step in (("mainstay", "pgd", 1 / 255), ("hag", "sgd", 100.0), ("sdha", "adam", 0.01),
                                      ("mainstay-targeted", "pgd", 1 / 255), ("dhta", "bim", 1 / 255))
    }
    return card


def _detection_record(auroc: float, tpr: float, adv_map: float, let_map: float | None, let: float,
                      adaptive: bool = False, targeted: bool = False) -> dict[str, Any]:
    return {"auroc": auroc, "tpr": tpr, "fpr": 0.04, "threshold": 6.0, "target_fpr": 0.05, "adversarial_map": adv_map,
            "let_through_map": let_map, "let_through": let, "adaptive": adaptive, "targeted": targeted,
            "num_clean": 200, "num_adversarial": 200,
            "roc": {"fpr": [0.0, 0.04, 0.3, 1.0], "tpr": [0.0, tpr, min(1.0, tpr + 0.3), 1.0],
                    "threshold": [None, 6.0, 3.0, None]}}


def sample_detection() -> dict[str, Any]:
    """A detection record shaped like the study's (``hashguard.pipeline.detection_stage``)."""
    return {
        "detector": "hamming", "params": {"reference": "auto", "fpr": 0.05}, "fpr": 0.05, "stops_at_tpr": 0.5,
        "adaptive": "mainstay-adaptive",
        "models": {
            "undefended": {"label": "CSQ (undefended)", "reference_codes": 10, "verdict": "non-adaptive only",
                           "attacks": {"mainstay": _detection_record(0.9412, 0.81, 0.1034, 0.4420, 0.19),
                                       "mainstay-adaptive": _detection_record(0.6120, 0.12, 0.1710, 0.1534, 0.88,
                                                                              adaptive=True)}},
            "saat": {"label": "CSQ + SAAT", "reference_codes": 10, "verdict": "none",
                     "attacks": {"mainstay": _detection_record(0.7020, 0.22, 0.6077, 0.6312, 0.78)}},
        },
    }


def _comparison(a: str, b: str, mean_a: float, mean_b: float, low: float, high: float, side: str,
                verdict: str, attack: str | None = None) -> dict[str, Any]:
    record = {"a": a, "b": b, "mean_a": mean_a, "mean_b": mean_b, "mean_diff": round(mean_a - mean_b, 4),
              "ci_low": low, "ci_high": high, "level": 0.95, "n": 200, "side": side, "verdict": verdict}
    if attack is not None:
        record["attack"] = attack
    return record


def sample_claims() -> list[dict[str, Any]]:
    """Claims shaped like the study's (``hashguard.pipeline.claims``), consistent with :func:`sample_card`."""
    return [
        {"id": "table1-nontargeted", "source": "paper", "kind": "claim", "model": "undefended", "metric": "mAP",
         "statement": "The mainstay attack gives the lowest mAP of the non-targeted attacks on the undefended model",
         "verdict": "reproduced",
         "comparisons": [
             _comparison("mainstay", "hag", 0.1034, 0.2247, -0.1402, -0.1031, "negative", "reproduced"),
             _comparison("mainstay", "sdha", 0.1034, 0.1969, -0.1110, -0.0764, "negative", "reproduced"),
         ]},
        {"id": "table1-targeted", "source": "paper", "kind": "claim", "model": "undefended", "metric": "t-mAP",
         "statement": "The targeted mainstay attack gives the highest t-mAP of the targeted attacks on the "
                      "undefended model",
         "verdict": "inconclusive",
         "comparisons": [
             _comparison("mainstay-targeted", "dhta", 0.8862, 0.8298, -0.0040, 0.1170, "positive", "inconclusive"),
         ]},
        {"id": "table2-saat-atrdh", "source": "paper", "kind": "claim", "model": None, "metric": "mAP",
         "statement": "SAAT keeps a higher mAP than ATRDH under every attack", "verdict": "inconclusive",
         "comparisons": [
             _comparison("saat", "atrdh", 0.6921, 0.7045, -0.0390, 0.0142, "positive", "inconclusive", "hag"),
             _comparison("saat", "atrdh", 0.6582, 0.6402, -0.0050, 0.0410, "positive", "inconclusive", "sdha"),
             _comparison("saat", "atrdh", 0.6077, 0.5133, 0.0712, 0.1180, "positive", "reproduced", "mainstay"),
         ]},
    ]


def sample_grid(rows: int = 4, channels: int = 1, size: int = 28, topk: int = 10, seed: int = 0) -> dict[str, Any]:
    """Retrieval-grid arrays of the npz format the pipeline writes (smooth random blobs as images)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size

    def images(*shape: int) -> np.ndarray:
        count = int(np.prod(shape))
        centres = rng.random((count, 2, 1, 1))
        blobs = np.exp(-((xx - centres[:, 0]) ** 2 + (yy - centres[:, 1]) ** 2) / 0.03)
        stack = np.repeat(blobs[:, None], channels, axis=1) * rng.uniform(0.5, 1.0, (count, channels, 1, 1))
        return stack.reshape(*shape, channels, size, size).astype(np.float32)

    query = images(rows)
    adv = np.clip(query + rng.uniform(-0.12, 0.12, query.shape), 0, 1).astype(np.float32)
    return {
        "query_images": query,
        "adv_images": adv,
        "clean_topk_images": images(rows, topk),
        "clean_topk_relevant": rng.random((rows, topk)) < 0.9,
        "adv_topk_images": images(rows, topk),
        "adv_topk_relevant": rng.random((rows, topk)) < 0.15,
    }


def write_sample(run_dir: Path, channels: int = 1) -> dict[str, Any]:
    """Write the sample grid npz into ``run_dir`` and return (a deep copy of) the sample card."""
    path = Path(run_dir) / GRID_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **sample_grid(channels=channels))
    return copy.deepcopy(sample_card())
