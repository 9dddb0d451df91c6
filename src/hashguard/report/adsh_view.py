"""Report lines for a study of an ADSH model (Jiang and Li, "Asymmetric Deep Supervised Hashing", AAAI 2018):
the retrieval protocol it follows (``card["adsh"]``) and where the mainstay codes came from, with the mainstay
attack's clean and attacked mAP for both sources (``card["mainstay_codes"]``). Both fields are optional: a card
without them gets no such line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hashguard.report.card import as_dict, display_name
from hashguard.report.document import Paragraph, Strong
from hashguard.report.formatting import fmt_int, fmt_map

#: the words for ``mainstay_from``
SOURCES = {
    "network": "the network's sign codes of the training items",
    "database": "the learned database codes V of the training pool",
}
PROTOCOLS = {
    "adsh": "ADSH's own: the training pool is the database, its codes are V",
    "saat": "SAAT protocol: separate database split, encoded by the network",
}


def protocol_paragraph(card: Mapping[str, Any]) -> Paragraph | None:
    """One line naming the ADSH model's retrieval protocol, or None when the card has no ADSH record."""
    record = as_dict(card.get("adsh"))
    if not record:
        return None
    protocol = str(record.get("protocol", "adsh"))
    line = str(record.get("line") or PROTOCOLS.get(protocol, protocol))
    pool = record.get("pool_items")
    size = f" ({fmt_int(pool)} items)" if isinstance(pool, int) and protocol == "adsh" else ""
    return Paragraph(("Retrieval protocol of the ADSH model: ", Strong(line), f"{size}."))


def _source(value: Any) -> str:
    return SOURCES.get(str(value), str(value))


def mainstay_paragraph(card: Mapping[str, Any], labels: Mapping[str, str]) -> Paragraph | None:
    """One line: the source of the mainstay codes of the attacks (and of the defenses that build them), then the
    mainstay attack's clean -> attacked mAP with codes from each source; None when the card does not say."""
    record = as_dict(card.get("mainstay_codes"))
    if not record:
        return None
    used = str(record.get("attack_source", "network"))
    text = f"Mainstay codes of the mainstay attacks (Table I rows): from {_source(used)}"
    text += " (the paper's protocol)" if used == "network" else ""
    defenses = as_dict(record.get("defense_sources"))
    if defenses:
        text += "; " + ", ".join(f"{display_name(str(k))}: from {_source(v)}" for k, v in defenses.items())
    results = record.get("results")
    rows = [as_dict(r) for r in results] if isinstance(results, Sequence) and not isinstance(results, str) else []
    rows = [r for r in rows if r]
    if rows:
        model = labels.get(str(record.get("model")), str(record.get("model", "the model")))
        parts = [f"from {'V' if r.get('source') == 'database' else 'the network'} "
                 f"{fmt_map(r.get('clean_map'))} → {fmt_map(r.get('adv_map'))}" for r in rows]
        queries = rows[0].get("num_queries")
        count = f" on {fmt_int(queries)} queries" if queries is not None else ""
        text += f". Mainstay attack on {model}, clean → attacked mAP (%) with mainstay codes {'; '.join(parts)}{count}"
    return Paragraph((text + ".",), True)
