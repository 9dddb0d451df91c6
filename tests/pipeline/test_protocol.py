"""The paper presets are the paper protocol: every configs/paper file, resolved, against docs/protocol.md.

docs/protocol.md is read as an independent source (a markdown table ``component | setting | value | source``
parsed here, not through hashguard.protocol), so a default changed in the code without the documentation,
or the other way round, fails here.
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import torch

from hashguard.attacks.registry import resolve_attack_params
from hashguard.cli import main as cli_main
from hashguard.defenses import build_defense_config
from hashguard.errors import ConfigError
from hashguard.pipeline.study_config import (
    DEFAULT_SUITE,
    StudyConfig,
    budget_table,
    load_study_config,
    resolved_budgets,
)
from hashguard.pipeline.summary import summary_table
from hashguard.protocol import ATTACKS, DEFENSES, departures, study_attacks

ROOT = Path(__file__).resolve().parents[2]
PAPER_CONFIGS = sorted((ROOT / "configs" / "paper").glob("*.yaml"))
#: rows that describe a constant of an objective's formula rather than a setting (checked elsewhere)
DESCRIPTIVE = {"weight exponent", "tie rule"}


def _value(text: str) -> Any:
    text = text.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if "," in text and not text.startswith("("):
        return [_value(part) for part in text.split(",")]
    try:
        return float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        return text


def _doc_rows() -> list[tuple[str, str, Any]]:
    rows = []
    for line in (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in ("component", "---") or set(cells[0]) <= {"-"}:
            continue
        component = cells[0]
        if component.startswith(("attack ", "defense ")) or component in ("training", "evaluation"):
            rows.append((component, cells[1], _value(cells[2])))
    return rows


DOC = _doc_rows()


def _doc(component: str) -> dict[str, Any]:
    return {setting: value for comp, setting, value in DOC if comp == component}


def _equal(actual: Any, expected: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected
    if isinstance(expected, float):
        return isinstance(actual, (int, float)) and actual == pytest.approx(expected, rel=1e-9)
    if isinstance(expected, list):
        return len(actual) == len(expected) and all(_equal(a, e) for a, e in zip(actual, expected, strict=True))
    return str(actual).lower() == str(expected).lower()


def test_the_table_is_parsed_and_covers_every_protocol_constant():
    assert len(DOC) > 100
    for name, settings in ATTACKS.items():
        documented = _doc(f"attack {name}")
        for key in settings:
            assert key in documented, f"docs/protocol.md lacks attack {name} {key}"
    for name, settings in DEFENSES.items():
        documented = _doc(f"defense {name}")
        for key in settings:
            assert key in documented, f"docs/protocol.md lacks defense {name} {key}"


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=[p.stem for p in PAPER_CONFIGS])
def test_paper_config_resolves_to_the_documented_protocol(path):
    config = load_study_config(path)
    dataset = config.data.root
    checked = 0
    for name in study_attacks(config):
        resolved = resolve_attack_params(name, **config.attacks.params_for(name))
        documented = _doc(f"attack {name}")
        if name != "prosgan":
            assert {"eps", "iterations", "optimizer", "step"} <= set(documented), name
        for setting, expected in documented.items():
            if setting in DESCRIPTIVE:
                continue
            match = re.fullmatch(r"rec_weight \((.+)\)", setting)
            if match:
                if match.group(1) == dataset:
                    assert resolved["rec_weight"] == expected, (path.stem, setting)
                    checked += 1
                continue
            if setting == "init":  # x: the attack starts from the clean image
                assert resolved.get("random_start", False) is False, name
                continue
            assert setting in resolved, f"{name}: {setting} is documented but not a parameter"
            assert _equal(resolved[setting], expected), (name, setting, resolved[setting], expected)
            checked += 1
    assert checked > 50
    assert "prosgan" in study_attacks(config)  # the rec_weight row of this dataset was checked
    for entry in config.defenses.run:
        settings = build_defense_config(entry.name, entry.settings, preset=entry.preset).model_dump()
        documented = _doc(f"defense {entry.name}")
        assert len(documented) >= 15
        for setting, expected in documented.items():
            assert setting in settings, f"defense {entry.name}: {setting} is not a setting"
            assert _equal(settings[setting], expected), (entry.name, setting, settings[setting], expected)
    assert {e.name for e in config.defenses.run} == {"saat", "atrdh", "cgat"}
    train = config.train
    for setting, expected in _doc("training").items():
        if setting == "lr decay every":
            assert expected == "floor(epochs / 3)" and train.decay_step() == train.epochs // 3
            continue
        assert _equal(getattr(train, setting), expected), (setting, getattr(train, setting), expected)
    evaluation = _doc("evaluation")
    assert config.evaluation.topk == evaluation["topk"]
    assert evaluation["queries"] == "all" and config.attacks.queries is None
    assert departures(config) == []


def test_paper_dry_run_prints_the_budgets_and_no_departure_before_the_data_check(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # data_dir "data" does not exist here: the data check fails after the table
    code = cli_main(["study", str(ROOT / "configs" / "paper" / "nus-wide-32.yaml"), "--dry-run"])
    captured = capsys.readouterr()
    assert code == 2 and "NUS-WIDE" in captured.err
    rows = {line.split()[0]: line.split()[1:] for line in captured.out.splitlines()[2:] if line.startswith("  ")}
    assert rows["dhta"] == ["yes", "0.032", "2000", "bim", "1/255"]
    assert rows["hag"] == ["no", "8/255", "2000", "sgd", "100"]
    assert rows["sdha"] == ["no", "8/255", "1500", "adam", "0.01"]
    assert rows["mainstay"] == ["no", "8/255", "100", "pgd", "1/255"]
    assert "departures from the paper protocol: none" in captured.out
    assert not list(tmp_path.iterdir())


def _study(**attacks: Any) -> StudyConfig:
    return StudyConfig.model_validate({"attacks": attacks})


def test_each_attack_keeps_its_own_budget_without_an_override():
    budgets = resolved_budgets(_study())
    assert set(budgets) >= set(DEFAULT_SUITE)
    assert budgets["dhta"] == {"eps": 0.032, "eps_label": "0.032", "iterations": 2000, "optimizer": "bim",
                               "step": pytest.approx(1 / 255), "targeted": True}
    assert budgets["hag"]["optimizer"] == "sgd" and budgets["hag"]["step"] == 100.0
    assert budgets["hag"]["iterations"] == 2000 and budgets["sdha"]["iterations"] == 1500
    assert budgets["mainstay"]["eps"] == pytest.approx(8 / 255) and budgets["tha"]["iterations"] == 100
    assert departures(_study()) == []
    assert "dhta               yes       0.032" in budget_table(_study())


def test_override_applies_to_every_attack_and_is_a_departure():
    config = _study(override={"iterations": 5, "eps": "4/255", "step": "1/255"},
                    suite=[*DEFAULT_SUITE[:-1], {"name": "tha", "params": {"iterations": 7}}])
    budgets = resolved_budgets(config)
    assert {name: b["iterations"] for name, b in budgets.items()} == {**dict.fromkeys(DEFAULT_SUITE, 5), "tha": 7}
    assert all(b["eps"] == pytest.approx(4 / 255) for b in budgets.values())
    assert budgets["hag"]["step"] == 100.0 and budgets["sdha"]["step"] == 0.01  # learning rates are kept
    lines = departures(config)
    assert "attacks.override.iterations = 5 (protocol: each attack's own, 100-2000)" in lines
    assert "attacks.override.eps = 4/255 (protocol: each attack's own, 8/255 or 0.032)" in lines
    assert "tha iterations = 7 (protocol 100)" in lines  # its own params win and are their own departure
    assert not any(line.startswith("dhta eps") for line in lines)  # reported once, as the override


def test_named_departures_are_listed_one_sentence_each():
    config = load_study_config(
        ROOT / "configs" / "paper" / "flickr25k-32.yaml",
        ["attacks.suite=[sdha, {name: sdha-targeted, params: {min_distance: 1}}, "
         "{name: prosgan, params: {project: true, rec_weight: 50}}]",
         "defenses.run=[{name: saat, preset: demo}, {name: cgat, settings: {augment: false}}]",
         "train.recipe=fast", "evaluation.topk=1000", "attacks.queries=200", "attacks.sweep.eps=[]",
         "report.grid_queries=0"],
    )
    lines = departures(config)
    for expected in (
        "sdha-targeted min_distance = 1 (protocol 1e-08)",
        "prosgan project = true (protocol false)",
        "prosgan rec_weight = 50 (protocol 100)",
        "defense saat: inner attack in eval mode (protocol: train mode)",
        "defense saat: epochs = 4 (protocol 20)",
        "defense cgat: augment = false (protocol true)",
        "train.val_fraction = 0.1, select best (protocol: whole training split, last epoch)",
        "train.optimizer = adam (protocol sgd)",
        "evaluation.topk = 1000 (protocol 5000)",
        "attacks.queries = 200 (protocol: all queries)",
    ):
        assert expected in lines, (expected, lines)
    assert not any(line.startswith("sdha ") for line in lines)  # the plain SDHA entry follows the protocol
    assert len(lines) == len(set(lines))


def test_demo_config_names_its_departures():
    for name in ("demo.yaml", "demo-digits.yaml"):
        config = load_study_config(ROOT / "configs" / name)
        lines = departures(config)
        iterations = config.attacks.override.iterations
        assert f"attacks.override.iterations = {iterations} (protocol: each attack's own, 100-2000)" in lines
        assert "defense atrdh: inner attack in eval mode (protocol: train mode)" in lines
        assert f"attacks.queries = {config.attacks.queries} (protocol: all queries)" in lines


def test_old_suite_wide_keys_are_one_clear_line(tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text("attacks:\n  eps: 8/255\n")
    with pytest.raises(ConfigError, match=r"attacks\.eps moved to attacks\.override\.eps"):
        load_study_config(path)
    assert cli_main(["study", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "attacks.override.eps" in err[0], err


def test_summary_clean_row_uses_the_attacked_queries():
    attack = {"targeted": False, "clean_map": 0.8, "adv_map": 0.1}
    card = {
        "threat_model": {"queries": 24, "topk": 300, "attacks": {"hag": {"eps_label": "8/255"}}},
        "models": {"undefended": {"clean": {"map": 0.9, "n_queries": 100}, "attacks": {"hag": attack}}},
        "protocol": {"name": "paper", "departures": ["attacks.queries = 24 (protocol: all queries)"]},
    }
    lines = summary_table(card).splitlines()
    assert lines[0].startswith("% (mAP@300)")
    rows = {line.split("|")[0].strip(): line.split("|")[1].strip() for line in lines[2:] if "|" in line}
    assert rows == {"clean mAP (24 attacked queries)": "80.00", "clean mAP (all 100 queries)": "90.00",
                    "hag (mAP, eps 8/255)": "10.00"}
    assert "departures from the paper protocol: 1" in lines[-1]


def test_cgat_augmentation_is_a_seeded_padded_crop_and_flip():
    from hashguard.defenses.trainer import augment_batch

    images = torch.rand(6, 3, 28, 28)
    out = augment_batch(images, torch.Generator().manual_seed(0))
    again = augment_batch(images, torch.Generator().manual_seed(0))
    assert torch.equal(out, again) and out.shape == images.shape
    pad = 2  # round(28 / 14)
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    shifted = 0
    for i in range(6):  # brute force: every output is one crop of the zero-padded image, maybe flipped
        candidates = [(t, s, f) for t in range(2 * pad + 1) for s in range(2 * pad + 1) for f in (False, True)
                      if torch.equal(out[i], (lambda c: c.flip(-1) if f else c)(padded[i, :, t:t + 28, s:s + 28]))]
        assert candidates, i
        shifted += (pad, pad, False) not in candidates
    assert shifted > 0


def test_atrdh_memory_starts_at_zero_and_weights_its_term_by_two():
    from hashguard.defenses import build_defense

    config = build_defense_config("atrdh", {"progress": False})
    assert config.adv_weight == 2.0 and config.memory_init == "zeros"
    assert (config.inner_bn, config.inner_dropout) == ("update", True)
    defense = build_defense("atrdh", config)
    codes = torch.tensor([[1.0, -1, 1, -1], [-1, -1, 1, 1]])
    defense.setup(codes, torch.tensor([[1.0, 0], [0, 1]]), bits=4, seed=0)
    assert torch.equal(defense.memory, torch.zeros(2, 4)) and torch.equal(defense.codes, codes)
    signed = build_defense("atrdh", build_defense_config("atrdh", {"memory_init": "sign", "progress": False}))
    signed.setup(codes, torch.tensor([[1.0, 0], [0, 1]]), bits=4, seed=0)
    assert torch.equal(signed.memory, codes)
