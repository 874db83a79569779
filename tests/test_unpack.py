"""Unpacking images (dist_tool.unpack and its wiring): whiteouts across layers, rollback of a failed
unpack, diff_id checks, compressions, shared layers, GC of snapshots, the snapshot CLI, memory."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from helpers import Dist, sans_allocations, store_fingerprint
from layerkit import (
    MTIME,
    directory,
    file,
    layer,
    mounted,
    oci_archive,
    opaque,
    overlay_supported,
    snapshot_tree,
    symlink,
    tree,
    whiteout,
)

from dist_tool.chains import chain_ids
from dist_tool.errors import DataError
from dist_tool.session import Session

NO_OVERLAY = overlay_supported()
SNAPSHOTTERS = [pytest.param("overlayfs", marks=pytest.mark.skipif(bool(NO_OVERLAY), reason=str(NO_OVERLAY))),
                "native"]


def session(tmp_path: Path, snapshotter: str) -> Session:
    return Session(root=str(tmp_path / "root"), state=str(tmp_path / "state"), snapshotter_name=snapshotter)


def import_(s: Session, image, **kw) -> list[str]:
    from dist_tool import archive

    return archive.import_archive(s, str(image.archive), **kw)


def test_chain_ids_follow_the_image_spec() -> None:
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    assert chain_ids([a]) == [a]
    assert chain_ids([a, b])[1] == "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()


# ------------------------------------------------------------------------------ whiteouts


THREE_LAYERS = [
    [directory("a"), file("a/1", b"1"), file("a/2", b"2"), directory("a/sub"), file("a/sub/3", b"3"),
     directory("b"), file("b/1", b"b1"), file("c", b"c"), directory("d"), file("d/x"), file("d/y"),
     file("e", b"e"), directory("h"), file("h/old", b"o")],
    [whiteout("a/1"), whiteout("c"), directory("b"), opaque("b"), file("b/new", b"new"),
     whiteout("d"), directory("d"), file("d/z", b"z"), file("f", b"f"), file("g", b"g"), whiteout("g"),
     directory("h"), file("h/mine", b"m"), whiteout("h")],
    [whiteout("a/sub"), whiteout("f"), file("b/1", b"again"), whiteout("e"), directory("e"),
     file("e/inner", b"i")],
]
EXPECTED = {"a": None, "a/2": b"2", "b": None, "b/new": b"new", "b/1": b"again", "d": None, "d/z": b"z",
            "e": None, "e/inner": b"i", "g": b"g", "h": None, "h/mine": b"m"}


@pytest.mark.parametrize("snapshotter", SNAPSHOTTERS)
def test_whiteouts_and_opaque_directories_across_three_layers(tmp_path: Path, snapshotter: str) -> None:
    image = oci_archive(tmp_path / "img.tar", [layer(m) for m in THREE_LAYERS])
    s = session(tmp_path, snapshotter)
    assert import_(s, image) == [image.name]
    assert [i.key for i in s.snapshotter.list()] == sorted(image.chain)
    with snapshot_tree(s.snapshotter, image.chain[-1], tmp_path / "mnt") as root:
        found = {rel: (None if os.path.isdir(root / rel) else (root / rel).read_bytes()) for rel in tree(root)}
    assert found == EXPECTED
    s.close()


# ------------------------------------------------------------------------------ stacking layers


def _unpacked(tmp_path: Path, snapshotter: str, layers: list[list], name: str = "img") -> tuple[Session, object]:
    image = oci_archive(tmp_path / f"{name}.tar", [layer(m) for m in layers])
    s = session(tmp_path, snapshotter)
    assert import_(s, image) == [image.name]
    return s, image


def _owner_mode(path: Path) -> tuple[int, int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="owners need root")
@pytest.mark.parametrize("snapshotter", SNAPSHOTTERS)
def test_a_directory_a_layer_does_not_list_keeps_what_the_layers_below_give_it(tmp_path: Path,
                                                                                snapshotter: str) -> None:
    """"/" and parents of members: owner, mode, xattrs and times from below, on every snapshotter
    (overlayfs extracts a layer alone, so it used to make them 0755 root with no xattrs), and in a
    container's writable snapshot too."""
    below = {"xattrs": {"user.kept": "v"}, "mtime": 1_600_000_000}
    image_layers = [
        [directory("./", mode=0o750, uid=1000, gid=1001, **below), directory("xd", mode=0o710, uid=7, gid=8, **below),
         file("xd/one", b"1")],
        [file("xd/two", b"2"), directory("listed", mode=0o700)],
        [file("listed/f", b"f"), directory("listed", mode=0o751, uid=5, gid=6)],  # named after its member
    ]
    s, image = _unpacked(tmp_path, snapshotter, image_layers)
    with snapshot_tree(s.snapshotter, image.chain[-1], tmp_path / "mnt") as root:
        for rel in ("", "xd"):
            assert os.getxattr(root / rel, "user.kept") == b"v", rel
            assert os.lstat(root / rel).st_mtime_ns == 1_600_000_000 * 10**9, rel
        assert _owner_mode(root) == (1000, 1001, 0o750)
        assert _owner_mode(root / "xd") == (7, 8, 0o710)
        assert _owner_mode(root / "listed") == (5, 6, 0o751)
    s.snapshotter.prepare("container", image.chain[-1])
    with mounted(s.snapshotter.mounts("container"), tmp_path / "ctr") as root:
        assert _owner_mode(root) == (1000, 1001, 0o750)
        assert os.getxattr(root, "user.kept") == b"v"
    s.close()


