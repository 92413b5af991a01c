"""Every code block of docs/*.md runs or parses: the ``python`` blocks of each page run as written (in one
namespace per page, in order, in a scratch directory), every ``credo ...`` line of the ``bash`` blocks
parses with the CLI's parser, and each ``credo train`` line naming a shipped config loads it with its
overrides. A block preceded by ``<!-- not-run: reason -->`` (a GPU, a model download, trl/verl, long
training, or a placeholder for the user's own files) is only compiled (Python) or skipped (bash)."""

from __future__ import annotations

import re
import shlex
import textwrap
from pathlib import Path

import pytest

from credo.cli.main import build_parser
from credo.cli.train import load_train_config

DOCS = sorted((Path(__file__).resolve().parent.parent / "docs").glob("*.md"))
BLOCK = re.compile(
    r"(?:<!--\s*not-run:\s*(?P<reason>.*?)\s*-->\s*)?```(?P<lang>python|bash)\n(?P<code>.*?)```", re.S
)
MAX_NOT_RUN = 6  # keep the list of blocks no test runs short
CREDO_PREFIXES = ("credo ", ".venv/bin/credo ")  # and ``... -m credo.cli.main ARGS``


def blocks(lang: str) -> list[tuple[Path, int, str, str | None]]:
    """``(page, line, code, not-run reason or None)`` of every ``lang`` block of the docs."""
    found = []
    for page in DOCS:
        text = page.read_text()
        for match in BLOCK.finditer(text):
            if match["lang"] == lang:
                line = text[: match.start("code")].count("\n") + 1
                found.append((page, line, textwrap.dedent(match["code"]), match["reason"]))
    return found


def credo_argv(line: str) -> list[str] | None:
    """The CLI arguments of a shell line that runs credo, or None."""
    line = line.strip()
    for prefix in CREDO_PREFIXES:
        if line.startswith(prefix):
            return shlex.split(line[len(prefix) :], comments=True)
    if "-m credo.cli.main " in line:
        return shlex.split(line.split("-m credo.cli.main ", 1)[1], comments=True)
    return None


PYTHON = blocks("python")
PAGES = sorted({page for page, _, _, _ in PYTHON})
CREDO_LINES = [
    (f"{page.name}:{line + i}", argv)
    for page, line, code, reason in blocks("bash")
    if reason is None
    for i, text in enumerate(code.replace("\\\n", "  ").splitlines())
    if (argv := credo_argv(text)) is not None
]


def test_docs_have_blocks_and_few_not_run() -> None:
    assert len(PYTHON) >= 5 and len(CREDO_LINES) >= 10
    reasons = [
        reason for lang in ("python", "bash") for _, _, _, reason in blocks(lang) if reason is not None
    ]
    assert all(reasons) and len(reasons) <= MAX_NOT_RUN, reasons
    marked = sum(len(re.findall(r"<!--\s*not-run:", page.read_text())) for page in DOCS)
    assert marked == len(reasons), "a not-run marker that is not right before a python or bash block"


@pytest.mark.parametrize("block", PYTHON, ids=[f"{p.name}:{line}" for p, line, _, _ in PYTHON])
def test_python_blocks_compile(block: tuple[Path, int, str, str | None]) -> None:
    page, line, code, _ = block
    compile("\n" * (line - 1) + code, str(page), "exec")


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_python_blocks_run(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    ran = 0
    for block_page, line, code, reason in PYTHON:
        if block_page == page and reason is None:
            exec(compile("\n" * (line - 1) + code, str(page), "exec"), namespace)
            ran += 1
    if not ran:
        pytest.skip(f"every python block of {page.name} is marked not-run")
    capsys.readouterr()


@pytest.mark.parametrize("argv", [a for _, a in CREDO_LINES], ids=[where for where, _ in CREDO_LINES])
def test_credo_lines_parse(argv: list[str]) -> None:
    if argv in (["--version"], ["--help"]):
        with pytest.raises(SystemExit) as exit_info:
            build_parser([]).parse_args(argv)
        assert exit_info.value.code == 0
        return
    parsed = build_parser(argv).parse_args(argv)
    assert parsed.command == argv[0] and callable(parsed.func)
    if argv[0] == "train" and len(argv) > 1 and not argv[1].startswith("-") and not argv[1].endswith(".yaml"):
        config, _ = load_train_config(argv[1], argv[2:])  # a shipped config, with the line's overrides
        assert config.steps > 0
