"""The terminal summary of a study: clean mAP and every attack's mAP (t-mAP for targeted attacks) per model.

Every number uses the study's one mAP cut-off (``evaluation.topk``). The clean row is the clean mAP of the
attacked queries (the same queries as the attack rows); when the study attacks only part of the query split,
a second row gives the clean mAP of every query, labelled as such.
"""

from __future__ import annotations

from typing import Any


def _cell(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.2f}"


def _attacked_clean_map(model: dict[str, Any]) -> float | None:
    """Clean mAP of the attacked queries (every attack of a model attacks the same first N queries)."""
    for result in (model.get("attacks") or {}).values():
        if result.get("clean_map") is not None:
            return result["clean_map"]
    return None


def summary_table(card: dict[str, Any]) -> str:
    """A fixed-width table: one row per attack, one column per model (values in percent)."""
    models = card.get("models") or {}
    if not models:
        return "no results"
    threat = card.get("threat_model") or {}
    budgets = threat.get("attacks") or {}
    keys = list(models)
    attacks: list[str] = []
    for key in keys:
        for name in (models[key].get("attacks") or {}):
            if name not in attacks:
                attacks.append(name)
    queries = threat.get("queries")
    attacked = [_attacked_clean_map(models[k]) for k in keys]
    every = [(models[k].get("clean") or {}).get("map") for k in keys]
    total = max((int(models[k]["clean"]["n_queries"]) for k in keys
                 if (models[k].get("clean") or {}).get("n_queries") is not None), default=None)
    rows = []
    if any(value is not None for value in attacked):
        rows.append([f"clean mAP ({queries if queries is not None else 'attacked'} attacked queries)",
                     *(_cell(v) for v in attacked)])
    if not rows or (queries is not None and (total is None or queries < total)):
        rows.append([f"clean mAP (all {total if total is not None else ''} queries)".replace("  ", " "),
                     *(_cell(v) for v in every)])
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
        budget = budgets.get(name) or {}
        where = f", eps {budget['eps_label']}" if budget.get("eps_label") and name != "prosgan" else ""
        rows.append([f"{name} ({'t-mAP' if targeted else 'mAP'}{where})", *cells])
    topk = threat.get("topk")
    header = [f"% (mAP@{'all' if topk is None else topk})", *keys]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
             for row in [header, *rows]]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    departures = (card.get("protocol") or {}).get("departures")
    if departures is not None:
        name = (card.get("protocol") or {}).get("name", "paper")
        lines.append(f"departures from the {name} protocol: {len(departures) or 'none'}"
                     + (" (listed in results.json under protocol.departures)" if departures else ""))
    return "\n".join(lines)
