"""dist images, rmi and gc through the real entry point: SPEC's fields, exit codes and errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time

import pytest
from helpers import dead_pid, store_fingerprint

IMAGE_KEYS = {"name", "target", "size", "complete", "uniqueSize", "unpackedSize", "platforms", "labels",
              "createdAt", "updatedAt"}


def images(dist, *filters):
    return {i["name"]: i for i in dist.ok("images", "--json", *filters).json}


def test_empty_store_lists_nothing(dist):
    assert dist.ok("images", "--json").json == []
    assert dist.ok("images", "-q").stdout == ""
    assert dist.ok("images").lines[0].split() == ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]


def test_json_fields_are_exactly_specs(dist, imported):
    [image] = dist.ok("images", "ls", "--json").json
    assert set(image) == IMAGE_KEYS
    assert set(image["target"]) == {"mediaType", "digest", "size"}
    assert image["unpackedSize"] is None
    assert image["createdAt"].endswith("Z") and "T" in image["createdAt"]


def test_rootfs_import_from_a_directory_and_a_tar(dist, busybox_rootfs, tmp_path):
    out = dist.ok("images", "import", "--rootfs", str(busybox_rootfs), "--name", "bb", "--config-cmd", "/bin/sh",
                  "--config-cmd", "-c", "--no-unpack")
    assert out.lines == ["docker.io/library/bb:latest"]
    image = images(dist)["docker.io/library/bb:latest"]
    manifest = json.loads(dist.ok("content", "get", image["target"]["digest"]).stdout)
    config = json.loads(dist.ok("content", "get", manifest["config"]["digest"]).stdout)
    assert config["config"]["Cmd"] == ["/bin/sh", "-c"]
    assert len(config["rootfs"]["diff_ids"]) == 1
    tar = tmp_path / "rootfs.tar"
    import subprocess

    subprocess.run(["tar", "-C", str(busybox_rootfs), "-cf", str(tar), "."], check=True)
    dist.ok("images", "import", "--rootfs", str(tar), "--name", "bb2", "--no-unpack")
    bb2 = images(dist)["docker.io/library/bb2:latest"]
    manifest2 = json.loads(dist.ok("content", "get", bb2["target"]["digest"]).stdout)
    assert manifest2["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
    assert bb2["complete"] is True


@pytest.mark.parametrize("packed", [False, True], ids=["plain", "gzip"])
def test_a_rootfs_tar_read_from_a_pipe_is_the_same_layer_as_from_its_file(dist, busybox_rootfs, tmp_path, packed):
    """It was read, then seeked back to its start: "I/O error: File or stream is not seekable." of
    --rootfs /dev/stdin or <(zcat rootfs.tar.gz), naming neither the rootfs nor the pipe."""
    import gzip
    import subprocess

    tar = tmp_path / "rootfs.tar"
    subprocess.run(["tar", "-C", str(busybox_rootfs), "-cf", str(tar), "."], check=True)
    if packed:
        tar.write_bytes(gzip.compress(tar.read_bytes(), mtime=0))
    dist.ok("images", "import", "--rootfs", str(tar), "--name", "file", "--no-unpack")
    dist.ok("images", "import", "--rootfs", "/dev/stdin", "--name", "pipe", input=tar.read_bytes())
    layers = [json.loads(dist.ok("content", "get", images(dist)[f"docker.io/library/{name}:latest"]["target"]
                                 ["digest"]).stdout)["layers"] for name in ("file", "pipe")]
    assert layers[0] == layers[1] and len(layers[0]) == 1
    assert dist.ok("content", "active", "-q").lines == []


@pytest.mark.parametrize("packer", ["bzip2", "xz"])
def test_a_rootfs_tar_in_a_compression_no_layer_holds_is_refused_by_name(dist, tmp_path, packer):
    """It said 'not a tar archive (invalid header)' of a good tar.bz2."""
    import subprocess

    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "f").write_text("x")
    tar = tmp_path / "rootfs.tar"
    subprocess.run(["tar", "-C", str(tmp_path / "tree"), "-cf", str(tar), "."], check=True)
    subprocess.run([packer, "-k", str(tar)], check=True)
    packed = tmp_path / f"rootfs.tar.{'bz2' if packer == 'bzip2' else 'xz'}"
    dist.ok("images")
    before = store_fingerprint(dist.root)
    result = dist("images", "import", "--rootfs", str(packed), "--name", "x")
    assert (result.code, result.stderr) == (1, f"dist: error: rootfs {packed}: {packer}-compressed: a layer is a "
                                               f"plain, gzip or zstd tar (decompress it first: {packer} -d)\n")
    assert store_fingerprint(dist.root) == before


def test_a_rootfs_file_that_shrinks_while_read_is_named(tmp_path, monkeypatch):
    """It was 'I/O error: unexpected end of data', naming no file."""
    from dist_tool import archive
    from dist_tool.errors import DataError
    from dist_tool.session import Session

    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "big").write_bytes(b"x" * 100_000)
    exact = archive._exact_attributes

    def then_shrink(info, path, st, linked):
        exact(info, path, st, linked)
        if path.endswith("/big"):
            os.truncate(path, 10)  # after its size went into the header, before its bytes are read

    monkeypatch.setattr(archive, "_exact_attributes", then_shrink)
    session = Session(root=str(tmp_path / "root"), state=str(tmp_path / "state"))
    with pytest.raises(DataError) as caught:
        archive.import_rootfs(session, str(tree), "x", [], unpack=False)
    assert str(caught.value) == f"rootfs {tree}/big: shrank while it was read"
    assert session.content.list() == [] and session.content.ingests() == []
    session.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="security.* xattrs need root")
def test_a_rootfs_directory_keeps_xattrs_nanoseconds_and_linked_fifos(dist, tmp_path):
    """What `tar --xattrs --posix -C DIR -c .` keeps and tarfile's gettarinfo alone did not: a file
    capability, user xattrs, the mtime to the nanosecond, a hard link between two fifos."""
    import tarfile

    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    ping, note = rootfs / "bin" / "ping", rootfs / "note"
    ping.write_bytes(b"#!/bin/sh\n")
    note.write_text("n")
    capability = bytes.fromhex("0100000200200000000000000000000000000000")  # cap_net_raw, not UTF-8
    os.setxattr(ping, "security.capability", capability)
    os.setxattr(note, "user.origin", b"here")
    os.utime(note, ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    os.mkfifo(rootfs / "fifo")
    os.link(rootfs / "fifo", rootfs / "fifo2")
    dist.ok("images", "import", "--rootfs", str(rootfs), "--name", "caps", "--config-cmd", "/bin/ping",
            "--no-unpack")
    manifest = json.loads(dist.ok("content", "get", images(dist)["docker.io/library/caps:latest"]["target"]
                                  ["digest"]).stdout)
    layer = dist.root / "content" / "blobs" / "sha256" / manifest["layers"][0]["digest"].split(":")[1]
    with tarfile.open(layer, encoding="utf-8", errors="surrogateescape") as tar:
        members = {m.name: m for m in tar}
    cap = members["bin/ping"].pax_headers["SCHILY.xattr.security.capability"]
    assert cap.encode("utf-8", "surrogateescape") == capability
    assert members["note"].pax_headers["SCHILY.xattr.user.origin"] == "here"
    assert members["note"].pax_headers["mtime"] == "1600000000.123456789"
    assert members["fifo"].isfifo() and members["fifo2"].islnk() and members["fifo2"].linkname == "fifo"


def test_tag_label_and_record_times(dist, imported):
    first = images(dist)[imported.name]
    assert dist.ok("images", "tag", imported.name, "web", "example.com/team/web:2").lines == [
        "docker.io/library/web:latest", "example.com/team/web:2"]
    assert dist("images", "tag", imported.name, "web").code == 4
    assert dist.ok("images", "tag", imported.name, "web", "--force").lines == ["docker.io/library/web:latest"]
    assert dist.ok("images", "label", "web", "app=web", "tier=front").lines == ["app=web", "tier=front"]
    assert dist.ok("images", "label", "web", "tier=").lines == ["app=web"]
    listed = images(dist)
    web = listed["docker.io/library/web:latest"]
    assert web["labels"] == {"app": "web"}
    assert web["target"] == first["target"]
    assert web["updatedAt"] >= web["createdAt"]
    assert listed[imported.name]["createdAt"] == first["createdAt"]
    # three names share one target: removing any one alone frees nothing
    assert {i["uniqueSize"] for i in listed.values()} == {0}


@pytest.mark.parametrize("filters,expected", [
    (["name==docker.io/library/web:latest"], ["docker.io/library/web:latest"]),
    (["name~=team"], ["example.com/team/web:2"]),
    (['labels."app"==web'], ["docker.io/library/web:latest"]),
    (["labels.app"], ["docker.io/library/web:latest"]),
    (["target.mediatype~=manifest", "name~=nomatch"], None),
    (["target.mediaType~=index"], []),
    (["name~=web,labels.app==web"], ["docker.io/library/web:latest"]),
    (["name~=team", "labels.app==web"], ["docker.io/library/web:latest", "example.com/team/web:2"]),
], ids=["name-eq", "name-re", "label-quoted", "label-present", "or-all", "mediatype-case", "and", "or"])
def test_filters(dist, imported, filters, expected):
    dist.ok("images", "tag", imported.name, "web", "example.com/team/web:2")
    dist.ok("images", "label", "web", "app=web")
    names = sorted(images(dist, *filters))
    if expected is None:
        expected = sorted([imported.name, "docker.io/library/web:latest", "example.com/team/web:2"])
    assert names == expected
    assert sorted(dist.ok("images", "ls", "-q", *filters).lines) == expected


def test_inspect_tree(dist, imported):
    tree = dist.ok("images", "inspect", imported.name, "--json").json
    assert tree["digest"] == imported.manifest_digest and tree["present"] is True
    assert [c["digest"] for c in tree["children"]] == [imported.config_digest, *imported.layer_digests]
    assert all(c["present"] and c["children"] == [] for c in tree["children"])
    text = dist.ok("images", "inspect", imported.name).stdout
    assert imported.layer_digests[0] in text and "└──" in text


def test_check_reports_missing_blobs_and_exits_1(dist, imported):
    [ok] = dist.ok("images", "check", "--json").json
    assert ok == {"name": imported.name, "complete": True, "missing": [], "present": 4, "required": 4}
    dist.ok("content", "rm", imported.layer_digests[1])
    result = dist("images", "check", "--json")
    assert result.code == 1
    [bad] = result.json
    assert bad["complete"] is False and bad["missing"] == [imported.layer_digests[1]]
    assert (bad["present"], bad["required"]) == (3, 4)
    assert images(dist)[imported.name]["complete"] is False


def test_check_verify_finds_corruption(dist, imported):
    blob = dist.root / "content" / "blobs" / "sha256" / imported.layer_digests[0].split(":")[1]
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    result = dist("images", "check", "--verify", "--json")
    assert result.code == 1
    assert [c["digest"] for c in result.json[0]["corrupt"]] == [imported.layer_digests[0]]
    assert dist("content", "verify").code == 1


def test_rmi_collects_what_nothing_else_uses(dist, imported, busybox_rootfs):
    dist.ok("images", "import", "--rootfs", str(busybox_rootfs), "--name", "other", "--no-unpack")
    before = set(dist.ok("content", "ls", "-q").lines)
    result = dist.ok("rmi", imported.name)
    assert result.lines == [f"deleted {imported.name}"]
    after = set(dist.ok("content", "ls", "-q").lines)
    assert before - after == {imported.manifest_digest, imported.config_digest, *imported.layer_digests}
    assert list(images(dist)) == ["docker.io/library/other:latest"]
    dist.ok("images", "rm", "other")
    assert dist.ok("content", "ls", "-q").lines == []
    assert not any((dist.root / "content" / "blobs" / "sha256").iterdir())


def test_rmi_of_a_missing_name_keeps_going_and_exits_3(dist, imported):
    dist.ok("images", "tag", imported.name, "b")
    result = dist("rmi", "nope", "b")
    assert result.code == 3
    assert result.stderr.splitlines()[0] == "dist: error: image docker.io/library/nope:latest: not found"
    assert "docker.io/library/b:latest" not in images(dist)
    assert dist.ok("rmi", "-f", "nope").stdout == ""


def test_gc_dry_run_explain_and_leases(dist, imported):
    layer = imported.layer_digests[0]
    explained = dist.ok("gc", "--explain", layer, "--json").json
    assert explained[0]["kept"] is True
    chain = explained[0]["chain"]
    assert chain[0] == {"kind": "image", "namespace": "default", "name": imported.name}
    assert [step.get("digest") for step in chain[1:]] == [imported.manifest_digest, layer]
    text = dist.ok("gc", "--explain", layer).stdout
    assert f"image {imported.name}" in text
    # a lease keeps a blob whose image is gone
    dist.ok("leases", "create", "--id", "keep")
    conn_lease = dist.root / "metadata.db"
    import sqlite3

    with sqlite3.connect(conn_lease) as conn:
        conn.execute("INSERT INTO lease_resources VALUES ('default', 'keep', 'content', ?)",
                     (imported.manifest_digest,))
    dist.ok("rmi", imported.name)
    assert set(dist.ok("content", "ls", "-q").lines) == {imported.manifest_digest, imported.config_digest,
                                                         *imported.layer_digests}
    lease_chain = dist.ok("gc", "--explain", layer, "--json").json[0]["chain"]
    assert lease_chain[0]["kind"] == "lease" and lease_chain[0]["id"] == "keep"
    dist.ok("leases", "rm", "keep")
    dry = dist.ok("gc", "--dry-run", "--json").json
    assert dry["dryRun"] is True and len(dry["removed"]["content"]) == 4
    assert dry["bytesFreed"] == imported.packed_size
    assert len(dist.ok("content", "ls", "-q").lines) == 4
    assert dist.ok("gc", "--explain", layer, "--json").json[0]["kept"] is False
    done = dist.ok("gc", "--json").json
    assert done["bytesFreed"] == imported.packed_size
    assert dist.ok("content", "ls", "-q").lines == []


def test_gc_reports_blob_files_no_record_names(dist, imported):
    """Left by hand or by a crash: removed by a full gc, and shown and counted like the rest."""
    orphan = dist.root / "content" / "blobs" / "sha256" / ("ab" * 32)
    orphan.write_bytes(b"x" * 1000)
    dry = dist.ok("gc", "--dry-run", "--json").json
    assert dry["removed"]["content"] == [{"digest": "sha256:" + "ab" * 32, "size": 1000}]
    assert dry["bytesFreed"] == 1000 and orphan.exists()
    assert dist.ok("gc", "--dry-run").lines[-1] == "would free 1000 B in 1 blob"
    done = dist.ok("gc", "--json").json
    assert done["bytesFreed"] == 1000 and not orphan.exists()
    assert dist.ok("images", "check", "--json").json[0]["complete"] is True


def test_gc_reports_blob_files_a_killed_removal_left_in_the_trash(dist, imported):
    """A gc or rmi killed between moving a blob's file into content/trash and unlinking it left a
    file the next gc unlinked without a word; the dry run did not show it. Now both list it with
    its size, and a blob of that digest committed again meanwhile stays."""
    left = dist.root / "content" / "trash" / f"{imported.config_digest.replace(':', '-')}.{dead_pid()}.17"
    left.write_bytes(b"x" * 3000)
    dry = dist.ok("gc", "--dry-run", "--json").json
    assert dry["removed"]["content"] == [{"digest": imported.config_digest, "size": 3000}]
    assert dry["bytesFreed"] == 3000 and left.exists()
    assert f"would remove blob {imported.config_digest} (2.9 KiB)" in dist.ok("gc", "--dry-run").lines
    assert dist.ok("gc", "--json").json == {**dry, "dryRun": False}
    assert not left.exists() and dist.ok("images", "check", "--json").json[0]["complete"] is True
    assert dist("content", "verify").code == 0


def test_gc_leaves_a_running_removers_trash_for_it_to_report(dist, imported):
    """A blob file or snapshot tree a removal that still runs moved into the trash (between its
    commit and its delete) is that removal's: a concurrent gc listed it as a killed one's
    leftover, with whatever part of a tree being deleted it happened to measure."""
    from dist_tool.proc import process_start

    with subprocess.Popen(["sleep", "30"]) as remover:
        try:
            mark = f"{remover.pid}.{process_start(remover.pid)}"
            (dist.root / "content" / "trash" / f"{imported.config_digest.replace(':', '-')}.{mark}.17").write_bytes(
                b"x" * 3000)
            tree = dist.root / "snapshots" / "overlayfs" / "trash" / f"9.{mark}.ab"
            tree.mkdir(parents=True)
            (tree / "f").write_bytes(b"y" * 5000)
            dry = dist.ok("gc", "--dry-run", "--json").json
            assert dry["removed"]["content"] == dry["removed"]["directories"] == [] and dry["bytesFreed"] == 0
            assert dist.ok("gc", "--json").json == {**dry, "dryRun": False}
            assert tree.exists() and len(os.listdir(dist.root / "content" / "trash")) == 1  # left to it
        finally:
            remover.kill()
    removed = dist.ok("gc", "--dry-run", "--json").json["removed"]
    assert removed["content"] == [{"digest": imported.config_digest, "size": 3000}]
    assert removed["directories"] == [f"snapshots/overlayfs/trash/{tree.name}"]


def test_content_rm_empties_only_its_own_trash_and_gc_reports_the_rest(dist, imported):
    """``content rm`` (which runs no collection) unlinked everything in the trash, so what a
    killed removal left there went without the report the dry run had promised. It now empties
    only what it moved there; the next gc reports the rest and removes it."""
    left = dist.root / "content" / "trash" / f"{imported.layer_digests[0].replace(':', '-')}.{dead_pid()}.0.17"
    left.write_bytes(b"x" * 3000)
    dist.ok("content", "rm", imported.config_digest)
    assert os.listdir(dist.root / "content" / "trash") == [left.name]
    assert {"digest": imported.layer_digests[0], "size": 3000} in dist.ok("gc", "--json").json["removed"]["content"]
    assert not left.exists()


def test_two_gcs_report_and_delete_a_killed_removals_tree_once(dist, imported):
    """A tree a killed removal left in the trash was reported by every gc that started while
    another was deleting it (outside the lock), and both unlinked it at once. The gc that reports
    it now takes it under the lock (renamed to carry its own mark): a second one leaves it."""
    import signal

    tree = dist.root / "snapshots" / "overlayfs" / "trash" / f"9.{dead_pid()}.0.ab"
    (tree / "d").mkdir(parents=True)
    for i in range(20_000):
        (tree / "d" / str(i)).touch()
    first = subprocess.Popen([sys.executable, "-m", "dist_tool", "--root", str(dist.root), "--state",
                              str(dist.state), "gc", "--json"], stdout=subprocess.PIPE,
                             env={**os.environ, "DIST_NAMESPACE": "default"})
    # Caught deleting, its lock released: remove_trees's unlinking threads are its only threads.
    deadline = time.monotonic() + 60
    while len(os.listdir(f"/proc/{first.pid}/task")) < 2:
        assert first.poll() is None and time.monotonic() < deadline
    os.kill(first.pid, signal.SIGSTOP)
    try:
        second = dist.ok("gc", "--json", timeout=60).json
    finally:
        os.kill(first.pid, signal.SIGCONT)
    out, _ = first.communicate(timeout=60)
    assert json.loads(out)["removed"]["directories"] == [f"snapshots/overlayfs/trash/{tree.name}"]
    assert second["removed"]["directories"] == [] and second["bytesFreed"] == 0
    assert os.listdir(tree.parent) == []


def test_a_leftover_claimed_by_gcs_killed_one_after_another_keeps_its_name_short():
    """Each full gc renames a killed removal's entry to carry its mark; it added its mark to the
    old one, so a few gcs killed in a row made a sha512 entry's name longer than NAME_MAX and
    every later gc failed on it. The claim replaces the old mark."""
    from dist_tool.proc import claimed, own_mark

    dead = f"{dead_pid()}.0"
    for name in (f"sha512-{'ab' * 64}.{dead}.123456789", f"9.{dead}.ab", f"staging.{dead}.77.12.cd"):
        once = claimed(name)
        assert once.split(".")[1:3] == own_mark().split(".") and once.split(".")[3:] == name.split(".")[3:]
        assert claimed(once.replace(own_mark(), dead)) == once
    assert claimed("9.ab") == f"9.{own_mark()}.ab"  # an older store's name: the mark is put in


def test_what_is_no_blob_under_blobs_is_left_alone(dist, imported):
    """A directory named like a blob made every gc and rmi fail with 'Is a directory' (the rmi
    having deleted the image); a stray file not named like a digest was reported as a blob."""
    blobs = dist.root / "content" / "blobs" / "sha256"
    (blobs / ("cc" * 32)).mkdir()
    (blobs / "notes.txt").write_text("mine")
    assert dist.ok("gc", "--json").json["removed"]["content"] == []
    dist.ok("images", "tag", imported.name, "docker.io/library/spare:1")
    assert dist.ok("rmi", "docker.io/library/spare:1").code == 0
    assert (blobs / ("cc" * 32)).is_dir() and (blobs / "notes.txt").read_text() == "mine"


def test_gc_reports_the_directories_a_killed_unpack_left(dist, imported):
    """A dead writer's staging directory and a snapshot directory no record names: gone with a
    full gc, and named in its report (dry run first)."""
    base = dist.root / "snapshots" / "native"
    (base / "staging" / "999999999.1.dead" / "fs" / "bin").mkdir(parents=True)
    (base / "4242" / "fs").mkdir(parents=True)
    expected = ["snapshots/native/4242", "snapshots/native/staging/999999999.1.dead"]
    assert dist.ok("gc", "--dry-run", "--json").json["removed"]["directories"] == expected
    assert (base / "4242").exists()
    text = dist.ok("gc").lines
    assert [line for line in text if "leftover" in line] == [f"removed leftover directory {d}" for d in expected]
    assert not (base / "4242").exists() and os.listdir(base / "staging") == []
    assert dist.ok("gc", "--json").json["removed"]["directories"] == []


def test_expired_lease_is_collected(dist, imported):
    dist.ok("leases", "create", "--id", "short", "--expires", "1ms")
    assert dist.ok("gc", "--json").json["removed"]["leases"] == [{"namespace": "default", "id": "short"}]
    assert dist.ok("leases", "ls", "-q").lines == []


def test_export_platform_and_missing_blob(dist, imported, tmp_path):
    out = tmp_path / "x.tar"
    dist.ok("images", "export", str(out), imported.name, "--platform", "linux/amd64")
    assert out.exists()
    dist.ok("content", "rm", imported.layer_digests[0])
    result = dist("images", "export", str(tmp_path / "y.tar"), imported.name)
    assert result.code == 1
    assert imported.layer_digests[0] in result.stderr.splitlines()[0]
    assert not (tmp_path / "y.tar").exists()


def test_export_writes_into_fifos_devices_and_through_symlinks(dist, imported, tmp_path):
    """As tar and ctr do: a fifo is written into (not replaced by a file), a device node stays one,
    a symlink stays a link and its target gets the archive; a directory or an empty name is refused
    before any work."""
    import stat
    import subprocess
    import sys
    import tarfile
    import threading

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    dist.ok("images", "export", str(fifo), imported.name)
    reader.join(timeout=60)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    with tarfile.open(fileobj=__import__("io").BytesIO(got[0])) as tar:
        assert "index.json" in tar.getnames()
    null = tmp_path / "null"
    subprocess.run(["mknod", "-m", "666", str(null), "c", "1", "3"], check=True)
    dist.ok("images", "export", str(null), imported.name)
    assert stat.S_ISCHR(os.lstat(null).st_mode)
    target, link = tmp_path / "target.tar", tmp_path / "link.tar"
    link.symlink_to(target.name)
    dist.ok("images", "export", str(link), imported.name)
    assert link.is_symlink() and tarfile.is_tarfile(target)
    assert sorted(p.name for p in tmp_path.iterdir() if "dist-tmp" in p.name) == []
    piped = subprocess.run([sys.executable, "-m", "dist_tool", "--root", str(dist.root), "images", "export",
                            "--progress", "none", "/dev/stdout", imported.name], capture_output=True)
    assert piped.returncode == 0, piped.stderr  # /dev/stdout: a pipe here, written into as tar does
    assert tarfile.open(fileobj=__import__("io").BytesIO(piped.stdout)).getnames()
    for where, code, error in ((tmp_path, 1, f"file {tmp_path}: is a directory"),
                               ("", 2, "output file: must not be empty (- writes to stdout)")):
        result = dist("images", "export", str(where), imported.name)
        assert (result.code, result.stderr) == (code, f"dist: error: {error}\n")


def test_export_of_a_blob_whose_file_is_short_or_gone_names_it(dist, imported, tmp_path):
    layer = dist.root / "content" / "blobs" / "sha256" / imported.layer_digests[0].split(":")[1]
    data = layer.read_bytes()
    layer.chmod(0o644)
    layer.write_bytes(data[:100])
    result = dist("images", "export", "--progress", "none", str(tmp_path / "short.tar"), imported.name)
    assert result.code == 1 and result.stderr == (
        f"dist: error: blob {imported.layer_digests[0]}: shorter than its recorded {len(data)} bytes "
        "(see dist content verify)\n")
    result = dist("content", "get", imported.layer_digests[0])
    assert result.code == 1
    assert result.stderr.endswith(f"its file holds 100 bytes, its record {len(data)} (see dist content verify)\n")
    layer.unlink()
    result = dist("images", "export", "--progress", "none", str(tmp_path / "gone.tar"), imported.name)
    assert result.code == 1 and result.stderr == (
        f"dist: error: blob {imported.layer_digests[0]}: recorded but its file is missing (see dist content verify)\n")
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tar") == []
    layer.mkdir()
    [report] = dist("content", "verify", "--json", imported.layer_digests[0]).json
    assert report["ok"] is False and report["problem"] == "file unreadable: Is a directory"


def test_export_of_a_blob_that_rotted_on_disk_fails_and_writes_nothing(dist, imported, tmp_path):
    """One flipped byte (same size) went out in the archive under the blob's digest, exit 0."""
    digest = imported.layer_digests[0]
    layer = dist.root / "content" / "blobs" / "sha256" / digest.split(":")[1]
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 0xFF
    layer.chmod(0o644)
    layer.write_bytes(bytes(data))
    result = dist("images", "export", "--progress", "none", str(tmp_path / "rotten.tar"), imported.name)
    assert result.code == 1
    assert result.stderr.startswith(f"dist: error: blob {digest}: its stored bytes hash to sha256:")
    assert result.stderr.endswith(" (see dist content verify)\n") and result.stderr.count("\n") == 1
    assert not (tmp_path / "rotten.tar").exists()