@pytest.mark.parametrize("snapshotter", SNAPSHOTTERS)
def test_a_whiteout_of_what_no_lower_layer_has_hides_nothing_and_makes_nothing(tmp_path: Path,
                                                                               snapshotter: str) -> None:
    image_layers = [
        [whiteout("first/layer/x"), directory("usr"), directory("usr/lib"), file("usr/lib/x", b"x"),
         symlink("lib", "usr/lib"), file("keep", b"k")],
        [whiteout("ghost/deeper/foo"), directory("listed"), whiteout("listed/nothing"), whiteout("lib/y")],
    ]
    s, image = _unpacked(tmp_path, snapshotter, image_layers)
    with snapshot_tree(s.snapshotter, image.chain[-1], tmp_path / "mnt") as root:
        assert sorted(tree(root)) == ["keep", "lib", "listed", "usr", "usr/lib", "usr/lib/x"]
        assert os.readlink(root / "lib") == "usr/lib"
        assert os.lstat(root / "listed").st_mtime_ns == MTIME * 10**9
    s.close()


@pytest.mark.parametrize("snapshotter", SNAPSHOTTERS)
def test_a_whiteout_under_a_directory_its_layer_made_opaque_leaves_nothing(tmp_path: Path,
                                                                          snapshotter: str) -> None:
    """The opaque mark already hides what was below: the whiteout must not stay behind as a 0:0
    device, which overlayfs lists in a lone opaque directory as a broken entry (``c????????? old``)."""
    image_layers = [
        [directory("d"), file("d/old", b"x"), directory("e"), file("e/old", b"x"), directory("k"),
         file("k/kk", b"x"), file("top", b"t")],
        [opaque("d"), whiteout("d/old"), whiteout("d/sub/x"), file("d/new", b"y"),
         whiteout("e"), directory("e"), whiteout("e/old"), file("e/new", b"y")],
        [opaque("./"), directory("k"), whiteout("k/kk"), file("k/new", b"z"), whiteout("top")],
    ]
    s, image = _unpacked(tmp_path, snapshotter, image_layers)
    with snapshot_tree(s.snapshotter, image.chain[-2], tmp_path / "mnt") as root:
        assert sorted(tree(root)) == ["d", "d/new", "e", "e/new", "k", "k/kk", "top"]
        assert os.listdir(root / "d") == ["new"]
    with snapshot_tree(s.snapshotter, image.chain[-1], tmp_path / "mnt2") as root:
        assert sorted(tree(root)) == ["k", "k/new"]
        assert os.listdir(root / "k") == ["new"]
    s.close()


ROOT_OPAQUE_CASES = [
    pytest.param([
        [directory("k"), file("k/kk", b"deleted"), directory("k/s"), file("k/s/x", b"x"), file("top", b"t"),
         directory("q"), file("q/1", b"1"), directory("t"), file("t/x", b"x"), symlink("ln", "t")],
        [opaque("./"), whiteout("k/kk"), whiteout("k/s/x"), whiteout("ln/x"), file("new", b"n")],
        [file("z", b"z")],
    ], ["new", "z"], id="three-layers"),
    pytest.param([
        [directory("k"), file("k/kk", b"deleted"), directory("k/s"), file("k/s/x", b"x"), file("top", b"t")],
        [whiteout("top"), directory("q"), file("q/1", b"1")],
        [opaque("./"), whiteout("q/1"), whiteout("k/s")],
        [directory("k"), file("k/again", b"a")],
    ], ["k", "k/again"], id="four-layers"),
]


@pytest.mark.parametrize(("image_layers", "expected"), ROOT_OPAQUE_CASES)
@pytest.mark.parametrize("snapshotter", SNAPSHOTTERS)
def test_an_opaque_root_hides_what_its_layer_only_whited_out_below(tmp_path: Path, snapshotter: str,
                                                                   image_layers, expected) -> None:
    """A root-opaque layer whose only entries under k/ are whiteouts: k is no directory of its own,
    and the lower k (with what the whiteouts named) must stay hidden, as native and umoci show."""
    s, image = _unpacked(tmp_path, snapshotter, image_layers)
    with snapshot_tree(s.snapshotter, image.chain[-1], tmp_path / "mnt") as root:
        assert sorted(tree(root)) == expected
    s.close()


