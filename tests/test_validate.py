"""dist_tool.validate: identifiers, labels, digests, durations."""

from __future__ import annotations

import signal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from dist_tool import validate
from dist_tool.errors import InvalidArgument

IDS_OK = ["a", "web", "Web-1", "a.b_c-d", "0", "x" * 76, "my.container_01"]


@pytest.mark.parametrize("value", IDS_OK, ids=[v[:20] for v in IDS_OK])
def test_identifier_accepts(value: str):
    assert validate.identifier("container id", value) == value


IDS_BAD = [
    ("empty", "", "must not be empty"),
    ("too-long", "x" * 77, "at most 76"),
    ("leading-dash", "-a", "letters and digits"),
    ("trailing-dot", "a.", "letters and digits"),
    ("double-separator", "a..b", "letters and digits"),
    ("mixed-separators", "a.-b", "letters and digits"),
    ("slash", "a/b", "letters and digits"),
    ("space", "a b", "letters and digits"),
    ("newline", "a\n", "letters and digits"),
    ("unicode", "café", "letters and digits"),
]


@pytest.mark.parametrize(("value", "why"), [b[1:] for b in IDS_BAD], ids=[b[0] for b in IDS_BAD])
def test_identifier_rejects(value: str, why: str):
    with pytest.raises(InvalidArgument) as info:
        validate.identifier("namespace", value)
    err = info.value
    assert (err.what, err.which) == ("namespace", value)
    assert why in err.why
    assert str(err).startswith(f"namespace {value}: " if value else "namespace: ")


LABELS_OK = [
    ("simple", ["a=b"], {"a": "b"}),
    ("empty-value", ["a="], {"a": ""}),
    ("equals-in-value", ["a=b=c"], {"a": "b=c"}),
    ("later-wins", ["a=1", "a=2"], {"a": "2"}),
    ("dotted-key", ["com.example/app=web"], {"com.example/app": "web"}),
    ("max-size", ["k=" + "v" * 4095], {"k": "v" * 4095}),
    ("max-size-utf8", ["k=" + "é" * 2047 + "v"], {"k": "é" * 2047 + "v"}),
    ("none", [], {}),
]


@pytest.mark.parametrize(
    ("args", "expected"), [c[1:] for c in LABELS_OK], ids=[c[0] for c in LABELS_OK]
)
def test_label_args_accepts(args: list[str], expected: dict[str, str]):
    assert validate.label_args(args) == expected


LABELS_BAD = [
    ("no-equals", "key", "expected KEY=VALUE"),
    ("empty-key", "=value", "empty key"),
    ("only-equals", "=", "empty key"),
    ("too-long", "k=" + "v" * 4096, "4096 bytes"),
    ("too-long-utf8", "k=" + "é" * 2048, "4096 bytes"),
    ("surrogate", "k=\udcff", "UTF-8"),
]


@pytest.mark.parametrize(
    ("arg", "why"), [b[1:] for b in LABELS_BAD], ids=[b[0] for b in LABELS_BAD]
)
def test_label_args_rejects(arg: str, why: str):
    with pytest.raises(InvalidArgument) as info:
        validate.label_args(["ok=1", arg])
    err = info.value
    assert (err.what, err.which) == ("label", arg)
    assert why in err.why
    assert str(err).startswith(f"label {arg[:100]}")  # named, a long one cut short


def test_apply_labels():
    existing = {"a": "1", "b": "2"}
    assert validate.apply_labels(existing, {"b": "", "c": "3", "z": ""}) == {"a": "1", "c": "3"}
    assert existing == {"a": "1", "b": "2"}


SHA256 = "sha256:" + "0123456789abcdef" * 4
DIGESTS_OK = [SHA256, "sha512:" + "ab" * 64, "sha384:" + "cd" * 48]


@pytest.mark.parametrize("value", DIGESTS_OK, ids=["sha256", "sha512", "sha384"])
def test_digest_accepts(value: str):
    assert validate.digest(value) == value


DIGESTS_BAD = [
    ("empty", ""),
    ("no-algorithm", "0123456789abcdef" * 4),
    ("short", "sha256:abc"),
    ("long", SHA256 + "0"),
    ("uppercase", SHA256.upper()),
    ("upper-hex", "sha256:" + "ABCDEF0123456789" * 4),
    ("unknown-algorithm", "md5:" + "0" * 32),
    ("sha512-short", "sha512:" + "a" * 64),
    ("newline", SHA256 + "\n"),
]


