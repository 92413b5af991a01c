"""Parsing a set-valued answer (a numbered list of K candidates) into candidates and character spans.

A tiny model trained for a few minutes writes lists like ``"1. apple\\n2. pear\\n3. plum"`` but also
``"1.apple"``, ``"1) apple"``, ``"1: apple"``, ``"- apple"``, ``". pear"`` (number missing), two items
numbered ``1.``, a chatty line before the list, ``"Hope this helps"`` after it, an inline list
``"1. apple 2. pear 3. plum"``, a bare comma list ``"apple, pear, plum"``, fewer or more items than
asked, or an empty item. :func:`parse_numbered_list` accepts all of these, returns every candidate with
its character span ``[start, end)`` in the text (``text[start:end] == candidate``; the span covers the
candidate's content only, not the ``"1."`` marker nor the surrounding whitespace) and records what was
off: ``parsed_ok`` is False when the answer did not yield exactly ``k`` non-empty candidates (or no
list at all), with the ``reason``; tolerated format deviations are listed in ``issues``.

The trainer maps those character spans to token spans with a tokenizer's offset mapping
(``credo.llm.rollout.char_spans_to_token_spans``, beside the tokenizer-facing code), so
candidate-level credit lands on the right tokens.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "ParsedCandidates",
    "format_numbered_list",
    "parse_numbered_list",
    "unparsable_share",
]

# A list marker at the start of a line: an optional 1-2 digit number then ".", ")" or ":", or a bullet
# "-", "*", "•" followed by whitespace. A numbered marker directly followed by a digit ("1.25*3") is a
# marker only when its number is the next one expected (otherwise "3.5" or "12:30" is content).
_LINE_MARKER = re.compile(
    r"[ \t]*(?:(?P<num>\d{1,2})?[ \t]*(?P<punct>[.):])|(?P<bullet>[-*•])(?=[ \t]))[ \t]*"
)
# An inline marker "<space>N." / "<space>N)" inside a line, where N is the next expected number.
_INLINE_MARKER = re.compile(r"(?<=\s)(?P<num>\d{1,2})[.)](?!\d)[ \t]*")
_MAX_ITEMS = 64


@dataclass(frozen=True)
class ParsedCandidates:
    """The candidates of one answer.

    Attributes:
        candidates: the candidate strings, in order (an empty item is ``""``); at most ``k`` of them
            when ``k`` was given (extra items are dropped and counted in ``n_extra``).
        spans: one character span ``(start, end)`` per candidate with ``text[start:end] == candidate``,
            or None for an empty item.
        parsed_ok: True when the answer gave exactly ``k`` non-empty candidates (``k`` given) or at
            least one non-empty candidate (``k`` None).
        reason: why ``parsed_ok`` is False (``""`` when it is True).
        issues: tolerated deviations from the canonical ``"1. x\\n2. y"`` format (for logging).
        n_extra: number of items found beyond ``k`` (dropped).
    """

    candidates: tuple[str, ...]
    spans: tuple[tuple[int, int] | None, ...]
    parsed_ok: bool
    reason: str = ""
    issues: tuple[str, ...] = field(default_factory=tuple)
    n_extra: int = 0

    def __len__(self) -> int:
        return len(self.candidates)


def format_numbered_list(candidates: Sequence[str]) -> str:
    """The canonical answer ``"1. a\\n2. b\\n3. c"`` (the format :func:`parse_numbered_list` reads back
    exactly)."""
    if isinstance(candidates, str):
        raise TypeError("candidates must be a sequence of strings, not a single string")
    for i, c in enumerate(candidates):
        if not isinstance(c, str):
            raise TypeError(f"candidates[{i}] must be a str, got {type(c).__name__}")
        if "\n" in c:
            raise ValueError(f"candidates[{i}] contains a newline: {c!r}")
    return "\n".join(f"{i + 1}. {c.strip()}" for i, c in enumerate(candidates))


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Shrink ``[start, end)`` so it holds no leading/trailing whitespace."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


@dataclass
class _Item:
    number: int | None
    start: int
    end: int
    marker: str  # "num", "nonum", "bullet", "none", "inline", "comma"


def _split_inline(text: str, item: _Item, issues: list[str]) -> list[_Item]:
    """Split one marked line holding ``"1. a 2. b 3. c"`` at markers numbered consecutively."""
    if item.number is None:
        return [item]
    line_end = item.end
    pieces = [item]
    expected = item.number + 1
    segment = text[item.start : line_end]
    for m in _INLINE_MARKER.finditer(segment):
        if int(m.group("num")) != expected:
            continue
        last = pieces[-1]
        last.end = item.start + m.start()
        pieces.append(_Item(expected, item.start + m.end(), line_end, "inline"))
        expected += 1
    if len(pieces) > 1:
        issues.append("inline list (several items on one line)")
    return pieces


def _line_items(text: str, issues: list[str]) -> tuple[list[_Item], list[_Item]]:
    """Marked items and unmarked non-empty lines, in text order (``(marked, all)``)."""
    items: list[_Item] = []
    position = 0
    any_marked = False
    for line in text.splitlines(keepends=True):
        line_start, line_end = position, position + len(line.rstrip("\r\n"))
        position += len(line)
        if not text[line_start:line_end].strip():
            continue
        m = _LINE_MARKER.match(text, line_start, line_end)
        if (
            m is not None
            and m.group("punct") is not None
            and text[m.end("punct") : m.end("punct") + 1].isdigit()
        ):
            n_marked = sum(it.marker != "none" for it in items)
            if m.group("num") is None or int(m.group("num")) != n_marked + 1:
                m = None
        if m is not None:
            any_marked = True
            if m.group("bullet") is not None:
                items.append(_Item(None, m.end(), line_end, "bullet"))
            elif m.group("num") is None:
                items.append(_Item(None, m.end(), line_end, "nonum"))
            else:
                items.append(_Item(int(m.group("num")), m.end(), line_end, "num"))
        else:
            items.append(_Item(None, line_start, line_end, "none"))
    if not any_marked:
        return [], items
    expanded: list[_Item] = []
    for it in items:
        expanded.extend(_split_inline(text, it, issues) if it.marker == "num" else [it])
    return [it for it in expanded if it.marker != "none"], expanded


def _comma_items(text: str) -> list[_Item]:
    """Items of a single-line bare list ``"a, b; c"`` (split at commas or semicolons)."""
    items = []
    start = 0
    for m in re.finditer(r"[,;]", text):
        items.append(_Item(None, start, m.start(), "comma"))
        start = m.end()
    items.append(_Item(None, start, len(text), "comma"))
    return items


def _check_parse_args(text: str, k: int | None) -> None:
    """Reject a non-string ``text`` and a ``k`` that is not None nor an int ``>= 1``."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError(f"k must be an int or None, got {type(k).__name__}")
        if k < 1:
            raise ValueError(f"k must be >= 1 (the number of candidates asked for), got {k}")


