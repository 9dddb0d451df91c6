"""What the query detector stops (after HashVFL, Qiu et al., IEEE TIFS 2024): the study's per-model verdict on
hand-made TPRs, and the report's words for it, so that a detector that only stops non-adaptive attacks is labelled
as such and the detector-aware attack's row is marked."""

from __future__ import annotations

import pytest

from hashguard.pipeline.detection_stage import STOPS, _verdict
from hashguard.report.card import use_card_names
from hashguard.report.detection_view import VERDICTS, detection_paragraphs, detection_table
from hashguard.report.document import Strong


def attacks(**tprs: float) -> dict[str, dict]:
    """``{name: {"tpr": t, "adaptive": ...}}``; the name ``adaptive`` stands for the detector-aware attack."""
    return {name: {"tpr": tpr, "adaptive": name == "adaptive"} for name, tpr in tprs.items()}


@pytest.mark.parametrize(
    ("tprs", "expected"),
    [
        ({"mainstay": 0.9, "hag": 0.1, "adaptive": 0.2}, "non-adaptive only"),
        ({"mainstay": STOPS, "adaptive": STOPS - 0.01}, "non-adaptive only"),  # TPR at the bar counts as stopped
        ({"mainstay": 0.9, "adaptive": STOPS}, "adaptive too"),
        ({"mainstay": 0.1, "adaptive": 0.7}, "adaptive too"),  # the adaptive attack decides "too"
        ({"mainstay": 0.49, "hag": 0.0, "adaptive": 0.3}, "none"),
        ({"mainstay": 0.8}, "non-adaptive (no adaptive attack run)"),  # nothing to compare: not "only"
        ({"mainstay": 0.2}, "none"),
        ({}, "none"),
    ],
)
def test_verdict_by_hand(tprs, expected):
    assert _verdict(attacks(**tprs)) == expected


def _card(verdict: str, tprs: dict[str, float]) -> dict:
    records = {name: {"tpr": tpr, "fpr": 0.04, "auroc": 0.8, "adversarial_map": 0.3, "let_through_map": 0.4,
                      "let_through": 1 - tpr, "adaptive": name == "mainstay-adaptive", "targeted": False}
               for name, tpr in tprs.items()}
    return {"names": {"attacks": [["mainstay", "Mainstay"], ["mainstay-adaptive", "Mainstay (detector-aware)"]]},
            "detection": {"detector": "hamming", "fpr": 0.05, "stops_at_tpr": STOPS,
                          "models": {"undefended": {"label": "CSQ (undefended)", "verdict": verdict,
                                                    "reference_codes": 10, "attacks": records}}}}


def test_a_detector_that_only_stops_non_adaptive_attacks_is_labelled_so():
    tprs = {"mainstay": 0.8, "mainstay-adaptive": 0.1}
    card = _card(_verdict(attacks(mainstay=0.8, adaptive=0.1)), tprs)
    use_card_names(card)
    try:
        (paragraph,) = detection_paragraphs(card)
        strong = [part.text for part in paragraph.parts if isinstance(part, Strong)]
        assert strong == [VERDICTS["non-adaptive only"]]
        assert strong[0].startswith("stops non-adaptive attacks only")
        table = detection_table(card)
        assert table is not None
        assert [row[1] for row in table.rows] == ["Mainstay", "Mainstay (detector-aware)"]
        assert [row[3] for row in table.rows] == ["80.00%", "10.00%"]
    finally:
        use_card_names({})
    # without the plug-ins' display names the adaptive row is still marked
    plain = detection_table(card)
    assert plain is not None and [row[1] for row in plain.rows] == ["mainstay", "mainstay-adaptive (adaptive)"]
