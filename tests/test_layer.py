"""Applying one layer: hostile member paths, memory bounds, what metadata is kept (dist_tool.layer,
dist_tool.rootpath). Every hostile case runs beside a canary tree that must not change."""

from __future__ import annotations

import copy
import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest
from layerkit import (
    IS_ROOT,
    chardev,
    directory,
    fifo,
    file,
    hardlink,
    layer,
    opaque,
    overlay_supported,
    symlink,
    whiteout,
)

from dist_tool.errors import DataError
from dist_tool.layer import apply_layer

NO_OVERLAY = overlay_supported()
WHITEOUTS = [pytest.param("overlay", marks=pytest.mark.skipif(bool(NO_OVERLAY), reason=str(NO_OVERLAY))), "delete"]


# ------------------------------------------------------------------------------ hostile layers


@pytest.fixture
def arena(tmp_path: Path):
    """A destination directory and, beside it, a canary tree no layer may touch."""
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "file").write_bytes(b"precious")
    dest = tmp_path / "dest"
    dest.mkdir()

    def outside() -> dict:
        return {str(p.relative_to(tmp_path)): (p.lstat().st_mode, p.lstat().st_mtime_ns,
                                               p.read_bytes() if p.is_file() and not p.is_symlink() else None)
                for p in tmp_path.rglob("*") if dest not in (p, *p.parents)}

    before = outside()
    yield dest, canary
    assert outside() == before, "a layer wrote outside its directory"


def apply(dest: Path, members, whiteouts: str = "delete") -> None:
    apply_layer(io.BytesIO(layer(members)), str(dest), whiteouts=whiteouts, what="sha256:test")


CANARY = "<canary>"  # replaced by the canary's absolute path


def _absolute(members, canary: Path):
    out = []
    for original, data in members:
        info = copy.copy(original)  # the tables are shared by every parametrized run
        info.name = info.name.replace(CANARY, str(canary).lstrip("/"))
        info.linkname = info.linkname.replace(CANARY, str(canary))
        out.append((info, data))
    return out


NEUTRALISED = [
    ("absolute-name", [file(f"/{CANARY}/abs", b"x")], f"{CANARY}/abs"),
    ("symlink-to-root", [symlink("link", "/"), file(f"link/{CANARY}/file", b"x")], f"{CANARY}/file"),
    ("symlink-to-outside", [symlink("link", CANARY), file("link/pwned", b"x")], f"{CANARY}/pwned"),
    ("symlink-climbing", [directory("d"), symlink("d/up", "../../../../.."), file("d/up/top", b"x")], "top"),
    ("chained-symlinks", [symlink("a", "b"), symlink("b", "/c/.."), file("a/x", b"x")], "x"),
    ("file-over-symlink", [symlink("link", f"{CANARY}/file"), file("link", b"replaced")], "link"),
    ("dir-over-symlink", [symlink("d", CANARY), directory("d", 0o777)], "d"),
    ("whiteout-through-symlink", [symlink("link", CANARY), whiteout("link/file")], "link"),
    ("opaque-through-symlink", [symlink("link", CANARY), opaque("link")], "link"),
    ("hardlink-through-symlink", [symlink("link", CANARY), file(f"{CANARY}/file", b"inside"),
                                  hardlink("hl", "link/file")], "hl"),
    # a directory's mode and times are set at the end of the layer: not through what replaced it
    ("dir-then-symlink-out", [directory("d"), directory("d/file", 0o777), symlink("d", CANARY)], "d"),
    # a '..' that stays inside is taken by its text (containerd, umoci), never through a symlink
    ("inner-dotdot-inside", [directory("a"), file("a/../dd", b"x")], "dd"),
    ("dotdot-past-a-symlink", [symlink("s", CANARY), file("s/../viasym", b"x")], "viasym"),
    ("hardlink-with-dotdot", [directory("a"), file("f", b"x"), hardlink("a/hl", "a/../f")], "a/hl"),
]


