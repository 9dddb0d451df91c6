"""Every ``hashguard`` command of the README's bash blocks runs as written, in order, in a fresh directory.

The commands are read from README.md (lines of a ```bash block that start with ``hashguard``), never copied
here. Each runs in-process through :func:`hashguard.cli.main` in a temporary directory that holds a link to
the repository's ``configs/``, exactly as from the repository root. Arguments are only *appended*, and only
ones that shrink the work (epochs, data sizes, attacked queries, iterations; see ``SHRINK``): the README's
own arguments are never changed or removed. Each command must exit 0 and produce what it names with
``--out`` / ``--pr-out`` (and its known files: a checkpoint, attack results, a study's results).

Marker: a README command whose comment contains ``needs:`` (e.g. ``# needs: FAISS``) needs something the
repository does not ship (a benchmark's files, FAISS, pretrained weights) and is skipped here; the test
checks that the marker is used only on such lines (each names what it needs).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from hashguard.cli import main

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARKER = "needs:"

#: demo-mnist / demo-mnist-multi shrunk for the test: 300 training items, 40 queries, 600 database items
TINY_DATA = "data.options={train_size: 300, query_size: 40, database_size: 600}"
#: appended to every README command of a subcommand (argparse: a later flag wins, a later --set overrides)
SHRINK: dict[str, list[str]] = {
    "train": ["--set", "train.epochs=1", "--set", "train.progress=false", "--set", TINY_DATA],
    "attack": ["--queries", "6", "--iterations", "2"],
    "defend": ["--set", "epochs=1", "--set", "train_items=32", "--set", "iterations=1"],
    "study": [
        "--set", "train.epochs=1", "--set", "train.progress=false", "--set", TINY_DATA,
        "--set", "attacks.queries=4", "--set", "attacks.override.iterations=1",
        "--set", "attacks.sweep.eps=[16/255]",
        # the demo's suite, THA's prototype network trained for a moment
        "--set", "attacks.suite=[mainstay, hag, sdha, mainstay-targeted, dhta, p2p, "
        "{name: tha, params: {epochs: 1, steps: 2, hidden: 16}}]",
        "--set", "defenses.run=[" + ", ".join(
            f"{{name: {name}, preset: demo, settings: {{epochs: 1, train_items: 32, iterations: 1}}}}"
            for name in ("saat", "atrdh", "cgat")
        ) + "]",
        "--set", "report.grid_queries=1",
    ],
}


def readme_commands() -> list[tuple[str, bool]]:
    """``(command line, runnable)`` for every ``hashguard`` line of the README's bash blocks, in order."""
    commands: list[tuple[str, bool]] = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S):
        for line in block.splitlines():
            line = line.strip()
            if line.startswith("hashguard "):
                comment = line.partition("#")[2]
                commands.append((line, MARKER not in comment))
    return commands


def argv_of(line: str) -> list[str]:
    words = shlex.split(line, comments=True)
    assert words[0] == "hashguard"
    return words[1:]


def option(argv: list[str], name: str) -> str | None:
    """The value of the first ``name`` option, as the README wrote it."""
    return argv[argv.index(name) + 1] if name in argv else None


def expected_outputs(argv: list[str]) -> list[Path]:
    """What a command must have written, from its own arguments."""
    command = argv[0] if argv[0] != "search" else f"search {argv[1]}"
    out = option(argv, "--out")
    paths = [Path(p) for p in (out, option(argv, "--pr-out")) if p is not None]
    if command in ("train", "defend"):
        paths += [Path(out) / "model.safetensors", Path(out) / "model.json"]
    elif command == "attack":
        name = option(argv, "--attack")
        paths += [Path(out) / f"{name}_result.json", Path(out) / f"{name}_codes.npz"]
        if option(argv, "--targets") is None and name in ("dhta", "p2p", "tha", "mainstay-targeted"):
            paths.append(Path(out) / "target_labels.json")
    elif command == "study" and "--dry-run" not in argv:
        paths += [Path(out) / "results.json", Path(out) / "report.md", Path(out) / "report.html"]
    return paths


def test_readme_has_the_commands_a_user_follows():
    commands = readme_commands()
    runnable = [argv_of(line)[0] for line, ok in commands if ok]
    for needed in ("list", "train", "encode", "evaluate", "search", "attack", "defend", "study"):
        assert needed in runnable, needed
    # the marker only ever skips a line that says what it needs
    for line, ok in commands:
        if not ok:
            assert re.search(r"needs:\s*\S", line), line
    # every code file a command reads is written by an earlier command
    written: set[str] = set()
    for line, ok in commands:
        argv = argv_of(line)
        for flag in ("--codes", "--index", "--targets", "--query-codes", "--db-codes"):
            value = option(argv, flag)
            if ok and value is not None and not value.startswith("configs/"):
                assert any(value == w or value.startswith(w + "/") for w in written), (line, value)
        if ok:
            written |= {str(p) for p in expected_outputs(argv)}


def test_every_readme_command_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(ROOT / "configs", target_is_directory=True)
    ran = 0
    for line, runnable in readme_commands():
        if not runnable:
            continue
        argv = argv_of(line)
        status = main(argv + SHRINK.get(argv[0], []))
        captured = capsys.readouterr()
        assert status == 0, f"{line}\n{captured.err[-2000:]}"
        for path in expected_outputs(argv):
            assert path.exists(), f"{line}: {path} was not written"
        ran += 1
    assert ran >= 10
