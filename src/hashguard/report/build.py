"""Build the report document from a results card (see :mod:`hashguard.report.card` for the schema)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hashguard.report import figures
from hashguard.report.adsh_view import mainstay_paragraph, protocol_paragraph
from hashguard.report.card import (
    AttackEntry,
    ModelResult,
    as_dict,
    attack_display_name,
    attack_order,
    dig,
    display_name,
    read_models,
    use_card_names,
)
from hashguard.report.claims_view import (
    BUDGET_HEADER,
    attack_budgets,
    budget_cells,
    claims_blocks,
    claims_headline,
    protocol_blocks,
)
from hashguard.report.detection_view import detection_paragraphs, detection_table, roc_figure
from hashguard.report.document import (
    Code,
    Document,
    Figure,
    Heading,
    Headline,
    Inline,
    Paragraph,
    Stat,
    Stats,
    Strong,
    Table,
)
from hashguard.report.formatting import MISSING, as_float, fmt_eps, fmt_int, fmt_map, fmt_num, fmt_pct, fmt_seconds

log = logging.getLogger(__name__)

#: Section anchors, in document order (tests and links rely on them).
SECTIONS = {
    "overview": "Overview",
    "claims": "Claims and verdicts",
    "protocol": "Protocol and departures",
    "attacks": "Attacks (Table I)",
    "defenses": "Defenses (Table II)",
    "pr-curves": "Precision-recall curves",
    "precision-at-n": "Precision@N",
    "eps-sweep": "ε sweep",
    "retrieval": "Retrieval examples",
    "detection": "Query detection",
    "attack-details": "Attack details",
    "timings": "Stage timings",
    "provenance": "Reproducibility",
}


def _text(value: Any) -> str:
    """A free-form card value as short text: ``[1, 28, 28]`` -> ``"1, 28, 28"``, ``{"a": 1}`` -> ``"a 1"``."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    scalar = (str, int, float, type(None))
    if isinstance(value, (list, tuple)) and all(isinstance(v, scalar) for v in value):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, Mapping) and all(isinstance(v, scalar) for v in value.values()):
        return " · ".join(f"{k} {_text(v)}" for k, v in value.items())
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _heading(anchor: str, text: str | None = None, level: int = 2) -> Heading:
    return Heading(text or SECTIONS[anchor], anchor, level)


def _bold_best(values: Sequence[float | None], lower_is_better: bool) -> list[bool]:
    """Which entries hold the best value (only when at least two values are present)."""
    present = [v for v in values if v is not None]
    if len(present) < 2:
        return [False] * len(values)
    best = min(present) if lower_is_better else max(present)
    return [v is not None and abs(v - best) < 1e-12 for v in values]


def _cell(text: str, bold: bool) -> Inline:
    return Strong(text) if bold and text != MISSING else text


# ------------------------------------------------------------------------------------------------ overview


def primary_attack(model: ModelResult, targeted: bool) -> AttackEntry | None:
    """The attack the headline talks about: the mainstay attack when present, else the strongest one."""
    preferred = "mainstay-targeted" if targeted else "mainstay"
    candidates = [a for a in model.attacks.values() if a.targeted == targeted and a.adv is not None]
    for attack in candidates:
        if attack.name == preferred:
            return attack
    if not candidates:
        return None
    key = (lambda a: -a.adv) if targeted else (lambda a: a.adv)  # type: ignore[operator]
    return sorted(candidates, key=key)[0]


def primary_defense(models: Sequence[ModelResult]) -> ModelResult | None:
    """SAAT when present, else the first defended model."""
    defended = [m for m in models[1:]] if models else []
    for model in defended:
        if model.key == "saat":
            return model
    return defended[0] if defended else None