@pytest.mark.skipif(bool(NO_OVERLAY), reason=str(NO_OVERLAY))
def test_settling_a_layer_never_follows_a_symlink_that_replaced_an_implicit_directory(tmp_path: Path) -> None:
    """A later member replaced "a", made as a parent of "a/etc/f", by a symlink out of the layer:
    giving "a/etc" what the layers below say about it must not chmod the target's etc. (Native
    applies layers on their parent, where "a/etc/f" under the file "a" is an error, as in tar.)"""
    snapshotter = "overlayfs"
    outside = tmp_path / "outside"
    (outside / "etc").mkdir(parents=True)
    os.chmod(outside / "etc", 0o755)
    before = os.stat(outside / "etc")
    image_layers = [
        [directory("a"), directory("a/etc", mode=0o777, uid=1234, gid=1234, mtime=1)],
        [file("a", b"a file hides a/etc")],
        [file("a/etc/f", b"x"), symlink("a", str(outside))],
    ]
    s, image = _unpacked(tmp_path, snapshotter, image_layers)
    after = os.stat(outside / "etc")
    assert (after.st_mode, after.st_uid, after.st_mtime_ns) == (before.st_mode, before.st_uid, before.st_mtime_ns)
    assert sorted(os.listdir(outside / "etc")) == []
    with snapshot_tree(s.snapshotter, image.chain[-1], tmp_path / "mnt") as root:
        assert os.readlink(root / "a") == str(outside)
    s.close()


LOWER = [directory("D", mode=0o750, uid=3, gid=4), file("D/old", b"o"), file("f", b"f"),
         directory("X", xattrs={"user.x": "1"})]


@pytest.mark.parametrize("snapshotter", SNAPSHOTTERS)
@pytest.mark.parametrize(("upper", "expected", "d_owner_mode", "x_xattrs"), [
    # deleted, then written under without a D/ entry (tar needs none): a new D, as umoci makes it
    ([whiteout("D"), file("D/x", b"x")], {"D": None, "D/x": b"x", "X": None, "f": b"f"}, (0, 0, 0o755), ["user.x"]),
    # a whiteout under a deleted path hides nothing more and makes nothing
    ([whiteout("D"), whiteout("D/old")], {"X": None, "f": b"f"}, None, ["user.x"]),
    # an opaque root, which overlayfs ignores on a layer's root
    ([opaque("."), file("g", b"g")], {"g": b"g"}, None, None),
    # a directory named again without xattrs loses them
    ([directory("X")], {"D": None, "D/old": b"o", "X": None, "f": b"f"}, (3, 4, 0o750), []),
    # under an opaque root, a directory the layer writes is new: nothing of the lower D shows
    ([opaque("."), file("D/x", b"x")], {"D": None, "D/x": b"x"}, (0, 0, 0o755), None),
], ids=["whiteout-then-member", "whiteout-then-whiteout-under", "opaque-root", "relisted-without-xattrs",
        "opaque-root-then-member"])
def test_both_snapshotters_and_umoci_agree_on_deleted_and_relisted_paths(
        tmp_path: Path, snapshotter: str, upper: list, expected: dict, d_owner_mode, x_xattrs) -> None:
    s, image = _unpacked(tmp_path, snapshotter, [LOWER, upper])
    with snapshot_tree(s.snapshotter, image.chain[-1], tmp_path / "mnt") as root:
        found = {rel: (None if (root / rel).is_dir() else (root / rel).read_bytes()) for rel in tree(root)}
        assert found == expected
        if d_owner_mode is not None and os.geteuid() == 0:
            assert _owner_mode(root / "D") == d_owner_mode
        if x_xattrs is not None:
            assert [n for n in os.listxattr(root / "X") if n.startswith("user.")] == x_xattrs
    s.close()


@pytest.mark.parametrize("snapshotter", SNAPSHOTTERS)
@pytest.mark.parametrize("upper", [
    [whiteout("D"), file("D/sub/x", b"x")],
    [directory("D"), opaque("D"), file("D/sub/x", b"x")],
], ids=["made-again", "opaque"])
def test_a_directory_under_one_the_layer_hid_takes_nothing_from_below(tmp_path: Path, snapshotter: str,
                                                                       upper: list) -> None:
    lower = [directory("D"), directory("D/sub", mode=0o700, uid=9, gid=9, xattrs={"user.k": "v"}),
             file("D/sub/old", b"o")]
    s, image = _unpacked(tmp_path, snapshotter, [lower, upper])
    with snapshot_tree(s.snapshotter, image.chain[-1], tmp_path / "mnt") as root:
        assert sorted(tree(root)) == ["D", "D/sub", "D/sub/x"]
        if os.geteuid() == 0:
            assert _owner_mode(root / "D" / "sub") == (0, 0, 0o755)
        assert [n for n in os.listxattr(root / "D" / "sub") if n.startswith("user.")] == []
    s.close()


def test_a_directory_time_no_clock_can_hold_is_a_layer_error(tmp_path: Path) -> None:
    s = session(tmp_path, "native")
    image = oci_archive(tmp_path / "img.tar", [layer([directory("d", pax_headers={"mtime": "9" * 20})])])
    with pytest.raises(DataError, match=r"member d: .*time out of range"):
        import_(s, image)
    s.close()


