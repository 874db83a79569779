"""dist_tool.spec.users, properties: an image's /etc/passwd and /etc/group are bytes dist does not
control, and ``--user`` is the command line's; neither may end in anything but dist's own errors."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dist_tool.errors import InvalidArgument, NotFound
from dist_tool.spec import users

# Names as passwd files hold them: no ":" or line break, no "#", "+" or "-" first (a comment, a
# NIS line), no space at either end (a line is stripped); a letter first, so no name is a number.
_names = st.from_regex(r"[a-zé_][a-zé0-9_.-]{0,11}", fullmatch=True)
_ids = st.integers(0, users.UID_MAX)
_hostile = st.one_of(
    st.binary(max_size=200),
    st.lists(st.lists(st.one_of(st.text(max_size=6), st.integers(-3, 2**40).map(str)), max_size=8)
             .map(":".join), max_size=6).map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass")),
)


@example(b"a:x:" + b"1" * 5000 + b":0::/:\n")  # int() refuses over 4300 digits: was a ValueError
@example(b"\xff\xfe:x:1:1::/\n\x00:x:2:2\n")
@given(_hostile)
def test_passwd_and_group_of_any_bytes_are_entries_or_skipped_lines(data: bytes):
    for entry in users.parse_passwd(data):
        assert entry.name and ":" not in entry.name and "\n" not in entry.name
        assert 0 <= entry.uid <= users.UID_MAX and 0 <= entry.gid <= users.UID_MAX
    for group in users.parse_group(data):
        assert group.name and 0 <= group.gid <= users.UID_MAX
        assert all(m and m == m.strip() and "," not in m for m in group.members)


@given(st.lists(st.tuples(_names, _ids, _ids), max_size=5))
def test_passwd_lines_parse_back_to_their_entries(entries):
    text = "".join(f"{n}:x:{u}:{g}:gecos:/home/{n}:/bin/sh\n" for n, u, g in entries)
    assert users.parse_passwd(text.encode()) == [users.PasswdEntry(n, u, g, f"/home/{n}") for n, u, g in entries]


@given(st.lists(st.tuples(_names, _ids, st.lists(_names, max_size=3)), max_size=5))
def test_group_lines_parse_back_to_their_entries(groups):
    text = "".join(f"{n}:x:{g}:{','.join(m)}\n" for n, g, m in groups)
    assert users.parse_group(text.encode()) == [users.GroupEntry(n, g, tuple(m)) for n, g, m in groups]


@settings(max_examples=200)
@example("1" * 5000, b"")
@example("root:" + "0" * 5000, b"root:x:0:0::/:\n")
@given(st.one_of(st.text(max_size=20), st.from_regex(r"[0-9a-z]{0,12}:[0-9a-z]{0,12}", fullmatch=True)),
       _hostile)
def test_any_user_resolves_in_range_or_is_invalid_or_not_found(user: str, data: bytes):
    try:
        resolved = users.resolve(user, lambda path: data)
    except (InvalidArgument, NotFound):
        return
    assert 0 <= resolved.uid <= users.UID_MAX and 0 <= resolved.gid <= users.UID_MAX
    assert resolved.additional_gids[0] == resolved.gid  # containerd's ensureAdditionalGids


@given(st.lists(st.tuples(_names, _ids, _ids), min_size=1, max_size=5, unique_by=lambda e: e[0]), st.data())
def test_a_name_in_passwd_resolves_to_its_entry(entries, data):
    name, uid, gid = data.draw(st.sampled_from(entries))
    passwd = "".join(f"{n}:x:{u}:{g}::/:\n" for n, u, g in entries).encode()
    resolved = users.resolve(name, lambda path: passwd if path == "/etc/passwd" else None)
    assert (resolved.uid, resolved.gid, resolved.name) == (uid, gid, name)


@given(_ids, _ids)
def test_numeric_uid_and_gid_are_themselves_and_read_nothing(uid: int, gid: int):
    def no_file(path: str) -> bytes | None:
        raise AssertionError(f"read {path}")

    assert users.resolve(f"{uid}:{gid}", no_file) == users.ResolvedUser(uid, gid, (gid,))


@pytest.mark.parametrize("user", ["2147483648", "1:2147483648", "9" * 5000, "bob:" + "1" * 5000])
def test_a_number_out_of_range_is_invalid_not_a_name(user: str):
    """A 5000-digit number is still a number: out of range, not a user name the image lacks."""
    with pytest.raises(InvalidArgument, match="out of range"):
        users.check_format(user)
