"""Report blocks for the study's claims (``card["claims"]``, computed by the study) and its protocol
(``card["protocol"]`` and the per-attack budgets in ``card["threat_model"]["attacks"]``).

Every field is optional: a card without them (an older study, a partial one) simply gets no such blocks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hashguard.report.card import as_dict, attack_display_name, display_name
from hashguard.report.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from hashguard.report.document import Block, Headline, Inline, Paragraph, Strong, Table
from hashguard.report.formatting import MISSING, as_float, fmt_eps, fmt_int, fmt_map


def _points(value: Any, signed: bool = True) -> str:
    """A difference of two mAPs in percentage points: ``-0.0612`` -> ``"−6.12"``."""
    number = as_float(value)
    if number is None:
        return MISSING
    text = f"{100.0 * number:+.2f}" if signed else f"{100.0 * number:.2f}"
    return text.replace("-", "\u2212")


def read_claims(card: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The well-formed claims of the card (each a mapping with a list of comparison mappings)."""
    claims = card.get("claims")
    if not isinstance(claims, Sequence) or isinstance(claims, str):
        return []
    out = []
    for claim in claims:
        if not isinstance(claim, Mapping):
            continue
        comparisons = claim.get("comparisons")
        if not isinstance(comparisons, Sequence) or isinstance(comparisons, str):
            continue
        rows = [dict(c) for c in comparisons if isinstance(c, Mapping)]
        if rows:
            out.append({**dict(claim), "comparisons": rows})
    return out


def _name(key: Any, claim: Mapping[str, Any]) -> str:
    """Display name of one side of a comparison: an attack (ranking claims) or a model (defense claims)."""
    return display_name(str(key))


def is_paper_claim(claim: Mapping[str, Any]) -> bool:
    """Whether the claim is one the paper makes (otherwise it is a comparison the report adds)."""
    return claim.get("kind", "claim") == "claim" and claim.get("source", "paper") == "paper"


def outcome(claim: Mapping[str, Any]) -> str:
    """The claim's verdict, or for a comparison that is not a paper claim its finding ("cgat higher", ...)."""
    if not is_paper_claim(claim):
        finding = str(claim.get("finding") or INCONCLUSIVE)
        key, _, rest = finding.partition(" ")
        if rest == "higher":  # "<model> higher": the model's display name
            finding = f"{display_name(key)} higher"
        return finding
    return str(claim.get("verdict") or INCONCLUSIVE)


def _comparison_label(comparison: Mapping[str, Any], claim: Mapping[str, Any]) -> str:
    a, b = _name(comparison.get("a"), claim), _name(comparison.get("b"), claim)
    attack = comparison.get("attack")
    where = f" under {attack_display_name(str(attack))}" if attack else ""
    return f"{a} − {b}{where}"


def claim_table(claim: Mapping[str, Any]) -> Table:
    """One row per paired comparison of a claim."""
    metric = str(claim.get("metric") or "mAP")
    paper = is_paper_claim(claim)
    header = ("Comparison", f"{metric} A (%)", f"{metric} B (%)", "Mean A − B (points)", "95 % interval (points)",
              "Queries", "Verdict" if paper else "Finding")
    rows: list[tuple[Inline, ...]] = []
    for c in claim["comparisons"]:
        interval = f"[{_points(c.get('ci_low'))}, {_points(c.get('ci_high'))}]"
        result = str(c.get("verdict") or MISSING) if paper else outcome({"kind": "comparison", **c})
        rows.append((_comparison_label(c, claim), fmt_map(c.get("mean_a")), fmt_map(c.get("mean_b")),
                     _points(c.get("mean_diff")), interval, fmt_int(c.get("n")), result))
    side = "below" if any(c.get("side") == "negative" for c in claim["comparisons"]) else "above"
    if paper:
        caption = (f"The claim holds when A − B is {side} 0: reproduced if the interval lies entirely on that "
                   "side, not reproduced if entirely on the other, inconclusive if it contains 0.")
    else:
        caption = "Not a claim of the paper: which model keeps the higher mAP, where the interval excludes 0."
    return Table(header, tuple(rows), (False, True, True, True, True, True, False), caption)


def claims_blocks(card: Mapping[str, Any]) -> list[Block]:
    """The Claims section's body (without its heading): a note on the statistics, then per claim its
    statement and verdict and a table of its comparisons; empty when the card has no claims."""
    claims = read_claims(card)
    if not claims:
        return []
    blocks: list[Block] = [Paragraph((
        "Each comparison is paired over the same attacked queries: the per-query AP (t-AP for targeted "
        "attacks) of A minus that of B. The interval is a percentile bootstrap of the mean difference over "
        "queries (2,000 resamples, seed 0). A claim over several rivals holds only if every comparison does.",
    ), True)]
    for claim in claims:
        source = "paper" if is_paper_claim(claim) else "not a paper claim"
        label = "verdict" if is_paper_claim(claim) else "finding"
        blocks.append(Paragraph((Strong(str(claim.get("statement") or claim.get("id") or "claim")),
                                 f" ({source}) — {label}: ", Strong(outcome(claim)), ".")))
        blocks.append(claim_table(claim))
    return blocks