@pytest.mark.parametrize("snapshotter", SNAPSHOTTERS)
def test_pax_times_keep_their_nanoseconds(tmp_path: Path, snapshotter: str) -> None:
    exact = {"mtime": "1700000000.123456789", "atime": "-0.5"}
    s, image = _unpacked(tmp_path, snapshotter, [[
        file("f", b"f", pax_headers=exact), directory("d", pax_headers=exact), symlink("l", "f", pax_headers=exact)]])
    with snapshot_tree(s.snapshotter, image.chain[-1], tmp_path / "mnt") as root:
        for rel in ("f", "d", "l"):
            st = os.lstat(root / rel)
            assert st.st_mtime_ns == 1_700_000_000_123_456_789, rel
    s.close()


# ------------------------------------------------------------------------------ whole images


@pytest.mark.parametrize("snapshotter", SNAPSHOTTERS)
def test_failed_unpack_leaves_nothing(tmp_path: Path, snapshotter: str) -> None:
    good = [directory("etc"), file("etc/motd", b"hi")]
    image = oci_archive(tmp_path / "bad.tar", [layer(good), layer([file("../escape", b"x")])])
    dist = Dist(tmp_path / "root")
    result = dist("--snapshotter", snapshotter, "images", "import", "--progress", "none", str(image.archive))
    assert result.code == 1
    assert result.stderr.strip().splitlines() == [
        f"dist: error: layer {image.layer_digests[1]}: member ../escape: path climbs out of the root (..)"]
    assert dist.ok("--snapshotter", snapshotter, "snapshot", "ls", "--json").json == []
    assert dist.ok("images", "-q").stdout == "" and dist.ok("content", "ls", "-q").stdout == ""
    base = tmp_path / "root" / "snapshots" / snapshotter
    assert [p for p in base.iterdir() if p.name.isdigit()] == []


@pytest.mark.parametrize("snapshotter", SNAPSHOTTERS)
def test_a_failed_unpack_for_a_container_leaves_no_layer_below_it(tmp_path: Path, snapshotter: str) -> None:
    """Outside an import nothing collects after the unpack: its own undo removed the committed base
    before the active layer above it, was refused (in use), and left the base (native)."""
    good = [directory("etc"), file("etc/motd", b"hi")]
    image = oci_archive(tmp_path / "bad.tar", [layer(good), layer([file("../escape", b"x")])])
    dist = Dist(tmp_path / "root")
    [name] = dist.ok("images", "import", "--no-unpack", str(image.archive)).lines
    result = dist("--snapshotter", snapshotter, "container", "create", name, "c1", "--", "/bin/true")
    assert result.code == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"dist: error: layer {image.layer_digests[1]}: member ../escape: path climbs out of the root (..)")
    assert dist.ok("--snapshotter", snapshotter, "snapshot", "ls", "--json").json == []
    assert dist.ok("container", "ls", "-q").stdout == "" and dist.ok("leases", "-q").stdout == ""
    base = tmp_path / "root" / "snapshots" / snapshotter
    assert [p for p in base.iterdir() if p.name.isdigit()] == []


@pytest.mark.parametrize("snapshotter", SNAPSHOTTERS)
def test_diff_id_mismatch_stores_nothing(tmp_path: Path, snapshotter: str) -> None:
    tar = layer([file("f", b"data")])
    image = oci_archive(tmp_path / "lie.tar", [tar], diff_ids=["sha256:" + "0" * 64])
    s = session(tmp_path, snapshotter)
    with pytest.raises(DataError, match="diff_id") as caught:
        import_(s, image)
    assert image.layer_digests[0] in str(caught.value)
    assert s.snapshotter.list() == [] and s.images.list() == [] and s.content.list() == []
    s.close()


@pytest.mark.parametrize("root_name", ["co:lon", "com,ma"])
def test_overlayfs_is_refused_under_a_root_its_mount_options_cannot_name(tmp_path: Path, root_name: str) -> None:
    """A ':' in the root failed the import with "file /…/co: No such file or directory"; a ','
    imported fine and then failed every run."""
    image = oci_archive(tmp_path / "img.tar", [layer([file("f", b"x")])])
    dist = Dist(tmp_path / root_name)
    result = dist("--snapshotter", "overlayfs", "images", "import", "--progress", "none", str(image.archive))
    mark = next(c for c in root_name if c in ",:")
    assert (result.code, result.stderr) == (2, f"dist: error: snapshotter overlayfs: cannot be used under root "
                                               f"{tmp_path / root_name}: its path has {mark!r}, which overlay mount "
                                               "options cannot hold (use --snapshotter native or another --root)\n")
    assert dist.ok("images", "-q").stdout == "" and dist.ok("content", "ls", "-q").stdout == ""
    dist.ok("--snapshotter", "native", "images", "import", "--progress", "none", str(image.archive))