def _marked_list_items(
    marked: list[_Item], all_items: list[_Item], k: int | None, issues: list[str]
) -> list[_Item]:
    """The items of a marked list: from the first to the last marked line (preamble dropped), plus
    unmarked trailing lines while fewer than ``k`` items have been found."""
    first = all_items.index(marked[0])
    last = max(i for i, it in enumerate(all_items) if it.marker != "none")
    if first > 0:
        issues.append("text before the list")
    items = list(all_items[first : last + 1])
    trailing = all_items[last + 1 :]
    if any(it.marker == "none" for it in items):
        issues.append("item without a marker inside the list")
    if trailing:
        n_take = 0 if k is None else max(0, k - len(items))
        if n_take:
            issues.append("unmarked lines after the list taken as items")
        items.extend(trailing[:n_take])
        if len(trailing) > n_take:
            issues.append("text after the list")
    return items


def _unmarked_list_items(text: str, all_items: list[_Item], issues: list[str]) -> list[_Item]:
    """The items of an answer without markers: its non-empty lines, or a single line split at commas
    or semicolons."""
    issues.append("no list markers")
    items = _comma_items(text) if len(all_items) == 1 else all_items
    if len(all_items) == 1 and len(items) > 1:
        issues.append("comma-separated list")
    return items


def _note_numbering_issues(items: list[_Item], issues: list[str]) -> None:
    """Record missing numbers, bullets, duplicate numbers and numbers out of order."""
    markers = {it.marker for it in items}
    if "nonum" in markers:
        issues.append("marker without a number")
    if "bullet" in markers:
        issues.append("bullet markers instead of numbers")
    numbers = [it.number for it in items if it.number is not None]
    if len(set(numbers)) < len(numbers):
        issues.append("duplicate numbers")
    elif numbers != sorted(numbers) or (numbers and numbers[0] != 1):
        issues.append("numbers out of order")


