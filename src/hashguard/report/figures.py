"""The report's figures, drawn with matplotlib's Agg canvas (no pyplot, no display) and returned as PNG bytes.

matplotlib is imported lazily: it is an optional dependency (the ``report`` extra). Every function returns
``None`` when it has nothing to draw.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hashguard.report.card import Curve, ModelResult, attack_display_name, attack_order
from hashguard.report.formatting import fmt_map

#: Colour of each attack, stable across figures (clean curves are black).
_PALETTE = ["#d62728", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
_RELEVANT = np.array([0.16, 0.68, 0.25])
_IRRELEVANT = np.array([0.86, 0.13, 0.13])
_NEUTRAL = np.array([0.55, 0.55, 0.55])
_ADV_QUERY = np.array([0.95, 0.6, 0.05])
_DPI = 110


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return buffer.getvalue()


#: Fixed colours of the known attacks (the mainstay attacks in red), so every figure and report agrees.
_KNOWN_COLOURS = {
    "mainstay": "#d62728",
    "mainstay-targeted": "#d62728",
    "hag": "#1f77b4",
    "sdha": "#ff7f0e",
    "p2p": "#2ca02c",
    "dhta": "#9467bd",
    "tha": "#8c564b",
    "prosgan": "#e377c2",
    "pros-gan": "#e377c2",
}


def attack_colours(models: Sequence[ModelResult]) -> dict[str, str]:
    """A fixed colour per attack name: known attacks keep theirs, others take the remaining palette in turn."""
    untargeted, targeted = attack_order(models)
    spare = [c for c in _PALETTE if c not in _KNOWN_COLOURS.values()] or _PALETTE
    colours, extra = {}, 0
    for name in untargeted + targeted:
        if name in _KNOWN_COLOURS:
            colours[name] = _KNOWN_COLOURS[name]
        else:
            colours[name] = spare[extra % len(spare)]
            extra += 1
    return colours


def _grid_shape(count: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(count, max_cols)
    return math.ceil(count / cols), cols


def _panel_grid(fig: Any, slots: list[list[Any]]) -> list[list[Any]]:
    """Axes for a rows x cols layout; ``None`` slots stay empty (hidden)."""
    rows, cols = len(slots), max(len(row) for row in slots)
    axes = fig.subplots(rows, cols, squeeze=False)
    for r in range(rows):
        for c in range(cols):
            if c >= len(slots[r]) or slots[r][c] is None:
                axes[r][c].set_visible(False)
    return axes


def curves_figure(models: Sequence[ModelResult], kind: str) -> bytes | None:
    """PR (``kind="pr"``) or P@N (``kind="pn"``) curves, one row per model.

    The left panel shows the clean curve and every non-targeted attack; the right panel, when there are targeted
    attacks, shows them with relevance judged against the target labels, next to the clean queries judged the
    same way.
    """
    colours = attack_colours(models)
    rows: list[list[tuple[str, list[tuple[str, Curve, str, str]]] | None]] = []
    for model in models:
        row: list[tuple[str, list[tuple[str, Curve, str, str]]] | None] = []
        for targeted in (False, True):
            lines = []
            # the clean queries' curve as the attacks judged it (same queries, same relevance), when the card has it
            judged = [a.clean_curve(kind) for a in model.attacks.values() if a.targeted == targeted]
            clean = next((c for c in judged if c is not None), None)
            if clean is None and not targeted:
                clean = model.clean_curve(kind)
            if clean is not None:
                lines.append(
                    ("clean (vs target labels)" if targeted else "clean", clean, "#000000", ":" if targeted else "-")
                )
            for name, attack in model.attacks.items():
                curve = attack.curve(kind)
                if curve is not None and attack.targeted == targeted:
                    lines.append((attack.display, curve, colours.get(name, "#777777"), "--" if targeted else "-"))
            has_attack = len(lines) > (1 if clean is not None else 0)
            keep = has_attack or (clean is not None and not targeted)
            title = f"{model.label}: {'targeted (relevance: target labels)' if targeted else 'non-targeted'}"
            row.append((title, lines) if keep else None)
        if any(row):
            rows.append(row)
    if not rows:
        return None
    if not any(row[1] for row in rows):  # no targeted panel at all: models side by side
        flat = [row[0] for row in rows]
        rows = [flat[i : i + 3] for i in range(0, len(flat), 3)]
    cols = max(len(row) for row in rows)
    fig = _figure(5.0 * cols, 3.6 * len(rows))
    axes = _panel_grid(fig, rows)
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            if panel is None:
                continue
            ax, (title, lines) = axes[r][c], panel
            top = 0.0
            for label, curve, colour, style in lines:
                marker = "o" if len(curve.x) <= 12 else None
                ax.plot(curve.x, curve.y, style, color=colour, label=label, linewidth=1.8, marker=marker, markersize=3)
                top = max([top, *curve.y])
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("recall" if kind == "pr" else "N (top-N retrieved)")
            ax.set_ylabel("precision" if kind == "pr" else "precision@N")
            ax.set_ylim(0.0, min(1.02, max(0.1, top * 1.12 + 0.02)))
            if kind == "pr":
                ax.set_xlim(0.0, 1.0)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8, loc="best")
    return _png(fig)


def sweep_figure(models: Sequence[ModelResult], eps: float | None = None) -> bytes | None:
    """Score under attack against ε, one panel per model and one line per attack (targeted lines dashed)."""
    colours = attack_colours(models)
    panels = [(model, model.sweep()) for model in models]
    panels = [(model, sweep) for model, sweep in panels if sweep]
    if not panels:
        return None
    rows, cols = _grid_shape(len(panels), 3)
    fig = _figure(4.6 * cols, 3.6 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (model, sweep) in zip(axes.flat, panels, strict=False):
        for name, points in sweep.items():
            targeted = points[0][2]
            label = f"{attack_display_name(name)}, {'t-mAP' if targeted else 'mAP'}"
            ax.plot(
                [p[0] * 255 for p in points],
                [100 * p[1] for p in points],
                "--" if targeted else "-",
                marker="o",
                markersize=4,
                color=colours.get(name, "#777777"),
                label=label,
            )
        if eps is not None:
            ax.axvline(eps * 255, color="#999999", linestyle=":", linewidth=1.2, label="threat model ε")
        ax.set_title(model.label, fontsize=10)
        ax.set_xlabel("ε (×1/255, L∞)")
        kinds = {points[0][2] for points in sweep.values()}
        ax.set_ylabel(
            {frozenset({False}): "mAP", frozenset({True}): "t-mAP"}.get(frozenset(kinds), "mAP / t-mAP")
            + " under attack (%)"
        )
        ax.set_ylim(0, 102)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    return _png(fig)


def defense_figure(models: Sequence[ModelResult]) -> bytes | None:
    """Grouped bars: clean mAP and mAP under each non-targeted attack, per model."""
    untargeted, _ = attack_order(models)
    colours = attack_colours(models)
    series = [("clean", "#4a4a4a", [m.attacked_clean_map for m in models])]
    for name in untargeted:
        attacks = [m.attacks.get(name) for m in models]
        series.append((attack_display_name(name), colours[name], [a.adv if a is not None else None for a in attacks]))
    series = [s for s in series if any(v is not None for v in s[2])]
    if not series or len(models) < 2:
        return None
    fig = _figure(max(5.5, 1.9 * len(models) + 2.0), 3.8)
    ax = fig.subplots()
    width = 0.8 / len(series)
    for i, (label, colour, values) in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(models))]
        heights = [100 * v if v is not None else 0.0 for v in values]
        bars = ax.bar(xs, heights, width * 0.92, color=colour, label=label)
        for bar, value in zip(bars, values, strict=False):
            if value is not None:
                ax.annotate(
                    fmt_map(value),
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    xytext=(0, 1),
                    textcoords="offset points",
                )
    ax.set_xticks(range(len(models)), [m.label for m in models], fontsize=9)
    ax.set_ylabel("mAP (%)")
    ax.set_ylim(0, 110)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncols=min(len(series), 4), loc="upper right")
    return _png(fig)


# ------------------------------------------------------------------------------------------ retrieval grid


def _to_rgb(image: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, 3) float."""
    array = np.asarray(image, dtype=np.float64)
    if array.ndim == 2:
        array = array[None]
    if array.shape[0] == 1:
        array = np.repeat(array, 3, axis=0)
    elif array.shape[0] > 3:
        array = array[:3]
    elif array.shape[0] == 2:
        array = np.concatenate([array, array[:1]], axis=0)
    return np.clip(np.nan_to_num(array.transpose(1, 2, 0)), 0.0, 1.0)