def test_more_layers_than_overlay_stacks_are_refused_before_any_is_unpacked(tmp_path: Path) -> None:
    if NO_OVERLAY:
        pytest.skip(NO_OVERLAY)
    image = oci_archive(tmp_path / "tall.tar", [layer([file(f"f{i}", b"x")]) for i in range(501)])
    dist = Dist(tmp_path / "root")
    result = dist("--snapshotter", "overlayfs", "images", "import", "--progress", "none", str(image.archive))
    assert (result.code, result.stderr.strip().splitlines()) == (1, [
        f"dist: error: manifest {image_manifest(image)}: has 501 layers:"
        " the overlayfs snapshotter stacks at most 500"])
    assert dist.ok("images", "-q").stdout == "" and dist.ok("content", "ls", "-q").stdout == ""
    assert list((tmp_path / "root" / "snapshots" / "overlayfs").glob("[0-9]*")) == []


def test_native_refuses_chains_deeper_than_its_records_follow(tmp_path: Path, monkeypatch) -> None:
    from dist_tool.store.snapshots.native import NativeSnapshotter

    monkeypatch.setattr(NativeSnapshotter, "max_layers", 2)  # 4095 real layers would take minutes
    s = session(tmp_path, "native")
    with pytest.raises(DataError, match="has 3 layers: the native snapshotter stacks at most 2"):
        import_(s, oci_archive(tmp_path / "tall.tar", [layer([file(f"f{i}", b"x")]) for i in range(3)]))
    assert s.snapshotter.list() == [] and s.images.list() == [] and s.content.list() == []
    s.close()


def image_manifest(image) -> str:
    """The manifest digest of a one-image archive from layerkit."""
    with tarfile.open(image.archive) as tar:
        return json.load(tar.extractfile("index.json"))["manifests"][0]["digest"]


@pytest.mark.parametrize("how", ["zstd", "none", "gzip"])
def test_compressions_unpack_alike(tmp_path: Path, how: str) -> None:
    pytest.importorskip("zstandard")
    tar = layer([directory("bin"), file("bin/tool", os.urandom(100_000), 0o755), symlink("bin/alias", "tool")])
    image = oci_archive(tmp_path / f"{how}.tar", [tar], how=how)
    s = session(tmp_path, "native")
    import_(s, image)
    with snapshot_tree(s.snapshotter, image.chain[0], tmp_path / "mnt") as root:
        assert os.readlink(root / "bin" / "alias") == "tool" and (root / "bin" / "tool").stat().st_size == 100_000
    s.close()


def test_a_layer_found_unpacked_is_kept_from_a_concurrent_rmi(tmp_path: Path, monkeypatch) -> None:
    """An import finds its base layer unpacked (another image's), and a concurrent `rmi` of that
    image collects garbage before the import has used it: the import's lease must already hold it."""
    from dist_tool import images, unpack

    snapshotter = "native" if NO_OVERLAY else "overlayfs"
    base_tar = layer([file("base", b"b")])
    one = oci_archive(tmp_path / "one.tar", [base_tar], name="docker.io/library/one:1")
    two = oci_archive(tmp_path / "two.tar", [base_tar, layer([file("two", b"2")])], name="docker.io/library/two:1")
    s = session(tmp_path, snapshotter)
    import_(s, one)
    looked = unpack._committed

    def committed_then_rmi(sn, chain):
        found = looked(sn, chain)
        other = session(tmp_path, snapshotter)  # another process's view of the same store
        assert images.remove(other, [one.name])[0] == [one.name]
        other.close()
        return found

    monkeypatch.setattr(unpack, "_committed", committed_then_rmi)
    assert import_(s, two) == [two.name]
    assert [i.key for i in s.snapshotter.list()] == sorted(two.chain)
    with snapshot_tree(s.snapshotter, two.chain[-1], tmp_path / "mnt") as root:
        assert (root / "base").read_bytes() == b"b" and (root / "two").read_bytes() == b"2"
    s.close()


def test_shared_layers_unpack_once_and_rmi_frees_what_nothing_else_uses(tmp_path: Path) -> None:
    snapshotter = "native" if NO_OVERLAY else "overlayfs"
    base_tar = layer([file("base", b"b")])
    one = oci_archive(tmp_path / "one.tar", [base_tar, layer([file("one", b"1")])], name="docker.io/library/one:1")
    two = oci_archive(tmp_path / "two.tar", [base_tar, layer([file("two", b"2")])], name="docker.io/library/two:1")
    dist = Dist(tmp_path / "root")
    for image in (one, two):
        dist.ok("--snapshotter", snapshotter, "images", "import", str(image.archive))
    keys = {i["key"] for i in dist.ok("--snapshotter", snapshotter, "snapshot", "ls", "--json").json}
    assert keys == {one.chain[0], one.chain[1], two.chain[1]}
    sizes = {i["name"]: i["unpackedSize"] for i in dist.ok("--snapshotter", snapshotter, "images", "--json").json}
    assert all(sizes.values())
    rm = dist("--snapshotter", snapshotter, "snapshot", "rm", one.chain[0])
    assert rm.code == 4 and "child" in rm.stderr
    explained = dist.ok("gc", "--explain", two.chain[1], "--json").json
    assert [step["kind"] for step in explained[0]["chain"]] == ["image", "snapshot"]
    dist.ok("rmi", one.name)
    keys = {i["key"] for i in dist.ok("--snapshotter", snapshotter, "snapshot", "ls", "--json").json}
    assert keys == {two.chain[0], two.chain[1]}
    dist.ok("rmi", two.name)
    assert dist.ok("--snapshotter", snapshotter, "snapshot", "ls", "-q").stdout == ""
    base = tmp_path / "root" / "snapshots" / snapshotter
    assert sorted(p.name for p in base.iterdir() if p.is_dir() and any(p.iterdir())) == []


