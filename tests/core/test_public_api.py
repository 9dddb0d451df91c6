"""The public Python surface: ``import hashguard as hg`` is cheap, every advertised name resolves, the README's
"In Python" snippet runs as written, and a slice of a dataset split is a dataset."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import hashguard as hg
from hashguard.errors import ConfigError
from hashguard.models import save_model
from hashguard.testing import tiny_splits

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"


def _readme_snippet() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### In Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README: no python block under 'In Python'"
    return match.group(1)


def test_import_is_cheap_and_lazy():
    """``import hashguard`` loads neither torch nor the library; the first attribute access does."""
    code = (
        "import sys, hashguard as hg\n"
        "assert 'torch' not in sys.modules and 'hashguard.api' not in sys.modules, sorted(sys.modules)\n"
        "hg.HammingIndex\n"
        "assert 'hashguard.retrieval' in sys.modules\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_every_public_name_resolves():
    from hashguard.retrieval import HammingIndex
    from hashguard.retrieval.index import HammingIndex as index_class

    assert HammingIndex is index_class and hg.HammingIndex is index_class
    assert set(hg._LAZY) <= set(hg.__all__)
    for name in hg.__all__:
        assert getattr(hg, name) is not None, name
        assert name in dir(hg)
    with pytest.raises(AttributeError, match="no_such_thing"):
        hg.no_such_thing  # noqa: B018


def test_readme_snippet_runs(tmp_path, monkeypatch):
    """The README's snippet, executed as written on the demo digits, against a checkpoint in runs/csq (an
    untrained model: the snippet's behaviour does not depend on the weights)."""
    torch.manual_seed(0)
    model = hg.create_model(backbone="small_cnn", bits=16, in_channels=1, image_size=28)
    save_model(tmp_path / "runs" / "csq", model)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_readme_snippet(), "README.md", "exec"), namespace)  # noqa: S102
    metrics, images, adv = namespace["metrics"], namespace["images"], namespace["adv"]
    assert 0.0 <= metrics["map"] <= 1.0 and metrics["topk"] == 1000
    assert metrics["n_queries"] == 100 and metrics["n_database"] == 1000
    assert images.shape == (8, 1, 28, 28) and adv.shape == images.shape
    assert float((adv - images).abs().max()) <= 8 / 255 + 1e-6 and 0.0 <= float(adv.min()) <= float(adv.max()) <= 1.0
    distances, ids = namespace["distances"], namespace["ids"]
    assert ids.shape == (8, 10) and np.all(np.diff(distances, axis=1) >= 0) and np.all((0 <= ids) & (ids < 1000))


def test_evaluate_matches_the_retrieval_metric():
    """hg.evaluate encodes both splits and equals the metric computed from hg.encode's codes by hand."""
    from hashguard.retrieval import mean_average_precision

    splits = tiny_splits(sizes=(60, 20, 120))
    torch.manual_seed(1)
    model = hg.create_model(backbone="small_cnn", bits=8, data=splits)
    metrics = hg.evaluate(model, splits, topk=None)
    q, ql = hg.encode(model, splits.query, batch_size=3)
    db, dbl = hg.encode(model, splits.database)
    assert metrics["map"] == pytest.approx(mean_average_precision(q, db, ql, dbl, topk=None))
    same = hg.evaluate(model, splits.query, splits.database, topk=None)
    assert same["map"] == metrics["map"]
    with pytest.raises(ConfigError, match="database"):
        hg.evaluate(model, splits.query)
    with pytest.raises(ConfigError, match="topk"):
        hg.evaluate(model, splits, topk=0)


def test_create_model_follows_the_data():
    splits = tiny_splits(sizes=(60, 20, 120))
    model = hg.create_model(bits=12, data=splits)
    assert model.bits == 12
    assert (model.spec.in_channels, model.spec.image_size) == splits.image_shape[:2]
    rgb = hg.create_model(backbone="small_cnn", bits=8, image_size=32)
    assert rgb.spec.in_channels == 3 and rgb.spec.image_size == 32
    with pytest.raises(ConfigError, match="backbone"):
        hg.create_model(backbone="no-such-net")


def test_attack_and_build_attack():
    splits = tiny_splits(sizes=(60, 20, 120))
    torch.manual_seed(2)
    model = hg.create_model(bits=8, data=splits)
    images, labels = splits.query[0:4].tensors()
    adv = hg.attack(model, images, labels, name="mainstay", train=splits.train, eps=4 / 255, iterations=3)
    assert adv.shape == images.shape and float((adv - images).abs().max()) <= 4 / 255 + 1e-6
    with pytest.raises(ConfigError, match="needs the train split"):
        hg.build_attack("mainstay", model)
    built = hg.build_attack("hag", model, eps=2 / 255, iterations=2)
    assert float((built(images, labels) - images).abs().max()) <= 2 / 255 + 1e-6


def test_list_plugins():
    everything = hg.list_plugins()
    assert set(everything) == {"sources", "backbones", "heads", "methods", "optimizers", "attacks", "defenses",
                               "detectors"}
    assert hg.list_plugins("datasets") == {"sources": everything["sources"]}
    assert hg.list_plugins("attacks", "*-targeted") == {"attacks": ["mainstay-targeted", "sdha-targeted"]}
    assert hg.list_plugins("methods", "PSH") == {"methods": ["dpsh"]}
    with pytest.raises(ConfigError, match="unknown kind"):
        hg.list_plugins("spaceships")


@pytest.mark.parametrize("source", ["array", "memory", "subset"])
def test_slicing_a_split_gives_a_dataset(source):
    """split[a:b:c] is a dataset holding exactly items a, a+c, ... re-indexed from 0, for every dataset class."""
    from hashguard.data import ArrayDataset, SubsetDataset

    splits = tiny_splits(sizes=(60, 20, 120))
    base = splits.database
    if source == "array":
        base = ArrayDataset((base.tensors()[0] * 255).round().to(torch.uint8).numpy(), base.labels)
    elif source == "subset":
        base = SubsetDataset(base, np.arange(len(base))[::-1])
    n = len(base)
    for window in (slice(0, 3), slice(1, None, 2), slice(-3, None), slice(5, 2), slice(None, None, -1)):
        part = base[window]
        expected = list(range(n))[window]
        assert len(part) == len(expected)
        for new, old in enumerate(expected):
            image, label, index = part[new]
            assert index == new
            assert torch.equal(image, base[old][0]) and torch.equal(label, base[old][1])
        images, labels = part.tensors()
        assert images.shape == (len(expected), *base.image_shape) and labels.shape == (len(expected), base.num_classes)
    assert base[-1][2] == n - 1 and torch.equal(base[-1][0], base[n - 1][0])
    for bad in ("0", 1.5, None, [0, 1], True):
        with pytest.raises(TypeError, match="indices must be integers or slices"):
            base[bad]
    with pytest.raises(IndexError, match="out of range"):
        base[n]
