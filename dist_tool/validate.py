"""Validation of user input that is not a reference, filter or platform.

Each function returns the value in the form callers store, or raises
``InvalidArgument(kind, value, why)``, which SPEC maps to exit status 2.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from dist_tool.errors import InvalidArgument

IDENTIFIER_RE = re.compile(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$", re.ASCII)
IDENTIFIER_MAX = 76
LABEL_MAX_BYTES = 4096
DECIMAL_MAX_DIGITS = 640  # the lowest limit PYTHONINTMAXSTRDIGITS may set on int()

_DIGEST_RE = re.compile(r"(sha256|sha384|sha512):([0-9a-f]+)", re.ASCII)
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}

_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([^\d.]*)", re.ASCII)
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # micro sign
    "μs": 1e-6,  # Greek mu, which Go accepts too
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
# Go's time.Duration is int64 nanoseconds; longer durations are refused as there.
_DURATION_MAX_SECONDS = (2**63 - 1) / 1e9


_RUNTIME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*", re.ASCII)


def runtime_name(name: str) -> str:
    """A container's runtime: ``io.containerd.runc.v2`` and the like."""
    if not _RUNTIME_RE.fullmatch(name):
        raise InvalidArgument("runtime", name, "expected a name such as io.containerd.runc.v2")
    return name


# 9999-12-31T23:59:59Z: the last second RFC 3339 can write, far past any lease the CLI can make
# (now + the longest duration, in 2262).
TIMESTAMP_MAX = 253402300799.0


def timestamp(what: str, which: str, value: float) -> float:
    """A time a client sends (seconds since the epoch), as every listing can print it: a finite
    number from 1970 to year 9999. Past that, rendering failed with "timestamp out of range"."""
    if not 0 <= value <= TIMESTAMP_MAX:  # NaN is neither
        raise InvalidArgument(what, which, f"{value!r} is not a time between 1970 and 9999")
    return value


def digits(text: str) -> bool:
    """Whether ``text`` is ASCII digits only, however many: ``str.isdigit`` also takes "²" and "١"."""
    return text.isascii() and text.isdigit()


def decimal(text: str) -> int | None:
    """The value of a string of ASCII digits (``digits``), else None: ``int`` alone also takes
    " 1", "+1" and "1_0". A value of more digits than ``int`` converts (its guard against
    quadratic time, 4300 by default) is None too: no count, id, port or offset is that long, and
    its ValueError would be an internal error."""
    if not digits(text):
        return None
    significant = text.lstrip("0") or "0"  # leading zeros count against int's limit too
    return int(significant) if len(significant) <= DECIMAL_MAX_DIGITS else None


def utf8(kind: str, value: str) -> str:
    """``value`` unchanged when it is valid UTF-8 text; an argument with other bytes (Python holds
    them as surrogates) cannot be stored or compared as text: InvalidArgument."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidArgument(kind, value, "is not valid UTF-8") from None
    return value


def identifier(kind: str, value: str) -> str:
    """Check a container ID, namespace or lease ID against SPEC's grammar.

    ``kind`` names the thing in the error (``"container id"``, ``"namespace"``).
    Returns ``value`` unchanged.
    """
    if not value:
        raise InvalidArgument(kind, value, "must not be empty")
    if len(value) > IDENTIFIER_MAX:
        raise InvalidArgument(kind, value, f"must be at most {IDENTIFIER_MAX} characters")
    if not IDENTIFIER_RE.fullmatch(value):
        raise InvalidArgument(
            kind, value, "must be letters and digits, separated by single '.', '_' or '-'"
        )
    return value


def label_args(args: Sequence[str]) -> dict[str, str]:
    """Parse ``KEY=VALUE`` arguments into a dict, later keys winning.

    The value may be empty (``KEY=``), which callers treat as "remove"; it
    may contain ``=``. Raises ``InvalidArgument("label", arg, why)`` for a
    missing ``=``, an empty key, text that is not valid UTF-8, or a key and
    value longer than 4096 bytes together.
    """
    labels: dict[str, str] = {}
    for arg in args:
        key, eq, value = arg.partition("=")
        if not eq:
            raise InvalidArgument("label", arg, "expected KEY=VALUE")
        if not key:
            raise InvalidArgument("label", arg, "empty key")
        try:
            size = len(arg.encode("utf-8")) - 1
        except UnicodeEncodeError:
            raise InvalidArgument("label", arg, "not valid UTF-8") from None
        if size > LABEL_MAX_BYTES:
            raise InvalidArgument(
                "label", arg, f"key and value are longer than {LABEL_MAX_BYTES} bytes"
            )
        labels[key] = value
    return labels


def labels(mapping: Mapping[str, str]) -> dict[str, str]:
    """Labels that arrive as a map (a ``dist serve`` request): the rules ``label_args`` applies
    to ``KEY=VALUE``, and a key may not hold ``=`` (no command line could set it)."""
    for key in mapping:
        if "=" in key:
            raise InvalidArgument("label", key, "a key may not hold '='")
    label_args([f"{k}={v}" for k, v in mapping.items()])
    return dict(mapping)


def apply_labels(existing: Mapping[str, str], updates: Mapping[str, str]) -> dict[str, str]:
    """A new dict: ``existing`` with ``updates`` set, and keys updated to ``""`` removed."""
    result = dict(existing)
    for key, value in updates.items():
        if value:
            result[key] = value
        else:
            result.pop(key, None)
    return result


def digest(value: str) -> str:
    """Check a content digest: ``sha256:`` and 64 lowercase hex digits (or sha384, sha512)."""
    match = _DIGEST_RE.fullmatch(value)
    if match is None or len(match.group(2)) != _DIGEST_HEX_LENGTHS[match.group(1)]:
        raise InvalidArgument("digest", value, "malformed digest")
    return value


def duration(value: str) -> float:
    """Seconds in a Go-style duration: ``90s``, ``30m``, ``24h``, ``1h30m``, ``500ms``.

    A sequence of decimal numbers each with a unit (``ns``, ``us``, ``ms``,
    ``s``, ``m``, ``h``); a plain ``0`` is allowed. Signs are not: a negative
    duration means nothing here.
    """
    if value == "0":
        return 0.0
    if not value:
        raise InvalidArgument("duration", value, "must not be empty")
    total, pos = 0.0, 0
    while pos < len(value):
        match = _DURATION_PART_RE.match(value, pos)
        if match is None:
            raise InvalidArgument(
                "duration", value, "expected a number and a unit, e.g. 90s, 30m, 1h30m"
            )
        number, unit = match.groups()
        if not unit:
            raise InvalidArgument("duration", value, f"missing unit after {number!r}")
        if unit not in _DURATION_UNITS:
            raise InvalidArgument(
                "duration", value, f"unknown unit {unit!r}; use ns, us, ms, s, m or h"
            )
        total += float(number) * _DURATION_UNITS[unit]
        pos = match.end()
    if total > _DURATION_MAX_SECONDS:
        raise InvalidArgument("duration", value, "too long")
    return total
