"""Every code block of README.md runs: the Python blocks as written (in one namespace, in order),
every ``credo ...`` line of the bash blocks parses, the cheap ones run, and every ``credo train``
line's config (with its overrides) loads."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from credo.cli.main import build_parser, main
from credo.cli.train import load_train_config

README = Path(__file__).resolve().parent.parent / "README.md"
TEXT = README.read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, re.S)
BASH_LINES = [
    line.strip() for block in re.findall(r"```bash\n(.*?)```", TEXT, re.S) for line in block.splitlines()
]
CREDO_LINES = [shlex.split(line, comments=True) for line in BASH_LINES if line.startswith("credo ")]
# cheap enough to run in full here (seconds)
RUN = {"credo --help", "credo --version", "credo train --list-configs", "credo tabular --list"}


def test_readme_has_blocks() -> None:
    assert len(PYTHON_BLOCKS) >= 2
    assert len(CREDO_LINES) >= 8


def test_python_blocks_run() -> None:
    namespace: dict[str, object] = {}
    for block in PYTHON_BLOCKS:
        exec(compile(block, str(README), "exec"), namespace)


@pytest.mark.parametrize("argv", CREDO_LINES, ids=[" ".join(a) for a in CREDO_LINES])
def test_credo_lines_parse(argv: list[str]) -> None:
    args = argv[1:]
    if args in (["--version"], ["--help"]):
        with pytest.raises(SystemExit) as exit_info:
            build_parser([]).parse_args(args)
        assert exit_info.value.code == 0
        return
    parsed = build_parser(args).parse_args(args)
    assert parsed.command == args[0] and callable(parsed.func)


@pytest.mark.parametrize("argv", [a for a in CREDO_LINES if " ".join(a) in RUN])
def test_cheap_credo_lines_run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(argv[1:])
    except SystemExit as exit_info:  # --help, --version
        code = exit_info.code
    assert code == 0
    assert capsys.readouterr().out.strip()


TRAIN_LINES = [a for a in CREDO_LINES if a[1] == "train" and len(a) > 2 and not a[2].startswith("-")]


@pytest.mark.parametrize("argv", TRAIN_LINES, ids=[" ".join(a) for a in TRAIN_LINES])
def test_train_lines_load_their_config(argv: list[str]) -> None:
    """Each README training run gets past config load (a config that does not fit its overrides
    fails there, with one line naming the option, not at the first RL step)."""
    config, _ = load_train_config(argv[2], argv[3:])
    assert config.steps > 0


def test_wta_command_of_the_readme_loads() -> None:
    assert [
        "credo",
        "train",
        "synthetic_rec_shape_grpo",
        "--steps",
        "50",
        "--credit.estimator",
        "wta",
    ] in TRAIN_LINES
    config, task = load_train_config(
        "synthetic_rec_shape_grpo", ["--steps", "50", "--credit.estimator", "wta"]
    )
    assert config.credit.estimator == "wta" and config.steps == 50 and task is not None


def test_diagnose_tabular_runs_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["diagnose", "tabular", "--groups", "8", "--repeats", "4", "--out", str(tmp_path)])
    assert code == 0
    assert "grpo" in capsys.readouterr().out