def test_hand_made_snapshots_survive_gc_and_mounts_print(tmp_path: Path) -> None:
    dist = Dist(tmp_path / "root")
    image = oci_archive(tmp_path / "img.tar", [layer([file("f", b"x")])])
    dist.ok("--snapshotter", "native", "images", "import", str(image.archive))
    dist.ok("--snapshotter", "native", "snapshot", "prepare", "work", image.chain[0])
    dist.ok("--snapshotter", "native", "snapshot", "view", "look", image.chain[0])
    dist.ok("rmi", image.name)
    kinds = {i["key"]: i["kind"] for i in dist.ok("--snapshotter", "native", "snapshot", "ls", "--json").json}
    assert kinds == {"work": "active", "look": "view", image.chain[0]: "committed"}
    out = dist.ok("--snapshotter", "native", "snapshot", "mounts", "/mnt/x", "work").stdout
    assert out.startswith("mount -t bind ") and out.rstrip().endswith("/mnt/x -o rw,rbind")
    dist.ok("--snapshotter", "native", "snapshot", "commit", "done", "work")
    drawn = dist.ok("--snapshotter", "native", "snapshot", "tree").stdout
    assert drawn == f"{image.chain[0]}\n├── done\n└── look (view)\n"
    # the image is gone: what keeps its chain is a hand-made snapshot, a root by its label
    [report] = dist.ok("gc", "--explain", image.chain[0], "--json").json
    assert report["chain"][0] == {"kind": "snapshot", "namespace": "default", "snapshotter": "native",
                                  "key": "done", "root": "label containerd.io/gc.root"}
    text = dist.ok("gc", "--explain", image.chain[0]).stdout
    assert "  snapshot done (native, namespace default, label containerd.io/gc.root)\n" in text
    dist.ok("--snapshotter", "native", "snapshot", "rm", "done", "look")
    dist.ok("gc")
    assert dist.ok("--snapshotter", "native", "snapshot", "ls", "-q").stdout == ""


# ------------------------------------------------------------------------------ memory


RSS_WRAPPER = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


@pytest.mark.slow
def test_gzip_bomb_unpacks_in_bounded_memory(tmp_path: Path) -> None:
    """256 MiB of zeros in a 256 KiB gzip: streamed, so peak RSS stays far below it."""
    size = 256 << 20
    info, _ = file("zeros", b"")
    info.size = size
    raw = io.BytesIO()
    diff = hashlib.sha256()

    class Tee:
        def write(self, data) -> int:
            diff.update(data)
            return gz.write(data)

    gz = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0)
    with tarfile.open(fileobj=Tee(), mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, _Zeros(size))
    gz.close()
    blob = raw.getvalue()
    assert len(blob) < 1 << 20
    image = oci_archive(tmp_path / "bomb.tar", [b""], diff_ids=["sha256:" + diff.hexdigest()],
                        blobs=[(blob, "application/vnd.oci.image.layer.v1.tar+gzip")])
    argv = [sys.executable, "-m", "dist_tool", "--root", str(tmp_path / "root"), "--state", str(tmp_path / "st"),
            "--snapshotter", "native", "images", "import", str(image.archive)]
    out = subprocess.run([sys.executable, "-c", RSS_WRAPPER, *argv], capture_output=True, text=True, check=True)
    code, rss_kib = map(int, out.stdout.split())
    assert code == 0
    assert rss_kib < 100 * 1024, f"peak RSS {rss_kib} KiB"
    fs = next((tmp_path / "root" / "snapshots" / "native").glob("[0-9]*/fs"))
    assert (fs / "zeros").stat().st_size == size


class _Zeros:
    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return bytes(n)


@pytest.mark.parametrize("snapshotter", SNAPSHOTTERS)
def test_a_hand_made_active_snapshot_under_a_chain_id_fails_the_import(tmp_path: Path, snapshotter: str) -> None:
    """Its key is the layer's chain ID but it is no layer: an import that took it for one would
    report success for an image no container can use. Exit 4, and the import leaves nothing."""
    image = oci_archive(tmp_path / "one.tar", [layer([file("f", b"x")])])
    dist = Dist(tmp_path / "root")
    dist.ok("--snapshotter", snapshotter, "snapshot", "prepare", image.chain[0])
    before = store_fingerprint(dist.root)
    result = dist("--snapshotter", snapshotter, "images", "import", "--progress", "none", str(image.archive))
    assert result.code == 4, result.stderr
    assert result.stderr == f"dist: error: snapshot {image.chain[0]}: is active: the layer with this chain ID " \
                            "cannot be committed (snapshot rm it first)\n"
    assert sans_allocations(store_fingerprint(dist.root)) == sans_allocations(before)
    dist.ok("--snapshotter", snapshotter, "snapshot", "rm", image.chain[0])
    dist.ok("--snapshotter", snapshotter, "images", "import", "--progress", "none", str(image.archive))
    assert [s["kind"] for s in dist.ok("--snapshotter", snapshotter, "snapshot", "ls", "--json").json] == \
        ["committed"]


