import credo
from credo.cli.main import build_parser


def test_version_and_cli_parser() -> None:
    assert credo.__version__
    parser = build_parser()
    assert parser.prog == "credo"
