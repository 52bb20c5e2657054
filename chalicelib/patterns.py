"""Amazon EventBridge event patterns, compiled once and matched in pure Python.

A marketing trigger's condition is an EventBridge event pattern tested against
``{"event": <segment event>, "profile": <profile>}``. Writing conditions in
EventBridge's syntax means a marketer's rule reads the same here as in an AWS
console, and can be handed to EventBridge unchanged should triggers ever move
onto a bus.

The semantics are those of the AWS EventBridge user guide ("Creating event
patterns", "Comparison operators", "Matching null values and empty strings")
and, where the guide is silent, of aws/event-ruler, the library EventBridge
runs:

* A pattern object ANDs its keys; a list of matchers at a leaf ORs them.
  ``"$or": [pattern, pattern, ...]`` ORs whole sub-patterns at any level.
* Exact values are typed: ``"5"`` never equals ``5``, ``true`` never equals
  ``1``, ``null`` never equals ``""`` or a missing field. Numbers compare by
  value (``3`` equals ``3.0`` and ``Decimal("3")``).
* Only leaves carry values: strings, numbers, booleans and null. An array
  offers each of its scalar elements (flattened through nested arrays); an
  object, an empty array or a missing key offers none.
* ``{"exists": true}`` matches when a leaf has a value, null included;
  ``{"exists": false}`` when it has none. Every other matcher, including
  ``anything-but``, needs a value to be present.
* Arrays of objects are matched element-wise: one element must satisfy the
  whole sub-pattern ("array consistency"), not one field from one element and
  another field from a second element.
* Numeric comparisons take JSON numbers between -5e9 and 5e9 only; pattern
  operands must be in that range with at most six decimals, as in AWS.

Where the event-ruler library and this module part ways, deliberately:
equals-ignore-case uses Unicode case folding (``str.casefold``); event
numbers are compared exactly rather than at six decimals; when ``$or`` puts
two conditions on the same path they must both hold (event-ruler keeps the
last one); a pattern key containing a dot names one key, not a nested path;
an exact string that is an IP address matches only that spelling of it.

Complexity: compiling expands ``$or`` into its combinations (as EventBridge
does) and is linear in the size of that expansion, capped at
:data:`MAX_COMBINATIONS`. Matching walks each combination's tree once over the
event: O(combinations x fields tested x values per field), plus the length of
each string tested. Wildcards match by ordered substring search, never by
backtracking regular expressions, so a hostile pattern cannot make matching
exponential.

Pure: no AWS imports, no I/O, no global state beyond constants.
"""
from __future__ import annotations

import ipaddress
import json
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterator, Mapping, Union

__all__ = [
    "InvalidPattern",
    "MAX_COMBINATIONS",
    "NUMERIC_LIMIT",
    "Pattern",
    "compile_pattern",
    "test_event_pattern",
]

#: Patterns whose ``$or`` alternatives multiply out beyond this are refused:
#: they would make every match slow and are almost certainly a mistake.
MAX_COMBINATIONS = 1024

#: Numeric matching works on values from -NUMERIC_LIMIT to NUMERIC_LIMIT.
NUMERIC_LIMIT = 5_000_000_000

_NUMERIC_DECIMALS = 6
_OR = "$or"
_OPERATORS = (
    "anything-but", "cidr", "equals-ignore-case", "exists", "numeric",
    "prefix", "suffix", "wildcard",
)
#: Names EventBridge will not accept as field names inside ``$or`` because
#: they read as operators there.
_RESERVED_IN_OR = frozenset(_OPERATORS) | {
    "exactly", "html", "=", "<", "<=", ">", ">=", "regex", "not-wildcard",
    "not-equals-ignore-case", "date-after", "date-on-or-after", "date-before",
    "date-on-or-before", "in-date-range", "ip-address-in-range",
    "ip-address-not-in-range",
}
_LOWER_BOUNDS = (">", ">=")
_UPPER_BOUNDS = ("<", "<=")

JsonNumber = Union[int, float, Decimal]


class InvalidPattern(ValueError):
    """The pattern is not one EventBridge would accept; ``path`` says where.

    ``str(exc)`` reads ``detail.price: numeric range needs ...``; a problem
    with the pattern as a whole is reported at ``pattern``.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path or "pattern"
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


# --------------------------------------------------------------------------
# Values: typed keys, so that exact matching is one set lookup.


class _Flag:
    """JSON ``true``/``false`` as a key: Python's ``True == 1`` must not leak."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_TRUE = _Flag("true")
