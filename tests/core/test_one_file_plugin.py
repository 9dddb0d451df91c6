"""Adding a method, an optimizer, an attack, a defense and a dataset source is ONE file: the plug-in module
``one_file_plugin.py`` beside this test registers one of each, and without any other edit they appear in
``hashguard list``, pass the contract tests and run through a whole study (training, attacks, defense, report)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
SRC = HERE.parents[1] / "src"
NEW = {"sources": "toy-digits", "methods": "toy-centres", "optimizers": "toybim", "attacks": "toy-away",
       "defenses": "toy-at"}

STUDY = """
name: plug
data: {source: toy-digits, options: {items: 40}}
model: {backbone: small_cnn, bits: 16}
method: {name: toy-centres, params: {weight: 2}}
train: {recipe: fast, epochs: 1}
evaluation: {topk: 100}
attacks:
  queries: 10
  suite: [toy-away, {name: mainstay, params: {iterations: 2, optimizer: toybim}}]
  sweep: {attacks: [], eps: []}
defenses:
  run: [{name: toy-at, preset: demo, settings: {train_items: 40, progress: false}}]
report: {grid_queries: 0}
"""


def _run(args: list[str], cwd: Path, plugins: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(SRC)]), OMP_NUM_THREADS="1")
    env.pop("HASHGUARD_PLUGINS", None)
    if plugins:
        env["HASHGUARD_PLUGINS"] = "one_file_plugin"
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_new_entries_are_listed_only_with_the_plugin(tmp_path):
    listed = _run(["-m", "hashguard", "list"], tmp_path)
    assert listed.returncode == 0, listed.stderr
    for kind, name in NEW.items():
        section = listed.stdout.split(f"{kind}:")[1]
        assert f"\n  {name}:" in section.split("\n\n")[0], (kind, name)
    without = _run(["-m", "hashguard", "list"], tmp_path, plugins=False)
    assert without.returncode == 0 and not any(name in without.stdout for name in NEW.values())
    env_bad = _run(["-c", "import os, sys; os.environ['HASHGUARD_PLUGINS'] = 'no_such_plugin'; "
                    "from hashguard.cli import main; sys.exit(main(['list']))"], tmp_path, plugins=False)
    assert env_bad.returncode == 2 and env_bad.stderr.strip().count("\n") == 0
    assert "plug-in 'no_such_plugin' failed to import (ModuleNotFoundError" in env_bad.stderr


def test_new_entries_pass_the_contract_tests(tmp_path):
    tests = HERE / "test_plugin_contracts.py"
    result = _run(["-m", "pytest", "-rA", "-p", "no:cacheprovider", str(tests), "-k", "toy"], tmp_path)
    assert result.returncode == 0, result.stdout[-2000:]
    for test_id in ("test_method_contract[toy-centres]", "test_defense_contract[paper-toy-at]",
                    "test_defense_contract[demo-toy-at]", "test_source_contract[toy-digits]",
                    "test_attack_contract[toy-away]"):
        passed = [line for line in result.stdout.splitlines() if line.startswith("PASSED ")]
        assert any(line.endswith(f"::{test_id}") for line in passed), (test_id, result.stdout[-2000:])


def test_a_study_runs_the_new_method_attack_optimizer_defense_and_source(tmp_path):
    (tmp_path / "study.yaml").write_text(STUDY, encoding="utf-8")
    result = _run(["-m", "hashguard", "study", "study.yaml", "--out", "run"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    card = json.loads((tmp_path / "run" / "results.json").read_text(encoding="utf-8"))
    assert card["threat_model"]["attacks"]["mainstay"]["optimizer"] == "toybim"
    assert set(card["models"]) == {"undefended", "toy-at"}
    for model in card["models"].values():
        assert set(model["attacks"]) == {"toy-away", "mainstay"}
        assert all(math.isfinite(a["adv_map"]) for a in model["attacks"].values())
    assert ["toy-away", "Toy away"] in card["names"]["attacks"] and ["toy-at", "Toy AT"] in card["names"]["defenses"]
    departures = card["protocol"]["departures"]
    assert "attack toy-away: not part of the protocol (a plug-in or an addition)" in departures
    assert "defense toy-at: not part of the protocol (a plug-in or an addition)" in departures
    report = (tmp_path / "run" / "report.md").read_text(encoding="utf-8")
    assert "Toy away" in report and "Toy AT" in report