def headline(models: Sequence[ModelResult]) -> list[Headline]:
    """One or two sentences with the study's key numbers."""
    if not models:
        return []
    base = models[0]
    lines: list[Headline] = []
    attack = primary_attack(base, targeted=False)
    if attack is not None:
        clean = attack.clean if attack.clean is not None else base.attacked_clean_map
        parts: list[Inline]
        if clean is None:
            parts = [f"Under the {attack.display} attack, mAP is ", Strong(fmt_pct(attack.adv))]
        elif attack.adv is not None and attack.adv < clean:
            parts = [f"The {attack.display} attack drops mAP from ", Strong(fmt_pct(clean)), " to "]
            parts += [Strong(fmt_pct(attack.adv))]
        else:
            parts = [f"The {attack.display} attack does not lower mAP (from ", Strong(fmt_pct(clean)), " to "]
            parts += [Strong(fmt_pct(attack.adv)), ")"]
        defense = primary_defense(models)
        defended = defense.attacks.get(attack.name) if defense is not None else None
        if defense is not None and defended is not None and defended.adv is not None:
            verb = " recovers it to " if defended.adv > (attack.adv or 0.0) else " leaves it at "
            parts += ["; ", Strong(defense.label), verb, Strong(fmt_pct(defended.adv))]
            parts += [" at clean mAP ", Strong(fmt_pct(defense.attacked_clean_map))]
        lines.append(Headline(tuple(parts + ["."])))
    targeted = primary_attack(base, targeted=True)
    if targeted is not None:
        name = targeted.display.replace(" (targeted)", "")
        if targeted.clean is None:
            parts = [f"Under the targeted {name} attack, t-mAP is ", Strong(fmt_pct(targeted.adv)), "."]
        elif targeted.adv is not None and targeted.adv > targeted.clean:
            parts = [f"The targeted {name} attack lifts t-mAP from ", Strong(fmt_pct(targeted.clean)), " to "]
            parts += [Strong(fmt_pct(targeted.adv)), "."]
        else:
            parts = [f"The targeted {name} attack does not lift t-mAP (from ", Strong(fmt_pct(targeted.clean))]
            parts += [" to ", Strong(fmt_pct(targeted.adv)), ")."]
        lines.append(Headline(tuple(parts)))
    return lines


def _queries_note(model: ModelResult) -> str:
    count = model.attacked_queries
    if count is None or model.attacked_clean_map == model.clean_map:
        return model.label
    return f"{model.label}, {count:,} attacked queries"


def _stats(models: Sequence[ModelResult]) -> Stats | None:
    if not models:
        return None
    base = models[0]
    items = [Stat("Clean mAP", fmt_pct(base.attacked_clean_map), _queries_note(base))]
    attack = primary_attack(base, targeted=False)
    if attack is not None:
        items.append(Stat(f"mAP under {attack.display}", fmt_pct(attack.adv), base.label, "bad"))
    defense = primary_defense(models)
    if defense is not None:
        defended = defense.attacks.get(attack.name) if attack is not None else None
        if defended is not None and defended.adv is not None:
            items.append(Stat(f"mAP under {defended.display}", fmt_pct(defended.adv), defense.label, "good"))
        items.append(Stat("Clean mAP", fmt_pct(defense.attacked_clean_map), _queries_note(defense)))
    targeted = primary_attack(base, targeted=True)
    if targeted is not None:
        items.append(Stat(f"t-mAP under {targeted.display}", fmt_pct(targeted.adv), base.label, "bad"))
    return Stats(tuple(items))


def setup_table(card: Mapping[str, Any]) -> Table:
    """Dataset, model, method and threat model in one table."""
    threat = as_dict(card.get("threat_model"))
    dataset = as_dict(card.get("dataset"))
    model = as_dict(card.get("model"))
    method = as_dict(card.get("method"))
    rows: list[tuple[Inline, ...]] = []
    name = dataset.get("name") or dataset.get("source")
    if name is not None:
        rows.append(("Dataset", _text(name)))
    for key, value in dataset.items():
        if key not in ("name", "source"):
            rows.append((f"Dataset {str(key).replace('_', ' ')}", _text(value)))
    if method.get("name") is not None:
        rows.append(("Hashing method", _text(method.get("name"))))
    for key, value in model.items():
        rows.append(("Bits" if key == "bits" else f"Model {str(key).replace('_', ' ')}", _text(value)))
    if threat:
        norm = threat.get("norm", "Linf")
        rows.append(
            (
                "Threat model",
                f"{'L∞' if norm in ('Linf', 'linf', 'inf') else _text(norm)}, ε = "
                f"{fmt_eps(threat.get('eps'), threat.get('eps_label'))}",
            )
        )
        if threat.get("iterations") is not None:
            rows.append(("Attack iterations", _text(threat.get("iterations"))))
        if threat.get("queries") is not None:
            rows.append(("Attacked queries", fmt_int(threat.get("queries"))))
        if threat.get("topk") is not None:
            rows.append(("mAP cut-off", f"mAP@{_text(threat.get('topk'))}"))
    return Table(("Setting", "Value"), tuple(rows))


