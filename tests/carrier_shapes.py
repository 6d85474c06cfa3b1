"""Which formats of the carrier table can read the same number, derived from their regexes.

Every format regex has a bounded length, so it expands to a finite set of *shapes*: one set of
allowed characters per position (lookaheads are left out, so a shape may allow a little more
than the regex; every overlap found is confirmed on a concrete number that both regexes match).
Two formats overlap when two of their shapes have the same length and share a character at
every position. `co_valid_number` then looks for a number both formats accept as valid (check
digits included), which is what a real ambiguity needs.
"""

from __future__ import annotations

import itertools
import random
import string
import warnings
from collections.abc import Iterator
from functools import cache

from trackflow.carriers import _evaluate
from trackflow.carriers.formats import FORMATS, FORMATS_BY_ID, CarrierFormat

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import sre_constants as c
    import sre_parse

Shape = tuple[frozenset[str], ...]
_ALPHABET = string.digits + string.ascii_uppercase  # a normalised number's characters


def _char_set(items: list[tuple[object, object]]) -> frozenset[str]:
    chars: set[str] = set()
    for op, arg in items:
        if op is c.LITERAL:
            assert isinstance(arg, int)
            chars.add(chr(arg))
        elif op is c.RANGE:
            assert isinstance(arg, tuple)
            chars.update(chr(code) for code in range(arg[0], arg[1] + 1))
        elif op is c.CATEGORY and arg is c.CATEGORY_DIGIT:
            chars.update(string.digits)
        else:
            raise NotImplementedError(f"regex set item {op}")
    return frozenset(chars) & frozenset(_ALPHABET)


def _expand(items: list[tuple[object, object]]) -> set[Shape]:
    shapes: set[Shape] = {()}
    for op, arg in items:
        shapes = {head + tail for head in shapes for tail in _expand_one(op, arg)}
    return shapes


def _expand_one(op: object, arg: object) -> set[Shape]:
    if op is c.LITERAL:
        assert isinstance(arg, int)
        return {(frozenset(chr(arg)),)}
    if op is c.IN:
        assert isinstance(arg, list)
        return {(_char_set(arg),)}
    if op is c.SUBPATTERN:
        assert isinstance(arg, tuple)
        return _expand(_items(arg[-1]))
    if op is c.BRANCH:
        assert isinstance(arg, tuple)
        return set().union(*(_expand(_items(branch)) for branch in arg[1]))
    if op in (c.MAX_REPEAT, c.MIN_REPEAT):
        assert isinstance(arg, tuple)
        low, high, body = arg
        inner = _expand(_items(body))
        out: set[Shape] = set()
        for count in range(low, high + 1):
            for parts in itertools.product(inner, repeat=count):
                out.add(tuple(itertools.chain.from_iterable(parts)))
        return out
    if op in (c.ASSERT, c.ASSERT_NOT):
        return {()}  # a lookahead constrains, it consumes nothing: checked on the witness
    raise NotImplementedError(f"regex item {op}")


def _items(pattern: object) -> list[tuple[object, object]]:
    assert isinstance(pattern, sre_parse.SubPattern)
    return list(pattern.data)


@cache
def shapes(format_id: str) -> frozenset[Shape]:
    return frozenset(_expand(_items(sre_parse.parse(FORMATS_BY_ID[format_id].pattern.pattern))))


def _witnesses(a: CarrierFormat, b: CarrierFormat, rng: random.Random) -> Iterator[str]:
    """Numbers both regexes match, drawn from the shapes the two formats share."""
    by_length: dict[int, list[Shape]] = {}
    for shape in shapes(b.id):
        by_length.setdefault(len(shape), []).append(shape)
    common = [
        tuple(x & y for x, y in zip(left, right, strict=True))
        for left in sorted(shapes(a.id), key=_key)
        for right in sorted(by_length.get(len(left), []), key=_key)
        if all(x & y for x, y in zip(left, right, strict=True))
    ]
    for shape in common:
        for _ in range(20):
            number = "".join(rng.choice(sorted(chars)) for chars in shape)
            if a.pattern.fullmatch(number) and b.pattern.fullmatch(number):
                yield number


def _key(shape: Shape) -> tuple[str, ...]:
    return tuple("".join(sorted(chars)) for chars in shape)


def overlapping_pairs() -> list[tuple[str, str]]:
    """Pairs (in table order) of formats of different couriers that match a common number."""
    pairs = []
    for a, b in itertools.combinations(FORMATS, 2):
        if a.courier != b.courier and next(_witnesses(a, b, random.Random(0)), None):
            pairs.append((a.id, b.id))
    return pairs


def co_valid_number(a_id: str, b_id: str, tries: int = 20_000) -> str | None:
    """A number that both formats accept with a correct check digit, or None."""
    a, b = FORMATS_BY_ID[a_id], FORMATS_BY_ID[b_id]
    rng = random.Random(f"{a_id}/{b_id}")
    for count, number in enumerate(_cycle(a, b, rng)):
        if count >= tries:
            return None
        first, second = _evaluate(a, number), _evaluate(b, number)
        if first is not None and second is not None and first.valid and second.valid:
            return number
    return None


def _cycle(a: CarrierFormat, b: CarrierFormat, rng: random.Random) -> Iterator[str]:
    while True:
        drawn = False
        for number in _witnesses(a, b, rng):
            drawn = True
            yield number
        if not drawn:
            return
