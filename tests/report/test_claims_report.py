"""The report's claims, protocol and attack-budget blocks from synthetic cards (no figures drawn)."""

from __future__ import annotations

import copy
import re
from typing import Any

import numpy as np
import pytest

from hashguard.report import build_document, render_html, render_markdown
from hashguard.report.claims import compare, extreme_claim
from hashguard.report.sample import sample_card


def _claim(claim_id: str, statement: str, model: str | None, metric: str, result: dict[str, Any],
           source: str = "paper") -> dict[str, Any]:
    kind = "claim" if source == "paper" else "comparison"
    return {"id": claim_id, "source": source, "kind": kind, "statement": statement, "model": model,
            "metric": metric, **result}


def _card_with(claims: list[dict[str, Any]]) -> dict[str, Any]:
    card = sample_card()
    card["claims"] = claims
    return card


def _markdown(card: dict[str, Any]) -> str:
    return render_markdown(build_document(card, run_dir=None, with_figures=False))  # type: ignore[arg-type]


def _section(md: str, title: str) -> str:
    return md.split(f"## {title}")[1].split("\n## ")[0]


def _headline(md: str) -> str:
    return next(line for line in md.splitlines() if line.startswith("> Paper claim") or "(not a paper claim)" in line)


BASE = np.linspace(0.2, 0.8, 50)


def test_not_reproduced_ranking_names_the_winner_and_never_credits_the_mainstay_attack() -> None:
    # SDHA 3 points below the mainstay attack on every query, HAG 5 points above
    scores = {"mainstay": BASE, "hag": BASE + 0.05, "sdha": BASE - 0.03}
    claim = _claim("table1-nontargeted", "The mainstay attack gives the lowest mAP of the non-targeted attacks",
                   "undefended", "mAP", extreme_claim(scores, "mainstay", lowest=True))
    md = _markdown(_card_with([claim]))
    headline = _headline(md)
    assert headline == "> Paper claim **not reproduced**: SDHA gives a lower mAP than Mainstay."
    section = _section(md, "Claims and verdicts")
    assert "(paper) — verdict: **not reproduced**" in section
    # means, paired mean difference, interval (degenerate: constant differences), queries, verdict per pair
    assert "| Mainstay − HAG | 50.00 | 55.00 | −5.00 | \\[−5.00, −5.00\\] | 50 | reproduced |" in section
    assert "| Mainstay − SDHA | 50.00 | 47.00 | +3.00 | \\[+3.00, +3.00\\] | 50 | not reproduced |" in section
    assert "strongest" not in md.split("## Claims")[0]


def test_reproduced_and_inconclusive_claims() -> None:
    noise = np.where(np.arange(50) % 2 == 0, 0.04, -0.04)  # mean 0, so the interval straddles 0
    targeted = _claim("table1-targeted", "The targeted mainstay attack gives the highest t-mAP", "undefended",
                      "t-mAP", extreme_claim({"mainstay-targeted": BASE, "p2p": BASE + noise}, "mainstay-targeted",
                                             lowest=False))
    ranking = _claim("table1-nontargeted", "The mainstay attack gives the lowest mAP", "undefended", "mAP",
                     extreme_claim({"mainstay": BASE, "hag": BASE + 0.1}, "mainstay", lowest=True))
    md = _markdown(_card_with([ranking, targeted]))
    assert ("> Paper claim **reproduced**: the mainstay attack gives the lowest mAP. Paper claim **inconclusive** "
            "(an interval contains 0): the targeted mainstay attack gives the highest t-mAP.") in md
    section = _section(md, "Claims and verdicts")
    row = next(line for line in section.splitlines() if line.startswith("| Mainstay (targeted) − P2P"))
    low, high = (float(x.replace("−", "-")) for x in re.findall(r"[−+]\d+\.\d+", row.split("|")[5]))
    assert low < 0 < high and row.endswith("| 50 | inconclusive |")