@pytest.mark.parametrize("value", [b[1] for b in DIGESTS_BAD], ids=[b[0] for b in DIGESTS_BAD])
def test_digest_rejects(value: str):
    with pytest.raises(InvalidArgument) as info:
        validate.digest(value)
    assert (info.value.what, info.value.which, info.value.why) == (
        "digest",
        value,
        "malformed digest",
    )
    assert value in str(info.value)


DURATIONS_OK = [
    ("90s", 90.0),
    ("30m", 1800.0),
    ("24h", 86400.0),
    ("1h30m", 5400.0),
    ("500ms", 0.5),
    ("1.5h", 5400.0),
    (".5s", 0.5),
    ("1h1m1s", 3661.0),
    ("100us", 1e-4),
    ("100µs", 1e-4),
    ("10ns", 1e-8),
    ("0", 0.0),
    ("0s", 0.0),
]


@pytest.mark.parametrize(("value", "seconds"), DURATIONS_OK, ids=[d[0] for d in DURATIONS_OK])
def test_duration_accepts(value: str, seconds: float):
    assert validate.duration(value) == pytest.approx(seconds)


DURATIONS_BAD = [
    ("empty", "", "must not be empty"),
    ("no-unit", "90", "missing unit"),
    ("trailing-number", "1h30", "missing unit"),
    ("days", "1d", "unknown unit 'd'"),
    ("upper-unit", "5S", "unknown unit 'S'"),
    ("negative", "-5s", "expected a number"),
    ("plus", "+5s", "expected a number"),
    ("space", "5 s", "unknown unit ' s'"),
    ("unit-only", "h", "expected a number"),
    ("two-dots", "1.5.5s", "missing unit"),
    ("too-long", "3000000h", "too long"),
    ("huge", "9" * 400 + "h", "too long"),
]


@pytest.mark.parametrize(
    ("value", "why"), [b[1:] for b in DURATIONS_BAD], ids=[b[0] for b in DURATIONS_BAD]
)
def test_duration_rejects(value: str, why: str):
    with pytest.raises(InvalidArgument) as info:
        validate.duration(value)
    err = info.value
    assert (err.what, err.which) == ("duration", value)
    assert why in err.why
    assert value[:100] in str(err)


# --- properties ---------------------------------------------------------------

_keys = st.text(min_size=1, max_size=20).filter(lambda k: "=" not in k)
_values = st.text(max_size=40)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@given(st.dictionaries(_keys.filter(_utf8), _values.filter(_utf8), max_size=6))
def test_label_args_round_trip(labels: dict[str, str]):
    assert validate.label_args([f"{k}={v}" for k, v in labels.items()]) == labels


@given(st.lists(st.text(max_size=30), max_size=4))
def test_label_args_raises_only_invalid_argument(args: list[str]):
    try:
        validate.label_args(args)
    except InvalidArgument as e:
        assert e.what == "label" and e.which in args


@given(
    st.dictionaries(_keys, st.text(min_size=1, max_size=5), max_size=5),
    st.dictionaries(_keys, st.text(max_size=5), max_size=5),
)
def test_apply_labels_properties(existing: dict[str, str], updates: dict[str, str]):
    result = validate.apply_labels(existing, updates)
    for key, value in updates.items():
        assert result.get(key) == (value or None)
    for key in existing.keys() - updates.keys():
        assert result[key] == existing[key]
    assert "" not in result.values()
    assert validate.apply_labels(result, updates) == result


@given(st.text(max_size=20))
def test_identifier_agrees_with_regex(value: str):
    ok = bool(validate.IDENTIFIER_RE.fullmatch(value)) and len(value) <= 76
    try:
        validate.identifier("lease id", value)
    except InvalidArgument:
        assert not ok
    else:
        assert ok


@given(st.lists(st.tuples(st.integers(0, 999), st.sampled_from(["h", "m", "s", "ms"])), min_size=1))
def test_duration_sums_parts(parts: list[tuple[int, str]]):
    unit = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    text = "".join(f"{n}{u}" for n, u in parts)
    assert validate.duration(text) == pytest.approx(sum(n * unit[u] for n, u in parts))


