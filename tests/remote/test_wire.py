"""What a client gives the server and the server's address: ``--address``/``DIST_ADDRESS`` and
a ``Range`` header are text dist does not control; properties of their parsers."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from dist_tool.errors import InvalidArgument
from dist_tool.remote.server import parse_range
from dist_tool.remote.wire import parse_address

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)
_hosts = st.one_of(
    st.lists(_label, min_size=1, max_size=3).map(".".join),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)


@given(_hosts, st.integers(1, 65535))
def test_a_tcp_address_formatted_parses_back(host: str, port: int):
    shown = f"[{host}]" if ":" in host else host
    assert parse_address(f"tcp://{shown}:{port}") == ("tcp", (host, port))


@given(st.text(min_size=0, max_size=30).map(lambda t: "/" + t))
def test_a_unix_path_parses_back(path: str):
    assert parse_address(f"unix://{path}") == ("unix", path)


@example("tcp://h:" + "1" * 5000)  # int() refuses over 4300 digits: was a ValueError
@example("tcp://[]:80")  # strip("[]") left an empty host
@example("tcp://]h[:80")
@given(st.one_of(st.text(max_size=30),
                 st.builds(lambda s, t: s + t, st.sampled_from(["unix://", "tcp://", "tcp://[", "tcp://h:"]),
                           st.text(max_size=20))))
def test_any_address_is_unix_or_tcp_or_invalid(address: str):
    try:
        kind, where = parse_address(address)
    except InvalidArgument:
        return
    if kind == "unix":
        assert isinstance(where, str) and where.startswith("/")
    else:
        host, port = where
        assert kind == "tcp" and host and "[" not in host and "]" not in host and 0 < port < 65536


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
def test_a_range_is_within_the_blob(size: int, first: int, last: int):
    try:
        span = parse_range(f"bytes={first}-{last}", size)
    except InvalidArgument:
        assert last < first
        return
    if span is None:
        assert first >= size
        return
    assert span == (first, min(last, size - 1))


@given(st.integers(0, 10**6), st.integers(0, 10**6))
def test_open_ended_and_suffix_ranges(size: int, n: int):
    assert parse_range(f"bytes={n}-", size) == ((n, size - 1) if n < size else None)
    suffix = parse_range(f"bytes=-{n}", size)
    if n == 0 or size == 0:
        assert suffix is None  # RFC 9110: a suffix of 0 bytes, any range of an empty blob
    else:
        assert suffix == (size - min(n, size), size - 1)


@example("bytes=" + "1" * 5000 + "-", 10)
@example("bytes=0-" + "9" * 5000, 10)
@example("bytes=\u0661-", 10)  # \d took Arabic-Indic digits, which int() reads (http.server passes none)
@given(st.one_of(st.text(max_size=20),
                 st.builds(lambda t: "bytes=" + t, st.text("0123456789-, \u0661\u00b2", max_size=12))),
       st.integers(0, 1000))
def test_any_range_header_is_a_span_none_or_invalid(ranged: str, size: int):
    try:
        span = parse_range(ranged, size)
    except InvalidArgument:
        return
    if span is not None:
        start, end = span
        assert 0 <= start <= end < size
        assert ranged.strip().isascii()


@pytest.mark.parametrize("ranged", ["bytes=-", "bytes=1-2,4-5", "items=0-1", "bytes=a-", ""])
def test_malformed_ranges_are_invalid(ranged: str):
    with pytest.raises(InvalidArgument, match="expected bytes=START"):
        parse_range(ranged, 10)
