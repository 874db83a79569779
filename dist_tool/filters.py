"""containerd's filter syntax, compiled to predicates over field adaptors.

One argument is a comma-separated list of conditions that must all hold;
several arguments are alternatives, any of which may hold; no arguments match
everything. A condition is a field path, optionally followed by an operator
and a value::

    name==docker.io/library/busybox:latest    equal
    labels.app!=web                           not equal
    name~=busy                                regular expression, searched
    labels."com.example/app"                  present

A field path is ``.``-separated components, each either bare
(``[A-Za-z0-9_-]+``) or double-quoted. A value is double-quoted, or bare and
running to the next comma with surrounding spaces dropped; a ``~=`` value may
also be quoted with ``/.../`` or ``|...|`` so that it can hold commas.

As in containerd, a missing field reads as the empty string for ``!=`` and
``~=`` (so ``labels.app!=web`` matches objects without the label), while
``==`` and a bare path need the field to be present.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from dist_tool.errors import InvalidArgument

Adaptor = Callable[[tuple[str, ...]], tuple[str, bool]]
"""Returns ``(value, present)`` for a field path; ``("", False)`` when missing."""

OPERATORS = ("==", "!=", "~=")

_FIELD_RE = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}
_LABELS = "labels"
_ABSENT = ("", False)
T = TypeVar("T")


@dataclass(frozen=True)
class Condition:
    """One selector: ``path`` alone (present), or ``path``, operator and value."""

    path: tuple[str, ...]
    operator: str | None = None
    value: str = ""
    pattern: re.Pattern[str] | None = None

    def match(self, adaptor: Adaptor) -> bool:
        value, present = adaptor(self.path)
        if self.operator is None:
            return present
        if self.operator == "==":
            return present and value == self.value
        if self.operator == "!=":
            return value != self.value
        assert self.pattern is not None
        return self.pattern.search(value) is not None


class Filter:
    """Alternatives of conjunctions of conditions; no alternatives match everything."""

    def __init__(self, alternatives: Sequence[Sequence[Condition]] = ()) -> None:
        self.alternatives: tuple[tuple[Condition, ...], ...] = tuple(
            tuple(conditions) for conditions in alternatives
        )

    def match(self, adaptor: Adaptor) -> bool:
        """True when any alternative has all of its conditions hold for ``adaptor``."""
        if not self.alternatives:
            return True
        return any(all(c.match(adaptor) for c in conj) for conj in self.alternatives)

    def __repr__(self) -> str:
        return f"Filter({self.alternatives!r})"


def parse(args: Sequence[str]) -> Filter:
    """Compile filter arguments (ORed, each a comma-separated AND).

    An empty argument matches everything, as in containerd. Raises
    ``InvalidArgument("filter", arg, why)`` for the first argument with bad
    syntax or a regular expression that does not compile.
    """
    return Filter([_Parser(arg).conditions() for arg in args])


def matcher(args: Sequence[str], fields: Callable[[T], Mapping[str, object]]) -> Callable[[T], bool]:
    """Whether an item matches any of the filter ``args`` (every item does without filters);
    ``fields`` gives an item's filterable form, usually its JSON fields. The filters are parsed
    now, so a bad one is an error before anything is read."""
    if not args:
        return lambda item: True
    predicate = parse(args)
    return lambda item: predicate.match(adaptor_for(fields(item)))


def select(items: Iterable[T], args: Sequence[str], fields: Callable[[T], Mapping[str, object]]) -> list[T]:
    """The items any of the filter ``args`` matches (see ``matcher``)."""
    keep = matcher(args, fields)
    return [item for item in items if keep(item)]


def adaptor_for(fields: Mapping[str, object]) -> Adaptor:
    """An adaptor over a nested mapping such as a record's JSON form.

    Field names match case-insensitively at every level (``target.mediatype``
    finds ``mediaType``), except the keys of a ``labels`` mapping, which are
    exact; there the rest of the path is joined with ``.`` to form the key, so
    ``labels.com.example.app`` finds the label ``com.example.app``. A leaf is
    returned as a string: booleans as ``true``/``false``, sequences joined
    with ``,``. A path that is missing, ends at a mapping, or ends at ``None``
    is absent.
    """

    def adapt(path: tuple[str, ...]) -> tuple[str, bool]:
        node: object = fields
        for i, part in enumerate(path):
            if not isinstance(node, Mapping):
                return _ABSENT
            key = _find_key(node, part)
            if key is None:
                return _ABSENT
            node = node[key]
            if key.lower() == _LABELS and isinstance(node, Mapping):
                label = ".".join(path[i + 1 :])
                if not label or label not in node:
                    return _ABSENT
                return _leaf(node[label])
        return _leaf(node)

    return adapt


def _find_key(node: Mapping[object, object], part: str) -> str | None:
    if part in node:
        return part
    folded = part.lower()
    for key in node:
        if isinstance(key, str) and key.lower() == folded:
            return key
    return None


def _leaf(value: object) -> tuple[str, bool]:
    if value is None or isinstance(value, Mapping):
        return _ABSENT
    return _text(value), True


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(_text(v) for v in value)
    return str(value)


class _Parser:
    """A recursive-descent parser over one argument; ``pos`` indexes ``text``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def conditions(self) -> tuple[Condition, ...]:
        if not self.text.strip():
            return ()
        found = [self.condition()]
        while not self.at_end():
            if self.text[self.pos] != ",":
                raise self.error("expected ',' or the end")
            self.pos += 1
            found.append(self.condition())
        return tuple(found)

    def condition(self) -> Condition:
        self.skip_spaces()
        path = [self.field()]
        self.skip_spaces()
        while self.peek() == ".":
            self.pos += 1
            self.skip_spaces()
            path.append(self.field())
            self.skip_spaces()
        if self.at_end() or self.peek() == ",":
            return Condition(tuple(path))
        operator = self.text[self.pos : self.pos + 2]
        if operator not in OPERATORS:
            if operator[:1] in ("=", "!", "~"):
                raise self.error("expected ==, != or ~=")
            raise self.error(
                f"unexpected {operator[0]!r} in a field path (quote names with other characters)"
            )
        self.pos += 2
        self.skip_spaces()
        value = self.value(operator)
        self.skip_spaces()
        if operator != "~=":
            return Condition(tuple(path), operator, value)
        try:
            pattern = re.compile(value)
        except (re.error, OverflowError, RecursionError) as e:
            raise InvalidArgument(
                "filter", self.text, f"bad regular expression {value!r}: {e}"
            ) from None
        return Condition(tuple(path), operator, value, pattern)

    def field(self) -> str:
        if self.peek() == '"':
            return self.quoted('"')
        match = _FIELD_RE.match(self.text, self.pos)
        if match is None:
            raise self.error("expected a field name (quote it if it has other characters)")
        self.pos = match.end()
        return match.group()

    def value(self, operator: str) -> str:
        first = self.peek()
        if first == '"' or (operator == "~=" and first in ("/", "|")):
            return self.quoted(first)
        end = self.text.find(",", self.pos)
        if end < 0:
            end = len(self.text)
        value = self.text[self.pos : end].strip()
        if not value:
            raise self.error('expected a value (write "" for an empty one)')
        self.pos = end
        return value

    def quoted(self, delimiter: str) -> str:
        """Reads a quoted string starting at ``pos``.

        Inside ``"..."`` the escapes ``\\" \\\\ \\n \\t \\r`` are decoded; inside
        the regular-expression quotes only ``\\/`` or ``\\|`` is. Any other
        backslash is kept as written, so regex escapes such as ``\\d`` survive.
        """
        start = self.pos
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == delimiter:
                return "".join(out)
            if char != "\\":
                out.append(char)
                continue
            if self.pos >= len(self.text):
                break
            escaped = self.text[self.pos]
            self.pos += 1
            if delimiter == '"' and escaped in _ESCAPES:
                out.append(_ESCAPES[escaped])
            elif escaped == delimiter:
                out.append(escaped)
            else:
                out.append("\\" + escaped)
        self.pos = start
        raise self.error("unterminated quoted string")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def error(self, why: str) -> InvalidArgument:
        return InvalidArgument("filter", self.text, f"{why} at column {self.pos + 1}")
