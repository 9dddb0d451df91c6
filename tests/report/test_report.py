"""report.md and report.html from a results card: sections, numbers, partial cards, self-containment."""

from __future__ import annotations

import base64
import copy
import io
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hashguard.report import SECTIONS, write_report
from hashguard.report.formatting import MISSING, fmt_map, fmt_seconds
from hashguard.report.sample import GRID_FILE, sample_card, write_sample

pytest.importorskip("matplotlib")

ALL_SECTIONS = list(SECTIONS)
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Checker(HTMLParser):
    """Collects tags, URL attributes, ids and nesting errors of an HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.urls: list[tuple[str, str, str]] = []
        self.ids: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "action", "data", "poster", "background"):
                self.urls.append((tag, name, value or ""))
            if name == "id":
                self.ids.append(value or "")
            if name == "style" and value and "url(" in value:
                self.urls.append((tag, name, value))
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> _Checker:
    """Parse ``html``, checking that every element is closed in order."""
    checker = _Checker()
    checker.feed(html)
    checker.close()
    assert checker.errors == []
    assert checker.stack == []
    return checker


def sections_of(html: str) -> list[str]:
    """The ids of the level-2 headings, in order."""
    return re.findall(r'<h2 id="([^"]+)">', html)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, dict[str, Path]]:
    """A complete synthetic card with a retrieval grid, reported (figures drawn for real) once per module."""
    run_dir = tmp_path_factory.mktemp("full")
    card = write_sample(run_dir)
    return card, run_dir, write_report(card, run_dir)


def _tiny_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (2, 2), (255, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture()
def fast_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Build every figure but skip rasterising it (seconds per report on a busy CPU): structure tests only."""
    from hashguard.report import figures

    png = _tiny_png()
    monkeypatch.setattr(figures, "_png", lambda fig: png)


def _expected_numbers(card: dict[str, Any]) -> list[str]:
    numbers = []
    for model in card["models"].values():
        numbers.append(fmt_map(model["clean"]["map"]))
        for attack in model["attacks"].values():
            numbers.append(fmt_map(attack["adv_tmap"] if attack["targeted"] else attack["adv_map"]))
    return numbers


