"""One command-line vocabulary: a contract every subcommand's parser must keep (help on every option, one spelling
per concept, old spellings as hidden aliases), and the behaviour of the shared flags (--json, --queries,
-k/--topk, --set, --device, --batch-size, -V, ``list KIND PATTERN``, ``report RUN_DIR``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from hashguard import __version__
from hashguard.cli import build_parser, main
from hashguard.plugins import registries
from hashguard.retrieval import save_codes

ROOT = Path(__file__).resolve().parents[2]

#: commands that run a model (and so take --device)
MODEL_COMMANDS = ("train", "encode", "evaluate", "attack", "defend", "detect", "lifelong", "study")
#: commands that print results (and so take --json)
JSON_COMMANDS = ("evaluate", "attack", "detect", "lifelong", "search query", "list", "datasets check", "fingerprint")
#: commands with settings to override (and so take --set)
SET_COMMANDS = ("train", "attack", "defend", "detect", "lifelong", "study")
#: commands that attack or evaluate queries (and so take --queries, alias --limit)
QUERY_COMMANDS = ("evaluate", "attack", "lifelong", "search query", "study")
#: commands with a cut-off (-k/--topk)
TOPK_COMMANDS = ("evaluate", "attack", "lifelong", "search query", "study")


def _subparsers(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every (nested) subcommand parser by its command path, e.g. ``"search query"``."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                path = f"{prefix} {name}".strip()
                found[path] = child
                found.update(_subparsers(child, path))
    return found


PARSER = build_parser()
COMMANDS = _subparsers(PARSER)


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {option: action for action in parser._actions for option in action.option_strings}


def test_every_command_is_walked():
    assert set(COMMANDS) >= {
        "datasets", "datasets check", "datasets sources", "train", "encode", "evaluate", "search", "search build",
        "search query", "attack", "defend", "detect", "lifelong", "study", "report", "list", "fingerprint",
    }


@pytest.mark.parametrize("path", ["hashguard", *sorted(COMMANDS)])
def test_every_option_has_help(path):
    """Each argument, optional or positional, explains itself; a hidden (suppressed) one is an alias sharing its
    destination with a documented argument. A new option cannot escape this walk."""
    parser = PARSER if path == "hashguard" else COMMANDS[path]
    visible = {a.dest for a in parser._actions if a.help is not argparse.SUPPRESS}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            assert all(choice.help for choice in action._choices_actions), path
            continue
        name = "/".join(action.option_strings) or action.dest
        if action.help is argparse.SUPPRESS:
            assert action.option_strings and action.dest in visible, f"{path} {name}: hidden but no alias"
            continue
        assert isinstance(action.help, str) and action.help.strip(), f"{path} {name}: no help text"


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_one_spelling_per_concept(path):
    options = _options(COMMANDS[path])
    for option in options:
        assert "_" not in option, f"{path} {option}: options are spelled with dashes"
        if "batch" in option:
            assert option == "--batch-size", f"{path} {option}"
    if "--topk" in options or path in TOPK_COMMANDS:
        assert options["-k"] is options["--topk"], path
    if "--limit" in options or path in QUERY_COMMANDS:
        assert options["--queries"].dest == options["--limit"].dest == "queries"
        assert options["--limit"].help is argparse.SUPPRESS
    assert ("--device" in options) == (path in MODEL_COMMANDS), path
    assert ("--json" in options) == (path in JSON_COMMANDS), path
    assert ("--set" in options) == (path in SET_COMMANDS), path


def test_the_documented_flag_table_is_the_parser():
    """docs/cli.md's command x flag table says "yes" exactly where the parser has the flag."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    rows = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("| `") and "yes" in line]
    header = next(line for line in text.splitlines() if line.startswith("| command |"))
    flags = [cell.strip().strip("`").split("/")[-1] for cell in header.strip("|").split("|")[1:]]
    table = {row[0].strip().strip("`"): [cell.strip() == "yes" for cell in row[1:]] for row in rows}
    for path, parser in COMMANDS.items():
        if path in ("datasets", "search"):
            continue
        options = _options(parser)
        assert table.get(path, [False] * len(flags)) == [flag in options for flag in flags], path