_FALSE = _Flag("false")
_MISSING: Any = _Flag("<missing>")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _number(value: JsonNumber) -> int | Decimal | None:
    """A number in a form that compares and hashes by exact decimal value.

    ``0.1`` becomes ``Decimal("0.1")`` (its shortest repr, i.e. what the JSON
    said) so that it equals a DynamoDB ``Decimal("0.1")``; ints stay ints,
    which already compare and hash equal to equal Decimals. None if not finite.
    """
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return int(value) if value.is_integer() else Decimal(repr(value))
    if not value.is_finite():
        return None
    return value


def _key(value: Any) -> Any:
    """The exact-match key of a scalar: strings are themselves, numbers are
    exact numbers, booleans and null are distinct from every number."""
    if value is True:
        return _TRUE
    if value is False:
        return _FALSE
    if value is None or isinstance(value, str):
        return value
    return _number(value)


# --------------------------------------------------------------------------
# Matchers: each tests one scalar value.


@dataclass(frozen=True, slots=True)
class _Prefix:
    text: str
    ignore_case: bool

    def test(self, value: Any) -> bool:
        if not isinstance(value, str):
            return False
        return (value.casefold() if self.ignore_case else value).startswith(self.text)


@dataclass(frozen=True, slots=True)
class _Suffix:
    text: str
    ignore_case: bool

    def test(self, value: Any) -> bool:
        if not isinstance(value, str):
            return False
        return (value.casefold() if self.ignore_case else value).endswith(self.text)


@dataclass(frozen=True, slots=True)
class _IgnoreCase:
    folded: frozenset[str]

    def test(self, value: Any) -> bool:
        return isinstance(value, str) and value.casefold() in self.folded


@dataclass(frozen=True, slots=True)
class _Wildcard:
    """``*`` is any run of characters (possibly empty); the literal pieces
    between stars must appear in order. Matching is a left-to-right search for
    each piece: O(len(value) x len(pattern)) at worst, with no backtracking."""

    pieces: tuple[str, ...]

    def test(self, value: Any) -> bool:
        if not isinstance(value, str):
            return False
        pieces = self.pieces
        if len(pieces) == 1:
            return value == pieces[0]
        first, last = pieces[0], pieces[-1]
        if len(value) < len(first) + len(last):
            return False
        if not (value.startswith(first) and value.endswith(last)):
            return False
        position, end = len(first), len(value) - len(last)
        for piece in pieces[1:-1]:
            found = value.find(piece, position, end)
            if found < 0:
                return False
            position = found + len(piece)
        return True


@dataclass(frozen=True, slots=True)
class _Numeric:
    low: int | Decimal | None
    low_inclusive: bool
    high: int | Decimal | None
    high_inclusive: bool

    def test(self, value: Any) -> bool:
        if not _is_number(value):
            return False
        number = _number(value)
        if number is None or not -NUMERIC_LIMIT <= number <= NUMERIC_LIMIT:
            return False
        if self.low is not None:
            if number < self.low or (number == self.low and not self.low_inclusive):
                return False
        if self.high is not None:
            if number > self.high or (number == self.high and not self.high_inclusive):
                return False
        return True


@dataclass(frozen=True, slots=True)
class _Cidr:
    version: int
    first: int
    last: int

    def test(self, value: Any) -> bool:
        if not isinstance(value, str):
            return False
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return False
        return address.version == self.version and self.first <= int(address) <= self.last


@dataclass(frozen=True, slots=True)
class _AnythingBut:
    """Present values other than the excluded ones, of any type: null, numbers
    and booleans pass an ``anything-but`` on strings."""

    excluded: frozenset[Any]
    excluding: tuple[_Prefix | _Suffix | _IgnoreCase | _Wildcard, ...]

    def test(self, value: Any) -> bool:
        if self.excluded and _key(value) in self.excluded:
            return False
        return not any(matcher.test(value) for matcher in self.excluding)


_Matcher = Union[_Prefix, _Suffix, _IgnoreCase, _Wildcard, _Numeric, _Cidr, _AnythingBut]


@dataclass(frozen=True, slots=True)
class _Leaf:
    """One list of matchers at one path: true if any matcher takes any value."""

    exact: frozenset[Any]
    matchers: tuple[_Matcher, ...]
    if_absent: bool
    if_present: bool

    def matches(self, values: tuple[Any, ...] | list[Any]) -> bool:
        if not values:
            return self.if_absent
        if self.if_present:
            return True
        exact = self.exact
        for value in values:
            if exact and _key(value) in exact:
                return True
            for matcher in self.matchers:
                if matcher.test(value):
                    return True
        return False


