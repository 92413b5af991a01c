"""Title matching for the recommendation tasks: :func:`normalise_title` (the matching key) and
:func:`shorten_title` (short display names a character-level model can write).

Titles are matched after normalisation (case, accents, punctuation, leading/trailing article, a year
in parentheses or at the end are ignored).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalise_title", "shorten_title"]

_ARTICLES = {"the", "a", "an"}


def normalise_title(title: str) -> str:
    """A matching key: lowercase ASCII, ``&`` as ``and``, punctuation removed, a year in parentheses or
    at the end removed, a leading or trailing article (``the``, ``a``, ``an``) removed.

    ``"The Matrix (1999)"``, ``"Matrix, The"`` and ``"matrix!"`` all give ``"matrix"``.
    """
    if not isinstance(title, str):
        raise TypeError(f"title must be a str, got {type(title).__name__}")
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii").lower()
    text = re.sub(r"\(\s*(1[89]|20)\d\d\s*\)", " ", text)
    text = text.replace("&", " and ")
    words = re.sub(r"[^a-z0-9]+", " ", text).split()
    if len(words) > 1 and re.fullmatch(r"(1[89]|20)\d\d", words[-1]):
        words = words[:-1]
    if len(words) > 1 and words[0] in _ARTICLES:
        words = words[1:]
    if len(words) > 1 and words[-1] in _ARTICLES:
        words = words[:-1]
    return " ".join(words)


def _clean_title(title: str) -> str:
    """Drop parenthetical notes (``"(a.k.a. ID4)"``) and a trailing ``", The"``; collapse spaces."""
    text = re.sub(r"\s*\([^)]*\)", "", title).strip()
    text = re.sub(r",\s*(The|A|An)$", "", text).strip()
    return re.sub(r"\s+", " ", text)


def _truncate_words(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars + 1].rsplit(" ", 1)[0].rstrip(" :-,")
    return cut if len(cut) <= max_chars else text[:max_chars]


def shorten_title(title: str, max_chars: int = 24) -> list[str]:
    """Candidate display names for ``title``, best first, each at most ``max_chars`` characters:
    the cleaned title, the part before a ``":"`` (or ``" - "``), the part after it, and the cleaned
    title cut at a word boundary. ``"Star Wars: Episode V - The Empire Strikes Back"`` gives
    ``["Star Wars", "The Empire Strikes Back", ...]``."""
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 4:
        raise ValueError(f"max_chars must be an int >= 4, got {max_chars!r}")
    clean = _clean_title(title)
    forms = [clean]
    for sep in (":", " - "):
        if sep in clean:
            head, _, tail = clean.partition(sep)
            forms.append(head.strip())
            forms.append(tail.strip())
            if " - " in tail:
                forms.append(tail.rsplit(" - ", 1)[1].strip())
    forms.append(_truncate_words(clean, max_chars))
    result: list[str] = []
    for form in forms:
        if 2 <= len(form) <= max_chars and sum(ch.isalnum() for ch in form) >= 2 and form not in result:
            result.append(form)
    return result