# -------------------------------------------------------------------------------------------------- tables


def clean_table(models: Sequence[ModelResult]) -> Table | None:
    """Clean retrieval of every model on the whole query split: mAP@k, its tie-aware value, mAP@all."""
    columns = [("map", "mAP"), ("map_tie_aware", "tie-aware mAP"), ("map_all", "mAP@all")]
    columns = [
        (key, title) for key, title in columns if any(as_float(dig(m.raw, "clean", key)) is not None for m in models)
    ]
    if not columns:
        return None
    topk = next((as_float(dig(m.raw, "clean", "topk")) for m in models if as_float(dig(m.raw, "clean", "topk"))), None)
    suffix = f"@{int(topk)}" if topk is not None else ""
    header = ("Model", *(f"{title}{suffix if key != 'map_all' else ''} (%)" for key, title in columns))
    rows = tuple((m.label, *(fmt_map(dig(m.raw, "clean", key)) for key, _ in columns)) for m in models)
    caption = (
        "Clean retrieval on the whole query split. Tie-aware: the expected mAP when tied items are ranked at random."
    )
    return Table(header, rows, (False,) + (True,) * len(columns), caption)


def attack_table(models: Sequence[ModelResult], budgets: Mapping[str, Mapping[str, Any]] | None = None) -> Table | None:
    """Table I: rows are attacks, columns the score per model plus the first model's details; with
    ``budgets`` (``card["threat_model"]["attacks"]``) also each attack's ε, iterations, optimizer and step."""
    untargeted, targeted = attack_order(models)
    if not untargeted and not targeted:
        return None
    base = models[0]
    budget_header = BUDGET_HEADER if budgets else ()
    header = ("Attack", "Metric", *budget_header, *(f"{m.label} (%)" for m in models), "Theory (%)", "L∞",
              "PSNR (dB)", "SSIM", "Time")
    rows: list[tuple[Inline, ...]] = [
        ("Original", "mAP", *("" for _ in budget_header), *(fmt_map(m.attacked_clean_map) for m in models),
         "", "", "", "", ""),
    ]
    for group, lower in ((untargeted, True), (targeted, False)):
        scores = [[m.attacks[n].adv if n in m.attacks else None for m in models] for n in group]
        bold_by_col = [_bold_best([s[c] for s in scores], lower) for c in range(len(models))]
        for i, name in enumerate(group):
            attack = base.attacks.get(name)
            first = attack or next(m.attacks[name] for m in models if name in m.attacks)
            cells = [_cell(fmt_map(scores[i][c]), bold_by_col[c][i]) for c in range(len(models))]
            extra = (
                (
                    fmt_map(attack.theory),
                    fmt_num(attack.perceptibility("linf"), 4),
                    fmt_num(attack.perceptibility("psnr"), 2),
                    fmt_num(attack.perceptibility("ssim"), 4),
                    fmt_seconds(attack.value("wall_time_s")),
                )
                if attack is not None
                else ("",) * 5
            )
            budget = budget_cells(budgets.get(name)) if budgets else ()
            rows.append((first.display, first.metric, *budget, *cells, *extra))
    numeric = (False, False) + (True, True, False, True)[: len(budget_header)]
    numeric += (True,) * (len(header) - len(numeric))
    notes = ["Original: clean mAP of the attacked queries."]
    if untargeted:
        notes.append("mAP rows: non-targeted attacks (lower = stronger attack).")
    if targeted:
        notes.append("t-mAP rows: targeted attacks, judged against the target labels (higher = stronger attack).")
    notes.append(
        "Bold: the strongest number per model and kind, a single number and not a tested difference (see "
        f"Claims and verdicts). Theory, perceptibility and time are for {base.label}."
    )
    caption = " ".join(notes)
    return Table(header, tuple(rows), numeric, caption)