#: A compiled object pattern with no ``$or`` left in it: for each key, the
#: leaves that must all match the key's values and the sub-pattern its object
#: (or one of its array's objects) must match.
_Node = tuple[tuple[str, tuple[_Leaf, ...], "_Node | None"], ...]


# --------------------------------------------------------------------------
# The compiled pattern.


@dataclass(frozen=True)
class Pattern:
    """A validated, compiled event pattern. Immutable and safe to share.

    ``source`` is the pattern as compact JSON; ``fields`` every leaf path it
    tests, dotted (``"event.properties.total"``) and sorted, for indexing
    triggers by the fields an event carries.
    """

    source: str
    fields: tuple[str, ...]
    _combinations: tuple[_Node, ...] = field(repr=False, compare=False)

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether ``event`` (a JSON-shaped mapping) matches the pattern."""
        if not isinstance(event, Mapping):
            raise TypeError(f"an event must be a mapping, not {type(event).__name__}")
        return any(_match_node(node, event) for node in self._combinations)


def compile_pattern(pattern: Mapping[str, Any] | str) -> Pattern:
    """Validate a whole pattern (a dict, or its JSON text) and compile it.

    Raises :class:`InvalidPattern` naming the first problem and where it is.
    Numbers may be ``int``, ``float`` or ``Decimal`` (as DynamoDB returns them).
    """
    if isinstance(pattern, str):
        try:
            pattern = json.loads(pattern, parse_constant=_reject_constant)
        except ValueError as exc:
            raise InvalidPattern("", f"is not valid JSON ({exc})") from exc
    if not isinstance(pattern, Mapping):
        raise InvalidPattern("", f"must be a JSON object, not {_kind(pattern)}")
    combinations = _parse_object(pattern, (), "", in_or=False)
    nodes: list[_Node] = []
    seen: set[tuple[int, ...]] = set()
    paths: set[str] = set()
    for combination in combinations:
        identity = tuple(id(leaf) for _, leaf in combination)
        if identity in seen:
            continue
        seen.add(identity)
        nodes.append(_build_node(combination))
        paths.update(".".join(path) for path, _ in combination)
    source = json.dumps(pattern, separators=(",", ":"), ensure_ascii=False, default=_plain_number)
    return Pattern(source=source, fields=tuple(sorted(paths)), _combinations=tuple(nodes))


def test_event_pattern(pattern_json: str, event_json: str) -> bool:
    """Whether the event matches the pattern, both as JSON text: AWS
    ``TestEventPattern`` without the call.

    Raises :class:`InvalidPattern` for a bad pattern and a plain ``ValueError``
    for an event that is not a JSON object (catch ``InvalidPattern`` first if
    both matter). Unlike AWS, the envelope fields (``id``, ``source``, ...)
    are not required.
    """
    pattern = compile_pattern(pattern_json)
    try:
        event = json.loads(event_json, parse_constant=_reject_constant)
    except ValueError as exc:
        raise ValueError(f"event is not valid JSON ({exc})") from exc
    if not isinstance(event, dict):
        raise ValueError(f"event must be a JSON object, not {_kind(event)}")
    return pattern.matches(event)


# Keep pytest from collecting the AWS-named function when a test imports it.
test_event_pattern.__test__ = False  # type: ignore[attr-defined]


# --------------------------------------------------------------------------
# Matching.


def _match_node(node: _Node, obj: Mapping[str, Any] | None) -> bool:
    for key, leaves, child in node:
        raw = obj.get(key, _MISSING) if obj is not None else _MISSING
        if leaves:
            values = _leaf_values(raw, key)
            for leaf in leaves:
                if not leaf.matches(values):
                    return False
        if child is not None and not _match_child(child, raw):
            return False
    return True


def _match_child(child: _Node, raw: Any) -> bool:
    if isinstance(raw, Mapping):
        return _match_node(child, raw)
    if isinstance(raw, (list, tuple)):
        objects = list(_objects_in(raw))
        if objects:
            return any(_match_node(child, obj) for obj in objects)
    # A scalar, a missing key or an array without objects: nothing below it.
    return _match_node(child, None)


def _leaf_values(raw: Any, key: str) -> tuple[Any, ...] | list[Any]:
    if raw is _MISSING:
        return ()
    if raw is None or isinstance(raw, (str, int, float, Decimal)):
        return (raw,)
    if isinstance(raw, Mapping):
        return ()
    if isinstance(raw, (list, tuple)):
        values: list[Any] = []
        _collect_scalars(raw, values, key)
        return values
    raise TypeError(f"event field {key!r} holds a {type(raw).__name__}, which is not a JSON value")


def _collect_scalars(items: list[Any] | tuple[Any, ...], out: list[Any], key: str) -> None:
    for item in items:
        if item is None or isinstance(item, (str, int, float, Decimal)):
            out.append(item)
        elif isinstance(item, (list, tuple)):
            _collect_scalars(item, out, key)
        elif not isinstance(item, Mapping):
            raise TypeError(f"event field {key!r} holds a {type(item).__name__}, which is not a JSON value")


def _objects_in(items: list[Any] | tuple[Any, ...]) -> Iterator[Mapping[str, Any]]:
    for item in items:
        if isinstance(item, Mapping):
            yield item
        elif isinstance(item, (list, tuple)):
            yield from _objects_in(item)


# --------------------------------------------------------------------------
# Compiling: validate, expand $or, build one tree per combination.

_Combination = list[tuple[tuple[str, ...], _Leaf]]


def _parse_object(
    obj: Mapping[str, Any], parts: tuple[str, ...], where: str, *, in_or: bool
) -> list[_Combination]:
    if not obj:
        raise InvalidPattern(where, "an empty object is not allowed; remove it or give it a field")
    combinations: list[_Combination] = [[]]
    for key, value in obj.items():
        if not isinstance(key, str):
            raise InvalidPattern(where, f"field names must be strings, not {_kind(key)}")
        here = _join(where, key)
        if key == _OR:
            alternatives = _parse_or(value, parts, here)
            combinations = [mine + theirs for mine in combinations for theirs in alternatives]
        elif in_or and key in _RESERVED_IN_OR:
            raise InvalidPattern(here, f"'{key}' is an operator name and cannot be a field name inside $or")
        elif isinstance(value, Mapping):
            below = _parse_object(value, parts + (key,), here, in_or=in_or)
            combinations = [mine + theirs for mine in combinations for theirs in below]
        elif isinstance(value, list):
            leaf = _parse_leaf(value, here)
            for combination in combinations:
                combination.append((parts + (key,), leaf))
        else:
            raise InvalidPattern(
                here, f"must be an object of fields or a list of matchers, not {_kind(value)}"
            )
        if len(combinations) > MAX_COMBINATIONS:
            raise InvalidPattern(
                here, f"$or alternatives multiply out to more than {MAX_COMBINATIONS} combinations"
            )
    return combinations


def _parse_or(value: Any, parts: tuple[str, ...], where: str) -> list[_Combination]:
    if not isinstance(value, list):
        raise InvalidPattern(where, f"$or takes a list of at least two patterns, not {_kind(value)}")
    if len(value) < 2:
        raise InvalidPattern(where, "$or takes a list of at least two patterns")
    alternatives: list[_Combination] = []
    for index, alternative in enumerate(value):
        here = f"{where}[{index}]"
        if not isinstance(alternative, Mapping):
            raise InvalidPattern(here, f"each $or alternative must be an object, not {_kind(alternative)}")
        alternatives.extend(_parse_object(alternative, parts, here, in_or=True))
    return alternatives


def _build_node(combination: _Combination) -> _Node:
    tree: dict[str, Any] = {}
    for path, leaf in combination:
        level = tree
        for part in path[:-1]:
            level = level.setdefault(part, ([], {}))[1]
        level.setdefault(path[-1], ([], {}))[0].append(leaf)
    return _freeze(tree)


def _freeze(tree: dict[str, Any]) -> _Node:
    return tuple(
        (key, tuple(leaves), _freeze(children) if children else None)
        for key, (leaves, children) in tree.items()
    )


def _parse_leaf(items: list[Any], where: str) -> _Leaf:
    if not items:
        raise InvalidPattern(where, "an empty list of matchers is not allowed; it could never match")
    exact: set[Any] = set()
    folded: set[str] = set()
    matchers: list[_Matcher] = []
    if_absent = if_present = False
    for item in items:
        if item is None or isinstance(item, (str, bool)):
            exact.add(_key(item))
        elif _is_number(item):
            exact.add(_finite(item, where, "an exact number"))
        elif isinstance(item, Mapping):
            if len(item) != 1:
                names = ", ".join(sorted(map(str, item))) or "none"
                raise InvalidPattern(where, f"a matcher object takes exactly one operator, got {names}")
            ((name, operand),) = item.items()
            if name == "exists":
                if not isinstance(operand, bool):
                    raise InvalidPattern(where, f"exists takes true or false, not {_kind(operand)}")
                if operand:
                    if_present = True
                else:
                    if_absent = True
            elif name == "equals-ignore-case":
                folded.add(_text(operand, where, "equals-ignore-case").casefold())
            else:
                matchers.append(_parse_operator(name, operand, where))
        else:
            raise InvalidPattern(
                where, f"a matcher must be a string, number, boolean, null or operator object, not {_kind(item)}"
            )
    if folded:
        matchers.insert(0, _IgnoreCase(frozenset(folded)))
    return _Leaf(frozenset(exact), tuple(matchers), if_absent, if_present)


def _parse_operator(name: Any, operand: Any, where: str) -> _Matcher:
    if name in ("prefix", "suffix"):
        return _parse_affix(name, operand, where)
    if name == "wildcard":
        return _Wildcard(_wildcard_pieces(_text(operand, where, "wildcard"), where))
    if name == "numeric":
        return _parse_numeric(operand, where)
    if name == "cidr":
        return _parse_cidr(operand, where)
    if name == "anything-but":
        return _parse_anything_but(operand, where)
    known = ", ".join(_OPERATORS)
    raise InvalidPattern(where, f"unknown operator {json.dumps(name, default=str)} (known: {known})")


def _parse_affix(name: str, operand: Any, where: str) -> _Prefix | _Suffix:
    kind = _Prefix if name == "prefix" else _Suffix
    if isinstance(operand, str):
        return kind(operand, False)
    if isinstance(operand, Mapping) and set(operand) == {"equals-ignore-case"}:
        text = _text(operand["equals-ignore-case"], where, f"{name} equals-ignore-case")
        return kind(text.casefold(), True)
    raise InvalidPattern(where, f'{name} takes a string or {{"equals-ignore-case": string}}, not {_kind(operand)}')


def _parse_anything_but(operand: Any, where: str) -> _AnythingBut:
    if isinstance(operand, str):
        return _AnythingBut(frozenset({operand}), ())
    if _is_number(operand):
        return _AnythingBut(frozenset({_finite(operand, where, "anything-but")}), ())
    if isinstance(operand, list):
        if not operand:
            raise InvalidPattern(where, "anything-but takes a non-empty list")
        if all(isinstance(item, str) for item in operand):
            return _AnythingBut(frozenset(operand), ())
        if all(_is_number(item) for item in operand):
            return _AnythingBut(frozenset(_finite(item, where, "anything-but") for item in operand), ())
        raise InvalidPattern(where, "an anything-but list must be all strings or all numbers")
    if isinstance(operand, Mapping):
        if len(operand) != 1:
            raise InvalidPattern(where, "anything-but takes exactly one of prefix, suffix, equals-ignore-case, wildcard")
        ((inner, value),) = operand.items()
        if inner not in ("prefix", "suffix", "equals-ignore-case", "wildcard"):
            raise InvalidPattern(
                where,
                f"anything-but cannot take {json.dumps(inner, default=str)} (use prefix, suffix, equals-ignore-case or wildcard)",
            )
        texts = value if isinstance(value, list) else [value]
        if not texts or not all(isinstance(text, str) for text in texts):
            raise InvalidPattern(where, f"anything-but {inner} takes a string or a non-empty list of strings")
        if inner in ("prefix", "suffix"):
            if any(text == "" for text in texts):
                raise InvalidPattern(where, f"anything-but {inner} cannot be empty: it would exclude every string")
            kind = _Prefix if inner == "prefix" else _Suffix
            return _AnythingBut(frozenset(), tuple(kind(text, False) for text in texts))
        if inner == "equals-ignore-case":
            return _AnythingBut(frozenset(), (_IgnoreCase(frozenset(text.casefold() for text in texts)),))
        return _AnythingBut(frozenset(), tuple(_Wildcard(_wildcard_pieces(text, where)) for text in texts))
    raise InvalidPattern(
        where, f"anything-but takes a string, a number, a list of either, or an operator object, not {_kind(operand)}"
    )


def _parse_numeric(operand: Any, where: str) -> _Numeric:
    example = 'e.g. [">", 0, "<=", 5]'
    if not isinstance(operand, list) or not operand:
        raise InvalidPattern(where, f"numeric takes a list of operator/value pairs, {example}")
    if len(operand) % 2:
        raise InvalidPattern(where, "numeric range needs an even list of operator/value pairs")
    if len(operand) > 4:
        raise InvalidPattern(where, "numeric takes at most two comparisons, a lower then an upper bound")
    comparisons: list[tuple[str, int | Decimal]] = []
    for operator, value in zip(operand[::2], operand[1::2]):
        if operator not in ("=", *_LOWER_BOUNDS, *_UPPER_BOUNDS):
            raise InvalidPattern(where, f"unknown numeric operator {json.dumps(operator, default=str)} (use =, <, <=, >, >=)")
        if not _is_number(value):
            raise InvalidPattern(where, f"numeric {operator} needs a number, not {_kind(value)}")
        comparisons.append((operator, _bound(value, where)))
    (first, first_value), *rest = comparisons
    if first == "=":
        if rest:
            raise InvalidPattern(where, 'numeric "=" cannot be combined with another comparison')
        return _Numeric(first_value, True, first_value, True)
    if first in _UPPER_BOUNDS:
        if rest:
            raise InvalidPattern(where, f"a numeric range is written lower bound first, {example}")
        return _Numeric(None, True, first_value, first == "<=")
    if not rest:
        return _Numeric(first_value, first == ">=", None, True)
    (second, second_value), = rest
    if second not in _UPPER_BOUNDS:
        raise InvalidPattern(where, f'a numeric range needs an upper bound ("<" or "<=") after {json.dumps(first)}')
    if first_value >= second_value:
        raise InvalidPattern(where, "a numeric range needs its lower bound below its upper bound")
    return _Numeric(first_value, first == ">=", second_value, second == "<=")


def _bound(value: JsonNumber, where: str) -> int | Decimal:
    number = _finite(value, where, "numeric")
    if not -NUMERIC_LIMIT <= number <= NUMERIC_LIMIT:
        raise InvalidPattern(where, f"numeric values must be between -{NUMERIC_LIMIT} and {NUMERIC_LIMIT}, got {value}")
    if isinstance(number, Decimal):
        exponent = number.normalize().as_tuple().exponent
        if isinstance(exponent, int) and exponent < -_NUMERIC_DECIMALS:
            raise InvalidPattern(where, f"numeric values have at most {_NUMERIC_DECIMALS} decimal places, got {value}")
    return number


def _parse_cidr(operand: Any, where: str) -> _Cidr:
    text = _text(operand, where, "cidr")
    address, slash, bits = text.partition("/")
    if not slash or not bits.isdigit():
        raise InvalidPattern(where, f"cidr takes an address/prefix-length like 10.0.0.0/24, not {json.dumps(text)}")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError as exc:
        raise InvalidPattern(where, f"cidr has an invalid address ({exc})") from exc
    length = int(bits)
    if length >= ip.max_prefixlen:
        raise InvalidPattern(where, f"cidr prefix length must be below {ip.max_prefixlen} for IPv{ip.version}")
    host_bits = (1 << (ip.max_prefixlen - length)) - 1
    # Like EventBridge, the range starts at the address as written.
    return _Cidr(ip.version, int(ip), int(ip) | host_bits)


def _wildcard_pieces(text: str, where: str) -> tuple[str, ...]:
    pieces: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            following = text[index + 1: index + 2]
            if following not in ("*", "\\"):
                raise InvalidPattern(
                    where, f"wildcard {json.dumps(text)}: a backslash may only escape * or \\ (at {index})"
                )
            current.append(following)
            index += 2
            continue
        if char == "*":
            if text[index + 1: index + 2] == "*":
                raise InvalidPattern(where, f"wildcard {json.dumps(text)}: consecutive * are not allowed (at {index})")
            pieces.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    pieces.append("".join(current))
    return tuple(pieces)


def _finite(value: JsonNumber, where: str, what: str) -> int | Decimal:
    number = _number(value)
    if number is None:
        raise InvalidPattern(where, f"{what} needs a finite number, not {value}")
    return number


def _text(value: Any, where: str, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidPattern(where, f"{what} takes a string, not {_kind(value)}")
    return value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if _is_number(value):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return f"a {type(value).__name__}"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _plain_number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")