# ------------------------------------------------------------------------------ kill -9


def _kill_9_mid_unpack(tmp_path: Path, snapshotter: str, *dist_args: str):
    """``dist [dist_args] images import`` of a one-layer image of 12,000 files, killed while its
    layer is being written (its extract snapshot exists and fills); returns the image."""
    import signal
    import time

    count = 12_000
    members = [directory(f"d{i}") for i in range(40)]
    members += [file(f"d{i % 40}/f{i}", b"%d" % i * 200) for i in range(count)]
    image = oci_archive(tmp_path / "many.tar", [layer(members)])
    root = tmp_path / "root"
    argv = [sys.executable, "-m", "dist_tool", "--root", str(root), "--state", str(tmp_path / "st"), *dist_args,
            "--snapshotter", snapshotter, "images", "import", "--progress", "none", str(image.archive)]
    stderr = tmp_path / "import.stderr"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 60
    try:
        while True:  # until the layer is being written: its extract snapshot exists and fills
            assert proc.poll() is None, f"the import ended (exit {proc.returncode}) before it could be killed: " \
                                        f"{stderr.read_text()!r}"
            assert time.monotonic() < deadline
            fs = _extracting(root, snapshotter)
            if fs is not None and sum(len(files) for _, _, files in os.walk(fs)) > 500:
                break
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return image


@pytest.mark.slow
@pytest.mark.parametrize("snapshotter", SNAPSHOTTERS)
def test_kill_9_during_unpack_leaves_no_committed_snapshot(tmp_path: Path, snapshotter: str) -> None:
    import sqlite3

    count = 12_000
    image = _kill_9_mid_unpack(tmp_path, snapshotter)
    root = tmp_path / "root"
    dist = Dist(root)
    left = dist.ok("--snapshotter", snapshotter, "snapshot", "ls", "--json").json
    assert [i["kind"] for i in left] == ["active"] and left[0]["key"].startswith("extract-")
    assert dist.ok("images", "-q").stdout == ""
    dist.ok("--snapshotter", snapshotter, "images", "import", "--progress", "none", str(image.archive))
    kinds = {i["key"]: i["kind"] for i in dist.ok("--snapshotter", snapshotter, "snapshot", "ls", "--json").json}
    assert kinds == {left[0]["key"]: "active", image.chain[0]: "committed"}
    removed = dist.ok("gc", "--json").json["removed"]
    assert [s["key"] for s in removed["snapshots"]] == [left[0]["key"]]
    assert dist.ok("--snapshotter", snapshotter, "snapshot", "ls", "-q").stdout.split() == [image.chain[0]]
    s = session(tmp_path, snapshotter)
    with snapshot_tree(s.snapshotter, image.chain[0], tmp_path / "mnt") as tree_root:
        assert sum(len(files) for _, _, files in os.walk(tree_root)) == count
    s.close()
    base = root / "snapshots" / snapshotter
    assert len([p for p in base.iterdir() if p.name.isdigit()]) == 1
    assert all(not any(p.iterdir()) for p in (base / "staging", base / "trash") if p.exists())
    with sqlite3.connect(root / "metadata.db") as conn:
        assert conn.execute("SELECT count(*) FROM leases").fetchone()[0] == 0


@pytest.mark.slow
def test_a_killed_unpack_does_not_keep_its_namespace(tmp_path: Path) -> None:
    """What a killed unpack left (an extract snapshot under its dead lease) kept ``namespaces rm``
    from removing the namespace until a gc, though nothing can keep it; a hand-made snapshot still
    does, and the refusal changes nothing."""
    dist = Dist(tmp_path / "root")
    dist.ok("namespaces", "create", "team")
    _kill_9_mid_unpack(tmp_path, "native", "-n", "team")
    [left] = dist.ok("-n", "team", "--snapshotter", "native", "snapshot", "ls", "--json").json
    assert left["kind"] == "active" and left["key"].startswith("extract-")
    assert dist.ok("-n", "team", "images", "-q").lines == []
    dist.ok("-n", "team", "--snapshotter", "native", "snapshot", "prepare", "mine")
    before = store_fingerprint(dist.root)
    snapshots = dist.ok("-n", "team", "--snapshotter", "native", "snapshot", "ls", "--json").json
    refused = dist("namespaces", "rm", "team")
    assert (refused.code, refused.stderr.strip()) == (4, "dist: error: namespace team: not empty: it still holds "
                                                         "snapshots")
    assert store_fingerprint(dist.root) == before  # the files; the records:
    assert dist.ok("-n", "team", "--snapshotter", "native", "snapshot", "ls", "--json").json == snapshots
    dist.ok("-n", "team", "--snapshotter", "native", "snapshot", "rm", "mine")
    assert dist.ok("namespaces", "rm", "team").lines == ["team"]
    assert dist.ok("namespaces", "ls", "-q").lines == []
    base = tmp_path / "root" / "snapshots" / "native"
    assert [p.name for p in base.iterdir() if p.name.isdigit()] == []
    assert all(not any(p.iterdir()) for p in (base / "staging", base / "trash") if p.exists())
    removed = dist.ok("gc", "--json").json["removed"]
    assert (removed["snapshots"], removed["leases"], removed["directories"]) == ([], [], [])