def defense_table(models: Sequence[ModelResult]) -> Table | None:
    """Table II: rows are models, columns clean mAP and mAP under each non-targeted attack."""
    if len(models) < 2:
        return None
    untargeted, _ = attack_order(models)
    columns: list[list[float | None]] = [[m.clean_map for m in models]]
    titles = ["Clean mAP (%)"]
    if any(m.attacked_clean_map != m.clean_map for m in models):
        titles = ["Clean mAP, all queries (%)", "Clean mAP, attacked queries (%)"]
        columns.append([m.attacked_clean_map for m in models])
    columns += [[m.attacks[n].adv if n in m.attacks else None for m in models] for n in untargeted]
    bold = [_bold_best(col, lower_is_better=False) for col in columns]
    header = (
        "Model", "Defense", "Training ε", "Training time", *titles,
        *(f"{attack_display_name(n)} (%)" for n in untargeted),
    )
    rows = []
    sources: list[str] = []
    for r, model in enumerate(models):
        defense = model.defense or {}
        cells = [_cell(fmt_map(col[r]), bold[c][r]) for c, col in enumerate(columns)]
        name = display_name(_text(defense.get("name"))) if defense else "none"
        threat = defense.get("threat") if isinstance(defense.get("threat"), Mapping) else {}
        radius = as_float(threat.get("eps")) if threat else None
        radius = radius if radius is not None else as_float(dig(defense, "config", "eps"))
        radius_text = fmt_eps(radius) if radius is not None else MISSING
        if threat and threat.get("eps_from"):
            sources.append(f"{name}: ε {radius_text} from {_text(threat.get('eps_from'))}")
        seconds = fmt_seconds(defense.get("seconds")) if defense else MISSING
        rows.append((model.label, name, radius_text if defense else MISSING, seconds, *cells))
    numeric = (False, False, True, True) + (True,) * len(columns)
    caption = (
        "mAP under non-targeted attacks (higher = more robust). Training ε: the radius of the defense's inner "
        "attack" + (f" ({'; '.join(sources)})" if sources else "") + ". Bold: the highest number per column, not "
        "a tested difference (see Claims and verdicts)."
    )
    return Table(header, tuple(rows), numeric, caption)


def detail_table(model: ModelResult) -> Table | None:
    """Every number the card holds for the attacks on one model."""
    if not model.attacks:
        return None
    header = (
        "Attack",
        "Metric",
        "Clean (%)",
        "Attacked (%)",
        "Theory (%)",
        "Bits flipped",
        "L∞",
        "L2",
        "MSE",
        "PSNR (dB)",
        "SSIM",
        "Queries",
        "Time",
    )
    rows = []
    for attack in model.attacks.values():
        rows.append((
            attack.display, attack.metric, fmt_map(attack.clean), fmt_map(attack.adv), fmt_map(attack.theory),
            fmt_num(attack.value("bits_flipped"), 2), fmt_num(attack.perceptibility("linf"), 4),
            fmt_num(attack.perceptibility("l2"), 4), fmt_num(attack.perceptibility("mse"), 6),
            fmt_num(attack.perceptibility("psnr"), 2), fmt_num(attack.perceptibility("ssim"), 4),
            fmt_int(attack.value("num_queries")), fmt_seconds(attack.value("wall_time_s")),
        ))  # fmt: skip
    return Table(header, tuple(rows), (False, False) + (True,) * 11)


def sweep_table(model: ModelResult) -> Table | None:
    """The ε sweep of one model as numbers: one row per attack, one column per ε."""
    sweep = model.sweep()
    if not sweep:
        return None
    eps_values = sorted({round(p[0], 6) for points in sweep.values() for p in points})
    header = ("Attack", "Metric", *(f"ε={e * 255:.3g}/255" for e in eps_values))
    rows = []
    for name, points in sweep.items():
        by_eps = {round(p[0], 6): p[1] for p in points}
        metric = "t-mAP" if points[0][2] else "mAP"
        rows.append((attack_display_name(name), metric, *(fmt_map(by_eps.get(e)) for e in eps_values)))
    return Table(header, tuple(rows), (False, False) + (True,) * len(eps_values), f"{model.label}, score in %.")


