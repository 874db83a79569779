"""render: the plain table writer (pipes, and listings too big for rich), records and JSON."""

import io
import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from dist_tool.render import Col, Renderer, iec, labels_text, printable, rfc3339, short_digest


def render_records(records, columns, **kwargs) -> str:
    out = io.StringIO()  # not a TTY: the plain writer and compact JSON
    Renderer(out=out).records(records, columns, **kwargs)
    return out.getvalue()


COLUMNS = (Col("NAME", "name"), Col("DIGEST", "target.digest", fmt=short_digest), Col("SIZE", "size", fmt=iec),
           Col("PLATFORMS", "platforms"), Col("LABELS", "labels", fmt=labels_text))
RECORDS = [
    {"name": "a", "target": {"digest": "sha256:" + "1" * 64}, "size": 2048, "platforms": ["linux/amd64"],
     "labels": {"z": "1", "a": "2"}},
    {"name": "longer-name", "target": {"digest": "sha256:" + "2" * 64}, "size": None, "platforms": [],
     "labels": {}},
]


def test_plain_table_aligns_columns_three_spaces_apart_and_never_pads_the_last():
    assert render_records(RECORDS, COLUMNS).splitlines() == [
        "NAME          DIGEST                SIZE      PLATFORMS     LABELS",
        "a             sha256:111111111111   2.0 KiB   linux/amd64   a=2,z=1",
        "longer-name   sha256:222222222222   -         -             -",
    ]


def test_terminal_controls_in_cells_are_shown_escaped_on_both_writers():
    """A label holding ESC [2J cleared the screen of whoever listed it; a newline split the row."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    record = [{"name": "x\ny", "labels": {"k": "\x1b[2J\r"}}]
    cols = (Col("NAME", "name"), Col("LABELS", "labels", fmt=labels_text))
    assert render_records(record, cols).splitlines()[1] == "x\\ny   k=\\x1b[2J\\r"
    tty = Terminal()
    Renderer(out=tty).records(record, cols)
    assert "\x1b[2J" not in tty.getvalue() and "k=\\x1b[2J\\r" in tty.getvalue()
    assert len(tty.getvalue().strip().splitlines()) == 3  # header, rule, one row


def test_label_lines_escape_terminal_controls_but_json_keeps_them():
    out = io.StringIO()
    Renderer(out=out).labels({"k": "\x1b[2J"})
    assert out.getvalue() == "k=\\x1b[2J\n"
    out = io.StringIO()
    Renderer(out=out).labels({"k": "\x1b[2J"}, as_json=True)
    assert json.loads(out.getvalue()) == {"k": "\x1b[2J"}


def test_a_missing_nested_field_is_a_dash():
    out = render_records([{"name": "x", "target": "not-an-object"}], (Col("NAME", "name"), Col("D", "target.digest")))
    assert out.splitlines() == ["NAME   D", "x      -"]


def test_cells_over_a_column_limit_end_in_an_ellipsis_at_the_limit():
    cols = (Col("TYPE", "type", max_width=8), Col("N", "n"))
    out = render_records([{"type": "application/json", "n": 1}, {"type": "short", "n": 2}], cols)
    assert out.splitlines() == ["TYPE       N", "applica…   1", "short      2"]


def test_an_empty_last_cell_leaves_no_trailing_space():
    out = render_records([{"a": "x", "b": ""}, {"a": "y", "b": "z"}], (Col("A", "a"), Col("B", "b")))
    assert out.splitlines() == ["A   B", "x", "y   z"]


def test_an_empty_listing_is_the_header_alone():
    assert render_records([], COLUMNS) == "NAME   DIGEST   SIZE   PLATFORMS   LABELS\n"


def test_json_off_a_terminal_is_one_compact_document_with_rfc3339_times():
    out = render_records([{"name": "a", "createdAt": 0.5}], COLUMNS, as_json=True)
    assert out.count("\n") == 1
    assert json.loads(out) == [{"name": "a", "createdAt": "1970-01-01T00:00:00.500000Z"}]


def test_quiet_prints_the_key_field_only():
    assert render_records(RECORDS, COLUMNS, quiet=True) == "a\nlonger-name\n"


def test_a_thousand_rows_keep_their_order_and_width():
    records = [{"name": f"n{i}", "size": i} for i in range(1000)]
    lines = render_records(records, (Col("NAME", "name"), Col("SIZE", "size", fmt=iec))).splitlines()
    assert len(lines) == 1001 and lines[1] == "n0     0 B" and lines[-1] == "n999   999 B"


@given(st.floats(min_value=0, max_value=2**33, allow_nan=False, allow_infinity=False))
def test_rfc3339_agrees_with_datetime(t):
    assert rfc3339(t) == datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_forced_bars_print_nothing_until_there_is_something_to_show():
    """``--progress tty`` off a terminal: a command that failed before any transfer left rich's
    blank line above its one-line error."""
    from dist_tool.render import Progress

    err = io.StringIO()
    with Progress("tty", err):
        pass
    assert err.getvalue() == ""
    with Progress("tty", err) as bars:
        bars.start("layer sha256:abc", 10)
        bars.update("layer sha256:abc", 10)
        bars.done("layer sha256:abc")
    assert "layer sha256:abc" in err.getvalue()


@given(st.binary(max_size=40))
def test_printable_shows_a_byte_that_is_not_utf8_as_the_byte(raw: bytes):
    """A name, label or path that is not UTF-8 reaches dist as surrogates: errors and progress
    showed '\\udcff' where the user had typed (or the archive held) the byte 0xff."""
    shown = printable(raw.decode("utf-8", "surrogateescape"))
    assert shown.isprintable()
    if all(c.isprintable() for c in raw.decode("utf-8", "ignore")):
        assert shown == raw.decode("utf-8", "backslashreplace")


def test_printable_escapes_what_a_terminal_acts_on():
    assert printable("a\nb\x1b[2J\udcfe") == "a\\nb\\x1b[2J\\xfe"
    assert printable("plain") == "plain"
