"""Countdown: "reach the target from these numbers", K expressions per answer, checked by execution.

Prompt: ``"Numbers: 3 7 25 2. Target: 81. Give 3:"``. Each candidate is an arithmetic expression
(``25*3+7-2+...``) run by a safe evaluator (:func:`safe_eval`): the text is parsed with :mod:`ast` and
only integer literals, ``+ - * /`` and parentheses are allowed (no names, calls, attributes,
subscripts, unary operators, powers or other operators); the text length and node count are bounded;
arithmetic is exact (:class:`fractions.Fraction`) with a magnitude guard; division by zero is invalid.
Every literal must be one of the given numbers, each used at most as often as it is given (not all
need be used). A trailing ``"= value"`` is ignored (the left side is evaluated).

Candidate score (:meth:`Countdown.candidate_score`): 1 when the expression equals the target exactly,
otherwise ``partial * max(0, 1 - |value - target| / target)`` in ``[0, partial]`` (``partial = 0.5``),
0 when invalid, empty or a repeat (same canonical text, :meth:`Countdown.canonical`; ``3*4`` and ``4*3``
are different candidates). Set utility: the max.

Instances are generated from a random expression over a random subset of the numbers, so every
instance is solvable; :func:`solve` finds solutions by exhaustive search (used by the demo policy).
"""

from __future__ import annotations

import ast
import random
import re
import sys
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache

from credo.tasks.base import SetTask, TaskPrompt, first_occurrences

__all__ = ["Countdown", "UnsafeExpressionError", "expression_numbers", "safe_eval", "solve"]

_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


class UnsafeExpressionError(ValueError):
    """An expression the safe evaluator refuses (bad syntax, forbidden construct, too large)."""


def _parse(expression: str, max_chars: int, max_nodes: int) -> ast.Expression:
    if not isinstance(expression, str):
        raise TypeError(f"expression must be a str, got {type(expression).__name__}")
    text = expression.strip()
    if not text:
        raise UnsafeExpressionError("empty expression")
    if len(text) > max_chars:
        raise UnsafeExpressionError(f"expression longer than {max_chars} characters")
    if not re.fullmatch(r"[0-9+\-*/() \t.]*", text):
        bad = sorted(set(re.sub(r"[0-9+\-*/() \t.]", "", text)))
        raise UnsafeExpressionError(f"forbidden character(s) {''.join(bad)!r}")
    if "**" in text or "//" in text:
        raise UnsafeExpressionError("powers and floor division are not allowed")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        raise UnsafeExpressionError(f"not an expression: {error.__class__.__name__}") from None
    nodes = list(ast.walk(tree))
    if len(nodes) > max_nodes:
        raise UnsafeExpressionError(f"expression has more than {max_nodes} nodes")
    return tree


def _check_nodes(tree: ast.Expression) -> list[int]:
    """The integer literals of ``tree`` (raises on any forbidden node)."""
    numbers: list[int] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Expression | ast.operator):
            if isinstance(node, ast.operator) and type(node) not in _OPS:
                raise UnsafeExpressionError(f"operator {type(node).__name__} is not allowed")
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _OPS:
                raise UnsafeExpressionError(f"operator {type(node.op).__name__} is not allowed")
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int):
                raise UnsafeExpressionError(f"only integer literals are allowed, got {node.value!r}")
            numbers.append(int(node.value))
        else:
            raise UnsafeExpressionError(f"{type(node).__name__} is not allowed")
    return numbers