@pytest.mark.parametrize(("members", "expect"), [pytest.param(m, e, id=i) for i, m, e in NEUTRALISED])
@pytest.mark.parametrize("whiteouts", WHITEOUTS)
def test_hostile_paths_are_kept_inside(arena, members, expect, whiteouts) -> None:
    dest, canary = arena
    apply(dest, _absolute(members, canary), whiteouts)
    assert os.path.lexists(dest / expect.replace(CANARY, str(canary).lstrip("/")))


REFUSED = [
    ("dotdot", [file("../escape", b"x")], "../escape"),
    ("inner-dotdot", [directory("a"), file("a/../../escape", b"x")], "a/../../escape"),
    ("hardlink-outside", [hardlink("hl", "../canary/file")], "hl"),
    ("hardlink-absolute", [hardlink("hl", f"{CANARY}/file")], "hl"),
    ("hardlink-via-symlink", [symlink("link", CANARY), hardlink("hl", "link/file")], "hl"),
    ("hardlink-to-dir", [directory("d"), hardlink("hl", "d")], "hl"),
    ("whiteout-dotdot", [file(".wh..."), ], ".wh..."),
    ("whiteout-climbing", [file("../.wh.canary")], "../.wh.canary"),
    ("dotdot-climbing-after-a-dir", [directory("a"), file("a/../../x", b"x")], "a/../../x"),
    ("symlink-loop", [symlink("l1", "l2"), symlink("l2", "l1"), file("l1/x", b"x")], "l1/x"),
    ("long-name", [file("n" * 256, b"x")], "n" * 20),
    ("long-path", [file("/".join(["d" * 200] * 21), b"x")], "d" * 20),
    ("file-as-parent", [file("f", b"x"), file("f/g", b"x")], "f/g"),
]


@pytest.mark.parametrize(("members", "named"), [pytest.param(m, n, id=i) for i, m, n in REFUSED])
@pytest.mark.parametrize("whiteouts", WHITEOUTS)
def test_hostile_members_are_refused_by_name(arena, members, named, whiteouts) -> None:
    dest, canary = arena
    with pytest.raises(DataError) as caught:
        apply(dest, _absolute(members, canary), whiteouts)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("layer sha256:test: member ")
    assert named.replace(CANARY, str(canary)) in message


@pytest.mark.parametrize("whiteouts", WHITEOUTS)
def test_the_last_member_for_a_path_decides_its_mode(tmp_path: Path, whiteouts) -> None:
    apply(tmp_path, [directory("f", 0o4777), file("f", b"x", 0o644),
                     directory("p", 0o1777), fifo("p", 0o600),
                     directory("s"), symlink("s", "elsewhere"),
                     directory("twice", 0o700), directory("twice", 0o750),
                     directory("gone"), directory("gone/sub", 0o1777), file("gone", b"x"),
                     directory("gone"), file("gone/sub/new", b"y")], whiteouts)
    mode = {name: os.lstat(tmp_path / name).st_mode & 0o7777 for name in ("f", "p", "twice", "gone/sub")}
    assert mode == {"f": 0o644, "p": 0o600, "twice": 0o750, "gone/sub": 0o755}
    assert os.readlink(tmp_path / "s") == "elsewhere"


@pytest.mark.parametrize("whiteouts", WHITEOUTS)
def test_a_deep_tree_can_be_replaced(tmp_path: Path, whiteouts) -> None:
    deep = "/".join(["d"] * 1100)  # beyond Python's recursion limit, within PATH_MAX
    apply(tmp_path, [file(f"{deep}/f", b"x"), file("d", b"flat")], whiteouts)
    assert (tmp_path / "d").read_bytes() == b"flat"


def test_hostile_header_cannot_exhaust_memory(tmp_path: Path) -> None:
    info, _ = file("x", b"")
    info.pax_headers = {"comment": "y" * (8 << 20)}  # an 8 MiB PAX header
    with pytest.raises(DataError, match="tar header is larger"):
        apply(tmp_path, [(info, b"")])