def timing_table(card: Mapping[str, Any]) -> Table | None:
    """Stage timings, with a total."""
    stages = card.get("stages")
    if not isinstance(stages, Sequence) or isinstance(stages, str):
        return None
    rows: list[tuple[Inline, ...]] = []
    total = 0.0
    for stage in stages:
        if not isinstance(stage, Mapping):
            continue
        seconds = as_float(stage.get("seconds"))
        total += seconds or 0.0
        cached = stage.get("cached")
        rows.append(
            (
                _text(stage.get("name")),
                fmt_seconds(seconds),
                "yes" if cached else "no" if cached is not None else MISSING,
            )
        )
    if not rows:
        return None
    rows.append((Strong("total"), Strong(fmt_seconds(total)), ""))
    return Table(("Stage", "Time", "Cached"), tuple(rows), (False, True, False))


# ------------------------------------------------------------------------------------------- retrieval grid


def load_grid(card: Mapping[str, Any], run_dir: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The retrieval-grid arrays named by the card, or ``None`` when absent or unreadable."""
    grid = card.get("retrieval_grid")
    file = dig(grid, "file")
    if not isinstance(file, str) or not file:
        return None
    path = Path(run_dir) / file
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, KeyError) as error:
        log.warning("retrieval grid %s not readable: %s", path, error)
        return None
    return data, as_dict(grid)


def _grid_caption(data: Mapping[str, np.ndarray], grid: Mapping[str, Any], models: Sequence[ModelResult]) -> str:
    labels = {m.key: m.label for m in models}
    model = grid.get("model")
    attack = grid.get("attack")
    parts = []
    if model is not None or attack is not None:
        who = labels.get(str(model), _text(model)) if model is not None else "the model"
        what = attack_display_name(str(attack)) if attack is not None else "the attack"
        parts.append(f"{who} under the {what} attack.")
    shapes = [np.asarray(data[key]).shape for key in ("clean_topk_images", "adv_topk_images") if key in data]
    k = min([max(shape[1], 1) for shape in shapes if len(shape) > 1] + [20]) if shapes else 10
    parts.append(
        f"Each row: the query, its top-{k} (green border: relevant, red: irrelevant), the adversarial query "
        f"(orange border) and its top-{k}."
    )
    precisions = []
    for key, label in (("clean_topk_relevant", "clean"), ("adv_topk_relevant", "adversarial")):
        value = data.get(key)
        flags = np.asarray(value, dtype=bool) if value is not None else np.zeros((0, 0), dtype=bool)
        if flags.ndim == 2 and flags[:, :k].size:
            precisions.append(f"{label} {fmt_map(float(flags[:, :k].mean()))}%")
        else:
            precisions.append("")
    if all(precisions):
        parts.append(f"Precision@{k} over these queries: {precisions[0]} → {precisions[1]}.")
    return " ".join(parts)


# ------------------------------------------------------------------------------------------------ document


def build_document(card: Mapping[str, Any], run_dir: Path, with_figures: bool = True) -> Document:
    """The whole report as a :class:`Document`; figures are drawn only when ``with_figures`` and matplotlib is
    importable."""
    card = as_dict(card)
    use_card_names(card)
    models = read_models(card)
    study = _text(card.get("study") or "study")
    sub = [f"created {card['created']}" if card.get("created") else "", _text(card.get("format") or "")]
    doc = Document(f"Robustness report: {study}", " · ".join(s for s in sub if s))
    version = dig(card, "versions", "hashguard")
    doc.footer = f"Generated by hashguard {version}." if version else "Generated by hashguard."

    if with_figures:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            with_figures = False
            doc.add(
                Paragraph(("Figures omitted: matplotlib is not installed "
                           "(from the hashguard clone: pip install -e '.[report]').",), True)
            )

    def figure(name: str, draw: Any, alt: str, caption: str = "") -> Figure | None:
        if not with_figures:
            return None
        try:
            png = draw()
        except Exception as error:  # a broken figure must not cost the whole report
            log.warning("figure %s failed: %s", name, error)
            doc.add(Paragraph((f"Figure {name} could not be drawn: {error}",), True))
            return None
        return Figure(name, png, alt, caption) if png else None

    # Overview
    doc.add(_heading("overview"))
    doc.add(*headline(models))
    verdicts = claims_headline(card)
    if verdicts is not None:
        doc.add(verdicts)
    stats = _stats(models)
    if stats is not None:
        doc.add(stats)
    doc.add(setup_table(card))
    table = clean_table(models)
    if table is not None:
        doc.add(table)

    blocks = claims_blocks(card)
    if blocks:
        doc.add(_heading("claims"), *blocks)
    blocks = protocol_blocks(card)
    adsh = protocol_paragraph(card)  # one line: which retrieval protocol an ADSH model follows
    blocks += [adsh] if adsh is not None else []
    if blocks:
        doc.add(_heading("protocol"), *blocks)

    table = attack_table(models, attack_budgets(card)) if models else None
    if table is not None:
        doc.add(_heading("attacks"), table)
        sources = mainstay_paragraph(card, {m.key: m.label for m in models})
        if sources is not None:  # one line: where the mainstay codes came from, both sources' mAP
            doc.add(sources)

    table = defense_table(models)
    if table is not None:
        doc.add(_heading("defenses"), table)
        fig = figure(
            "defenses.png",
            lambda: figures.defense_figure(models),
            "bar chart of mAP per model and attack",
            "Clean mAP and mAP under each non-targeted attack, per model.",
        )
        if fig is not None:
            doc.add(fig)

    for anchor, kind, what in (("pr-curves", "pr", "precision-recall"), ("precision-at-n", "pn", "precision@N")):
        has = any(m.clean_curve(kind) or any(a.curve(kind) for a in m.attacks.values()) for m in models)
        if not has:
            continue
        fig = figure(
            f"{anchor}.png",
            lambda kind=kind: figures.curves_figure(models, kind),
            f"{what} curves",
            f"{what.capitalize()} of the clean and the adversarial query codes, one panel per model; "
            "targeted attacks are judged against their target labels.",
        )
        if fig is not None:
            doc.add(_heading(anchor), fig)

    sweeps = [(m, sweep_table(m)) for m in models]
    sweeps = [(m, t) for m, t in sweeps if t is not None]
    if sweeps:
        doc.add(_heading("eps-sweep"))
        eps = as_float(dig(card, "threat_model", "eps"))
        kinds = {point[2] for model in models for points in model.sweep().values() for point in points}
        scores = " or ".join(t for t, flag in (("mAP (solid)", False), ("t-mAP (dashed)", True)) if flag in kinds)
        sweep_caption = f"{scores} under attack as the L∞ budget grows; dotted: the threat model's ε."
        fig = figure(
            "eps-sweep.png",
            lambda: figures.sweep_figure(models, eps),
            "score under attack against epsilon",
            sweep_caption,
        )
        if fig is not None:
            doc.add(fig)
        for _, table in sweeps:
            doc.add(table)

    grid = load_grid(card, run_dir) if with_figures else None
    if grid is not None:
        data, meta = grid
        fig = figure(
            "retrieval-grid.png",
            lambda: figures.retrieval_grid_figure(data),
            "retrieval grid",
            _grid_caption(data, meta, models),
        )
        if fig is not None:
            doc.add(_heading("retrieval"), fig)

    table = detection_table(card)
    if table is not None:  # query detection (opt-in study section; report/detection_view.py)
        doc.add(_heading("detection"), *detection_paragraphs(card), table)
        fig = figure("detection-roc.png", lambda: roc_figure(card), "ROC curves of the query detector",
                     "ROC of the detector per model: attacked queries (positives) against the same queries clean; "
                     "dashed: the detector-aware attack; AUROC in brackets.")
        if fig is not None:
            doc.add(fig)

    details = [(m, detail_table(m)) for m in models]
    details = [(m, t) for m, t in details if t is not None]
    if details:
        doc.add(_heading("attack-details"))
        for model, table in details:
            doc.add(Heading(model.label, f"details-{model.key}", 3), table)
            defense = model.defense
            if defense and defense.get("reference"):
                doc.add(Paragraph((f"Defense reference: {_text(defense.get('reference'))}",), True))

    table = timing_table(card)
    if table is not None:
        doc.add(_heading("timings"), table)

    versions = as_dict(card.get("versions"))
    config = card.get("config")
    if versions or config is not None:
        doc.add(_heading("provenance"))
        if versions:
            doc.add(Table(("Package", "Version"), tuple((str(k), _text(v)) for k, v in versions.items())))
        if config is not None:
            text = json.dumps(config, indent=2, default=str)
            doc.add(Code(text, "Full configuration (JSON)", "json"))
    return doc
