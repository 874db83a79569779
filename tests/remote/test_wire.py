"""What a client gives the server and the server's address: ``--address``/``DIST_ADDRESS`` and
a ``Range`` header are text dist does not control; properties of their parsers."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from dist_tool.errors import InvalidArgument
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