def _tile(image: np.ndarray, scale: int, border: int, colour: np.ndarray | None) -> np.ndarray:
    rgb = _to_rgb(image)
    if scale > 1:
        rgb = rgb.repeat(scale, axis=0).repeat(scale, axis=1)
    height, width, _ = rgb.shape
    out = np.ones((height + 2 * border, width + 2 * border, 3))
    if colour is not None:
        out[:] = colour
    out[border : border + height, border : border + width] = rgb
    return out


def _relevance_colour(relevant: np.ndarray | None, row: int, col: int) -> np.ndarray:
    if relevant is None or row >= relevant.shape[0] or col >= relevant.shape[1]:
        return _NEUTRAL
    return _RELEVANT if bool(relevant[row, col]) else _IRRELEVANT


def grid_arrays(data: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    """Validate the retrieval-grid arrays; ``None`` when there is no usable query/top-k pair."""
    arrays: dict[str, np.ndarray] = {}
    for key in ("query_images", "adv_images", "clean_topk_images", "adv_topk_images"):
        value = data.get(key)
        if value is None:
            continue
        array = np.asarray(value)
        if array.dtype.kind not in "fiub" or array.size == 0:
            continue
        expected = 4 if key in ("query_images", "adv_images") else 5
        if array.ndim == expected:
            scale = 255.0 if array.dtype.kind in "iu" and array.max() > 1 else 1.0  # uint8 images
            arrays[key] = array.astype(np.float64) / scale
    for key in ("clean_topk_relevant", "adv_topk_relevant"):
        value = data.get(key)
        if value is not None and np.asarray(value).ndim == 2 and np.asarray(value).dtype.kind in "biu":
            arrays[key] = np.asarray(value).astype(bool)
    if "query_images" not in arrays and "adv_images" not in arrays:
        return None
    if "clean_topk_images" not in arrays and "adv_topk_images" not in arrays:
        return None
    return arrays


def retrieval_grid_figure(data: Mapping[str, Any], max_rows: int = 8, max_topk: int = 20) -> bytes | None:
    """The paper's Fig. 5: per row a query, its top-k (green border: relevant, red: irrelevant), the
    adversarial query (orange border) and its top-k."""
    arrays = grid_arrays(data)
    if arrays is None:
        return None
    topk = min([max_topk] + [arrays[k].shape[1] for k in ("clean_topk_images", "adv_topk_images") if k in arrays])
    groups: list[tuple[str, str, str | None]] = []  # (title, image key, relevance key)
    if "query_images" in arrays:
        groups.append(("query", "query_images", None))
    if "clean_topk_images" in arrays:
        groups.append((f"top-{topk}, clean query", "clean_topk_images", "clean_topk_relevant"))
    if "adv_images" in arrays:
        groups.append(("adversarial query", "adv_images", None))
    if "adv_topk_images" in arrays:
        groups.append((f"top-{topk}, adversarial query", "adv_topk_images", "adv_topk_relevant"))
    rows = min([max_rows] + [arrays[g[1]].shape[0] for g in groups])
    if rows == 0:
        return None
    sample = arrays[groups[0][1]]
    height = sample.shape[-2]
    scale = max(1, math.ceil(56 / max(height, 1)))
    border = max(2, (height * scale) // 18)
    tile_size = None
    row_images = []
    spans: list[tuple[str, int, int]] = []
    gap_small, gap_big = 2, 14
    for r in range(rows):
        pieces: list[np.ndarray] = []
        position = 0
        row_spans = []
        for title, key, rel_key in groups:
            start = position
            if key in ("query_images", "adv_images"):
                colour = _ADV_QUERY if key == "adv_images" else np.array([0.2, 0.2, 0.2])
                tiles = [_tile(arrays[key][r], scale, border, colour)]
            else:
                relevant = arrays.get(rel_key) if rel_key else None
                count = min(topk, arrays[key].shape[1])
                tiles = [
                    _tile(arrays[key][r, c], scale, border, _relevance_colour(relevant, r, c)) for c in range(count)
                ]
            tile_size = tiles[0].shape[:2] if tile_size is None else tile_size
            for i, tile in enumerate(tiles):
                if tile.shape[:2] != tile_size:
                    return None
                pieces.append(tile)
                position += tile.shape[1]
                if i < len(tiles) - 1:
                    pieces.append(np.ones((tile_size[0], gap_small, 3)))
                    position += gap_small
            row_spans.append((title, start, position))
            pieces.append(np.ones((tile_size[0], gap_big, 3)))
            position += gap_big
        row_images.append(np.concatenate(pieces[:-1], axis=1))
        spans = row_spans
    gap_row = np.ones((6, row_images[0].shape[1], 3))
    canvas = np.concatenate([x for img in row_images for x in (img, gap_row)][:-1], axis=0)
    pixel_h, pixel_w = canvas.shape[:2]
    fig = _figure(pixel_w / _DPI + 0.2, pixel_h / _DPI + 0.45)
    ax = fig.subplots()
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    for title, start, end in spans:
        ax.text((start + end) / 2, -6, title, ha="center", va="bottom", fontsize=9)
    return _png(fig)