def _lower_first(text: str) -> str:
    """``"The mainstay ..."`` -> ``"the mainstay ..."``; names such as ``SAAT`` keep their case."""
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        return text[0].lower() + text[1:]
    return text


def _sentence(claim: Mapping[str, Any]) -> tuple[Inline, ...]:
    """One headline sentence on a claim, never crediting a method the measurement shows beaten."""
    comparisons = claim["comparisons"]
    result = outcome(claim)
    if not is_paper_claim(claim):
        a, b = _name(comparisons[0].get("a"), claim), _name(comparisons[0].get("b"), claim)
        if result == "mixed":
            return (f"{a} vs {b} (not a paper claim): mixed — each is higher under some attack.",)
        if result.endswith(" higher"):
            return (f"{a} vs {b} (not a paper claim): ", Strong(result), " under every attack run.")
        return (f"{a} vs {b} (not a paper claim): no clear difference.",)
    subject = _name(comparisons[0].get("a"), claim)
    statement = str(claim.get("statement") or claim.get("id"))
    if result == REPRODUCED:
        return ("Paper claim ", Strong("reproduced"), f": {_lower_first(statement)}.")
    if result == NOT_REPRODUCED:
        beaten_by = [c for c in comparisons if c.get("verdict") == NOT_REPRODUCED]
        if claim.get("model") is None:  # two models under several attacks (Table II)
            attacks = ", ".join(attack_display_name(str(c.get("attack"))) for c in beaten_by)
            other = _name(comparisons[0].get("b"), claim)
            return ("Paper claim ", Strong("not reproduced"), f": {other} keeps a higher mAP than {subject} "
                    f"under {attacks}.")
        who = ", ".join(_name(c.get("b"), claim) for c in beaten_by)
        better = "lower" if comparisons[0].get("side") == "negative" else "higher"
        return ("Paper claim ", Strong("not reproduced"), f": {who} gives a {better} {claim.get('metric', 'mAP')} "
                f"than {subject}.")
    return ("Paper claim ", Strong("inconclusive"), f" (an interval contains 0): {_lower_first(statement)}.")


def claims_headline(card: Mapping[str, Any]) -> Headline | None:
    """The claims' verdicts as one headline, or None without claims."""
    claims = read_claims(card)
    if not claims:
        return None
    parts: list[Inline] = []
    for claim in claims:
        if parts:
            parts.append(" ")
        parts.extend(_sentence(claim))
    return Headline(tuple(parts))


# --------------------------------------------------------------------------------------------- protocol


def protocol_blocks(card: Mapping[str, Any]) -> list[Block]:
    """The protocol's name and the departures from the paper's protocol; empty when the card has neither."""
    protocol = as_dict(card.get("protocol"))
    name = protocol.get("name")
    departures = protocol.get("departures")
    items = [str(d) for d in departures] if isinstance(departures, Sequence) and not isinstance(departures, str) else []
    if not name and not items:
        return []
    blocks: list[Block] = []
    if name:
        blocks.append(Paragraph(("Protocol: ", Strong(str(name)), ".")))
    if items:
        rows = tuple((str(i), text) for i, text in enumerate(items, 1))
        blocks.append(Table(("#", "Departure from the paper's protocol"), rows, (True, False)))
    else:
        blocks.append(Paragraph(("No departure from the paper's protocol.",), True))
    return blocks


def attack_budgets(card: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per attack name, its budget from ``card["threat_model"]["attacks"]`` (empty when absent)."""
    attacks = as_dict(as_dict(card.get("threat_model")).get("attacks"))
    return {str(k): dict(v) for k, v in attacks.items() if isinstance(v, Mapping)}


BUDGET_HEADER = ("ε", "Iterations", "Optimizer", "Step")


def budget_cells(budget: Mapping[str, Any] | None) -> tuple[str, str, str, str]:
    """The budget columns of one attack: ε, iterations, optimizer, step (dashes when unknown)."""
    if not budget:
        return (MISSING,) * 4  # type: ignore[return-value]
    eps = as_float(budget.get("eps"))
    label = budget.get("eps_label")
    eps_text = str(label) if label else (fmt_eps(eps) if eps is not None else MISSING)
    iterations = fmt_int(budget.get("iterations"))
    optimizer = str(budget.get("optimizer")) if budget.get("optimizer") else MISSING
    step = as_float(budget.get("step"))
    if step is None:
        step_text = MISSING
    elif abs(step * 255 - round(step * 255)) < 1e-6 and step < 1:
        step_text = f"{round(step * 255)}/255"
    else:
        step_text = f"{step:g}"
    return (eps_text, iterations, optimizer, step_text)