def test_version_flags(capsys):
    for flag in ("-V", "--version"):
        with pytest.raises(SystemExit) as stop:
            main([flag])
        assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"hashguard {__version__}"


def test_old_spellings_are_aliases():
    attack = PARSER.parse_args(["attack", "ck", "--attack", "hag", "--out", "o", "--param", "a=1", "--set", "b=2",
                                "--limit", "3", "-k", "7"])  # fmt: skip
    assert attack.params == ["a=1", "b=2"] and attack.queries == 3 and attack.topk == 7
    query = ["search", "query", "--index", "i", "--codes", "c"]
    for spelling in (["-k", "5"], ["--topk", "5"], ["--k", "5"]):
        assert PARSER.parse_args([*query, *spelling]).k == 5
    assert PARSER.parse_args([*query, "--limit", "4"]).queries == PARSER.parse_args([*query, "--queries", "4"]).queries
    assert PARSER.parse_args(["evaluate", "ck", "--limit", "9"]).queries == 9


@pytest.mark.parametrize(
    "argv",
    [
        ["attack", "ck", "--attack", "hag", "--out", "o", "--batch-size", "0"],
        ["encode", "ck", "--out", "o.npz", "--batch-size", "-1"],
        ["evaluate", "ck", "--queries", "0"],
        ["evaluate", "ck", "--topk", "-5"],
        ["search", "query", "--index", "i", "--codes", "c", "-k", "0"],
        ["search", "build", "--codes", "c", "--out", "o", "--nlist", "0"],
        ["train", "--out", "o", "--batch-size", "many"],
    ],
)
def test_bad_numbers_are_refused_by_the_parser(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "error:" in err and "Traceback" not in err


def test_shortcut_flags_become_settings():
    from hashguard.commands import study, train
    from hashguard.config import load_experiment_config
    from hashguard.pipeline.study import load_study_config

    args = PARSER.parse_args(["train", "--out", "o", "--set", "device=auto", "--device", "cpu", "--batch-size", "7"])
    config = load_experiment_config(None, train.overrides_of(args))
    assert config.device == "cpu" and config.train.batch_size == 7  # the shortcut wins over an earlier --set
    args = PARSER.parse_args(["study", "configs/demo.yaml", "--queries", "11", "--topk", "0", "--device", "cpu"])
    config = load_study_config(ROOT / "configs" / "demo.yaml", study.overrides_of(args))
    assert config.attacks.queries == 11 and config.evaluation.topk is None and config.device == "cpu"
    args = PARSER.parse_args(["study", "configs/demo.yaml", "-k", "100"])
    assert load_study_config(ROOT / "configs" / "demo.yaml", study.overrides_of(args)).evaluation.topk == 100


def _hand_codes(tmp_path: Path) -> tuple[str, str]:
    """Two 4-bit queries against three database items, with hand-computed average precisions:
    q0 ranks d0 (relevant, distance 0), d1 (no, 1), d2 (relevant, 2): AP = (1/1 + 2/3) / 2 = 5/6;
    q1 ranks d2 (no, 2), d1 (relevant, 3), d0 (no, 4): AP = 1/2. mAP = 2/3."""
    a, b = [1.0, 0.0], [0.0, 1.0]
    query = np.array([[1, 1, 1, 1], [-1, -1, -1, -1]], np.int8)
    database = np.array([[1, 1, 1, 1], [1, 1, 1, -1], [-1, -1, 1, 1]], np.int8)
    save_codes(tmp_path / "q.npz", query, np.array([a, b], np.float32))
    save_codes(tmp_path / "db.npz", database, np.array([a, b, a], np.float32))
    return str(tmp_path / "q.npz"), str(tmp_path / "db.npz")


def test_evaluate_json_and_queries(tmp_path, capsys):
    q, db = _hand_codes(tmp_path)
    assert main(["evaluate", "--query-codes", q, "--db-codes", db, "--topk", "0", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)  # nothing but the JSON document on stdout
    assert metrics["map"] == pytest.approx(2 / 3) and metrics["n_queries"] == 2
    assert main(["evaluate", "--query-codes", q, "--db-codes", db, "-k", "0", "--limit", "1", "--json",
                 "--out", str(tmp_path / "m.json")]) == 0  # fmt: skip
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["map"] == pytest.approx(5 / 6) and metrics["n_queries"] == 1
    assert json.loads((tmp_path / "m.json").read_text())["map"] == pytest.approx(5 / 6)
    assert main(["evaluate", "--query-codes", q, "--db-codes", db, "-k", "0", "--queries", "1"]) == 0
    assert "0.8333" in capsys.readouterr().out


def test_evaluate_checkpoint_gets_queries_batch_size_and_device(tmp_path, capsys, monkeypatch):
    from hashguard.commands import evaluate

    seen = {}

    def fake(checkpoint, data, topk, device, **kwargs):
        print("encoding ...")
        seen.update(kwargs, checkpoint=checkpoint, topk=topk, device=device)
        q, db = _hand_codes(tmp_path)
        from hashguard.pipeline.evaluate import evaluate_codes
        from hashguard.retrieval import load_codes

        query, database = load_codes(q), load_codes(db)
        return evaluate_codes(query.codes, database.codes, query.labels, database.labels, topk)

    monkeypatch.setattr(evaluate, "evaluate_checkpoint", fake)
    assert main(["evaluate", "ck", "--limit", "4", "--batch-size", "9", "--device", "cpu", "-k", "2", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["topk"] == 2 and "encoding" in captured.err
    assert seen == {"queries": 4, "batch_size": 9, "checkpoint": "ck", "topk": 2, "device": "cpu"}


def test_search_query_json_with_out(tmp_path, capsys):
    q, db = _hand_codes(tmp_path)
    index = str(tmp_path / "db.hgidx")
    assert main(["search", "build", "--codes", db, "--out", index]) == 0
    capsys.readouterr()
    assert main(["search", "query", "--index", index, "--codes", q, "--topk", "2", "--queries", "1", "--json",
                 "--out", str(tmp_path / "r.json")]) == 0  # fmt: skip
    payload = json.loads(capsys.readouterr().out)
    assert [(r["ids"], r["distances"]) for r in payload["results"]] == [([0, 1], [0, 1])]
    assert json.loads((tmp_path / "r.json").read_text()) == payload


def test_attack_json_keeps_stdout_clean(tmp_path, capsys, monkeypatch):
    """The command layer: --json prints only the result document, whatever the attack prints meanwhile; the
    aliases reach the pipeline as the same arguments."""
    from hashguard.commands import attack

    seen = {}

    def fake_run_attack(checkpoint, name, out, **kwargs):
        print("progress line from the attack")
        seen.update(kwargs, checkpoint=checkpoint, name=name)
        return {"attack": name, "targeted": False, "clean_map": 0.5, "adv_map": 0.25, "num_queries": 3,
                "perceptibility": {"linf": 0.03}, "wall_time_s": 1.0}  # fmt: skip

    monkeypatch.setattr(attack, "run_attack", fake_run_attack)
    argv = ["attack", "ck", "--attack", "hag", "--out", str(tmp_path), "--param", "alpha=2", "--set", "eps=8/255",
            "--limit", "3", "-k", "0", "--batch-size", "5", "--device", "cpu", "--json"]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["adv_map"] == 0.25 and "progress line" in captured.err
    assert seen["limit"] == 3 and seen["topk"] is None and seen["batch_size"] == 5 and seen["device"] == "cpu"
    assert seen["params"]["alpha"] == 2 and seen["params"]["eps"] == pytest.approx(8 / 255)
    assert main([a for a in argv if a != "--json"]) == 0
    assert "hag: mAP@all 0.5000 -> 0.2500 on 3 queries" in capsys.readouterr().out


def test_datasets_check_json(tmp_path, capsys):
    lines = {"train": "a.jpg 1 0\nb.jpg 0 1\n", "test": "c.jpg 1 0\n", "database": "a.jpg 1 0\nd.jpg 0 2\n"}
    for split, text in lines.items():
        (tmp_path / f"{split}.txt").write_text(text, encoding="utf-8")
    assert main(["datasets", "check", str(tmp_path), "--no-images", "--json"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["ok"] is False and [s["split"] for s in report["splits"]][:1] == ["train"]
    assert any("database.txt:2" in problem and "'2'" in problem for problem in report["problems"])


def test_list_kinds_patterns_and_json(capsys):
    assert main(["list", "datasets"]) == 0
    datasets = capsys.readouterr().out
    assert main(["list", "sources"]) == 0 and capsys.readouterr().out == datasets
    assert main(["list", "attacks", "*-targeted"]) == 0
    out = capsys.readouterr().out
    assert [line.split(":")[0] for line in out.splitlines() if not line.startswith(" ")] == [
        "mainstay-targeted", "sdha-targeted"]  # fmt: skip
    assert "weight=25" in out  # a pattern shows the parameters with their defaults
    assert main(["list", "optimizers", "mi"]) == 0  # an exact name is that entry alone (not also vmi)
    assert capsys.readouterr().out.splitlines()[0].startswith("mi: ")
    assert main(["list", "dpsh"]) == 0  # a lone pattern searches every kind
    assert "methods:\n  dpsh: " in capsys.readouterr().out
    assert main(["list", "methods", "zzz"]) == 2
    assert "no methods match 'zzz'" in capsys.readouterr().err
    assert main(["list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {kind: [e["name"] for e in entries] for kind, entries in listed.items()} == {
        kind: list(entries) for kind, entries in registries().items()
    }
    dpsh = next(e for e in listed["methods"] if e["name"] == "dpsh")
    assert {p["name"]: p["default"] for p in dpsh["parameters"]}["eta"] == 50 and dpsh["reference"]


def test_report_command(tmp_path, capsys, monkeypatch):
    from hashguard.report import figures
    from hashguard.report.sample import write_sample

    monkeypatch.setattr(figures, "_png", lambda fig: b"\x89PNG\r\n\x1a\n")  # skip rasterising: structure only
    card = write_sample(tmp_path / "sample")
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(card), encoding="utf-8")
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"html: {run / 'report.html'}" in out and (run / "report.md").is_file()
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hashguard: error:") and "results.json: not found" in err and "\n" not in err


def test_mainstay_source_is_one_setting_for_attacks_and_defenses(tmp_path, capsys):
    """Where the mainstay codes come from is spelled ``mainstay_from`` (network | database, default network) by
    every attack and defense that builds them: ``attack --set``, ``defend --set`` and a study's params/settings."""
    from hashguard.attacks import attack_spec
    from hashguard.defenses import DEFENSES

    declared = [p for p in attack_spec("mainstay").objective_params if p.name == "mainstay_from"]
    declared += [p for p in attack_spec("mainstay-targeted").objective_params if p.name == "mainstay_from"]
    for name in ("saat", "cgat"):
        declared += [p for p in DEFENSES.entry(name).parameters() if p.name == "mainstay_from"]
    assert len(declared) == 4
    assert {(p.default, p.choices) for p in declared} == {("network", ("network", "database"))}
    argv = ["attack", "ck", "--attack", "mainstay", "--out", str(tmp_path), "--set", "mainstay_from=vectors"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "mainstay_from must be one of network, database" in err and "\n" not in err
