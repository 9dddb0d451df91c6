"""What a user sees around an attack: progress bars with an ETA, the start line, the unreachable-eps warning, the
refusal to overwrite an earlier result and the target labels a targeted run records."""

from __future__ import annotations

import json

import pytest
import torch

from hashguard.attacks import AttackContext, build_attack
from hashguard.attacks.evaluate import AttackResult, describe_run, evaluate_attack
from hashguard.attacks.reach import reach_warning
from hashguard.attacks.registry import resolve_attack_params
from hashguard.cli import main
from hashguard.errors import ConfigError
from hashguard.models.checkpoint import save_model
from hashguard.pipeline.attack import run_attack
from hashguard.pipeline.study_config import StudyConfig, budget_table, budget_warnings
from hashguard.progress_bar import progress_bar, progress_enabled, progress_scope
from hashguard.testing import MINI_PROSGAN, stack_split

# --- the reach rule: step x iterations against eps, sign-step optimizers only ---------------------------------


def _budget(optimizer: str, eps: float, step: float, iterations: int, **extra) -> dict:
    return {"optimizer": optimizer, "eps": eps, "step": step, "iterations": iterations, **extra}


def test_unreachable_eps_without_random_start_is_one_line():
    # 1/255 x 20 = 20/255 < 32/255 (the issue's example: MI-FGSM has no random start)
    line = reach_warning(_budget("mi", 32 / 255, 1 / 255, 20), "mainstay")
    assert line == (
        "mainstay: step 1/255 x 20 iterations = 20/255 < eps 32/255; the attack cannot reach the edge of its "
        "eps ball (raise the iterations or the step)"
    )
    assert "\n" not in line


def test_unreachable_eps_with_random_start_says_the_ball_cannot_be_traversed():
    line = reach_warning(_budget("pgd", 32 / 255, 1 / 255, 20, random_start=True), "mainstay")
    assert line is not None and "20/255 < eps 32/255" in line and "cannot traverse the eps ball" in line
    # the same PGD started at the clean image is bounded like BIM
    fixed = reach_warning(_budget("pgd", 32 / 255, 1 / 255, 20, random_start=False), "mainstay")
    assert fixed is not None and "cannot reach the edge" in fixed


@pytest.mark.parametrize(
    "budget",
    [
        _budget("bim", 8 / 255, 1 / 255, 100),  # 100/255 > 8/255
        _budget("mi", 8 / 255, 2 / 255, 4),  # exactly 8/255
        _budget("bim", 33 / 255, 1 / 255, 33),  # exactly 33/255, though (1/255) * 33 < 33/255 in binary floats
        _budget("pgd", 0.0, 1 / 255, 0, random_start=True),  # eps 0: nothing to reach
        _budget("sgd", 8 / 255, 1e-6, 1),  # a learning rate, not a pixel step
        _budget("adam", 8 / 255, 1e-6, 1),
        {"eps": 8 / 255, "seed": 0},  # a generator attack: no iterations
    ],
)
def test_reachable_or_not_a_sign_step_budget_gives_no_warning(budget):
    assert reach_warning(budget, "x") is None


def test_just_short_of_eps_and_zero_iterations_warn():
    assert reach_warning(_budget("ni", 8 / 255, 1 / 255, 7), "a") is not None  # 7/255 < 8/255
    assert "x 0 iterations = 0 < eps 8/255" in reach_warning(_budget("bim", 8 / 255, 1 / 255, 0), "a")
    assert "step 0.002 x 3 iterations = 0.006 < eps 0.032" in reach_warning(_budget("vmi", 0.032, 0.002, 3), "a")


def test_the_rule_reads_resolved_registry_settings():
    assert reach_warning(resolve_attack_params("mainstay", optimizer="mi", eps=32 / 255, iterations=20), "m")
    for name in ("mainstay", "tha", "dhta", "hag", "sdha", "prosgan"):  # the protocol budgets are reachable
        assert reach_warning(resolve_attack_params(name), name) is None


def test_the_study_budget_table_warns_once_per_unreachable_budget():
    config = StudyConfig.model_validate(
        {"attacks": {"override": {"eps": "32/255", "iterations": 2},
                     "suite": ["mainstay", "hag"], "sweep": {"attacks": ["mainstay"], "eps": ["1/255", "16/255"]}},
         "report": {"grid_queries": 0}}
    )
    lines = budget_warnings(config)
    # mainstay at 32/255 and the sweep point 16/255 are out of reach of 2 x 1/255; 1/255 is not; HAG is SGD
    assert len(lines) == 2
    assert lines[0].startswith("mainstay: step 1/255 x 2 iterations = 2/255 < eps 32/255")
    assert lines[1].startswith("mainstay @ eps 16/255: step 1/255 x 2 iterations = 2/255 < eps 16/255")
    table = budget_table(config).splitlines()
    assert [line for line in table if line.startswith("warning: ")] == [f"warning: {line}" for line in lines]
    assert budget_warnings(StudyConfig.model_validate({"report": {"grid_queries": 0}})) == []


# --- progress ---------------------------------------------------------------------------------------------------