def test_an_export_of_sha512_blobs_names_them_where_they_are(dist, tmp_path):
    """docker load's manifest.json named blobs/sha256/<sha512 hex>, where nothing is."""
    import hashlib

    from layerkit import file, layer, write_layout

    def sha512(data: bytes) -> str:
        return "sha512:" + hashlib.sha512(data).hexdigest()

    tar = layer([file("f", b"x")])
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]}})
    config = config.encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": sha512(config), "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha512(tar),
                                       "size": len(tar)}]}).encode()
    write_layout(tmp_path / "s5.tar", {sha512(b): b for b in (config, tar, manifest)},
                 [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha512(manifest),
                   "size": len(manifest), "annotations": {"io.containerd.image.name": "docker.io/library/s5:1"}}])
    dist.ok("images", "import", "--no-unpack", str(tmp_path / "s5.tar"))
    dist.ok("images", "export", str(tmp_path / "out.tar"), "docker.io/library/s5:1")
    with tarfile.open(tmp_path / "out.tar") as out:
        names = set(out.getnames())
        [entry] = json.load(out.extractfile("manifest.json"))
    assert "blobs/sha512" in names and {entry["Config"], *entry["Layers"]} <= names
    assert entry["Layers"] == [f"blobs/sha512/{sha512(tar)[7:]}"]