def test_metadata_is_kept(tmp_path: Path) -> None:
    members = [directory("d", 0o750, uid=1000, gid=1000, mtime=1_600_000_000), file("d/suid", b"#!", 0o4755),
               file("d/x", b"xattr", 0o600, xattrs={"user.note": "hi"}), hardlink("d/hl", "d/x"),
               symlink("d/abs", "/bin/busybox"), fifo("d/pipe"), file("d/t", b"", mtime=1_500_000_000)]
    if IS_ROOT:
        members.append(chardev("d/null", 1, 3))
    apply(tmp_path, members)
    d = tmp_path / "d"
    assert (d.stat().st_mode & 0o7777, d.stat().st_mtime) == (0o750, 1_600_000_000)
    if IS_ROOT:
        assert (d.stat().st_uid, d.stat().st_gid) == (1000, 1000)
        assert os.major((d / "null").lstat().st_rdev) == 1
    assert (d / "suid").stat().st_mode & 0o7777 == 0o4755
    assert (d / "x").stat().st_ino == (d / "hl").stat().st_ino
    assert os.getxattr(d / "x", "user.note") == b"hi"
    assert os.readlink(d / "abs") == "/bin/busybox"
    assert (d / "t").stat().st_mtime == 1_500_000_000


@pytest.mark.parametrize("writers", [0, 1, 4])
def test_writer_threads_keep_the_members_order(tmp_path: Path, writers: int) -> None:
    """Small files go to writer threads; a later member at a pending path still wins."""
    members = [file("a", b"file first"), directory("a"), file("a/x", b"x"),
               file("b", b"file"), symlink("b", "a/x"),
               file("c", b"c"), hardlink("d", "c"),
               file("e", b"e"), whiteout("e"),
               file("f/g", b"implicit parent"), directory("many")]
    members += [file(f"many/{i}", b"%d" % i, 0o640) for i in range(300)]
    members += [file("many/7", b"again")]
    apply_layer(io.BytesIO(layer(members)), str(tmp_path), whiteouts="overlay" if NO_OVERLAY is None else "delete",
                writers=writers)
    assert (tmp_path / "a").is_dir() and (tmp_path / "a" / "x").read_bytes() == b"x"
    assert os.readlink(tmp_path / "b") == "a/x"
    assert (tmp_path / "d").stat().st_ino == (tmp_path / "c").stat().st_ino
    assert (tmp_path / "e").read_bytes() == b"e" and (tmp_path / "f" / "g").read_bytes() == b"implicit parent"
    assert len(os.listdir(tmp_path / "many")) == 300 and (tmp_path / "many" / "7").read_bytes() == b"again"
    assert (tmp_path / "many" / "299").stat().st_mode & 0o777 == 0o640


@pytest.mark.skipif(bool(NO_OVERLAY), reason=str(NO_OVERLAY))
@pytest.mark.parametrize("writers", [0, 1, 4])
def test_an_opaque_marker_under_a_pending_file_is_named_as_the_member_at_fault(tmp_path: Path, writers: int) -> None:
    """The opaque marker did not wait for the writers: it made a directory where the file was still
    pending, and the writer's EEXIST was reported as "member f: File exists"."""
    with pytest.raises(DataError) as caught:
        apply_layer(io.BytesIO(layer([file("f", b"x"), opaque("f")])), str(tmp_path), whiteouts="overlay",
                    what="sha256:x", writers=writers)
    assert str(caught.value) == "layer sha256:x: member f/.wh..wh..opq: f is not a directory"


@pytest.mark.parametrize(("blob", "error"), [
    (b"", None),
    (b"\0" * 1024, None),
    (b"not a tar at all, just text" * 40, "not a tar archive"),
    (gzip.compress(b"\0" * 2048)[:-10], "truncated gzip stream"),
], ids=["empty-stream", "end-of-archive-only", "garbage", "truncated-gzip"])
def test_streams_that_are_empty_or_not_tars(tmp_path: Path, blob: bytes, error: str | None) -> None:
    if error is None:
        result = apply_layer(io.BytesIO(blob), str(tmp_path), whiteouts="delete")
        assert result.entries == 0 and os.listdir(tmp_path) == []
        return
    with pytest.raises(DataError, match=f"^layer sha256:x: {error}"):
        apply_layer(io.BytesIO(blob), str(tmp_path), whiteouts="delete", what="sha256:x")


