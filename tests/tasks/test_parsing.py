"""The candidate parser: tolerance to small-model format errors, exact spans, token-span mapping."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credo.llm.rollout import char_spans_to_token_spans
from credo.tasks.parsing import (
    ParsedCandidates,
    format_numbered_list,
    parse_numbered_list,
    unparsable_share,
)


def check_spans(text: str, parsed: ParsedCandidates) -> None:
    assert len(parsed.candidates) == len(parsed.spans)
    previous_end = 0
    for candidate, span in zip(parsed.candidates, parsed.spans):
        if span is None:
            assert candidate == ""
            continue
        s, e = span
        assert text[s:e] == candidate
        assert candidate == candidate.strip() and candidate
        assert s >= previous_end
        previous_end = e


def parse(text: str, k: int | None = 3) -> ParsedCandidates:
    parsed = parse_numbered_list(text, k)
    check_spans(text, parsed)
    return parsed


def test_canonical_list() -> None:
    text = "1. apple\n2. pear\n3. plum"
    p = parse(text)
    assert p.candidates == ("apple", "pear", "plum")
    assert p.spans == ((3, 8), (12, 16), (20, 24))
    assert p.parsed_ok and p.reason == "" and p.issues == ()


@pytest.mark.parametrize(
    "text",
    [
        "1.apple\n2.pear\n3.plum",  # missing space after the marker
        "1) apple\n2) pear\n3) plum",
        "1: apple\n2: pear\n3: plum",
        "1 . apple\n2 . pear\n3 . plum",
        "  1. apple  \n\n  2. pear\t\n3. plum  \n",  # blank lines and surrounding whitespace
        "1. apple\r\n2. pear\r\n3. plum",
    ],
)
def test_marker_variants(text: str) -> None:
    p = parse(text)
    assert p.candidates == ("apple", "pear", "plum")
    assert p.parsed_ok


def test_missing_number() -> None:
    p = parse("1. apple\n. pear\n3. plum")
    assert p.candidates == ("apple", "pear", "plum")
    assert p.parsed_ok and "marker without a number" in p.issues


def test_unmarked_line_inside_list_is_an_item() -> None:
    p = parse("1. apple\npear\n3. plum")
    assert p.candidates == ("apple", "pear", "plum")
    assert "item without a marker inside the list" in p.issues


def test_duplicate_numbers() -> None:
    p = parse("1. apple\n1. pear\n2. plum")
    assert p.candidates == ("apple", "pear", "plum")
    assert p.parsed_ok and "duplicate numbers" in p.issues


def test_numbers_out_of_order_recorded() -> None:
    p = parse("2. apple\n1. pear\n3. plum")
    assert p.candidates == ("apple", "pear", "plum")
    assert "numbers out of order" in p.issues


def test_text_before_and_after() -> None:
    text = "Sure! Here are three:\n1. apple\n2. pear\n3. plum\nHope this helps."
    p = parse(text)
    assert p.candidates == ("apple", "pear", "plum")
    assert p.parsed_ok
    assert "text before the list" in p.issues and "text after the list" in p.issues


def test_trailing_garbage_when_short_becomes_items() -> None:
    p = parse("1. apple\n2. pear\nzzz qq")
    assert p.candidates == ("apple", "pear", "zzz qq")
    assert "unmarked lines after the list taken as items" in p.issues


def test_trailing_text_ignored_without_k() -> None:
    p = parse("1. apple\n2. pear\nthanks", k=None)
    assert p.candidates == ("apple", "pear")
    assert p.parsed_ok


def test_fewer_items() -> None:
    p = parse("1. apple\n2. pear")
    assert p.candidates == ("apple", "pear")
    assert not p.parsed_ok and p.reason == "2 items, expected 3"


def test_more_items_dropped() -> None:
    p = parse("1. a\n2. b\n3. c\n4. d\n5. e")
    assert p.candidates == ("a", "b", "c")
    assert p.n_extra == 2
    assert not p.parsed_ok and "5 items" in p.reason


def test_empty_item() -> None:
    p = parse("1. apple\n2.\n3. plum")
    assert p.candidates == ("apple", "", "plum")
    assert p.spans[1] is None
    assert not p.parsed_ok and "empty" in p.reason


def test_inline_list() -> None:
    p = parse("1. apple 2. pear 3) plum")
    assert p.candidates == ("apple", "pear", "plum")
    assert p.parsed_ok and "inline list (several items on one line)" in p.issues


def test_inline_split_only_at_consecutive_numbers() -> None:
    p = parse("1. Ocean's 11. heist\n2. b\n3. c")  # " 11." is not the next number
    assert p.candidates == ("Ocean's 11. heist", "b", "c")


def test_no_markers_lines_and_commas() -> None:
    assert parse("apple\npear\nplum").candidates == ("apple", "pear", "plum")
    p = parse("apple, pear; plum")
    assert p.candidates == ("apple", "pear", "plum")
    assert "comma-separated list" in p.issues


def test_bullets() -> None:
    p = parse("- apple\n* pear\n• plum")
    assert p.candidates == ("apple", "pear", "plum")
    assert "bullet markers instead of numbers" in p.issues


def test_expressions_with_digits_after_marker() -> None:
    p = parse("1. 25*3+6\n2.3*4+2\n3.5+2")
    assert p.candidates == ("25*3+6", "3*4+2", "5+2")
    # "3.5" at the start of a line is content unless 3 is the next number
    p = parse("3.5 stars\n1. a\n2. b\n3. c")
    assert p.candidates == ("a", "b", "c") and "text before the list" in p.issues


def test_empty_and_blank_answers() -> None:
    for text in ["", "   \n  "]:
        p = parse(text)
        assert p.candidates == () and not p.parsed_ok and p.reason == "empty answer"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="k must be >= 1"):
        parse_numbered_list("1. a", 0)
    with pytest.raises(TypeError, match="k must be an int"):
        parse_numbered_list("1. a", 2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="text must be a str"):
        parse_numbered_list(None, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="candidates\\[1\\] contains a newline"):
        format_numbered_list(["a", "b\nc"])


def test_unparsable_share() -> None:
    batch = [parse_numbered_list(t, 2) for t in ["1. a\n2. b", "1. a", "", "x, y"]]
    assert unparsable_share(batch) == pytest.approx(0.5)
    assert unparsable_share([]) == 0.0


_item = st.text(alphabet="abcdefghij KLM'&!?*+-/()", min_size=1, max_size=12).filter(
    lambda s: s.strip() != "" and s.strip()[0] not in "-*)(" and s.strip()[-1] not in ".)"
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_item, min_size=1, max_size=8))
def test_roundtrip_canonical(items: list[str]) -> None:
    text = format_numbered_list(items)
    p = parse(text, k=len(items))
    assert p.candidates == tuple(i.strip() for i in items)
    assert p.parsed_ok


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab 12.):-*\n,", max_size=60), st.one_of(st.none(), st.integers(1, 5)))
def test_spans_always_exact(text: str, k: int | None) -> None:
    p = parse(text, k)
    if k is not None:
        assert len(p.candidates) <= k
    assert p.parsed_ok == (
        (len(p.candidates) == k if k is not None else len(p.candidates) > 0)
        and all(p.candidates)
        and p.n_extra == 0
    )


# ----- token spans --------------------------------------------------------------------------------
def reference_token_spans(char_spans, offsets):
    result = []
    for span in char_spans:
        if span is None or span[1] <= span[0]:
            result.append(None)
            continue
        hits = [t for t, (s, e) in enumerate(offsets) if e > s and s < span[1] and e > span[0]]
        result.append((min(hits), max(hits) + 1) if hits else None)
    return result


def test_token_spans_hand_made() -> None:
    # text "1. apple\n2. pear" tokenised as ["1", ".", " app", "le\n2", ".", " pe", "ar", <eos>]
    offsets = [(0, 1), (1, 2), (2, 6), (6, 10), (10, 11), (11, 14), (14, 16), (0, 0)]
    text = "1. apple\n2. pear"
    p = parse_numbered_list(text, 2)
    assert p.spans == ((3, 8), (12, 16))
    # "apple" = chars 3..8: token 2 (" app") and token 3 ("le\n2", crosses into the next item)
    # "pear" = chars 12..16: token 5 (" pe") and 6 ("ar"); the zero-width eos is not included
    assert char_spans_to_token_spans(p.spans, offsets) == [(2, 4), (5, 7)]
    assert char_spans_to_token_spans([None, (5, 5), (100, 120)], offsets) == [None, None, None]
    assert char_spans_to_token_spans([(0, 1)], [(0, 0), (0, 1)]) == [(1, 2)]  # leading bos


def test_token_spans_unsorted_offsets_fall_back() -> None:
    offsets = [(4, 6), (0, 2), (2, 4)]
    assert char_spans_to_token_spans([(1, 3), (5, 6)], offsets) == [(1, 3), (0, 1)]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 4), min_size=1, max_size=30),
    st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), max_size=6),
)
def test_token_spans_match_reference(lengths: list[int], spans: list[tuple[int, int]]) -> None:
    offsets, position = [], 0
    for n in lengths:  # n == 0 gives a zero-width (special) token
        offsets.append((position, position + n))
        position += n
    char_spans = [(min(a, b), max(a, b)) for a, b in spans] + [None]
    assert char_spans_to_token_spans(char_spans, offsets) == reference_token_spans(char_spans, offsets)
