"""The claims of the SAAT paper a study can check, with paired bootstrap verdicts (``card["claims"]``).

X. Yuan, Z. Zhang, X. Wang, L. Wu, "Semantic-Aware Adversarial Training for Reliable Deep Hashing
Retrieval", IEEE TIFS 18, 2023:

* Table I, non-targeted: on the undefended model the mainstay attack gives the lowest mAP among HAG, SDHA
  and itself;
* Table I, targeted: the targeted mainstay attack gives the highest t-mAP among P2P, DHTA, ProS-GAN, THA and
  itself;
* Table II: under each attack, the SAAT model keeps a higher mAP than the ATRDH model;
* and, not a claim of the paper, the same comparison of CgAT against SAAT (which one is higher).

Every comparison is paired over the attacked queries (the same queries, and for targeted attacks the same
target labels, for every attack and model of the study), from the per-query APs each attack stage writes
(``per_query.npz``). Statistics and verdict rules: :mod:`hashguard.report.claims`. A claim whose attacks or
models were not run is left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hashguard.pipeline.attack_stage import PER_QUERY, load_per_query
from hashguard.report.claims import RESAMPLES, SEED, combine, compare, direction, extreme_claim

NON_TARGETED_RIVALS = ("hag", "sdha")
TARGETED_RIVALS = ("p2p", "dhta", "prosgan", "tha")


def _scores(run_dir: Path, model: str, attack: str) -> np.ndarray | None:
    """Per-query adversarial AP (t-AP for a targeted attack) of one attack on one model, or None."""
    data = load_per_query(run_dir / "models" / model / "attacks" / attack / PER_QUERY)
    return None if data is None else data["adv_ap"]


def _paired(scores: Mapping[str, np.ndarray | None]) -> dict[str, np.ndarray]:
    """The entries with scores, all of one length (the study attacks the same queries everywhere)."""
    present = {name: s for name, s in scores.items() if s is not None}
    lengths = {s.shape[0] for s in present.values()}
    return present if len(lengths) <= 1 else {}


def _ranking_claim(run_dir: Path, models: Mapping[str, Any], subject: str, rivals: tuple[str, ...],
                   lowest: bool, claim_id: str, statement: str, metric: str) -> dict[str, Any] | None:
    if "undefended" not in models:
        return None
    names = [subject, *[r for r in rivals if r in (models["undefended"].get("attacks") or {})]]
    scores = _paired({n: _scores(run_dir, "undefended", n) for n in names})
    if subject not in scores or len(scores) < 2:
        return None
    result = extreme_claim(scores, subject, lowest, resamples=RESAMPLES, seed=SEED)
    return {"id": claim_id, "source": "paper", "statement": statement, "model": "undefended", "metric": metric,
            "kind": "claim", **result}


def _model_claim(run_dir: Path, models: Mapping[str, Any], better: str, worse: str, claim_id: str,
                 statement: str, source: str) -> dict[str, Any] | None:
    """Per attack run on both models: per-query AP of ``better`` minus ``worse`` under the same attack."""
    if better not in models or worse not in models:
        return None
    attacks = [n for n in (models[better].get("attacks") or {}) if n in (models[worse].get("attacks") or {})]
    comparisons = []
    for attack in attacks:
        if (models[better]["attacks"][attack] or {}).get("targeted"):
            continue
        scores = _paired({better: _scores(run_dir, better, attack), worse: _scores(run_dir, worse, attack)})
        if len(scores) != 2:
            continue
        item = compare(scores[better], scores[worse], "positive", a_name=better, b_name=worse,
                       resamples=RESAMPLES, seed=SEED)
        item["attack"] = attack
        if source != "paper":
            item["finding"] = direction(item["ci_low"], item["ci_high"], (better, worse))
        comparisons.append(item)
    if not comparisons:
        return None
    claim = {"id": claim_id, "source": source, "statement": statement, "model": None, "metric": "mAP",
             "kind": "claim" if source == "paper" else "comparison", "comparisons": comparisons,
             "verdict": combine(c["verdict"] for c in comparisons)}
    if source != "paper":
        findings = {c["finding"] for c in comparisons}
        claim["finding"] = findings.pop() if len(findings) == 1 else "mixed"
    return claim


def study_claims(models: Mapping[str, Any], run_dir: str | Path) -> list[dict[str, Any]]:
    """The claims the study's models and attacks allow, in the paper's order (a JSON-able list)."""
    run_dir = Path(run_dir)
    claims = [
        _ranking_claim(run_dir, models, "mainstay", NON_TARGETED_RIVALS, True, "table1-nontargeted",
                       "The mainstay attack gives the lowest mAP of the non-targeted attacks on the undefended "
                       "model", "mAP"),
        _ranking_claim(run_dir, models, "mainstay-targeted", TARGETED_RIVALS, False, "table1-targeted",
                       "The targeted mainstay attack gives the highest t-mAP of the targeted attacks on the "
                       "undefended model", "t-mAP"),
        _model_claim(run_dir, models, "saat", "atrdh", "table2-saat-atrdh",
                     "SAAT keeps a higher mAP than ATRDH under every attack", "paper"),
        _model_claim(run_dir, models, "cgat", "saat", "cgat-saat",
                     "CgAT against SAAT: which keeps the higher mAP under attack", "not a paper claim"),
    ]
    return [claim for claim in claims if claim is not None]