def test_progress_setting_and_scope(capsys):
    assert not progress_enabled()  # outside any scope: silent
    assert not progress_enabled(None)  # pytest's captured stderr is not a terminal
    with progress_scope(True):
        assert progress_enabled()
        with progress_scope(False):
            assert not progress_enabled()
        for _ in progress_bar(range(3), desc="counting", unit="thing"):
            pass
    assert not progress_enabled()
    err = capsys.readouterr().err
    assert "counting" in err and "0/3 thing" in err and "3/3 thing" in err and "ETA" in err


def _run(bench, demo_splits, name: str, progress, **params):
    attack = build_attack(name, bench.model, bench.context, eps=8 / 255, iterations=2, **params)
    targets = bench.target_labels if attack.targeted else None
    return evaluate_attack(
        attack, demo_splits.query, bench.context.database_codes, bench.context.database_labels,
        target_labels=targets, batch_size=4, limit=8, progress=progress,
    )


def test_query_batches_show_progress_with_an_eta_and_are_silent_without(attack_bench, demo_splits, capsys):
    loud = _run(attack_bench, demo_splits, "mainstay", True)
    err = capsys.readouterr().err
    assert "mainstay queries" in err and "2/2 batch" in err and "ETA" in err
    quiet = _run(attack_bench, demo_splits, "mainstay", False)
    auto = _run(attack_bench, demo_splits, "mainstay", None)  # stderr is not a terminal here
    assert capsys.readouterr().err == ""
    # drawing a bar consumes no randomness: the same seed gives the same codes
    assert (loud.adv_codes == quiet.adv_codes).all() and (loud.adv_codes == auto.adv_codes).all()


def test_prototype_net_training_shows_progress(attack_bench, demo_splits, capsys):
    settings = dict(epochs=2, steps=3, hidden=16, batch_size=8)
    loud = _run(attack_bench, demo_splits, "tha", True, **settings)
    err = capsys.readouterr().err
    assert "tha PrototypeNet" in err and "6/6 step" in err and "epoch 2/2" in err
    quiet = _run(attack_bench, demo_splits, "tha", False, **settings)
    assert capsys.readouterr().err == ""
    assert (loud.adv_codes == quiet.adv_codes).all()


def test_prosgan_training_shows_progress(attack_bench, demo_splits, capsys):
    n = 64
    train_x, _ = stack_split(demo_splits.train, n)
    c = attack_bench.context
    context = AttackContext(c.train_codes[:n], c.train_labels[:n], c.database_codes, c.database_labels, train_x)
    runs = []
    for progress in (True, False):
        attack = build_attack("prosgan", attack_bench.model, context, eps=8 / 255, **MINI_PROSGAN)
        runs.append(evaluate_attack(
            attack, demo_splits.query, c.database_codes, c.database_labels,
            target_labels=attack_bench.target_labels, batch_size=4, limit=4, progress=progress,
        ))
        err = capsys.readouterr().err
        if progress:
            # MINI_PROSGAN: 1 epoch capped at 2 GAN batches; 1 x 3 PrototypeNet steps
            assert "prosgan PrototypeNet" in err and "3/3 step" in err
            assert "prosgan GAN" in err and "2/2 step" in err and "epoch 1/1" in err
        else:
            assert err == ""
    assert torch.equal(torch.as_tensor(runs[0].adv_codes), torch.as_tensor(runs[1].adv_codes))


def test_describe_run_names_what_is_about_to_run(attack_bench):
    attack = build_attack("mainstay", attack_bench.model, eps=8 / 255, iterations=20, step=2 / 255)
    assert describe_run(attack, 500, 128) == (
        "attack mainstay (non-targeted): 500 queries in 4 batches of up to 128; eps 8/255, 20 iterations of pgd "
        "(step 2/255, random start)"
    )
    hag = build_attack("hag", attack_bench.model, iterations=3)
    assert describe_run(hag, 1, 1).endswith("1 queries in 1 batch of up to 1; eps 8/255, 3 iterations of sgd "
                                            "(learning rate 100)")
    assert "a generator" in describe_run(build_attack("prosgan", attack_bench.model), 8, 4)


# --- run_attack / hashguard attack: start line, warning, overwrite, target labels -------------------------------


#: the checkpoint records a small demo split (100 train / 20 query / 200 database), so a run takes about a second
SMALL_DATA = {"source": "demo-mnist", "seed": 0, "options": {"train_size": 100, "query_size": 20, "database_size": 200}}


@pytest.fixture(scope="module")
def checkpoint(attack_bench, tmp_path_factory):
    return save_model(
        tmp_path_factory.mktemp("ckpt") / "model", attack_bench.model, num_classes=10, extra={"data": SMALL_DATA}
    )


TINY = ["--limit", "4", "--batch-size", "4", "--iterations", "2", "--device", "cpu"]