def test_write_report_returns_existing_files(full_run) -> None:
    _, run_dir, paths = full_run
    assert paths["md"] == run_dir / "report.md" and paths["html"] == run_dir / "report.html"
    for path in paths.values():
        assert path.is_file() and path.stat().st_size > 0
    figures = sorted(p.name for key, p in paths.items() if key.startswith("figure:"))
    assert figures == ["defenses.png", "detection-roc.png", "eps-sweep.png", "pr-curves.png", "precision-at-n.png",
                       "retrieval-grid.png"]
    for name in figures:
        assert (run_dir / "figures" / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert not [p for p in run_dir.rglob("*.tmp")]


def test_both_reports_hold_every_section_and_number(full_run) -> None:
    card, _, paths = full_run
    md, html = paths["md"].read_text(encoding="utf-8"), paths["html"].read_text(encoding="utf-8")
    assert sections_of(html) == ALL_SECTIONS
    for anchor in ALL_SECTIONS:
        assert f"## {SECTIONS[anchor]}" in md
        assert f'href="#{anchor}"' in html and f"](#{anchor})" in md
    text = "".join(parse(html).text)
    for number in _expected_numbers(card):
        assert number in md and number in text, number
    for report in (md, text):
        assert "small_cnn" in report and "demo-mnist" in report and "32/255 (0.1255)" in report and "mAP@1000" in report
        assert fmt_seconds(75.4) in report and "1 min 15 s" in report  # stage timings
        assert "2.14.1" in report  # versions
        assert "| CSQ (undefended) | 97.31 | 96.60 |" in md  # clean retrieval of the whole query split
        assert "0.1255" in report and "30.36" in report and "0.8123" in report  # perceptibility


def test_headline_names_attack_defense_and_numbers(full_run) -> None:
    _, _, paths = full_run
    md = paths["md"].read_text(encoding="utf-8")
    headline = next(line for line in md.splitlines() if line.startswith("> The Mainstay attack"))
    assert headline == (
        "> The Mainstay attack drops mAP from **96.86%** to **10.34%**; **CSQ + SAAT** recovers it to **60.77%** "
        "at clean mAP **93.04%**."
    )
    assert "> The targeted Mainstay attack lifts t-mAP from **10.12%** to **88.62%**." in md


def test_tables_bold_the_best_entries(full_run) -> None:
    _, _, paths = full_run
    md = paths["md"].read_text(encoding="utf-8")
    table_one = md.split("## Attacks (Table I)")[1].split("## ")[0]
    # "Original" is the clean mAP of the attacked queries, the reference of every attack row
    assert "| Original | mAP |  |  |  |  | 96.86 | 93.04 | 91.71 |" in table_one
    # strongest non-targeted attack (lowest mAP) and strongest targeted attack (highest t-mAP) per model
    # each attack's budget (card["threat_model"]["attacks"]) beside its name
    assert "| Mainstay | mAP | 32/255 | 20 | pgd | 1/255 | **10.34** | **60.77** | **51.33** | 2.13 |" in table_one
    assert (
        "| Mainstay (targeted) | t-mAP | 32/255 | 20 | pgd | 1/255 | **88.62** | **31.27** | **35.61** | 93.11 |"
        in table_one
    )
    assert "| HAG | mAP | 32/255 | 20 | sgd | 100 | 22.47 | 69.21 | 70.45 |" in table_one
    table_two = md.split("## Defenses (Table II)")[1].split("## ")[0]
    # most robust model (highest mAP) per column
    assert (
        "| Model | Defense | Training ε | Training time | Clean mAP, all queries (%) "
        "| Clean mAP, attacked queries (%) | HAG (%) |" in table_two
    )
    assert "| CSQ (undefended) | none | — | — | **97.31** | **96.86** | 22.47 | 19.69 | 10.34 |" in table_two
    saat_row = "| CSQ + SAAT | SAAT | 32/255 (0.1255) | 40.1 s | 93.49 | 93.04 | 69.21 | **65.82** | **60.77** |"
    assert saat_row in table_two
    assert "| CSQ + ATRDH | ATRDH | — | 37.8 s | 92.16 | 91.71 | **70.45** | 64.02 | 51.33 |" in table_two
    assert "SAAT: ε 32/255 (0.1255) from the study's threat model (attacks.override)" in table_two
    html = paths["html"].read_text(encoding="utf-8")
    assert "<strong>60.77</strong>" in html and "<strong>70.45</strong>" in html


def test_html_is_self_contained(full_run) -> None:
    _, run_dir, paths = full_run
    html = paths["html"].read_text(encoding="utf-8")
    checker = parse(html)
    images = [url for tag, name, url in checker.urls if tag == "img"]
    assert len(images) == 6
    for tag, name, url in checker.urls:
        assert url.startswith("data:") or (url.startswith("#") and url[1:] in checker.ids), (tag, name, url[:60])
    for url in images:
        assert url.startswith("data:image/png;base64,")
        assert base64.b64decode(url.split(",", 1)[1]).startswith(b"\x89PNG")
    assert "script" not in checker.tags
    assert "@import" not in html and "url(" not in html and "http://" not in html and "https://" not in html
    # the Markdown, instead, references the figure files, which exist
    md = paths["md"].read_text(encoding="utf-8")
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(linked) == 6 and all((run_dir / link).is_file() for link in linked)


def test_strings_are_escaped(tmp_path: Path, fast_figures: None) -> None:
    card = write_sample(tmp_path)
    card["study"] = "<script>alert(1)</script>"
    card["models"]["saat"]["label"] = 'SAAT "<b>robust</b>" & co'
    paths = write_report(card, tmp_path)
    html = paths["html"].read_text(encoding="utf-8")
    checker = parse(html)
    assert "script" not in checker.tags and "b" not in checker.tags
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "SAAT &quot;&lt;b&gt;robust&lt;/b&gt;&quot; &amp; co" in html
    assert "&quot;&lt;b&gt;not bold&lt;/b&gt; &amp; friends&quot;" in html  # the config
    md = paths["md"].read_text(encoding="utf-8")
    assert "<script>" not in md.split("```json")[0]


@pytest.mark.parametrize(
    ("drop", "missing"),
    [
        ("defenses", {"defenses"}),
        ("grid", {"retrieval"}),
        ("sweep", {"eps-sweep"}),
        ("targeted", set()),
        ("curves", {"pr-curves", "precision-at-n"}),
        ("stages", {"timings"}),
        ("provenance", {"provenance"}),
        ("claims", {"claims"}),
        ("protocol", {"protocol"}),
        ("detection", {"detection"}),
    ],
)
def test_partial_cards_leave_sections_out(tmp_path: Path, drop: str, missing: set[str], fast_figures: None) -> None:
    card = write_sample(tmp_path)
    write_report(copy.deepcopy(card), tmp_path)  # a full report first: its figures must not linger
    models = card["models"]
    if drop == "defenses":
        card["models"] = {"undefended": models["undefended"]}
    elif drop == "grid":
        card["retrieval_grid"] = None
    elif drop == "sweep":
        for model in models.values():
            del model["eps_sweep"]
    elif drop == "targeted":
        for model in models.values():
            model["attacks"] = {k: v for k, v in model["attacks"].items() if not v["targeted"]}
            model["eps_sweep"].pop("mainstay-targeted")
        card["claims"] = [c for c in card["claims"] if c["metric"] != "t-mAP"]  # a study without them has none
    elif drop == "curves":
        for model in models.values():
            model["clean"].pop("pr_curve"), model["clean"].pop("precision_at_n")
            for attack in model["attacks"].values():
                attack["curves"] = None
    elif drop == "stages":
        card["stages"] = []
    elif drop == "provenance":
        card.pop("versions"), card.pop("config")
    elif drop == "claims":
        card.pop("claims")
    elif drop == "protocol":
        card.pop("protocol")
    elif drop == "detection":
        card.pop("detection")
    paths = write_report(card, tmp_path)
    md, html = paths["md"].read_text(encoding="utf-8"), paths["html"].read_text(encoding="utf-8")
    parse(html)
    assert sections_of(html) == [a for a in ALL_SECTIONS if a not in missing]
    for anchor in missing:
        assert f"## {SECTIONS[anchor]}" not in md
    if drop == "defenses":
        assert "recovers" not in md and "**10.34%**." in md
        assert not (tmp_path / "figures" / "defenses.png").exists()  # stale figure of the full report removed
    if drop == "targeted":
        assert "t-mAP" not in md and "lifts" not in md
    if drop == "grid":
        assert not (tmp_path / "figures" / "retrieval-grid.png").exists()


@pytest.mark.parametrize(
    "card",
    [
        {},
        {"study": "empty", "models": {}},
        {"models": None, "threat_model": None, "stages": None, "retrieval_grid": None, "dataset": None},
        {"models": {"undefended": {"clean": {"map": 0.5}}}},
        {"models": {"undefended": {"label": "x", "clean": None, "attacks": {"hag": {"adv_map": float("nan")}}}}},
        {"models": {"undefended": {"attacks": {"hag": None, "p2p": {"targeted": True, "adv_tmap": "high"}}}}},
        {"models": [1, 2], "stages": [None, {"name": "train"}], "retrieval_grid": {"file": "missing.npz"}},
        {"claims": "all good", "protocol": [1], "threat_model": {"attacks": [1]}},
        {"claims": [None, {"comparisons": [None, {"a": 1, "ci_low": "x"}]}, {"comparisons": "no"}],
         "protocol": {"departures": "one string"}, "threat_model": {"attacks": {"hag": None, "p2p": 3}},
         "models": {"undefended": {"attacks": {"hag": {"adv_map": 0.2}}}}},
    ],
)
def test_broken_or_minimal_cards_never_crash(tmp_path: Path, card: dict[str, Any], fast_figures: None) -> None:
    paths = write_report(card, tmp_path)
    html = paths["html"].read_text(encoding="utf-8")
    parse(html)
    assert sections_of(html)[0] == "overview"
    assert "retrieval" not in sections_of(html)
    assert paths["md"].read_text(encoding="utf-8").startswith("# Robustness report")


def test_missing_values_show_a_dash(tmp_path: Path, fast_figures: None) -> None:
    card = write_sample(tmp_path)
    card["models"]["undefended"]["attacks"]["hag"]["adv_map"] = None
    md = write_report(card, tmp_path)["md"].read_text(encoding="utf-8")
    assert f"| HAG | mAP | 32/255 | 20 | sgd | 100 | {MISSING} | 69.21 | 70.45 | 3.77 |" in md


def test_unreadable_grid_is_left_out(tmp_path: Path, fast_figures: None) -> None:
    card = write_sample(tmp_path)
    (tmp_path / GRID_FILE).write_bytes(b"not an npz")
    paths = write_report(card, tmp_path)
    assert "retrieval" not in sections_of(paths["html"].read_text(encoding="utf-8"))


def test_grid_figure_marks_relevance_with_colours() -> None:
    """Relevant results get green borders, irrelevant ones red, where the flags say so."""
    from PIL import Image

    from hashguard.report.figures import retrieval_grid_figure
    from hashguard.report.sample import sample_grid

    grid = sample_grid()
    grid["clean_topk_relevant"][:] = True
    grid["adv_topk_relevant"][:] = False
    png = retrieval_grid_figure(grid)
    assert png is not None
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    half = image.shape[1] // 2
    green = (image[..., 1] > 150) & (image[..., 0] < 90) & (image[..., 2] < 110)
    red = (image[..., 0] > 180) & (image[..., 1] < 70) & (image[..., 2] < 70)
    assert green[:, :half].sum() > 1000 and green[:, half:].sum() < 50
    assert red[:, half:].sum() > 1000 and red[:, :half].sum() < 50
    grid["adv_topk_relevant"][:] = True
    image = np.asarray(Image.open(io.BytesIO(retrieval_grid_figure(grid))).convert("RGB")).astype(int)
    red = (image[..., 0] > 180) & (image[..., 1] < 70) & (image[..., 2] < 70)
    assert red.sum() < 50


def test_rgb_grid_and_rewrite_are_stable(tmp_path: Path, fast_figures: None) -> None:
    card = write_sample(tmp_path, channels=3)
    first = write_report(card, tmp_path)["md"].read_text(encoding="utf-8")
    second = write_report(copy.deepcopy(card), tmp_path)["md"].read_text(encoding="utf-8")
    assert first == second
    assert sample_card() == sample_card()  # the sample is a fresh copy each time


def test_order_is_canonical_whatever_the_json_key_order(tmp_path: Path, fast_figures: None) -> None:
    """results.json is written with sorted keys; models and attacks still come in the paper's order."""
    card = write_sample(tmp_path)
    shuffled = copy.deepcopy(card)
    shuffled["models"] = dict(sorted(card["models"].items()))  # atrdh, saat, undefended
    for model in shuffled["models"].values():
        model["attacks"] = dict(sorted(model["attacks"].items(), reverse=True))
    first = write_report(card, tmp_path)["md"].read_text(encoding="utf-8")
    second = write_report(shuffled, tmp_path)["md"].read_text(encoding="utf-8")
    assert first == second
    table_one = first.split("## Attacks (Table I)")[1].split("## ")[0]
    rows = [line.split(" | ")[0].strip("| ") for line in table_one.splitlines() if line.startswith("| ")][1:]
    assert rows == ["Original", "HAG", "SDHA", "Mainstay", "DHTA", "Mainstay (targeted)"]
    assert "| Attack | Metric | ε | Iterations | Optimizer | Step | CSQ (undefended) (%) | CSQ + SAAT (%)" in table_one


def test_headline_when_attacks_fail(tmp_path: Path, fast_figures: None) -> None:
    card = write_sample(tmp_path)
    undefended = card["models"]["undefended"]["attacks"]
    undefended["mainstay"]["adv_map"] = 0.99  # above the clean 96.86
    undefended["mainstay-targeted"]["adv_tmap"] = 0.05  # below the clean 10.12
    card["models"]["saat"]["attacks"]["mainstay"]["adv_map"] = 0.5
    md = write_report(card, tmp_path)["md"].read_text(encoding="utf-8")
    assert "> The Mainstay attack does not lower mAP (from **96.86%** to **99.00%**); **CSQ + SAAT** leaves it at" in md
    assert "> The targeted Mainstay attack does not lift t-mAP (from **10.12%** to **5.00%**)." in md


def test_cards_with_random_damage_still_report(tmp_path: Path) -> None:
    """Any field replaced by a value of the wrong type or shape: the report is still written (seeded sample)."""
    import random

    from hashguard.report import build_document, render_html, render_markdown

    base = write_sample(tmp_path)

    def paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
        found = [prefix] if prefix else []
        if isinstance(obj, dict):
            for key, value in obj.items():
                found += paths(value, prefix + (key,))
        elif isinstance(obj, list):
            for index, value in enumerate(obj[:2]):
                found += paths(value, prefix + (index,))
        return found

    rng = random.Random(7)
    candidates = paths(base)
    variants = [None, "x", [], {}, -1.5, float("nan"), True, [None], {"a": None}]
    for _ in range(60):
        path, value = rng.choice(candidates), rng.choice(variants)
        card = copy.deepcopy(base)
        holder = card
        for key in path[:-1]:
            holder = holder[key]
        holder[path[-1]] = value
        doc = build_document(card, tmp_path, with_figures=False)
        parse(render_html(doc))
        assert render_markdown(doc).startswith("# Robustness report")


@pytest.mark.parametrize("variant", ["uint8", "rgba", "fewer-adv-rows", "top5", "no-adv", "no-relevance", "mismatch"])
def test_grid_variants(variant: str) -> None:
    from hashguard.report.figures import retrieval_grid_figure
    from hashguard.report.sample import sample_grid

    grid = sample_grid(rows=3, channels=3 if variant == "rgba" else 1, size=16)
    if variant == "uint8":
        grid = {k: (v * 255).astype(np.uint8) if v.dtype.kind == "f" else v for k, v in grid.items()}
    elif variant == "rgba":
        grid = {
            k: np.concatenate([v, v[..., :1, :, :]], axis=-3) if v.dtype.kind == "f" else v for k, v in grid.items()
        }
    elif variant == "fewer-adv-rows":
        grid["adv_images"] = grid["adv_images"][:2]
    elif variant == "top5":
        for key in ("clean_topk_images", "adv_topk_images", "clean_topk_relevant", "adv_topk_relevant"):
            grid[key] = grid[key][:, :5]
    elif variant == "no-adv":
        for key in ("adv_images", "adv_topk_images", "adv_topk_relevant"):
            del grid[key]
    elif variant == "no-relevance":
        del grid["clean_topk_relevant"], grid["adv_topk_relevant"]
    elif variant == "mismatch":
        grid["adv_topk_images"] = np.zeros((3, 10, 1, 20, 20), dtype=np.float32)
    png = retrieval_grid_figure(grid)
    if variant == "mismatch":
        assert png is None
        return
    from PIL import Image

    assert png is not None
    width, height = Image.open(io.BytesIO(png)).size
    full_width, full_height = Image.open(io.BytesIO(retrieval_grid_figure(sample_grid(rows=3, size=16)))).size
    assert (width, height) != (0, 0)
    narrower = {"top5": 0.7, "no-adv": 0.6}.get(variant)
    assert width < narrower * full_width if narrower else width == pytest.approx(full_width, abs=2)
    assert height < 0.8 * full_height if variant == "fewer-adv-rows" else height == pytest.approx(full_height, abs=2)


def test_module_command(tmp_path: Path, capsys: pytest.CaptureFixture[str], fast_figures: None) -> None:
    import json

    from hashguard.report.__main__ import main

    card = write_sample(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps(card), encoding="utf-8")
    assert main([str(tmp_path)]) == 0
    assert "html: " in capsys.readouterr().out and (tmp_path / "report.html").is_file()
    (tmp_path / "results.json").write_text("[1, 2]", encoding="utf-8")
    assert main([str(tmp_path)]) == 2
    assert "not a JSON object" in capsys.readouterr().err
    assert main([str(tmp_path / "nowhere")]) == 2
    assert main(["--sample", str(tmp_path / "sample")]) == 0
    assert (tmp_path / "sample" / "report.md").is_file()


def test_without_matplotlib_the_tables_are_still_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    card = write_sample(tmp_path)
    paths = write_report(card, tmp_path)
    assert not [key for key in paths if key.startswith("figure:")]
    html = paths["html"].read_text(encoding="utf-8")
    assert "<img" not in html and "matplotlib is not installed" in html
    assert sections_of(html) == [a for a in ALL_SECTIONS if a not in ("pr-curves", "precision-at-n", "retrieval")]
    assert "| Original | mAP |  |  |  |  | 96.86 | 93.04 | 91.71 |" in paths["md"].read_text(encoding="utf-8")