@given(st.text(max_size=20))
def test_duration_raises_only_invalid_argument(text: str):
    try:
        assert validate.duration(text) >= 0
    except InvalidArgument as e:
        assert e.which == text


@given(st.text(max_size=8))
def test_decimal_is_ascii_digits_only(text: str):
    value = validate.decimal(text)
    if text and all("0" <= c <= "9" for c in text):
        assert value == int(text)
    else:
        assert value is None  # "²", "١", " 1", "+1", "1_0" among them: never a ValueError


@pytest.mark.parametrize("text", ["\u00b2", "1\u00b2", "\u0661"])
def test_signal_numbers_are_ascii(text: str):
    from dist_tool.tasks import parse_signal

    with pytest.raises(InvalidArgument):
        parse_signal(text)


@pytest.mark.parametrize(("text", "number"), [
    ("SIGKILL", 9), ("kill", 9), ("9", 9), ("SIGRTMIN", 34), ("SIGRTMIN+3", 37), ("rtmin+15", 49),
    ("RTMAX-1", 63), ("SIGRTMAX-14", 50), ("RTMAX", 64)])
def test_signals_by_name_number_and_real_time_offset(text: str, number: int):
    """moby's signal map, which ctr and docker use: RTMIN+1..15 and RTMAX-14..1 besides the names."""
    from dist_tool.tasks import parse_signal

    assert parse_signal(text) == number


@pytest.mark.parametrize("text", ["RTMIN+0", "RTMIN+16", "RTMAX-15", "RTMIN+", "RTMIN+\u00b2", "SIG", "SIGSIGKILL"])
def test_out_of_range_real_time_signals_are_refused(text: str):
    from dist_tool.tasks import parse_signal

    with pytest.raises(InvalidArgument):
        parse_signal(text)


def test_an_error_shows_a_long_value_cut_short_on_its_one_line():
    long = "k=" + "v" * 4100
    shown = str(InvalidArgument("label", long, "must be at most 4096 bytes"))
    assert shown == f"label {long[:256]}… (4102 characters): must be at most 4096 bytes"
    reference = "x/" + "a" * 253
    assert str(InvalidArgument("reference", reference, "bad")) == f"reference {reference}: bad"


@example("1" * 5000)  # int() refuses over 4300 digits: that ValueError was an internal error
@example("0" * 5000 + "7")
@given(st.text("0123456789", min_size=1, max_size=700))
def test_decimal_of_any_length_is_its_value_or_none(text: str):
    value = validate.decimal(text)
    if len(text.lstrip("0")) <= validate.DECIMAL_MAX_DIGITS:
        assert value == int(text.lstrip("0") or "0")
    else:
        assert value is None


_SIGNAL_NAMES = sorted(s.name for s in signal.Signals)


@example("1" * 5000)
@example("SIGRTMIN+" + "1" * 5000)
@example("\u017figkill")  # "ſ".upper() is "S": a name str.upper makes ASCII is still no signal's
@example("sig\u0131nt")
@given(st.one_of(st.text(max_size=12), st.text("0123456789", max_size=30),
                 st.builds(lambda p, s: p + s, st.sampled_from(["SIG", "sig", "RTMIN+", "SIGRTMAX-", "Sig"]),
                           st.text(max_size=8))))
def test_parse_signal_is_a_number_from_1_to_64_or_invalid_argument(text: str):
    from dist_tool.tasks import parse_signal

    try:
        number = parse_signal(text)
    except InvalidArgument:
        return
    assert 1 <= number < signal.NSIG
    assert text.isascii()  # only ASCII digits and names, whatever str.upper makes of other letters
    if validate.decimal(text) is None and not text.upper().removeprefix("SIG").startswith(("RTMIN+", "RTMAX-")):
        assert "SIG" + text.upper().removeprefix("SIG") in _SIGNAL_NAMES


@given(st.sampled_from(_SIGNAL_NAMES), st.booleans(), st.booleans())
def test_every_signal_name_round_trips(name: str, prefixed: bool, lower: bool):
    from dist_tool.tasks import parse_signal

    text = name if prefixed else name.removeprefix("SIG")
    number = parse_signal(text.lower() if lower else text)
    assert number == signal.Signals[name] and parse_signal(str(number)) == number