def _depth(node: ast.AST) -> int:
    """The nesting depth of an expression's tree, without recursion."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in ast.iter_child_nodes(current))
    return deepest


def expression_numbers(expression: str, max_chars: int = 64, max_nodes: int = 64) -> list[int]:
    """The integer literals of a safe expression, in order (raises :class:`UnsafeExpressionError`)."""
    return _check_nodes(_parse(expression, max_chars, max_nodes))


def safe_eval(expression: str, max_chars: int = 64, max_nodes: int = 64, max_abs: int = 10**12) -> Fraction:
    """Evaluate an arithmetic expression of integer literals, ``+ - * /`` and parentheses exactly.

    Raises :class:`UnsafeExpressionError` for anything else (names, calls, attributes, subscripts,
    unary minus, powers, floats, strings, comparisons...), for text longer than ``max_chars`` or with
    more than ``max_nodes`` AST nodes, for a division by zero, and when an intermediate value's
    numerator or denominator exceeds ``max_abs`` (so evaluation time and memory stay bounded).
    """
    tree = _parse(expression, max_chars, max_nodes)
    _check_nodes(tree)
    depth = sys.getrecursionlimit() // 2  # the evaluator recurses once per nesting level
    if _depth(tree.body) > depth:
        raise UnsafeExpressionError(
            f"expression nested deeper than {depth} operations (raised max_chars/max_nodes?)"
        )

    def guard(x: Fraction) -> Fraction:
        if abs(x.numerator) > max_abs or x.denominator > max_abs:
            raise UnsafeExpressionError(f"intermediate value exceeds {max_abs}")
        return x

    def ev(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant):
            return guard(Fraction(int(node.value)))
        assert isinstance(node, ast.BinOp)
        left, right = ev(node.left), ev(node.right)
        if isinstance(node.op, ast.Add):
            return guard(left + right)
        if isinstance(node.op, ast.Sub):
            return guard(left - right)
        if isinstance(node.op, ast.Mult):
            return guard(left * right)
        if right == 0:
            raise UnsafeExpressionError("division by zero")
        return guard(left / right)

    return ev(tree.body)


def _sub_counter(used: Sequence[int], given: Sequence[int]) -> list[int]:
    """Numbers of ``used`` beyond what ``given`` allows (empty when each is used at most as given)."""
    excess = Counter(used) - Counter(given)
    return sorted(excess.elements())


def solve(numbers: Sequence[int], target: int, limit: int = 16) -> list[str]:
    """Up to ``limit`` distinct expressions over ``numbers`` (each at most once) equal to ``target``,
    shortest first, by exhaustive search over subsets (exact rational arithmetic)."""
    nums = tuple(int(x) for x in numbers)
    if len(nums) > 6:
        raise ValueError(f"numbers: exhaustive search supports at most 6 numbers, got {len(nums)}")
    table = _all_values(nums)
    found: set[str] = set()
    for mask in range(1, 1 << len(nums)):
        found.update(table[mask].get(Fraction(target), ()))
    return sorted(found, key=lambda e: (len(e), e))[:limit]


_EXPRESSIONS_PER_VALUE = 3


def _add_expression(d: dict[Fraction, tuple[str, ...]], v: Fraction, e: str) -> None:
    """Record expression ``e`` for value ``v`` (at most a few distinct expressions per value)."""
    old = d.get(v, ())
    if len(old) < _EXPRESSIONS_PER_VALUE and e not in old:
        d[v] = (*old, e)


def _combine_subsets(
    out: dict[Fraction, tuple[str, ...]],
    left: dict[Fraction, tuple[str, ...]],
    right: dict[Fraction, tuple[str, ...]],
) -> None:
    """Add to ``out`` every value one operation makes from a value of ``left`` and one of ``right``
    (both orders of the non-commutative operations; no negative results, no division by zero)."""
    for a, ea in left.items():
        for b, eb in right.items():
            _add_expression(out, a + b, f"{ea[0]}+{eb[0]}")
            _add_expression(out, a * b, f"({ea[0]})*({eb[0]})")
            if a - b >= 0:
                _add_expression(out, a - b, f"{ea[0]}-({eb[0]})")
            if b - a >= 0:
                _add_expression(out, b - a, f"{eb[0]}-({ea[0]})")
            if b != 0:
                _add_expression(out, a / b, f"({ea[0]})/({eb[0]})")
            if a != 0:
                _add_expression(out, b / a, f"({eb[0]})/({ea[0]})")


@lru_cache(maxsize=256)
def _all_values(nums: tuple[int, ...]) -> list[dict[Fraction, tuple[str, ...]]]:
    """For each subset mask of ``nums``: value -> a few expressions reaching it."""
    n = len(nums)
    table: list[dict[Fraction, tuple[str, ...]]] = [{} for _ in range(1 << n)]
    for i, x in enumerate(nums):
        table[1 << i] = {Fraction(x): (str(x),)}
    for mask in range(1, 1 << n):
        if mask & (mask - 1) == 0:
            continue
        out: dict[Fraction, tuple[str, ...]] = {}
        sub = (mask - 1) & mask
        while sub:
            other = mask ^ sub
            if sub < other:  # each unordered split once; both orders handled in _combine_subsets
                _combine_subsets(out, table[sub], table[other])
            sub = (sub - 1) & mask
        table[mask] = {v: tuple(_simplify(e) for e in es) for v, es in out.items()}
    return table


def _simplify(expression: str) -> str:
    """Drop redundant parentheses around single numbers: ``(3)*(4)`` -> ``3*4``."""
    return re.sub(r"\((\d+)\)", r"\1", expression)


class Countdown(SetTask):
    """The Countdown numbers game as a set task (see the module docstring).

    Args:
        k: expressions asked for.
        n_numbers: numbers given per instance (2 to 6).
        small_numbers, large_numbers: the pools numbers are drawn from (a large one with probability
            ``p_large`` per instance).
        target_range: ``(lo, hi)`` inclusive range of targets.
        partial: the most a near miss can score (exact hits score 1).
        p_good: chance that a demo candidate is a correct solution (else a random valid expression).
        max_chars, max_nodes: evaluator limits.
    """

    name = "countdown"

    def __init__(
        self,
        k: int = 3,
        n_numbers: int = 4,
        small_numbers: Sequence[int] = tuple(range(1, 11)),
        large_numbers: Sequence[int] = (25, 50),
        p_large: float = 0.5,
        target_range: tuple[int, int] = (10, 100),
        partial: float = 0.5,
        p_good: float = 0.4,
        max_chars: int = 64,
        max_nodes: int = 64,
        eval_fraction: float = 0.2,
    ) -> None:
        super().__init__(k)
        for name, limit in (("max_chars", max_chars), ("max_nodes", max_nodes)):
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ValueError(f"{name} must be an int >= 1, got {limit!r}")
        if isinstance(n_numbers, bool) or not isinstance(n_numbers, int) or not 2 <= n_numbers <= 6:
            raise ValueError(f"n_numbers must be an int in [2, 6], got {n_numbers!r}")
        lo, hi = target_range
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
            raise ValueError(f"target_range must be (lo, hi) ints with 1 <= lo <= hi, got {target_range!r}")
        if not small_numbers or any(int(x) < 1 for x in (*small_numbers, *large_numbers)):
            raise ValueError("small_numbers must be non-empty and all numbers positive integers")
        if not 0.0 <= partial < 1.0:
            raise ValueError(f"partial must be in [0, 1), got {partial}")
        if not 0.0 <= p_large <= 1.0 or not 0.0 <= p_good <= 1.0:
            raise ValueError("p_large and p_good must be in [0, 1]")
        if not 0.0 < eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
        self.n_numbers = n_numbers
        self.small_numbers = tuple(int(x) for x in small_numbers)
        self.large_numbers = tuple(int(x) for x in large_numbers)
        self.p_large = p_large
        self.target_range = (lo, hi)
        self.partial = float(partial)
        self.p_good = p_good
        self.max_chars = max_chars
        self.max_nodes = max_nodes
        self.eval_fraction = eval_fraction

    # ----- instances ---------------------------------------------------------------------------
    def split_of(self, numbers: Sequence[int], target: int) -> str:
        """``"eval"`` for a fixed ``eval_fraction`` of instances (by a hash of the sorted numbers and
        the target), ``"train"`` otherwise."""
        key = f"{sorted(numbers)}:{target}"
        h = int.from_bytes(__import__("hashlib").sha1(key.encode()).digest()[:8], "big")
        return "eval" if h / 2**64 < self.eval_fraction else "train"

    def _random_instance(self, rng: random.Random) -> tuple[list[int], int, str]:
        lo, hi = self.target_range
        while True:
            n_large = 1 if self.large_numbers and rng.random() < self.p_large else 0
            numbers = [rng.choice(self.large_numbers) for _ in range(n_large)]
            numbers += [rng.choice(self.small_numbers) for _ in range(self.n_numbers - n_large)]
            rng.shuffle(numbers)
            size = rng.randint(2, self.n_numbers)
            exprs = [(Fraction(x), str(x)) for x in rng.sample(numbers, size)]
            while len(exprs) > 1:
                (a, ea), (b, eb) = exprs.pop(rng.randrange(len(exprs))), exprs.pop(rng.randrange(len(exprs)))
                op = rng.choice("+-*/")
                if op == "-" and a < b:
                    (a, ea), (b, eb) = (b, eb), (a, ea)
                if op == "/" and (b == 0 or (a / b).denominator != 1):
                    op = "+"
                value = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else a + b}[op]
                exprs.append((value, f"({ea}{op}{eb})"))
            value, expression = exprs[0]
            if value.denominator == 1 and lo <= value <= hi:
                return numbers, int(value), expression[1:-1] if expression.startswith("(") else expression

    def make_prompt(self, numbers: Sequence[int], target: int) -> TaskPrompt:
        """The prompt for an instance (also usable for hand-made instances)."""
        if not numbers or any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in numbers):
            raise ValueError(f"numbers must be positive ints, got {numbers!r}")
        if isinstance(target, bool) or not isinstance(target, int):
            raise TypeError(f"target must be an int, got {type(target).__name__}")
        text = f"Numbers: {' '.join(map(str, numbers))}. Target: {target}. Give {self.k}:"
        return TaskPrompt(text, {"numbers": tuple(numbers), "target": int(target)})

    def _make_prompts(self, split: str, n: int, rng: random.Random) -> list[TaskPrompt]:
        result = []
        while len(result) < n:
            numbers, target, _ = self._random_instance(rng)
            if self.split_of(numbers, target) == split:
                result.append(self.make_prompt(numbers, target))
        return result

    def prompt_from_text(self, text: str) -> TaskPrompt:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        m = re.fullmatch(r"Numbers: ([\d ]+)\. Target: (\d+)\. Give (\d+):", text)
        if not m or int(m.group(3)) != self.k:
            raise ValueError(f"not a prompt of {self.name!r} with k={self.k}: {text[:80]!r}")
        return self.make_prompt([int(x) for x in m.group(1).split()], int(m.group(2)))

    # ----- scoring -----------------------------------------------------------------------------
    @staticmethod
    def canonical(candidate: str) -> str:
        """The expression a candidate holds: the part before ``"="``, whitespace removed, ``x``/``×``
        read as ``*`` and ``÷`` as ``/`` (two candidates with the same canonical text are repeats)."""
        expression = re.sub(r"\s+", "", candidate.split("=", 1)[0])
        return expression.replace("×", "*").replace("÷", "/").replace("x", "*").replace("X", "*")

    def evaluate(self, prompt: TaskPrompt, candidate: str) -> Fraction | None:
        """The value of a candidate, or None when it is invalid (unsafe, malformed, or uses a number
        that is not given or more often than given)."""
        expression = self.canonical(candidate)
        try:
            used = expression_numbers(expression, self.max_chars, self.max_nodes)
            if _sub_counter(used, prompt.meta["numbers"]):
                return None
            return safe_eval(expression, self.max_chars, self.max_nodes)
        except UnsafeExpressionError:
            return None

    def candidate_score(self, prompt: TaskPrompt, candidate: str) -> float:
        """1 for an exact hit, ``partial * max(0, 1 - |v - t| / t)`` for a valid miss, 0 if invalid."""
        value = self.evaluate(prompt, candidate)
        if value is None:
            return 0.0
        target = int(prompt.meta["target"])
        if value == target:
            return 1.0
        return self.partial * max(0.0, 1.0 - float(abs(value - target)) / target)

    def score_candidates(self, prompt: TaskPrompt, candidates: Sequence[str]) -> list[float]:
        keys = [self.canonical(c) or None for c in candidates]
        fresh = first_occurrences(keys)
        return [self.candidate_score(prompt, c) if ok else 0.0 for c, ok in zip(candidates, fresh)]

    def demo_candidates(self, prompt: TaskPrompt, rng: random.Random) -> list[str]:
        numbers = list(prompt.meta["numbers"])
        solutions = solve(numbers, int(prompt.meta["target"]))
        chosen: list[str] = []
        for _ in range(self.k):
            fresh_solutions = [s for s in solutions if s not in chosen]
            if fresh_solutions and rng.random() < self.p_good:
                chosen.append(rng.choice(fresh_solutions))
                continue
            for _ in range(20):
                size = rng.randint(2, len(numbers))
                picked = rng.sample(numbers, size)
                expression = str(picked[0])
                for x in picked[1:]:
                    expression += rng.choice("+-*") + str(x)
                if expression not in chosen:
                    break
            chosen.append(expression)
        return chosen
