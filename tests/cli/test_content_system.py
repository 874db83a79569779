"""dist content, info, namespaces and leases through the real entry point."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import pytest
from helpers import store_fingerprint

from dist_tool.render import iec

CONTENT_KEYS = {"digest", "size", "createdAt", "updatedAt", "labels"}


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_content_ingest_get_label_rm(dist):
    data = os.urandom(300_000)
    assert dist.ok("content", "ingest", "--ref", "r", input=data).lines == [sha(data)]
    [blob] = dist.ok("content", "ls", "--json").json
    assert set(blob) == CONTENT_KEYS and blob["size"] == len(data) and blob["digest"] == sha(data)
    raw = subprocess.run([sys.executable, "-m", "dist_tool", "--root", str(dist.root), "content", "get", sha(data)],
                         capture_output=True, check=True).stdout
    assert raw == data
    assert dist.ok("content", "label", sha(data), "a=1", "b=2").lines == ["a=1", "b=2"]
    assert dist.ok("content", "label", sha(data), "a=").lines == ["b=2"]
    [blob2] = dist.ok("content", "ls", "--json").json
    assert blob2["labels"] == {"b": "2"} and blob2["createdAt"] == blob["createdAt"]
    assert blob2["updatedAt"] > blob["updatedAt"]
    other = dist.ok("content", "ingest", "--ref", "r2", input=b"other").lines[0]
    assert dist.ok("content", "ls", "-q", "labels.b==2").lines == [sha(data)]
    assert dist.ok("content", "ls", "-q", f"digest=={other}", "labels.b").lines == sorted([sha(data), other])
    assert dist("content", "ls", "digest~=[").code == 2
    dist.ok("content", "rm", other)
    assert dist.ok("content", "verify", "--json").json == [{"digest": sha(data), "ok": True, "problem": None}]
    assert dist.ok("content", "rm", sha(data)).lines == [sha(data)]
    assert dist.ok("content", "ls", "-q").lines == []


def test_content_ingest_resumes_an_interrupted_ref(dist):
    data = os.urandom(1_000_000)
    # an interrupted ingest: what a killed `content ingest --ref r` leaves
    dist.ok("images")
    ingest = dist.root / "content" / "ingest" / hashlib.sha256(b"r").hexdigest()
    ingest.mkdir(parents=True)
    (ingest / "ref").write_text("r")
    (ingest / "started").write_text("1700000000.0")
    (ingest / "data").write_bytes(data[:600_000])
    [active] = dist.ok("content", "active", "--json").json
    assert (active["ref"], active["offset"], active["active"]) == ("r", 600_000, False)
    assert dist.ok("content", "ingest", "--ref", "r", "--expected-digest", sha(data),
                   "--expected-size", str(len(data)), input=data).lines == [sha(data)]
    assert dist.ok("content", "active", "--json").json == []
    assert dist("content", "verify").code == 0


def test_content_verify_reports_corruption_with_exit_1(dist):
    data = b"will be damaged" * 100
    dist.ok("content", "ingest", "--ref", "r", input=data)
    path = dist.root / "content" / "blobs" / "sha256" / sha(data)[7:]
    path.chmod(0o644)
    path.write_bytes(b"X" + data[1:])
    result = dist("content", "verify", "--json")
    assert result.code == 1
    assert result.json[0]["ok"] is False and "hashes to" in result.json[0]["problem"]
    assert result.stderr.strip().startswith(f"dist: error: blob {sha(data)}: corrupt")


def test_info_json_shape(dist):
    info = dist.ok("info", "--json").json
    assert set(info) >= {"version", "root", "state", "namespace", "snapshotter", "runtime", "counts"}
    assert set(info["runtime"]) == {"path", "version"}
    assert info["root"] == str(dist.root) and info["namespace"] == "default"
    assert info["counts"]["images"] == 0


def test_namespaces_isolate_images_and_refuse_removal_while_used(dist, busybox_rootfs):
    dist.ok("-n", "team", "images", "import", "--no-unpack", "--rootfs", str(busybox_rootfs), "--name", "bb")
    assert dist.ok("images", "-q").lines == []
    assert dist.ok("-n", "team", "images", "-q").lines == ["docker.io/library/bb:latest"]
    assert dist.ok("namespaces", "ls", "-q").lines == ["team"]
    assert dist.ok("namespaces", "label", "team", "owner=me").lines == ["owner=me"]
    assert dist.ok("namespaces", "label", "team", "tier=2", "--json").json == {"owner": "me", "tier": "2"}
    assert dist.ok("namespaces", "label", "team", "tier=").lines == ["owner=me"]
    assert dist.ok("namespaces", "ls", "--json").json[0]["labels"] == {"owner": "me"}
    result = dist("namespaces", "rm", "team")
    assert result.code == 4 and "not empty" in result.stderr
    # content is shared: removing the image in another namespace keeps nothing alive here
    dist.ok("-n", "team", "rmi", "bb")
    assert dist.ok("content", "ls", "-q").lines == []
    dist.ok("namespaces", "rm", "team")
    assert dist.ok("namespaces", "ls", "-q").lines == []
    assert dist("namespaces", "rm", "team").code == 3
    dist.ok("namespaces", "create", "fresh", "a=b")
    assert dist("namespaces", "create", "fresh").code == 4


def test_an_expired_lease_does_not_keep_its_namespace(dist):
    """A lease past its --expires holds nothing (gc deletes it); a live one still refuses rm."""
    dist.ok("-n", "team", "leases", "create", "--id", "live", "--expires", "1h")
    dist.ok("-n", "team", "leases", "create", "--id", "gone", "--expires", "0s")
    assert dist("namespaces", "rm", "team").code == 4
    dist.ok("-n", "team", "leases", "rm", "live")
    dist.ok("namespaces", "rm", "team")
    assert dist.ok("namespaces", "ls", "-q").lines == []


def test_gc_counts_roots_of_every_namespace(dist, busybox_rootfs):
    def import_into(namespace: str, cmd: str) -> set[str]:
        dist.ok("-n", namespace, "images", "import", "--no-unpack", "--rootfs", str(busybox_rootfs), "--name", "bb",
                "--config-cmd", cmd)
        tree, digests = [dist.ok("-n", namespace, "images", "inspect", "bb", "--json").json], set()
        while tree:
            node = tree.pop()
            digests.add(node["digest"])
            tree.extend(node["children"])
        return digests

    one, two = import_into("one", "/bin/one"), import_into("two", "/bin/two")
    shared = one & two
    assert len(shared) == 1, "the same rootfs gives the same layer; the configs and manifests differ"
    dist.ok("-n", "one", "rmi", "bb")
    assert set(dist.ok("content", "ls", "-q").lines) == two  # one's own blobs went, the shared layer stayed
    assert dist.ok("-n", "two", "images", "check", "--json").json[0]["complete"] is True


def test_content_labelled_as_containerd_labels_it_is_kept_by_gc(dist):
    """containerd's content labels: gc.root makes a blob a root, gc.ref.content[.*] are its edges,
    so content put together by hand survives the collection any rmi runs."""
    root, child, grandchild, loose = b"root", b"child", b"grandchild", b"loose"
    for i, data in enumerate((root, child, grandchild, loose)):
        dist.ok("content", "ingest", "--ref", f"r{i}", input=data)
    dist.ok("content", "label", sha(root), "containerd.io/gc.root=2026-11-28T00:00:00Z",
            f"containerd.io/gc.ref.content.l.0={sha(child)}")
    dist.ok("content", "label", sha(child), f"containerd.io/gc.ref.content={sha(grandchild)}",
            "containerd.io/gc.ref.content.missing=sha256:" + "0" * 64)
    [why] = dist.ok("gc", "--explain", sha(grandchild), "--json").json
    assert [step["digest"] for step in why["chain"]] == [sha(root), sha(child), sha(grandchild)]
    assert why["chain"][0]["root"] == "label containerd.io/gc.root"
    assert f"blob {sha(root)} (label containerd.io/gc.root)" in dist.ok("gc", "--explain", sha(child)).stdout
    assert [b["digest"] for b in dist.ok("gc", "--json").json["removed"]["content"]] == [sha(loose)]
    assert sorted(dist.ok("content", "ls", "-q").lines) == sorted(map(sha, (root, child, grandchild)))
    dist.ok("content", "label", sha(root), "containerd.io/gc.root=")
    assert sorted(b["digest"] for b in dist.ok("gc", "--json").json["removed"]["content"]) == \
        sorted(map(sha, (root, child, grandchild)))


def test_leases_create_list_remove(dist):
    assert dist.ok("leases", "create", "--id", "mine", "--expires", "24h", "--label", "purpose=test").lines == ["mine"]
    [lease] = dist.ok("leases", "ls", "--json").json
    assert lease["id"] == "mine" and lease["labels"] == {"purpose": "test"} and lease["expiresAt"].endswith("Z")
    assert dist("leases", "create", "--id", "mine").code == 4
    generated = dist.ok("leases", "create").stdout.strip()
    assert sorted(dist.ok("leases", "ls", "-q").lines) == sorted(["mine", generated])
    dist.ok("leases", "rm", "mine", generated)
    assert dist.ok("leases", "ls", "-q").lines == []
    assert dist("leases", "rm", "mine").code == 3


@pytest.mark.parametrize("group, create", [("leases", ["leases", "create", "--id", "keep"]),
                                           ("namespaces", ["namespaces", "create", "keep"])])
def test_multi_name_rm_keeps_going_past_a_missing_name(dist, group, create):
    dist.ok(*create)
    result = dist(group, "rm", "missing", "keep")
    assert result.code == 3 and result.lines == ["keep"]
    assert result.stderr == "dist: error: " + ("lease" if group == "leases" else "namespace") + " missing: not found\n"
    assert "keep" not in dist.ok(group, "ls", "-q").lines


def test_check_and_verify_report_what_exists_past_a_missing_one(dist, busybox_rootfs):
    dist.ok("images", "import", "--no-unpack", "--rootfs", str(busybox_rootfs), "--name", "bb")
    result = dist("images", "check", "--json", "missing", "bb")
    assert result.code == 3 and [r["name"] for r in result.json] == ["docker.io/library/bb:latest"]
    assert result.stderr == "dist: error: image docker.io/library/missing:latest: not found\n"
    blob = dist.ok("content", "ls", "-q").lines[0]
    absent = "sha256:" + "0" * 64
    result = dist("content", "verify", "--json", absent, blob)
    assert result.code == 3 and result.json == [{"digest": blob, "ok": True, "problem": None}]
    assert result.stderr == f"dist: error: blob {absent}: not found\n"


def test_a_read_only_command_does_not_change_the_store(dist, busybox_rootfs):
    dist.ok("images", "import", "--no-unpack", "--rootfs", str(busybox_rootfs), "--name", "bb")
    dist.ok("info")  # the first one probes whether overlay mounts here and caches the answer in ROOT
    before = store_fingerprint(dist.root)
    for args in (["images"], ["images", "--json"], ["images", "inspect", "bb"], ["images", "check"],
                 ["content", "ls"], ["gc", "--dry-run"], ["info"], ["leases"], ["namespaces"]):
        dist.ok(*args)
    assert store_fingerprint(dist.root) == before


def test_an_ingest_given_only_its_digest_shows_it_while_active(dist):
    """EXPECTED was '-' unless --expected-size came with --expected-digest."""
    import time

    dist.ok("images")
    digest = sha(b"whole")
    env = {**os.environ, "DIST_ROOT": str(dist.root), "DIST_STATE": str(dist.state)}
    writing = subprocess.Popen([sys.executable, "-m", "dist_tool", "content", "ingest", "--ref", "slow",
                                "--expected-digest", digest], stdin=subprocess.PIPE, env=env)
    try:
        writing.stdin.write(b"who")
        writing.stdin.flush()
        deadline = time.monotonic() + 30
        while not (active := dist.ok("content", "active", "--json").json) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [(a["ref"], a["expected"], a["total"]) for a in active] == [("slow", digest, None)]
        writing.stdin.write(b"le")
        writing.stdin.close()
        assert writing.wait(timeout=30) == 0
    finally:
        writing.kill()
        writing.wait()
    assert dist.ok("content", "ls", "-q").lines == [digest]


def test_an_ingest_of_a_present_blob_with_the_wrong_size_is_refused(dist):
    """The blob being present, stdin was not read and a wrong --expected-size passed with exit 0."""
    data = b"present" * 100
    dist.ok("content", "ingest", "--ref", "r", input=data)
    result = dist("content", "ingest", "--ref", "r2", "--expected-digest", sha(data), "--expected-size", "5",
                  input=b"wrong")
    assert (result.code, result.stderr) == (1, f"dist: error: blob {sha(data)}: is present with {len(data)} bytes, "
                                               "not the 5 expected\n")
    assert dist.ok("content", "ingest", "--ref", "r3", "--expected-digest", sha(data), "--expected-size",
                   str(len(data)), input=b"").lines == [sha(data)]  # as ctr: present is done, unread
    assert dist.ok("content", "active", "-q").lines == []


def test_gc_never_follows_a_link_in_the_ingest_area(dist, tmp_path):
    """A symlink under content/ingest made gc create a lock file wherever it pointed (/etc/lock),
    and a renamed-away one stayed for good."""
    dist.ok("images")
    outside = tmp_path / "outside"
    outside.mkdir()
    old = time.time() - 3600
    os.utime(outside, (old, old))
    ingest = dist.root / "content" / "ingest"
    (ingest / "x").symlink_to(outside)
    (ingest / ".removed-y").symlink_to(outside)
    (ingest / "junk").write_text("not an ingest")
    assert dist.ok("content", "active", "-q").lines == []
    dist.ok("gc")
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in ingest.iterdir()) == []


def test_gc_lists_and_counts_an_ingest_directory_a_killed_import_left_without_data(dist):
    """A layer thread killed after writing `expected` but before opening `data` leaves a directory
    `content active` does not list. gc removed it once its grace was over, but said "freed 0 B in
    0 blobs", and --dry-run and --json named nothing (README: what gc removes is listed and counted)."""
    dist.ok("images")
    key = hashlib.sha256(b"gi-layer").hexdigest()
    left = dist.root / "content" / "ingest" / key
    left.mkdir()
    old = time.time() - 3600  # past UNNAMED_INGEST_GRACE
    (left / "ref").write_text("gi-layer")
    (left / "started").write_text(repr(old))
    (left / "expected").write_text(json.dumps({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                               "digest": sha(b"layer"), "size": 5}))
    (left / "lock").touch()
    for path in (*left.iterdir(), left):
        os.utime(path, (old, old))
    assert dist.ok("content", "active", "-q").lines == []
    rel = f"content/ingest/{key}"
    planned = dist.ok("gc", "--dry-run", "--json").json
    assert planned["removed"]["directories"] == [rel] and planned["removed"]["ingests"] == []
    assert planned["bytesFreed"] > 0  # the disk its files take, as for the other leftover directories
    assert left.is_dir()
    text = dist.ok("gc", "--dry-run").lines
    assert f"would remove leftover directory {rel}" in text
    assert text[-1] == f"would free {iec(planned['bytesFreed'])} in 0 blobs (and 1 directory)"
    done = dist.ok("gc", "--json").json
    assert done["removed"]["directories"] == [rel] and done["bytesFreed"] == planned["bytesFreed"]
    assert not left.exists()
    assert dist.ok("gc", "--json").json["removed"]["directories"] == []