def test_output_larger_than_a_pipe_arrives_whole_and_a_reader_may_leave_early(dist, imported):
    """``dist`` leaves through ``os._exit`` (cli.run) once its streams are flushed: every byte of a
    listing bigger than a pipe's buffer reaches the reader, and a reader that stops early
    (``dist images | head -1``) is no error."""
    import subprocess
    import sys

    names = [f"example.com/many/n{i:03}:latest" for i in range(300)]
    dist.ok("images", "tag", imported.name, *names)
    argv = [sys.executable, "-m", "dist_tool", "--root", str(dist.root), "images", "--json"]
    whole = subprocess.run(argv, capture_output=True, check=True)
    assert len(whole.stdout) > 65536
    assert len(json.loads(whole.stdout)) == 301
    reader = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert reader.stdout.read(1) == b"["
    reader.stdout.close()
    assert reader.wait(timeout=60) == 0
    assert reader.stderr.read() == b""


@pytest.mark.parametrize("unbuffered", ["1", ""], ids=["unbuffered", "buffered"])
def test_a_stdout_that_cannot_be_written_is_named(dist, imported, unbuffered):
    """``dist images > /dev/full`` said "I/O error: [Errno 28] No space left on device", which names
    nothing (a full disk under the store reads the same); with a buffered stdout a listing smaller
    than the buffer failed in run()'s final flush, a traceback and exit 120. Every result written to
    stdout, text or bytes, names it, whether Python buffers stdout or not (PYTHONUNBUFFERED)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    blob = dist.ok("images", "--json").json[0]["target"]["digest"]
    for args in (["images"], ["images", "-q"], ["images", "--json"], ["images", "inspect", imported.name],
                 ["images", "export", "-", imported.name, "--progress", "none"], ["content", "get", blob],
                 ["images", "--help"], ["--version"]):
        with open("/dev/full", "wb") as full:
            result = subprocess.run([sys.executable, "-m", "dist_tool", "--root", str(dist.root), *args],
                                    stdout=full, stderr=subprocess.PIPE, env=env, timeout=60)
        assert (result.returncode, result.stderr) == (1, b"dist: error: stdout: No space left on device\n"), args


def test_ctrl_c_exits_130_and_leaves_the_store_as_it_was(dist, imported, tmp_path):
    """SIGINT while an import waits for its archive's bytes: 128+2, as a shell reports it, not
    success; whatever the import had begun is undone."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.helpers import store_fingerprint

    before = store_fingerprint(dist.root)
    fifo = tmp_path / "archive.fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", "dist_tool", "--root", str(dist.root), "images", "import",
                             str(fifo), "--no-unpack"], stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 30
    while True:  # a non-blocking open for writing succeeds once dist has the FIFO open for reading
        try:
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
    try:
        time.sleep(0.5)  # into its first read, which waits for bytes that never come
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130, proc.stderr.read()
    finally:
        os.close(writer)
    assert store_fingerprint(dist.root) == before


