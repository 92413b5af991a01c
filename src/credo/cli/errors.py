"""The one error type of a user's mistake: ``credo`` prints it as one line and exits 2.

A subcommand turns what goes wrong while it reads its command line and config (a missing or unknown
config, a YAML syntax error, a bad key or value) into a :class:`UsageError`, with
:func:`config_errors` around the config-loading phase only, so a genuine bug later in a run still
shows its traceback. :func:`credo.cli.main.main` prints ``credo COMMAND: <message>`` and returns 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import yaml


class UsageError(ValueError):
    """A bad command line or config; the message names the file (and line, or key) at fault."""


def yaml_error_message(error: yaml.YAMLError) -> str:
    """``line N: <problem>`` of a YAML error (its first line when it has no position)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).strip().splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


@contextmanager
def config_errors(source: str | None) -> Iterator[None]:
    """Re-raise a ValueError, TypeError, FileNotFoundError or YAML error of the block as a
    :class:`UsageError` ``"<source>: <message>"`` (one line)."""
    prefix = f"{source}: " if source else ""
    try:
        yield
    except UsageError:
        raise
    except yaml.YAMLError as error:
        raise UsageError(f"{prefix}{yaml_error_message(error)}") from None
    except (ValueError, TypeError, FileNotFoundError) as error:
        message = " ".join(str(error).split()) or type(error).__name__
        raise UsageError(f"{prefix}{message}") from None