def test_tables_show_times_as_rfc3339_in_utc_as_json_does(dist):
    # SPEC: "Times are RFC 3339 in UTC" for tables as for JSON (only sizes differ, IEC in tables); the tables
    # said "just now" and "2 minutes ago", and leases ls mixed that with an RFC 3339 EXPIRES.
    digest = dist.ok("content", "ingest", "--ref", "r", input=b"blob").lines[0]
    ingest = dist.root / "content" / "ingest" / hashlib.sha256(b"partial").hexdigest()
    ingest.mkdir(parents=True)  # what a killed `content ingest --ref partial` leaves
    (ingest / "ref").write_text("partial")
    (ingest / "started").write_text("1700000000.0")
    (ingest / "data").write_bytes(b"par")
    dist.ok("leases", "create", "--id", "mine", "--expires", "1h")
    dist.ok("snapshot", "prepare", "work")
    for listing, key, field in [(["content", "ls"], digest, "createdAt"),
                                (["content", "active"], "partial", "startedAt"),
                                (["leases", "ls"], "mine", "createdAt"), (["snapshot", "ls"], "work", "createdAt")]:
        [record] = dist.ok(*listing, "--json").json
        header, row = dist.ok(*listing).lines
        assert row.split()[0] == key and record[field] in row.split(), (listing, row)
    assert "2023-11-14T22:13:20.000000Z" in dist.ok("content", "active").lines[1]
