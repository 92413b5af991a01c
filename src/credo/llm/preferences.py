"""Preference data for reward models: the JSONL schema, loading with line-numbered errors, turning
rankings and ratings into pairs, and a synthetic generator with a known true reward.

One JSON object per line; the keys say which kind a line is (kinds may be mixed in one file):

* pair: ``{"prompt": str, "chosen": str, "rejected": str, "margin": float (optional)}`` — ``chosen``
  is preferred to ``rejected``; ``margin`` (>= 0) asks the Bradley-Terry loss for a score gap of at
  least that much (``-log sigmoid(r_chosen - r_rejected - margin)``).
* ranking: ``{"prompt": str, "ranking": [best, ..., worst]}`` — K >= 2 distinct answers, best first
  (ties are not allowed: two equal answers are an error). Expanded to the K(K-1)/2 pairs it implies,
  or trained listwise with the Plackett-Luce loss.
* rating: ``{"prompt": str, "answer": str, "rating": int 1-5}`` — ratings of answers to the same
  prompt become pairs: every two answers of one prompt whose ratings differ give one pair, the higher
  rated one chosen, with margin ``margin_per_point * (rating difference)`` (0 by default, i.e. no
  margin); answers with equal ratings give no pair; a prompt with one rated answer gives none.

Every error (bad JSON, a missing or unknown field, an empty answer, a tie in a ranking, a rating
outside 1-5) is a ``ValueError`` naming the file and the line.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from credo.llm.toy import LETTERS, letter_fraction_reward, letters_prompts


@dataclass(frozen=True)
class PreferencePair:
    prompt: str
    chosen: str
    rejected: str
    margin: float | None = None


@dataclass(frozen=True)
class Ranking:
    prompt: str
    ranking: tuple[str, ...]  # best first


@dataclass(frozen=True)
class Rating:
    prompt: str
    answer: str
    rating: int


Record = PreferencePair | Ranking | Rating

_KEYS: dict[str, tuple[set[str], set[str]]] = {  # kind -> (required keys, optional keys)
    "pair": ({"prompt", "chosen", "rejected"}, {"margin"}),
    "ranking": ({"prompt", "ranking"}, set()),
    "rating": ({"prompt", "answer", "rating"}, set()),
}


def _kind(obj: dict[str, Any]) -> str:
    if "ranking" in obj:
        return "ranking"
    if "rating" in obj or "answer" in obj:
        return "rating"
    return "pair"


def _text(obj: dict[str, Any], key: str, allow_empty: bool = False) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise ValueError(f"field {key!r} must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise ValueError(f"field {key!r} is empty")
    return value


def parse_record(obj: Any) -> Record:
    """One JSON object as a :class:`PreferencePair`, :class:`Ranking` or :class:`Rating`."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    kind = _kind(obj)
    required, optional = _KEYS[kind]
    missing = sorted(required - set(obj))
    if missing:
        raise ValueError(f"a {kind} record is missing field(s) {missing} (has {sorted(obj)})")
    unknown = sorted(set(obj) - required - optional)
    if unknown:
        raise ValueError(f"a {kind} record has unknown field(s) {unknown}")
    prompt = _text(obj, "prompt", allow_empty=True)
    if kind == "pair":
        margin = obj.get("margin")
        if margin is not None and (
            isinstance(margin, bool) or not isinstance(margin, int | float) or margin < 0
        ):
            raise ValueError(f"field 'margin' must be a number >= 0, got {margin!r}")
        chosen, rejected = _text(obj, "chosen"), _text(obj, "rejected")
        if chosen == rejected:
            raise ValueError("'chosen' and 'rejected' are the same answer (a tie)")
        return PreferencePair(prompt, chosen, rejected, None if margin is None else float(margin))
    if kind == "ranking":
        answers = obj["ranking"]
        if not isinstance(answers, list) or len(answers) < 2:
            raise ValueError("field 'ranking' must be a list of at least 2 answers, best first")
        texts = tuple(_text({"ranking": a}, "ranking") for a in answers)
        if len(set(texts)) != len(texts):
            raise ValueError("field 'ranking' lists the same answer twice (ties are not allowed)")
        return Ranking(prompt, texts)
    rating = obj["rating"]
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise ValueError(f"field 'rating' must be an integer from 1 to 5, got {rating!r}")
    return Rating(prompt, _text(obj, "answer"), rating)


