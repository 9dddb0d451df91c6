"""The report's query-detection section (``card["detection"]``, written by the study with ``detection.enabled``):
one table row per model and attack (AUROC, TPR at the clean-chosen threshold, realised FPR, mAP of the attacked
queries and of those the detector lets through), one line per model saying what the detector stops, and the ROC
curves of every model (one panel each). The detector is after HashVFL (Qiu et al., IEEE TIFS 2024)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hashguard.report.card import as_dict, attack_display_name, read_models
from hashguard.report.document import Paragraph, Strong, Table
from hashguard.report.formatting import as_float, fmt_int, fmt_map, fmt_num, fmt_pct

#: the words of each verdict of :mod:`hashguard.pipeline.detection_stage`
VERDICTS = {
    "non-adaptive only": "stops non-adaptive attacks only: the detector-aware attack gets through",
    "adaptive too": "stops the detector-aware attack too",
    "none": "stops no attack at its threshold",
    "non-adaptive (no adaptive attack run)": "stops some non-adaptive attack (no detector-aware attack was run)",
}


def detection_models(card: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``[(model key, record)]`` of the card's detection section, in the card's model order."""
    models = as_dict(as_dict(card.get("detection")).get("models"))
    order = [model.key for model in read_models(card)]  # the report's canonical model order
    keys = [k for k in order if k in models] + [k for k in models if k not in order]
    return [(key, as_dict(models[key])) for key in keys if as_dict(models[key])]


def _attack_label(name: str, record: Mapping[str, Any]) -> str:
    label = attack_display_name(name)
    return f"{label} (adaptive)" if record.get("adaptive") and "aware" not in label else label


def detection_table(card: Mapping[str, Any]) -> Table | None:
    """One row per model and attack; None when the card has no detection record."""
    rows = []
    targeted = False
    for _, model in detection_models(card):
        label = str(model.get("label") or "")
        for name, raw in as_dict(model.get("attacks")).items():
            record = as_dict(raw)
            targeted = targeted or bool(record.get("targeted"))
            metric = "t-mAP " if record.get("targeted") else ""
            rows.append((
                label,
                _attack_label(name, record),
                fmt_num(record.get("auroc"), 3),
                fmt_pct(record.get("tpr")),
                fmt_pct(record.get("fpr")),
                f"{metric}{fmt_map(record.get('adversarial_map'))}",
                fmt_map(record.get("let_through_map")),
                fmt_pct(record.get("let_through")),
            ))
    if not rows:
        return None
    detection = as_dict(card.get("detection"))
    fpr = as_float(detection.get("fpr"))
    caption = (
        f"Detector {detection.get('detector', '?')}: threshold chosen on the clean codes of the attacked queries at "
        f"{fmt_pct(fpr)} FPR (flag when the score is above it); AUROC counts ties 1/2. mAP: of every attacked "
        f"query{' (t-mAP for a targeted attack)' if targeted else ''}; let through: of the queries the detector "
        "does not flag (— when it flags them all)."
    )
    header = ("Model", "Attack", "AUROC", "TPR", "FPR", "mAP (%) attacked", "mAP (%) let through", "Let through")
    return Table(header, tuple(rows), (False, False, True, True, True, True, True, True), caption)


def detection_paragraphs(card: Mapping[str, Any]) -> list[Paragraph]:
    """One line per model: what the detector stops (TPR at or above the card's ``stops_at_tpr``)."""
    detection = as_dict(card.get("detection"))
    stops = fmt_pct(detection.get("stops_at_tpr"))
    lines = []
    for _, model in detection_models(card):
        verdict = str(model.get("verdict") or "")
        if not verdict:
            continue
        count = model.get("reference_codes")
        reference = f" ({fmt_int(count)} reference codes)" if count is not None else ""
        lines.append(Paragraph((f"{model.get('label', '')}{reference}: the detector ",
                                Strong(VERDICTS.get(verdict, verdict)), f" (an attack is stopped at TPR ≥ {stops}).")))
    return lines


def roc_figure(card: Mapping[str, Any]) -> bytes | None:
    """ROC curves (FPR against TPR) of every attack, one panel per model; None when there is nothing to draw."""
    from hashguard.report.figures import _figure, _png

    panels = [(m, as_dict(m.get("attacks"))) for _, m in detection_models(card)]
    panels = [(m, a) for m, a in panels if a]
    if not panels:
        return None
    fig = _figure(3.6 * len(panels) + 0.6, 3.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (model, attacks) in zip(axes, panels, strict=True):
        for name, raw in attacks.items():
            record = as_dict(raw)
            roc = as_dict(record.get("roc"))
            fpr, tpr = roc.get("fpr"), roc.get("tpr")
            if not isinstance(fpr, Sequence) or not isinstance(tpr, Sequence) or len(fpr) != len(tpr):
                continue
            style = "--" if record.get("adaptive") else "-"
            ax.plot(fpr, tpr, style, drawstyle="default", label=f"{_attack_label(name, record)} "
                    f"({fmt_num(record.get('auroc'), 2)})")
        ax.plot([0, 1], [0, 1], ":", color="#888888", linewidth=0.8)
        ax.set_title(str(model.get("label") or ""), fontsize=9)
        ax.set_xlabel("false-positive rate (clean)")
        ax.set_ylabel("true-positive rate (attacked)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    return _png(fig)