def test_json_wins_over_quiet_as_in_every_listing(dist, imported):
    """The render module decides: --json with -q is the JSON document, as content ls and the rest."""
    assert dist.ok("images", "ls", "--json", "-q").json == dist.ok("images", "--json").json
    assert dist.ok("content", "ls", "--json", "-q").json == dist.ok("content", "ls", "--json").json
    assert dist.ok("images", "-q").lines == [imported.name]


def test_the_next_command_repairs_the_layout_index_a_crash_left_behind(dist, imported):
    """Killed between COMMIT and the rewrite, a tag or rmi leaves its marker beside the layout;
    running it again fails (exit 4, exit 3), so the next command to open the store repairs it,
    as SQLite rolls back a hot journal."""
    layout = dist.root / "content"
    pending = dist.root / "content.index-pending"
    assert not pending.exists()  # made in each change's transaction, gone once the file is right
    dist.ok("images", "tag", imported.name, "example.com/crash:1")
    assert not pending.exists()
    good = json.loads((layout / "index.json").read_text())
    assert "example.com/crash:1" in {m["annotations"]["org.opencontainers.image.ref.name"] for m in good["manifests"]}
    (layout / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')  # the rewrite never ran
    pending.touch()
    assert dist("images", "tag", imported.name, "example.com/crash:1").code == 4
    assert json.loads((layout / "index.json").read_text()) == good and not pending.exists()


def test_a_reader_never_waits_for_a_writer_to_repair_the_layout_index(dist, imported):
    """While a writer holds the lock, the marker may be its own change's: a listing goes on
    without waiting (WAL readers never wait), and leaves the rewrite to the writer."""
    from filelock import FileLock

    pending = dist.root / "content.index-pending"
    pending.touch()
    with FileLock(str(dist.root / "metadata.lock")):  # another process mid-transaction
        assert dist("images", "-q", timeout=20).lines == [imported.name]
    assert pending.exists()
    dist.ok("images", "-q")  # the lock is free: this one repairs
    assert not pending.exists()


def test_gc_repairs_the_layout_index_a_crash_left_behind(dist, imported):
    """A kill -9 between an image change's COMMIT and the rewrite of index.json (which follows it)
    leaves the file behind the records, and its temporary in place; gc puts both right."""

    layout = dist.root / "content"
    good = (layout / "index.json").read_text()
    (layout / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')
    stale = layout / f"index.json.tmp.{dead_pid()}"
    stale.write_text("half")
    mine = layout / f"index.json.tmp.{os.getpid()}"  # a live writer's is left alone
    mine.write_text("in progress")
    dist.ok("gc", "--dry-run")
    assert stale.exists()
    dist.ok("gc")
    assert json.loads((layout / "index.json").read_text()) == json.loads(good)
    assert not stale.exists() and mine.exists()
    mine.unlink()


def test_a_name_pinned_to_a_digest_must_name_its_target(dist, imported):
    digest = dist.ok("images", "--json").json[0]["target"]["digest"]
    wrong = "sha256:" + "a" * 64
    result = dist("images", "tag", imported.name, f"pinned@{wrong}")
    assert result.code == 2 and result.stderr == (
        f"dist: error: image name docker.io/library/pinned@{wrong}: names digest {wrong}, but its target is {digest}\n")
    assert dist.ok("images", "tag", imported.name, f"pinned@{digest}").lines == [f"docker.io/library/pinned@{digest}"]


def test_a_label_an_ascii_stdout_cannot_hold_is_shown_escaped(dist, imported):
    """PYTHONIOENCODING=ascii (or LC_ALL=C without Python's UTF-8 mode): an internal error."""
    dist.ok("images", "label", imported.name, "k=värde✓")
    result = dist.ok("images", env={"PYTHONIOENCODING": "ascii"})
    assert "k=v\\xe4rde\\u2713" in result.stdout
    listed = dist.ok("images", "--json", env={"PYTHONIOENCODING": "ascii"}).json
    assert listed[0]["labels"] == {"k": "värde✓"}