def load_preferences(path: str | os.PathLike[str]) -> list[Record]:
    """All records of a JSONL file (blank lines skipped); errors name ``file:line``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"preference file {str(path)!r} does not exist")
    records: list[Record] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(parse_record(json.loads(line)))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from None
        except ValueError as error:
            raise ValueError(f"{path}:{number}: {error}") from None
    if not records:
        raise ValueError(f"preference file {str(path)!r} holds no records")
    return records


def record_to_dict(record: Record) -> dict[str, Any]:
    if isinstance(record, PreferencePair):
        out: dict[str, Any] = {"prompt": record.prompt, "chosen": record.chosen, "rejected": record.rejected}
        if record.margin is not None:
            out["margin"] = record.margin
        return out
    if isinstance(record, Ranking):
        return {"prompt": record.prompt, "ranking": list(record.ranking)}
    return {"prompt": record.prompt, "answer": record.answer, "rating": record.rating}


def write_preferences(records: Iterable[Record], path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record_to_dict(r)) + "\n" for r in records))
    return path


def ranking_to_pairs(ranking: Ranking) -> list[PreferencePair]:
    """The K(K-1)/2 pairs a ranking implies (each answer preferred to every answer below it)."""
    a = ranking.ranking
    return [PreferencePair(ranking.prompt, a[i], a[j]) for i in range(len(a)) for j in range(i + 1, len(a))]


def ratings_to_pairs(ratings: Sequence[Rating], margin_per_point: float = 0.0) -> list[PreferencePair]:
    """Pairs from ratings of answers to the same prompt (see the module docstring for the rule)."""
    by_prompt: dict[str, list[Rating]] = {}
    for r in ratings:
        by_prompt.setdefault(r.prompt, []).append(r)
    pairs = []
    for prompt, group in by_prompt.items():
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                if a.rating == b.rating or a.answer == b.answer:
                    continue
                hi, lo = (a, b) if a.rating > b.rating else (b, a)
                margin = margin_per_point * (hi.rating - lo.rating) if margin_per_point else None
                pairs.append(PreferencePair(prompt, hi.answer, lo.answer, margin))
    return pairs


def to_pairs(records: Sequence[Record], margin_per_point: float = 0.0) -> list[PreferencePair]:
    """Every record as pairs: pairs as they are, rankings expanded, ratings paired by prompt."""
    pairs: list[PreferencePair] = []
    for r in records:
        if isinstance(r, PreferencePair):
            pairs.append(r)
        elif isinstance(r, Ranking):
            pairs.extend(ranking_to_pairs(r))
    pairs.extend(ratings_to_pairs([r for r in records if isinstance(r, Rating)], margin_per_point))
    return pairs


# ---------------------------------------------------------------- synthetic data with a known reward

TrueReward = Callable[[str, str], float]


def letters_true_reward(prompt: str, answer: str) -> float:
    """The hidden reward of the ``letters`` toy task: the fraction of ``'a'`` in the first 8 characters."""
    return letter_fraction_reward([prompt], [answer])[0]


def _letters_answer(rng: random.Random, length: int = 8) -> str:
    """8 letters, each ``'a'`` with a probability drawn per answer from [0, 0.75] (so true rewards
    spread over [0, 1] instead of piling up near 1/26)."""
    p = rng.uniform(0.0, 0.75)
    return "".join("a" if rng.random() < p else rng.choice(LETTERS[1:]) for _ in range(length))


def synthetic_preferences(
    n: int,
    kind: str = "pairs",
    k: int = 4,
    seed: int = 0,
    true_reward: TrueReward = letters_true_reward,
    prompts: Sequence[str] | None = None,
    make_answer: Callable[[random.Random], str] = _letters_answer,
) -> list[Record]:
    """``n`` records of ``kind`` (``"pairs"``, ``"rankings"`` of ``k`` answers, ``"ratings"``: ``k``
    rated answers per prompt, i.e. ``n`` prompts give ``n * k`` lines) labelled by ``true_reward``
    without noise: chosen = higher true reward; answers with equal true reward are redrawn (pairs and
    rankings have no ties); rating = 1 + round(4 * true reward), for a reward in [0, 1]."""
    if kind not in ("pairs", "rankings", "ratings"):
        raise ValueError(f"kind must be 'pairs', 'rankings' or 'ratings', got {kind!r}")
    if n < 1 or k < 2:
        raise ValueError(f"need n >= 1 and k >= 2, got n={n}, k={k}")
    rng = random.Random(seed)
    prompts = list(prompts or letters_prompts())
    records: list[Record] = []
    for _ in range(n):
        prompt = rng.choice(prompts)
        if kind == "ratings":
            for _ in range(k):
                answer = make_answer(rng)
                rating = 1 + round(4 * min(max(true_reward(prompt, answer), 0.0), 1.0))
                records.append(Rating(prompt, answer, rating))
            continue
        size = 2 if kind == "pairs" else k
        answers: dict[float, str] = {}  # true reward -> answer (distinct rewards: no ties)
        for _attempt in range(1000 * size):
            if len(answers) == size:
                break
            answer = make_answer(rng)
            answers.setdefault(true_reward(prompt, answer), answer)
        if len(answers) < size:
            raise ValueError("the generator could not draw answers with distinct true rewards")
        ordered = [answers[r] for r in sorted(answers, reverse=True)]
        if kind == "pairs":
            records.append(PreferencePair(prompt, ordered[0], ordered[1]))
        else:
            records.append(Ranking(prompt, tuple(ordered)))
    return records