def test_defense_claims_per_attack_and_the_cgat_comparison_is_labelled() -> None:
    saat_vs_atrdh = [compare(BASE + 0.04, BASE, "positive", a_name="saat", b_name="atrdh"),
                     compare(BASE - 0.02, BASE, "positive", a_name="saat", b_name="atrdh")]
    saat_vs_atrdh[0]["attack"], saat_vs_atrdh[1]["attack"] = "mainstay", "hag"
    cgat = compare(BASE + 0.01, BASE, "positive", a_name="cgat", b_name="saat")
    cgat.update(attack="mainstay", finding="cgat higher")
    claims = [
        _claim("table2-saat-atrdh", "SAAT keeps a higher mAP than ATRDH under every attack", None, "mAP",
               {"verdict": "not reproduced", "comparisons": saat_vs_atrdh}),
        _claim("cgat-saat", "CgAT against SAAT: which keeps the higher mAP under attack", None, "mAP",
               {"verdict": "reproduced", "finding": "cgat higher", "comparisons": [cgat]},
               source="not a paper claim"),
    ]
    md = _markdown(_card_with(claims))
    assert ("> Paper claim **not reproduced**: ATRDH keeps a higher mAP than SAAT under HAG. CgAT vs SAAT (not a "
            "paper claim): **CgAT higher** under every attack run.") in md
    section = _section(md, "Claims and verdicts")
    assert "| SAAT − ATRDH under Mainstay | 54.00 | 50.00 | +4.00 | \\[+4.00, +4.00\\] | 50 | reproduced |" in section
    assert "| SAAT − ATRDH under HAG | 48.00 | 50.00 | −2.00 |" in section
    assert "(not a paper claim) — finding: **CgAT higher**" in section
    assert "| CgAT − SAAT under Mainstay | 51.00 | 50.00 | +1.00 | \\[+1.00, +1.00\\] | 50 | CgAT higher |" in section


def test_protocol_section_and_budget_columns_and_their_absence() -> None:
    card = sample_card()
    md = _markdown(card)
    protocol = _section(md, "Protocol and departures")
    assert "Protocol: **demo**." in protocol
    assert "| 2 | attacks.override.iterations = 20 (protocol: each attack's own, 100-2000) |" in protocol
    assert md.index("## Claims and verdicts") < md.index("## Protocol and departures") < md.index("## Attacks")
    header = next(line for line in _section(md, "Attacks (Table I)").splitlines() if line.startswith("| Attack"))
    assert header.startswith("| Attack | Metric | ε | Iterations | Optimizer | Step | CSQ (undefended) (%)")
    # a card without the protocol, the budgets and the claims: no such section, no budget columns, no error
    bare = copy.deepcopy(card)
    for key in ("protocol", "claims"):
        bare.pop(key)
    bare["threat_model"].pop("attacks")
    doc = build_document(bare, run_dir=None, with_figures=False)  # type: ignore[arg-type]
    md, html = render_markdown(doc), render_html(doc)
    assert "## Protocol" not in md and "## Claims" not in md and 'id="claims"' not in html
    header = next(line for line in _section(md, "Attacks (Table I)").splitlines() if line.startswith("| Attack"))
    assert header.startswith("| Attack | Metric | CSQ (undefended) (%)")
    # a protocol with a name and no departure says so
    card["protocol"] = {"name": "paper", "departures": []}
    assert "No departure from the paper's protocol." in _markdown(card)


@pytest.mark.parametrize("budget", [None, {}, {"eps": "big", "iterations": None}])
def test_damaged_budgets_show_dashes(budget: Any) -> None:
    card = sample_card()
    card["threat_model"]["attacks"]["hag"] = budget
    table = _section(_markdown(card), "Attacks (Table I)")
    assert "| HAG | mAP | — | — | — | — |" in table


def test_adsh_protocol_and_mainstay_source_lines() -> None:
    """A card of an ADSH model names its retrieval protocol once (Protocol section) and the source of the mainstay
    codes once, with the mainstay attack's numbers for both sources (Attacks section); other cards say neither."""
    card = sample_card()
    md = _markdown(card)
    assert "Retrieval protocol of the ADSH model" not in md and "Mainstay codes of" not in md
    card["adsh"] = {"protocol": "saat", "pool_items": 300}
    card["mainstay_codes"] = {
        "attack_source": "database", "defense_sources": {"saat": "network"}, "model": "undefended",
        "results": [{"source": "database", "clean_map": 0.8, "adv_map": 0.25, "num_queries": 60},
                    {"source": "network", "clean_map": 0.8, "adv_map": 0.5, "num_queries": 60}],
    }
    md = _markdown(card)
    protocol = _section(md, "Protocol and departures")
    assert ("Retrieval protocol of the ADSH model: **SAAT protocol: separate database split, encoded by the "
            "network**.") in protocol and md.count("Retrieval protocol of the ADSH model") == 1
    attacks = _section(md, "Attacks (Table I)")
    assert md.count("Mainstay codes of the mainstay attacks") == 1
    assert ("Mainstay codes of the mainstay attacks (Table I rows): from the learned database codes V of the "
            "training pool; SAAT: from the network's sign codes of the training items. Mainstay attack on CSQ "
            "(undefended), clean → attacked mAP (%) with mainstay codes from V 80.00 → 25.00; from the network "
            "80.00 → 50.00 on 60 queries.") in attacks
    card["adsh"] = {"protocol": "adsh", "pool_items": 300}
    assert ("**ADSH's own: the training pool is the database, its codes are V** (300 items)."
            in _section(_markdown(card), "Protocol and departures"))