def _candidates_and_spans(text: str, items: list[_Item]) -> tuple[list[str], list[tuple[int, int] | None]]:
    """Each item's whitespace-stripped content and span (``""`` and None for an empty item)."""
    candidates: list[str] = []
    spans: list[tuple[int, int] | None] = []
    for it in items:
        s, e = _strip_span(text, it.start, it.end)
        if e > s:
            candidates.append(text[s:e])
            spans.append((s, e))
        else:
            candidates.append("")
            spans.append(None)
    return candidates, spans


def _failure_reason(n_items: int, candidates: list[str], k: int | None) -> str:
    """Why the answer is not a valid list (``""`` when it is)."""
    n_empty = sum(c == "" for c in candidates)
    if k is not None and n_items != k:
        return f"{n_items} items, expected {k}"
    if n_empty:
        return f"{n_empty} empty item(s)"
    if not candidates:
        return "no items"
    return ""


def parse_numbered_list(text: str, k: int | None = None) -> ParsedCandidates:
    """Parse a numbered list of candidates out of ``text``, tolerating small-model format errors.

    Rules, in order:

    * A line starting with a marker (``"1."``, ``"1)"``, ``"1:"``, with or without a space after it;
      ``"."``/``")"`` with the number missing; or a bullet ``"-"``, ``"*"``, ``"•"``) starts an item.
      Inside such a line, ``" 2. "``, ``" 3) "`` ... numbered consecutively start further items
      (an inline list).
    * Non-empty lines before the first marked line are preamble (ignored). An unmarked line between
      two marked lines is an item whose number is missing. Unmarked lines after the last marked line
      are items while fewer than ``k`` items have been found, and trailing text otherwise (always
      trailing text when ``k`` is None).
    * With no marker at all: each non-empty line is an item; a single line is split at commas or
      semicolons.
    * Items beyond ``k`` are dropped (``n_extra`` counts them); empty items are kept as ``""`` with
      span None.

    Args:
        text: the completion.
        k: the number of candidates asked for (``>= 1``), or None to accept any number.

    Returns:
        :class:`ParsedCandidates`; ``text[s:e] == candidate`` for every span ``(s, e)``.
    """
    _check_parse_args(text, k)
    issues: list[str] = []
    marked, all_items = _line_items(text, issues)
    if marked:
        items = _marked_list_items(marked, all_items, k, issues)
    elif all_items:
        items = _unmarked_list_items(text, all_items, issues)
    else:
        return ParsedCandidates((), (), False, "empty answer" if not text.strip() else "no items", ())
    items = items[:_MAX_ITEMS] if k is None else items
    _note_numbering_issues(items, issues)
    n_extra = 0 if k is None else max(0, len(items) - k)
    kept = items if k is None else items[:k]
    candidates, spans = _candidates_and_spans(text, kept)
    reason = _failure_reason(len(items), candidates, k)
    return ParsedCandidates(
        candidates=tuple(candidates),
        spans=tuple(spans),
        parsed_ok=reason == "",
        reason=reason,
        issues=tuple(dict.fromkeys(issues)),
        n_extra=n_extra,
    )


def unparsable_share(parsed: Sequence[ParsedCandidates]) -> float:
    """Share of answers in a batch whose ``parsed_ok`` is False (0.0 for an empty batch)."""
    if not parsed:
        return 0.0
    return sum(not p.parsed_ok for p in parsed) / len(parsed)