def test_a_second_run_into_the_same_directory_is_refused_unless_overwrite(checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["attack", str(checkpoint), "--attack", "mainstay", "--out", str(out), *TINY]) == 0
    result = out / "mainstay_result.json"
    first = result.read_bytes()
    capsys.readouterr()
    code = main(["attack", str(checkpoint), "--attack", "mainstay", "--out", str(out), "--seed", "3", *TINY])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "mainstay_codes.npz exists" in err and "--overwrite" in err and "another --out" in err
    assert result.read_bytes() == first  # nothing was touched
    code = main(["attack", str(checkpoint), "--attack", "mainstay", "--out", str(out), "--seed", "3",
                 "--overwrite", *TINY])
    assert code == 0
    assert json.loads(result.read_text())["params"]["seed"] == 3


def test_run_attack_logs_the_start_line_and_one_warning(checkpoint, tmp_path):
    lines: list[str] = []
    result = run_attack(
        checkpoint, "mainstay", tmp_path, params={"optimizer": "mi", "eps": 32 / 255, "iterations": 2},
        limit=4, batch_size=4, device="cpu", log=lines.append,
    )
    assert result["num_queries"] == 4
    warnings = [line for line in lines if line.startswith("warning: ")]
    assert warnings == ["warning: mainstay: step 1/255 x 2 iterations = 2/255 < eps 32/255; the attack cannot "
                        "reach the edge of its eps ball (raise the iterations or the step)"]
    assert "attack mainstay (non-targeted): 4 queries in 1 batch of up to 4; eps 32/255, 2 iterations of mi " \
        "(step 1/255)" in lines
    # progress=False: neither bars nor the start line, but the warning stays
    quiet: list[str] = []
    run_attack(
        checkpoint, "mainstay", tmp_path, params={"optimizer": "mi", "eps": 32 / 255, "iterations": 2},
        limit=4, batch_size=4, device="cpu", log=quiet.append,
        overwrite=True, progress=False,
    )
    assert quiet == warnings


def test_out_naming_a_file_is_one_line(checkpoint, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        run_attack(checkpoint, "mainstay", tmp_path / "file", limit=4)


def test_a_targeted_run_without_targets_creates_and_records_target_labels(checkpoint, tmp_path):
    lines: list[str] = []
    common = dict(params={"iterations": 2}, limit=4, batch_size=4, device="cpu", log=lines.append)
    first = run_attack(checkpoint, "mainstay-targeted", tmp_path, **common)
    labels = tmp_path / "target_labels.json"
    assert labels.is_file() and first["target_labels_file"] == str(labels)
    assert f"created target labels {labels}" in lines
    saved = labels.read_bytes()
    second = run_attack(checkpoint, "p2p", tmp_path, **common)  # the next targeted attack aims at the same targets
    assert second["target_labels_file"] == str(labels) and labels.read_bytes() == saved
    assert f"reusing target labels {labels}" in lines
    # a non-targeted attack into the same directory neither needs nor records target labels
    assert run_attack(checkpoint, "mainstay", tmp_path, **common)["target_labels_file"] is None


# --- summary line and the study's attack stages -------------------------------------------------------------------


def test_the_summary_line_reports_the_metric_of_the_attack_kind():
    plain = AttackResult("x", False, {}, 3, None, clean_map=0.5, adv_map=0.125, perceptibility={"linf": 8 / 255},
                         wall_time_s=1.5)
    assert plain.summary() == "x: mAP@all 0.5000 -> 0.1250 on 3 queries (L-inf 0.0314, 1.5 s)"
    targeted = AttackResult("y", True, {}, 7, 100, clean_map=0.9, adv_map=0.2, clean_tmap=0.1, adv_tmap=0.75,
                            perceptibility={"linf": 0.0}, wall_time_s=12.0)
    assert targeted.summary() == "y: t-mAP@100 0.1000 -> 0.7500 on 7 queries (L-inf 0.0000, 12.0 s)"


def test_a_study_attack_stage_logs_its_start_warning_and_summary(tmp_path):
    from hashguard.data import open_dataset
    from hashguard.pipeline import attack_stage
    from hashguard.pipeline.study_config import AttackSuiteConfig
    from hashguard.testing import small_cnn_model

    splits = open_dataset("demo-mnist", seed=0, train_size=100, database_size=300, query_size=20)
    model = small_cnn_model(splits, bits=16).eval()
    target = attack_stage.AttackedModel("undefended", model, splits, splits.train, "id", tmp_path)
    suite = AttackSuiteConfig.model_validate({"queries": 12, "batch_size": 5})
    lines: list[str] = []
    result = attack_stage.run_one_attack(
        target, "mainstay", {"eps": 16 / 255, "iterations": 3}, suite, None, 50, tmp_path, lines.append
    )
    assert lines == [
        "  warning: mainstay: step 1/255 x 3 iterations = 3/255 < eps 16/255; from its random start a pixel moves "
        "at most 3/255, so the iterations cannot traverse the eps ball (raise the iterations or the step)",
        "  attack mainstay (non-targeted): 12 queries in 3 batches of up to 5; eps 16/255, 3 iterations of pgd "
        "(step 1/255, random start)",
        f"  mainstay: mAP@50 {result['clean_map']:.4f} -> {result['adv_map']:.4f} on 12 queries "
        f"(L-inf {result['perceptibility']['linf']:.4f}, {result['wall_time_s']:.1f} s)",
    ]
