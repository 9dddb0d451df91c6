"""The terminal summary of a study: clean mAP and every attack's mAP (t-mAP for targeted attacks) per model."""

from __future__ import annotations

from typing import Any


def _cell(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.2f}"


def summary_table(card: dict[str, Any]) -> str:
    """A fixed-width table: one row per attack, one column per model (values in percent)."""
    models = card.get("models") or {}
    if not models:
        return "no results"
    keys = list(models)
    attacks: list[str] = []
    for key in keys:
        for name in (models[key].get("attacks") or {}):
            if name not in attacks:
                attacks.append(name)
    rows = [["clean mAP", *(_cell((models[k].get("clean") or {}).get("map")) for k in keys)]]
    for name in attacks:
        cells = []
        targeted = False
        for key in keys:
            result = (models[key].get("attacks") or {}).get(name)
            if result is None:
                cells.append("-")
                continue
            targeted = bool(result.get("targeted"))
            cells.append(_cell(result.get("adv_tmap") if targeted else result.get("adv_map")))
        rows.append([f"{name} ({'t-mAP' if targeted else 'mAP'})", *cells])
    header = ["% (eps " + str((card.get("threat_model") or {}).get("eps_label", "?")) + ")", *keys]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
             for row in [header, *rows]]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
