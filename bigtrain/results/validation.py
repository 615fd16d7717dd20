"""Field rules for result files: one small table per file kind, one checker that walks it.

A result file is often hand-edited, truncated or written by another tool, and every consumer
(compare's statistics, the exports' JSON, resume's bookkeeping) trusts the types and ranges of the
values it reads. So every field a consumer uses has a `Rule` here, checked once when the file is
loaded, and the first value that breaks its rule is an `InvalidField` naming the field (dotted, with
list indices: `step_time_s.median`, `step_times_s[3]`), what is allowed, and the bad value as JSON
spells it (`NaN`, `Infinity`, `"zero"`): `step_time_s.median must be a finite number > 0, got NaN`.

Pure Python: both the measuring and the analysing side read result files.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: What a JSON list is once parsed, or in a record built in memory (a worker's record, tuples).
_SEQUENCES = (list, tuple)
#: How far a bad value is quoted in a message.
_SHOWN_CHARS = 60


class InvalidField(ValueError):
    """A value that breaks its field's rule."""

    def __init__(self, field: str, value: Any, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field} must be {allowed}, got {show(value)}")


def show(value: Any) -> str:
    """A value as JSON writes it (so NaN reads `NaN`, a string keeps its quotes), shortened."""
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


@dataclass(frozen=True, kw_only=True)
class Rule:
    """What one field may hold.

    `test` decides a value's own type and range; `fields` (an object with known keys), `each`
    (every item of a list, or every value of a mapping) and `value_rule` (a mapping's value rule
    chosen by its key) then check what the value contains.
    """

    allowed: str
    test: Callable[[Any], bool]
    nullable: bool = False
    fields: Mapping[str, Rule] | None = None
    #: With `fields`: whether keys other than those are refused (a closed record shape).
    closed: bool = False
    #: With `fields`: whether a missing key is left out (its reader has a default) or read as null.
    present_only: bool = False
    each: Rule | None = None
    value_rule: Callable[[str], Rule] | None = None
    #: A fast whole-list check that, when it passes, stands for checking `each` item by item.
    fast_items: Callable[[Sequence[Any]], bool] | None = None
    _has_parts: bool = field(init=False, default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Decided once: most fields are plain values, and checking them must stay cheap.
        has_parts = self.fields is not None or self.each is not None or self.value_rule is not None
        object.__setattr__(self, "_has_parts", has_parts)

    def check(self, name: str, value: Any) -> None:
        """Raise InvalidField for the first part of `value` (called `name`) breaking a rule."""
        if value is None:
            if self.nullable:
                return
            raise InvalidField(name, value, self.allowed)
        if not self.test(value):
            raise InvalidField(name, value, self.allowed + (" or null" if self.nullable else ""))
        if not self._has_parts:  # a plain value: done (most fields; keeps loading fast)
            return
        if self.fields is not None:
            check_fields(value, self.fields, prefix=f"{name}.", closed=self.closed,
                         present_only=self.present_only)
        if isinstance(value, _SEQUENCES):
            item_rule = self.each or (self.value_rule and self.value_rule(""))
            if item_rule is not None and not (self.fast_items and self.fast_items(value)):
                for index, item in enumerate(value):
                    item_rule.check(f"{name}[{index}]", item)
        elif isinstance(value, (dict, Mapping)) and (self.each is not None
                                                     or self.value_rule is not None):
            for key, item in value.items():
                rule = self.value_rule(key) if self.value_rule is not None else self.each
                if rule is not None:
                    rule.check(f"{name}.{key}", item)


def check_fields(data: Mapping[str, Any], rules: Mapping[str, Rule], *, prefix: str = "",
                 closed: bool = False, present_only: bool = False) -> None:
    """Check every ruled key of `data`; a missing key reads as null, or, with `present_only` (a
    top-level record whose dataclass gives defaults and refuses missing required keys), is left
    out. With `closed`, refuse keys that have no rule."""
    for key, rule in rules.items():
        if key in data:
            rule.check(prefix + key, data[key])
        elif not present_only:
            rule.check(prefix + key, None)
    if closed:
        unknown = sorted(str(k) for k in data if k not in rules)
        if unknown:
            keys = ", ".join(rules)
            raise InvalidField(prefix + unknown[0], data[unknown[0]],
                               f"absent (not a key of this object; its keys are {keys})")


def _is_mapping(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)  # dict first: the ABC check is slow


# -- rule builders ---------------------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    # bool is an int to Python, never a measurement; NaN and the infinities (JSON's NaN, Infinity,
    # 1e999) are no measurement either.
    # An integer is exact however long, but consumers compute in floats: it must fit one.
    if type(value) is int:
        return -sys.float_info.max <= value <= sys.float_info.max
    return type(value) is float and math.isfinite(value)


def _range_words(minimum: float | None, above: float | None) -> str:
    if above is not None:
        return f" > {above:g}"
    if minimum is not None:
        return f" >= {minimum:g}"
    return ""


def number(*, minimum: float | None = None, above: float | None = None,
           nullable: bool = False) -> Rule:
    """A finite number (integer or not), at least `minimum` or greater than `above`."""
    def test(value: Any) -> bool:
        return (_is_number(value) and (minimum is None or value >= minimum)
                and (above is None or value > above))

    return Rule(allowed="a finite number" + _range_words(minimum, above), test=test,
                nullable=nullable)


def integer(*, minimum: int | None = None, nullable: bool = False) -> Rule:
    """A whole number (not a boolean, not 1.0), at least `minimum`."""
    def test(value: Any) -> bool:
        return type(value) is int and (minimum is None or value >= minimum)

    return Rule(allowed="an integer" + _range_words(minimum, None), test=test, nullable=nullable)


def text(*, nullable: bool = False) -> Rule:
    """A string."""
    return Rule(allowed="a string", test=lambda value: isinstance(value, str), nullable=nullable)


def text_or_integer(*, nullable: bool = False) -> Rule:
    """A string or a whole number (an axis value in a preset: `"mlp:seed"`, `32`)."""
    return Rule(allowed="a string or an integer",
                test=lambda value: isinstance(value, str) or type(value) is int, nullable=nullable)


def boolean(*, nullable: bool = False) -> Rule:
    """true or false."""
    return Rule(allowed="true or false", test=lambda value: type(value) is bool, nullable=nullable)


def choice(choices: tuple[str, ...], *, nullable: bool = False) -> Rule:
    """One of `choices`."""
    return Rule(allowed=f"one of {', '.join(choices)}",
                test=lambda value: isinstance(value, str) and value in choices, nullable=nullable)


def _is_timestamp(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def timestamp(*, nullable: bool = False) -> Rule:
    """An ISO 8601 date and time as a string (`2026-11-28T15:48:05+00:00`)."""
    return Rule(allowed="an ISO 8601 time such as 2026-11-28T15:48:05+00:00", test=_is_timestamp,
                nullable=nullable)


def obj(fields: Mapping[str, Rule], *, nullable: bool = False, closed: bool = False,
        present_only: bool = False) -> Rule:
    """A JSON object whose keys in `fields` follow their rules (a missing key reads as null, or
    with `present_only` is left out); `closed` refuses other keys."""
    shape = f"an object with {', '.join(fields)}" if closed else "an object"
    return Rule(allowed=shape, test=_is_mapping, fields=fields,
                closed=closed, present_only=present_only, nullable=nullable)


def mapping(each: Rule | None = None, *, value_rule: Callable[[str], Rule] | None = None,
            nullable: bool = False) -> Rule:
    """A JSON object whose every value follows `each` (or the rule `value_rule` picks by key)."""
    return Rule(allowed="an object", test=_is_mapping, each=each,
                value_rule=value_rule, nullable=nullable)


def array(each: Rule, *, nullable: bool = False) -> Rule:
    """A JSON list whose every item follows `each`."""
    return Rule(allowed="a list", test=lambda value: isinstance(value, _SEQUENCES), each=each,
                nullable=nullable)


_NUMBER_TYPES = frozenset({int, float})


def numbers(*, minimum: float | None = None, above: float | None = None,
            nullable: bool = False) -> Rule:
    """A list of finite numbers in range; checked in one fast pass (thousands of step times per
    record), item by item only to name the first bad one."""
    item = number(minimum=minimum, above=above)

    def all_good(values: Sequence[Any]) -> bool:
        if not values:
            return True
        try:
            if not set(map(type, values)) <= _NUMBER_TYPES or not all(map(math.isfinite, values)):
                return False
        except OverflowError:  # an integer too long for a float: the item check names it
            return False
        low = min(values)
        return (minimum is None or low >= minimum) and (above is None or low > above)

    return Rule(allowed="a list of numbers", test=lambda value: isinstance(value, _SEQUENCES),
                each=item,
                fast_items=all_good, nullable=nullable)


_SCALAR_TYPES = frozenset({int, str, bool, type(None)})


def _is_finite_or_not_a_number(value: Any) -> bool:
    return type(value) is not float or math.isfinite(value)


def _flat_and_finite(values: Sequence[Any]) -> bool:
    kinds = set(map(type, values))  # one C-speed pass decides the common cases
    if kinds <= _SCALAR_TYPES:
        return True
    if kinds <= {float}:
        return all(map(math.isfinite, values))
    return all(type(v) in _SCALAR_TYPES or (type(v) is float and math.isfinite(v)) for v in values)


def _any_finite_json(_key: str) -> Rule:
    return ANY_FINITE_JSON


#: Any JSON value whose numbers are finite, however deep (exports write strict JSON: no NaN, no
#: Infinity); lists of plain values are checked in one pass.
ANY_FINITE_JSON = Rule(allowed="a finite number (no NaN or Infinity)",
                       test=_is_finite_or_not_a_number, nullable=True,
                       value_rule=_any_finite_json, fast_items=_flat_and_finite)