@pytest.mark.slow
def test_a_killed_import_into_a_fresh_namespace_is_named_by_rm_and_gone_after_gc(tmp_path: Path) -> None:
    """An operation creates no namespace, so a killed import into a new one leaves its lease and
    extract snapshot under a name ``namespaces ls`` does not show: ``namespaces rm`` says what
    they are and what removes them, and gc leaves no row naming it."""
    import sqlite3

    dist = Dist(tmp_path / "root")
    _kill_9_mid_unpack(tmp_path, "native", "-n", "fresh")
    assert dist.ok("namespaces", "ls", "-q").lines == []
    assert [s["key"][:8] for s in dist.ok("-n", "fresh", "--snapshotter", "native", "snapshot", "ls",
                                          "--json").json] == ["extract-"]
    unlisted = dist("namespaces", "rm", "fresh")
    assert (unlisted.code, unlisted.stderr.strip()) == (
        3, "dist: error: namespace fresh: not found (only an unfinished or killed operation's records name it; "
           "garbage collection removes a killed one's)")
    dist.ok("gc")
    with sqlite3.connect(tmp_path / "root" / "metadata.db") as conn:
        assert {table: conn.execute(f"SELECT count(*) FROM {table} WHERE namespace = 'fresh'").fetchone()[0]
                for table in ("images", "leases", "lease_resources", "snapshots", "containers")} == dict.fromkeys(
            ("images", "leases", "lease_resources", "snapshots", "containers"), 0)
    gone = dist("namespaces", "rm", "fresh")
    assert (gone.code, gone.stderr.strip()) == (3, "dist: error: namespace fresh: not found")


def _extracting(root: Path, snapshotter: str) -> Path | None:
    import sqlite3

    db = root / "metadata.db"
    if not db.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            row = conn.execute("SELECT id FROM snapshots WHERE key LIKE 'extract-%'").fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return None  # not created or migrated yet
    return root / "snapshots" / snapshotter / str(row[0]) / "fs" if row else None


def test_docker_archive_layers_unpack_and_snapshot_cli(dist, umoci_image) -> None:
    """Docker schema-2 media types (a skopeo docker-archive), and the info/usage/json commands."""
    dist.ok("--snapshotter", "native", "images", "import", "--progress", "none", str(umoci_image.docker_archive))
    chain = chain_ids(umoci_image.diff_ids)
    listed = dist.ok("--snapshotter", "native", "snapshot", "ls", "--json").json
    assert sorted(i["key"] for i in listed) == sorted(chain)
    assert set(listed[0]) == {"key", "parent", "kind", "createdAt", "updatedAt", "labels"}
    info = dist.ok("--snapshotter", "native", "snapshot", "info", chain[-1], "--json").json
    assert (info["parent"], info["kind"]) == (chain[-2], "committed")
    usage = dist.ok("--snapshotter", "native", "snapshot", "usage", chain[0], "--json").json
    assert usage[0]["key"] == chain[0] and usage[0]["size"] > 0 and usage[0]["inodes"] > 0
    [image] = dist.ok("--snapshotter", "native", "images", "--json").json
    assert image["unpackedSize"] >= usage[0]["size"]
    missing = dist("--snapshotter", "native", "snapshot", "info", "nope")
    assert (missing.code, missing.stderr) == (3, "dist: error: snapshot nope: not found\n")


@pytest.mark.parametrize("snapshotter", SNAPSHOTTERS)
def test_a_layer_listed_twice_has_a_progress_bar_each(tmp_path: Path, snapshotter: str) -> None:
    """Bars were keyed by the layer's digest, so the second one replaced the first, which never
    finished."""
    class Recorder:
        def __init__(self) -> None:
            self.started: list[str] = []
            self.finished: list[str] = []

        def start(self, item: str, total) -> None:
            self.started.append(item)

        def update(self, item: str, done: int) -> None:
            pass

        def done(self, item: str, note: str = "done") -> None:
            self.finished.append(item)

        def event(self, text: str) -> None:
            pass

    empty = layer([])
    image = oci_archive(tmp_path / "twice.tar", [empty, layer([file("f", b"x")]), empty])
    recorder = Recorder()
    s = session(tmp_path, snapshotter)
    import_(s, image, progress=recorder)
    unpacks = [item for item in recorder.started if item.startswith("unpack ")]
    twice, once = image.layer_digests[0][:19], image.layer_digests[1][:19]
    assert sorted(unpacks) == sorted([f"unpack {twice}", f"unpack {twice} (2)", f"unpack {once}"])
    assert sorted(item for item in recorder.finished if item.startswith("unpack ")) == sorted(unpacks)
    s.close()