def _pax_chain(count: int) -> bytes:
    """``count`` extended headers in a row, then one file: tarfile reads such a chain by recursion."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for _ in range(count):
            info = tarfile.TarInfo("pax")
            info.type, payload = tarfile.XHDTYPE, b"11 path=ab\n"
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        info, data = file("f", b"x")
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _damaged(cut: int | None = None, at: int | None = None, with_: bytes = b"") -> bytes:
    """Three one-block files (headers at 0, 1024, 2048): cut at byte ``cut``, or overwritten at ``at``."""
    data = bytearray(layer([file("a", b"a"), file("b", b"b"), file("c", b"c")]))
    if at is not None:
        data[at:at + len(with_)] = with_
    return bytes(data[:cut])


@pytest.mark.parametrize(("blob", "error"), [
    (_damaged(at=1024 + 148, with_=b"0000000\0"), "corrupt tar stream .*bad checksum at byte 1024"),
    (_damaged(cut=1024 + 100), "corrupt tar stream .*truncated header at byte 1024"),
    (_pax_chain(400), "corrupt tar stream .*too many extended headers"),
], ids=["bad-checksum-mid-layer", "cut-inside-a-header", "extended-header-chain"])
def test_a_damaged_header_after_the_first_is_an_error_not_the_end(tmp_path: Path, blob: bytes, error: str) -> None:
    """tarfile alone would stop at it and report a shorter layer; its diff_id could even match."""
    with pytest.raises(DataError, match=f"^layer sha256:x: {error}"):
        apply_layer(io.BytesIO(blob), str(tmp_path), whiteouts="delete", what="sha256:x")


def _negative_size(first: bool) -> bytes:
    """A member whose PAX size is -1 and whose data (as GNU tar and Go's archive/tar count it) holds
    a tar header for "hidden": tarfile alone takes that data as the next member."""
    hidden = layer([file("hidden", b"abc")])[:-1024]  # no end marker: the archive goes on after it
    info, _ = file("smuggler", hidden, pax_headers={"size": "-1"})
    return layer([*([] if first else [file("a", b"a")]), (info, hidden), file("after", b"z")])


@pytest.mark.parametrize("first", [True, False], ids=["first-member", "mid-layer"])
def test_a_negative_member_size_is_refused_not_read_as_headers(tmp_path: Path, first: bool) -> None:
    with pytest.raises(DataError, match=r"^layer sha256:x: .*a member's size is negative \(-1\) at byte"):
        apply_layer(io.BytesIO(_negative_size(first)), str(tmp_path), whiteouts="delete", what="sha256:x")
    assert not (tmp_path / "hidden").exists()


@pytest.mark.parametrize("records", [{"size": "0"}, {"path": "etc/passwd"}], ids=["size", "path"])
def test_a_global_header_applies_to_no_member(tmp_path: Path, records: dict) -> None:
    """Go's archive/tar returns a global header as an entry of its own and containerd ignores it;
    tarfile applied its records to the members after it: size=0 read "smuggler"'s data as headers,
    unpacking a "hidden" containerd never sees; path=… renamed every member."""
    hidden = layer([file("hidden", b"abc")])[:-1024]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, pax_headers=records) as tar:
        for info, data in [file("smuggler", hidden, pax_headers={"mtime": "1.5"}), file("after", b"z")]:
            tar.addfile(info, io.BytesIO(data))
    apply_layer(io.BytesIO(out.getvalue()), str(tmp_path), whiteouts="delete", what="sha256:x")
    assert sorted(os.listdir(tmp_path)) == ["after", "smuggler"]
    assert (tmp_path / "smuggler").read_bytes() == hidden and (tmp_path / "after").read_bytes() == b"z"


def test_a_layer_may_end_on_a_block_boundary_without_the_end_marker(tmp_path: Path) -> None:
    result = apply_layer(io.BytesIO(_damaged(cut=2048)), str(tmp_path), whiteouts="delete")
    assert result.entries == 2 and sorted(os.listdir(tmp_path)) == ["a", "b"]


BAD_VALUES = [
    ("mtime-inf", file("m", b"x", pax_headers={"mtime": "inf"})),
    ("mtime-nan", file("m", b"x", pax_headers={"mtime": "nan"})),
    ("mtime-1e30", file("m", b"x", pax_headers={"mtime": "1e30"})),
    ("nul-in-xattr-name", file("m", b"x", xattrs={"user.a\0b": "v"})),
]


@pytest.mark.parametrize("member", [m for _, m in BAD_VALUES], ids=[i for i, _ in BAD_VALUES])
def test_header_values_no_file_can_carry_are_refused_by_name(tmp_path: Path, member) -> None:
    with pytest.raises(DataError) as caught:
        apply(tmp_path, [member])
    assert str(caught.value).startswith("layer sha256:test: member m: invalid header value")


@pytest.mark.skipif(not IS_ROOT, reason="owners are set only as root")
@pytest.mark.parametrize("owner", [{"uid": 2**32}, {"uid": 2**40}, {"gid": 2**32}], ids=["uid-2^32", "uid-2^40", "gid"])
def test_an_owner_beyond_32_bits_is_named_out_of_range(tmp_path: Path, owner) -> None:
    """Python's own words were "uid is less than minimum" for a uid too large."""
    member = file("m", b"x", pax_headers={key: str(value) for key, value in owner.items()})
    with pytest.raises(DataError) as caught:
        apply(tmp_path, [member])
    uid, gid = owner.get("uid", 0), owner.get("gid", 0)
    assert str(caught.value) == f"layer sha256:test: member m: owner {uid}:{gid} is out of range (0 to 4294967295)"


@pytest.mark.skipif(bool(NO_OVERLAY), reason=str(NO_OVERLAY))
def test_what_an_overlayfs_upper_layer_cannot_hold_is_refused_by_name(tmp_path: Path) -> None:
    """A hard link to a lower layer's file said "lower does not exist"; a 0/0 character device
    became a whiteout, hiding the lower entry, where native and umoci make a device."""
    for dest in "abc":
        (tmp_path / dest).mkdir()
    with pytest.raises(DataError) as caught:
        apply(tmp_path / "a", [hardlink("link", "lower")], whiteouts="overlay")
    assert str(caught.value) == ("layer sha256:test: member link: hard link to lower: not in this layer; the "
                                 "overlayfs snapshotter cannot link to a lower layer's file (--snapshotter native can)")
    if IS_ROOT:
        with pytest.raises(DataError) as caught:
            apply(tmp_path / "b", [chardev("cd", 0, 0)], whiteouts="overlay")
        assert str(caught.value) == ("layer sha256:test: member cd: a 0/0 character device is overlayfs's whiteout: "
                                     "the overlayfs snapshotter cannot store it (--snapshotter native can)")
        apply(tmp_path / "c", [chardev("cd", 0, 0)], whiteouts="delete")
        assert os.stat(tmp_path / "c" / "cd").st_rdev == 0


def test_implied_parents_are_0755_whatever_the_umask(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    old = os.umask(0o077)
    try:
        apply(dest, [file("a/b/c", b"x")])
    finally:
        os.umask(old)
    assert [(dest / p).stat().st_mode & 0o7777 for p in ("a", "a/b")] == [0o755, 0o755]


def test_a_pax_time_with_a_long_fraction_keeps_its_nanoseconds(tmp_path: Path) -> None:
    """Only nine digits of a fraction count; decimal() has no value for 700 digits, and the time
    fell back to tarfile's float, which rounds the nanoseconds away."""
    apply(tmp_path, [file("m", b"x", pax_headers={"mtime": "1600000000." + "123456789" * 80})])
    assert (tmp_path / "m").lstat().st_mtime_ns == 1_600_000_000_123_456_789
