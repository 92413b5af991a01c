"""``credo methods her|coma|shaping`` end to end, with tiny budgets."""

from __future__ import annotations

import pytest

from credo.cli.main import main


@pytest.mark.parametrize(
    ("argv", "png", "expect"),
    [
        (["her", "--bits", "4", "--episodes", "20"], "her-bitflip-4.png", "episodes to 90%"),
        (["coma", "--agents", "3", "--updates", "20", "--seeds", "2"], "coma-3-agents.png", "reinforce"),
        (
            ["shaping", "--size", "6", "--episodes", "8", "--seeds", "1"],
            "shaping-6x6.png",
            "equal with and without shaping",
        ),
    ],
)
def test_methods_cli_writes_a_png_and_a_table(tmp_path, capsys, argv, png, expect):
    code = main(["methods", *argv, "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    assert expect in out and str(tmp_path / png) in out


def test_methods_cli_shaping_says_the_policy_is_unchanged(tmp_path, capsys):
    main(["methods", "shaping", "--size", "6", "--episodes", "5", "--seeds", "1", "--out", str(tmp_path)])
    assert "(value iteration): True" in capsys.readouterr().out


def test_methods_cli_rejects_unknown_method(capsys):
    with pytest.raises(SystemExit):
        main(["methods", "attribution"])
