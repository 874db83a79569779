"""Bad input: a one-line error with SPEC's exit code, and the store exactly as it was."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from helpers import fill, sans_allocations, store_fingerprint, tmpfs
from layerkit import write_layout

from dist_tool.trees import remove_trees


def assert_one_error(result, needle: str = "") -> None:
    """Progress may precede it on stderr; the error itself is one line, the last."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("dist: error: ")]
    assert len(errors) == 1 and result.stderr.splitlines()[-1] == errors[0] and needle in errors[0], result.stderr


def layout_tar(layout: Path, out: Path, mutate=None) -> Path:
    """Tars an OCI layout after ``mutate(copy)`` changed a copy of it."""
    work = out.parent / (out.name + ".d")
    shutil.copytree(layout, work)
    if mutate:
        mutate(work)
    with tarfile.open(out, "w") as tar:
        for path in sorted(work.rglob("*")):
            tar.add(path, str(path.relative_to(work)), recursive=False)
    return out


def blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.split(":")[1]


def put_blob(layout: Path, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blob(layout, digest).write_bytes(data)
    return digest


def set_index(layout: Path, manifests: list[dict]) -> None:
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))


def named(desc: dict, name: str = "docker.io/library/bad:1") -> dict:
    return {**desc, "annotations": {"org.opencontainers.image.ref.name": name}}


def _manifest_desc(img) -> dict:
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": img.manifest_digest,
            "size": len(blob(img.layout, img.manifest_digest).read_bytes())}


def case_not_json_index(img, layout):
    (layout / "index.json").write_text("{not json")


def case_manifest_not_json(img, layout):
    digest = put_blob(layout, b"this is no manifest")
    set_index(layout, [named({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
                              "size": 19})])


def case_digest_mismatch(img, layout):
    path = blob(layout, img.layer_digests[1])
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    set_index(layout, [named(_manifest_desc(img))])


def case_size_mismatch(img, layout):
    desc = _manifest_desc(img)
    desc["size"] += 1
    set_index(layout, [named(desc)])


def case_missing_blob(img, layout):
    manifest = dict(img.manifest)
    absent = "sha256:" + hashlib.sha256(b"a layer nobody has").hexdigest()
    manifest["layers"] = [*manifest["layers"],
                          {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": absent, "size": 9}]
    data = json.dumps(manifest).encode()
    digest = put_blob(layout, data)
    set_index(layout, [named({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
                              "size": len(data)})])


def case_unknown_media_type(img, layout):
    desc = _manifest_desc(img)
    desc["mediaType"] = "application/x-unknown"
    set_index(layout, [named(desc)])


def case_index_contains_itself(img, layout):
    # An index cannot name its own digest; the closest a hostile archive can do is claim one.
    fake = "sha256:" + "ab" * 32
    doc = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                      "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": fake,
                                     "size": 200}]}).encode()
    blob(layout, fake).write_bytes(doc)
    set_index(layout, [named({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": fake,
                              "size": len(doc)})])


def case_no_name(img, layout):
    set_index(layout, [{**_manifest_desc(img), "annotations": {"org.opencontainers.image.ref.name": "latest"}}])


def case_unusable_name(img, layout):
    set_index(layout, [{**_manifest_desc(img), "annotations": {"io.containerd.image.name": "AR-BAD TAG"}}])


def case_index_nested_deeply(img, layout):
    (layout / "index.json").write_bytes(b"[" * 100_000 + b"]" * 100_000)


def case_manifest_nested_deeply(img, layout):
    data = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
    digest = put_blob(layout, data)
    set_index(layout, [named({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
                              "size": len(data)})])


BAD_ARCHIVES = [
    ("index-not-json", case_not_json_index, 1, "index.json"),
    ("manifest-not-json", case_manifest_not_json, 1, "not valid JSON"),
    ("digest-mismatch", case_digest_mismatch, 1, "digest mismatch"),
    ("size-mismatch", case_size_mismatch, 1, "size"),
    ("missing-blob", case_missing_blob, 1, "missing"),
    ("unknown-media-type", case_unknown_media_type, 1, "media type"),
    ("index-contains-itself", case_index_contains_itself, 1, "digest mismatch"),
    ("no-usable-name", case_no_name, 2, "--name"),
    ("unusable-name", case_unusable_name, 2, "has no usable name ('AR-BAD TAG': "),  # was exit 1
    ("index-nested-deeply", case_index_nested_deeply, 1, "archive index.json: JSON nested too deeply"),
    ("manifest-nested-deeply", case_manifest_nested_deeply, 1, ": JSON nested too deeply"),  # was RecursionError
]


@pytest.mark.parametrize("mutate,code,needle", [c[1:] for c in BAD_ARCHIVES], ids=[c[0] for c in BAD_ARCHIVES])
def test_bad_archive(dist, imported, tmp_path, mutate, code, needle):
    """Each bad archive is refused with one line naming the problem; the store is untouched."""
    archive = layout_tar(imported.layout, tmp_path / "bad.tar", lambda layout: mutate(imported, layout))
    # the store already holds the good image: a bad import must neither remove nor add anything
    before = store_fingerprint(dist.root)
    result = dist("images", "import", "--no-unpack", str(archive))
    assert result.code == code, result.stderr
    assert_one_error(result, needle)
    assert store_fingerprint(dist.root) == before


def test_bad_archive_into_an_empty_store_leaves_it_empty(dist, umoci_image, tmp_path):
    dist.ok("images")  # creates the root
    before = store_fingerprint(dist.root)
    archive = layout_tar(umoci_image.layout, tmp_path / "bad.tar",
                         lambda layout: case_digest_mismatch(umoci_image, layout))
    assert dist("images", "import", "--no-unpack", str(archive)).code == 1
    assert store_fingerprint(dist.root) == before
    assert dist.ok("content", "ls", "-q").lines == []


@pytest.mark.parametrize("data,needle", [
    (b"just some text, not a tar at all\n" * 20, "not a tar"),
    (b"", "not a tar"),
], ids=["text", "empty"])
def test_not_a_tar(dist, tmp_path, data, needle):
    dist.ok("images")
    before = store_fingerprint(dist.root)
    path = tmp_path / "x.tar"
    path.write_bytes(data)
    result = dist("images", "import", str(path))
    assert result.code == 1
    assert_one_error(result, needle)
    assert store_fingerprint(dist.root) == before


def test_truncated_tar(dist, umoci_image, tmp_path):
    dist.ok("images")
    before = store_fingerprint(dist.root)
    data = umoci_image.oci_archive.read_bytes()
    path = tmp_path / "cut.tar"
    path.write_bytes(data[: len(data) * 2 // 3])
    result = dist("images", "import", str(path))
    assert result.code == 1, result.stderr
    assert_one_error(result, "truncated")
    assert store_fingerprint(dist.root) == before


def test_truncated_gzip_archive(dist, umoci_image, tmp_path):
    import gzip

    dist.ok("images")
    before = store_fingerprint(dist.root)
    data = gzip.compress(umoci_image.oci_archive.read_bytes())
    path = tmp_path / "cut.tar.gz"
    path.write_bytes(data[: len(data) // 2])
    result = dist("images", "import", str(path))
    assert result.code == 1, result.stderr
    assert_one_error(result)
    assert store_fingerprint(dist.root) == before


@pytest.mark.parametrize("args,code,line", [
    (["images", "import", "--no-unpack", "--name", "Bad/UPPER", "{archive}"], 2,
     "dist: error: reference Bad/UPPER: repository name must be lowercase"),
    (["images", "label", "{name}", "=v"], 2, "dist: error: label =v: "),
    (["images", "label", "{name}", "novalue"], 2, "dist: error: label novalue: "),
    (["images", "ls", "name=="], 2, "dist: error: filter name==: "),
    (["images", "ls", "name~=("], 2, "dist: error: filter name~=(: "),
    (["images", "inspect", "nope"], 3, "dist: error: image docker.io/library/nope:latest: not found"),
    (["images", "tag", "nope", "x"], 3, "dist: error: image docker.io/library/nope:latest: not found"),
    (["images", "label", "nope", "a=b"], 3, "dist: error: image docker.io/library/nope:latest: not found"),
    (["images", "export", "{tmp}/o.tar", "nope"], 3, "dist: error: image docker.io/library/nope:latest: not found"),
    (["images", "import", "{tmp}/missing.tar"], 3, "dist: error: archive {tmp}/missing.tar: no such file"),
    (["content", "get", "sha256:1234"], 2, "dist: error: digest sha256:1234: malformed digest"),
    (["content", "get", "sha256:" + "0" * 64], 3, "dist: error: blob sha256:" + "0" * 64 + ": not found"),
    (["content", "rm", "sha256:" + "0" * 64], 3, "dist: error: blob sha256:" + "0" * 64 + ": not found"),
    (["leases", "create", "--id", "bad id"], 2, "dist: error: lease id bad id: "),
    (["leases", "create", "--expires", "soon"], 2, "dist: error: duration soon: "),
    (["-n", "bad/ns", "images"], 2, "dist: error: namespace bad/ns: "),
    # Paths that are no text: an internal error, and a run --rm left its container behind.
    (["--state", "/tmp/st\udcfe", "task", "ls"], 2, "dist: error: --state /tmp/st\\xfe: is not valid UTF-8"),
    (["--root", "/tmp/r\udcff", "info"], 2, "dist: error: --root /tmp/r\\xff: is not valid UTF-8"),
    # A malformed address was "not served over --address" (1, and 125 from run) for some commands.
    (["--address", "bogus", "info"], 2, "dist: error: address bogus: expected unix:///PATH or tcp://HOST:PORT"),
    (["--address", "bogus", "run", "busybox", "x"], 2, "dist: error: address bogus: expected unix:///PATH"),
    (["container", "info", "a b"], 2, "dist: error: container id a b: "),
    (["container", "rm", "-f", "a b"], 2, "dist: error: container id a b: "),
    (["container", "label", "../x", "a=b"], 2, "dist: error: container id ../x: "),
    (["task", "kill", "a b"], 2, "dist: error: container id a b: "),
    (["container", "info", "a\nb"], 2, "dist: error: container id a\\nb: "),
    (["images", "--no-such-flag"], 2, "dist: error: No such option: --no-such-flag"),
    (["nosuchcommand"], 2, "dist: error: No such command 'nosuchcommand'."),
    (["leases", "delete", "x"], 2, "dist: error: No such command 'delete'."),  # ctr's word, not a filter
    (["namespaces", "remove", "default"], 2, "dist: error: No such command 'remove'."),
    (["images", "busybox"], 2, "dist: error: No such command 'busybox'."),
    (["snapshot", "bogus"], 2, "dist: error: No such command 'bogus'."),
    # An option first once made every later word a filter: an empty listing, exit 0, nothing removed.
    (["images", "-q", "rm", "{name}"], 2, "dist: error: options go after the subcommand: dist images rm [OPTIONS]"),
    (["leases", "-q", "delete", "x"], 2, "dist: error: No such command 'delete'."),
    (["images", "--json", "busybox"], 2, "dist: error: No such command 'busybox'."),
    (["images", "name~=x", "busybox"], 2, "dist: error: No such command 'busybox'."),
    (["images", "-n", "foo"], 2, "dist: error: No such option: -n"),  # a global option after the group
    ([], 2, "dist: error: Missing command."),  # global options but no command
], ids=lambda v: v if isinstance(v, int) else None)
def test_usage_and_lookup_errors(dist, imported, tmp_path, args, code, line):
    before = store_fingerprint(dist.root)
    subst = {"archive": str(imported.oci_archive), "name": imported.name, "tmp": str(tmp_path)}
    result = dist(*[a.format(**subst) for a in args])
    assert result.code == code, result.stderr
    assert result.stderr.splitlines()[0].startswith(line.format(**subst)), result.stderr
    assert "Traceback" not in result.stderr
    if code != 2 or not any(usage in line for usage in ("Missing", "No such", "options go after")):
        assert_one_error(result)
    assert store_fingerprint(dist.root) == before


def test_a_group_lists_when_an_option_or_a_filter_follows_it(dist, imported):
    """``dist images --json`` and ``dist images name~=x`` are ``ls``; a misspelt subcommand is not
    a filter that matches nothing (exit 0 while ``leases delete ID`` deleted nothing)."""
    dist.ok("leases", "create", "--id", "kept")
    assert dist("leases", "delete", "kept").code == 2
    assert dist.ok("leases", "ls", "-q").lines == ["kept"]
    assert dist.ok("leases", "id==kept", "-q").lines == ["kept"]
    assert [i["name"] for i in dist.ok("images", "--json").json] == [imported.name]
    assert dist.ok("images", f"name=={imported.name}", "-q").lines == [imported.name]
    assert dist.ok("images", 'labels."nope"', "-q").lines == []
    assert dist.ok("images", "ls", "name", "-q").lines == [imported.name]  # a bare field: after ls


def test_a_name_with_a_newline_is_escaped_on_the_one_line(dist):
    dist.ok("snapshot", "ls")  # the snapshotter's one-time probe is recorded before the fingerprint
    before = store_fingerprint(dist.root)
    result = dist("snapshot", "prepare", "a\nb\x1b[2J")
    assert result.code == 2
    assert_one_error(result, "dist: error: snapshot key a\\nb\\x1b[2J: must be one non-empty line")
    assert store_fingerprint(dist.root) == before


def test_content_ingest_mismatch_stores_nothing_and_frees_the_ref(dist):
    dist.ok("images")
    before = store_fingerprint(dist.root)
    data = b"payload" * 100
    wrong = "sha256:" + hashlib.sha256(b"other").hexdigest()
    result = dist("content", "ingest", "--ref", "r1", "--expected-digest", wrong, input=data)
    assert result.code == 1 and "digest mismatch" in result.stderr
    assert store_fingerprint(dist.root) == before
    assert dist.ok("content", "active", "--json").json == []
    good = "sha256:" + hashlib.sha256(data).hexdigest()
    assert dist.ok("content", "ingest", "--ref", "r1", "--expected-digest", good,
                   "--expected-size", str(len(data)), input=data).lines == [good]


def test_debug_shows_a_traceback(dist):
    result = dist("--debug", "images", "inspect", "nope")
    assert result.code == 3 and "Traceback" in result.stderr


def test_help_goes_to_stdout(dist):
    result = dist.ok("images", "--help")
    for sub in ("ls", "rm", "tag", "label", "inspect", "check", "import", "export"):
        assert sub in result.stdout
    assert dist.ok("--version").stdout.startswith("dist ")


def test_bytes_through_stdin_are_bounded_json(dist, tmp_path):
    """A huge index.json is refused, not read into memory."""
    big = io.BytesIO()
    with tarfile.open(fileobj=big, mode="w") as tar:
        info = tarfile.TarInfo("index.json")
        payload = b"[" + b" " * (9 * 1024 * 1024) + b"]"
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    dist.ok("images")
    result = dist("images", "import", "-", input=big.getvalue())
    assert result.code == 1 and "larger than" in result.stderr


def _file_member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _copied_tar(archive: Path, out: Path, edit=None, append: dict[str, bytes] | None = None) -> Path:
    """``archive`` copied member by member into ``out``. ``edit(member)`` returns None to copy the
    member, or what to write in its place: ``(TarInfo, bytes)`` pairs, and the member itself to keep
    it. ``append`` adds regular files at the end."""
    with tarfile.open(archive) as src, tarfile.open(out, "w") as dst:
        for member in src:
            for entry in [member] if edit is None or (replaced := edit(member)) is None else replaced:
                if entry is member:
                    dst.addfile(member, src.extractfile(member) if member.isfile() else None)
                else:
                    dst.addfile(entry[0], io.BytesIO(entry[1]))
        for name, data in (append or {}).items():
            info, data = _file_member(name, data)
            dst.addfile(info, io.BytesIO(data))
    return out


def _with_extra_member(archive: Path, out: Path, name: str, data: bytes) -> Path:
    """``archive`` with one more regular-file member that nothing in it references."""
    return _copied_tar(archive, out, append={name: data})


@pytest.mark.parametrize("kind,member", [
    ("oci", "blobs/sha256/" + hashlib.sha256(b"stray").hexdigest()),
    ("oci", "junk.tar"),
    ("docker", "junk\nwith a newline.tar"),
], ids=["oci-stray-blob", "oci-stray-tar", "docker-newline-name"])
def test_members_nothing_references_are_not_kept(dist, umoci_image, tmp_path, kind, member):
    """A member that looks like a blob is stored while the stream passes (the index may come
    last); once the images are named, what none of them references is collected."""
    source = umoci_image.oci_archive if kind == "oci" else umoci_image.docker_archive
    archive = _with_extra_member(source, tmp_path / "extra.tar", member, b"stray")
    dist.ok("images", "import", "--no-unpack", "--name", umoci_image.name, str(archive))
    stored = set(dist.ok("content", "ls", "-q").lines)
    assert "sha256:" + hashlib.sha256(b"stray").hexdigest() not in stored
    assert umoci_image.config_digest in stored
    assert len(stored) == 2 + len(umoci_image.layer_digests)  # manifest, config, layers: nothing else
    assert dist.ok("content", "active", "-q").lines == []


def test_a_docker_member_listed_twice_keeps_only_the_copy_imported(dist, umoci_image, tmp_path):
    """The stream is read in order, so the last member of a name is the one the archive means; the
    earlier copy was stored too, and left behind when the import succeeded."""
    config = umoci_image.config_digest.split(":")[1] + ".json"  # where skopeo's docker-archive keeps it
    junk = b'{"a copy": "the archive replaces"}'
    out = _copied_tar(umoci_image.docker_archive, tmp_path / "twice.tar",
                      lambda m: [_file_member(config, junk), m] if m.name == config else None)
    assert junk in out.read_bytes()
    dist.ok("images", "import", "--no-unpack", str(out))
    stored = set(dist.ok("content", "ls", "-q").lines)
    assert "sha256:" + hashlib.sha256(junk).hexdigest() not in stored
    assert umoci_image.config_digest in stored
    assert len(stored) == 2 + len(umoci_image.layer_digests)  # manifest, config, layers: nothing else


def _gzip_tar_of(rootfs: Path) -> bytes:
    import gzip

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(rootfs, ".")
    return gzip.compress(buf.getvalue())


@pytest.mark.parametrize("damage,needle", [
    (lambda data: data[: len(data) // 2], "truncated gzip stream"),
    (lambda data: data[:-8] + bytes(b ^ 0xFF for b in data[-8:-4]) + data[-4:], "corrupt gzip stream"),
], ids=["truncated-gzip", "bad-gzip-crc"])
def test_a_bad_rootfs_tar_leaves_no_ingest(dist, busybox_rootfs, tmp_path, damage, needle):
    dist.ok("images")
    before = store_fingerprint(dist.root)
    path = tmp_path / "rootfs.tar.gz"
    path.write_bytes(damage(_gzip_tar_of(busybox_rootfs)))
    result = dist("images", "import", "--rootfs", str(path), "--name", "bad:1")
    assert result.code == 1, result.stderr
    assert_one_error(result, f"rootfs {path}: {needle}")
    assert store_fingerprint(dist.root) == before
    assert dist.ok("content", "active", "-q").lines == []


def test_a_rootfs_directory_with_a_socket_imports_without_it(dist, tmp_path):
    import socket

    rootfs = tmp_path / "rootfs"
    (rootfs / "run").mkdir(parents=True)
    (rootfs / "hello").write_text("hi\n")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(rootfs / "run" / "sock"))
        dist.ok("images", "import", "--rootfs", str(rootfs), "--name", "sock:1")
    [image] = dist.ok("images", "--json").json
    assert image["name"] == "docker.io/library/sock:1"
    assert dist.ok("content", "active", "-q").lines == []


def test_unknown_progress_mode_is_a_usage_error(dist, imported, tmp_path):
    before = store_fingerprint(dist.root)
    r = dist("images", "export", str(tmp_path / "x.tar"), imported.name, "--progress", "bogus")
    assert r.code == 2
    assert r.stderr.splitlines()[0] == ("dist: error: Invalid value for '--progress': 'bogus' is not one of "
                                        "auto, tty, plain, none")
    assert store_fingerprint(dist.root) == before and not (tmp_path / "x.tar").exists()


@pytest.mark.parametrize("where", ["missing-dir", "file-as-dir"])
def test_unwritable_paths_are_one_line_naming_the_path(dist, imported, tmp_path, where):
    (tmp_path / "file").write_text("")
    parent = tmp_path / ("nosuch" if where == "missing-dir" else "file")
    r = dist("images", "export", str(parent / "x.tar"), imported.name)
    why = "No such file or directory" if where == "missing-dir" else "Not a directory"
    assert (r.code, r.stderr) == (1, f"dist: error: file {parent / 'x.tar'}: {why}\n")


def test_a_root_that_is_a_file_is_one_line(dist, tmp_path):
    (tmp_path / "file").write_text("")
    r = dist("--root", str(tmp_path / "file"), "images")
    assert r.code == 1
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"dist: error: file {tmp_path / 'file'}")



@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs for the store")
def test_a_layer_that_fills_the_disk_fails_on_one_line_and_frees_it(tmp_path):
    """A gzip bomb (a small blob expanding to more than the disk holds) is contained: the import
    fails naming the layer, and everything it wrote is removed, the extracted files first."""
    import gzip

    from helpers import Dist
    from layerkit import layer, oci_archive

    with tmpfs(tmp_path / "disk", "48m") as disk:
        info = tarfile.TarInfo("zeros")
        info.size = 96 << 20
        bomb, diff_id = io.BytesIO(), hashlib.sha256()
        with gzip.GzipFile(fileobj=bomb, mode="wb", compresslevel=9) as gz:
            # one 96 MiB member of zeros, then an empty tar's end blocks
            for chunk in [info.tobuf(tarfile.PAX_FORMAT), *[bytes(1 << 20)] * 96, layer([])]:
                gz.write(chunk)
                diff_id.update(chunk)
        archive = oci_archive(tmp_path / "bomb.tar", [], diff_ids=[f"sha256:{diff_id.hexdigest()}"],
                              blobs=[(bomb.getvalue(), "application/vnd.oci.image.layer.v1.tar+gzip")])
        dist = Dist(disk / "root")
        # An image first: the store's namespace, snapshotter directories and counters exist.
        dist.ok("images", "import", str(oci_archive(tmp_path / "small.tar", [layer([])]).archive))
        before = store_fingerprint(dist.root)
        free_before = os.statvfs(disk).f_bavail
        result = dist("images", "import", str(archive.archive))
        assert result.code == 1, result.stderr
        assert_one_error(result, "member zeros: No space left on device")
        assert sans_allocations(store_fingerprint(dist.root)) == sans_allocations(before)
        assert dist.ok("leases", "ls", "-q").lines == [] and len(dist.ok("snapshot", "ls", "-q").lines) == 1
        assert os.statvfs(disk).f_bavail >= free_before - 64  # a few blocks of SQLite's WAL at most



@pytest.mark.parametrize("args", [[], ["{archive}", "--rootfs", "{rootfs}", "--name", "x"]], ids=["none", "both"])
def test_import_takes_one_source(dist, umoci_image, busybox_rootfs, args):
    """SPEC: import FILE|- or --rootfs: neither (it would read a terminal) nor both is a usage error."""
    args = [a.format(archive=umoci_image.oci_archive, rootfs=busybox_rootfs) for a in args]
    r = dist("images", "import", *args)
    assert r.code == 2
    why = "not both" if args else "and got neither"
    assert_one_error(r, f"needs an archive (FILE, or - for stdin) or --rootfs, {why}")



def test_an_unknown_snapshotter_is_refused_where_used_and_help_still_works(dist, imported):
    assert dist("--snapshotter", "bogus", "images", "--help").code == 0
    # container create reads the image's /etc/passwd through the snapshotter: the error is still
    # the option's, not the image's User field
    for args in (["info"], ["snapshot", "ls"], ["container", "create", imported.name, "c1"]):
        r = dist("--snapshotter", "bogus", *args)
        assert r.code == 2
        assert_one_error(r, "dist: error: snapshotter bogus: unknown: choose overlayfs or native")


def test_a_gzip_archive_of_several_members_imports(dist, umoci_image, tmp_path):
    import gzip

    data = umoci_image.oci_archive.read_bytes()
    path = tmp_path / "members.tar.gz"
    path.write_bytes(gzip.compress(data[:2000]) + gzip.compress(data[2000:]))  # as `cat a.gz b.gz` or pigz make
    dist.ok("images", "import", "--no-unpack", str(path))
    [image] = dist.ok("images", "--json").json
    assert image["target"]["digest"] == umoci_image.manifest_digest and image["complete"] is True


def _docker_archive_tagged(path: Path, tag: str) -> None:
    empty = io.BytesIO()
    tarfile.open(fileobj=empty, mode="w").close()
    layer_tar = empty.getvalue()
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()]}}).encode()
    manifest = json.dumps([{"Config": "c.json", "RepoTags": [tag], "Layers": ["l/layer.tar"]}]).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in (("manifest.json", manifest), ("c.json", config), ("l/layer.tar", layer_tar)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_a_bad_name_inside_an_archive_is_its_content_and_name_overrides_it(dist, tmp_path):
    dist.ok("images")
    before = store_fingerprint(dist.root)
    archive = tmp_path / "upper.tar"
    _docker_archive_tagged(archive, "UPPER:1")
    result = dist("images", "import", "--no-unpack", str(archive))
    assert result.code == 2, result.stderr  # SPEC: an entry with no usable name is exit 2, naming it
    assert_one_error(result, "manifest.json[0]")
    assert store_fingerprint(dist.root) == before
    dist.ok("images", "import", "--no-unpack", "--name", "fixed:1", str(archive))
    assert dist.ok("images", "-q").lines == ["docker.io/library/fixed:1"]


def _deep_tree(rootfs: Path, levels: int, name: str = "d") -> None:
    rootfs.mkdir()
    fd = os.open(rootfs, os.O_RDONLY)
    for _ in range(levels):  # level by level, relative: os.makedirs recurses, and paths get long
        os.mkdir(name, dir_fd=fd)
        fd, parent = os.open(name, os.O_RDONLY, dir_fd=fd), fd
        os.close(parent)
    os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    os.close(fd)


def test_a_rootfs_directory_deeper_than_pythons_recursion_limit(dist, tmp_path):
    rootfs = tmp_path / "rootfs"
    try:
        _deep_tree(rootfs, 1100)
        dist.ok("images", "import", "--no-unpack", "--rootfs", str(rootfs), "--name", "deep:1")
        assert dist.ok("images", "-q").lines == ["docker.io/library/deep:1"]
    finally:
        remove_trees([str(rootfs)])  # pytest's own clean-up recurses per level


def test_a_rootfs_directory_that_cannot_be_listed_is_an_error_not_a_shorter_layer(dist, tmp_path):
    dist.ok("images")
    before = store_fingerprint(dist.root)
    rootfs = tmp_path / "rootfs"
    _deep_tree(rootfs, 25, "d" * 200)  # its bottom is beyond PATH_MAX: listing it fails (ENAMETOOLONG)
    result = dist("images", "import", "--no-unpack", "--rootfs", str(rootfs), "--name", "toodeep:1")
    assert result.code == 1, result.stderr
    assert_one_error(result, "cannot list")
    assert store_fingerprint(dist.root) == before
    assert dist.ok("content", "active", "-q").lines == []


@pytest.mark.parametrize("tool", ["xz", "bzip2"])
def test_archives_compressed_as_docker_load_accepts_them(dist, umoci_image, tmp_path, tool):
    import subprocess

    path = tmp_path / "image.tar"
    shutil.copy(umoci_image.oci_archive, path)
    subprocess.run([tool, "-k", str(path)], check=True)
    dist.ok("images", "import", "--no-unpack", f"{path}.{'xz' if tool == 'xz' else 'bz2'}")
    [image] = dist.ok("images", "--json").json
    assert image["target"]["digest"] == umoci_image.manifest_digest


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs")
def test_a_full_or_damaged_metadata_database_is_a_one_line_store_error(tmp_path: Path) -> None:
    """SQLite's own failures (a full disk, a damaged file) name the database, never 'internal error'."""

    from helpers import Dist

    with tmpfs(tmp_path / "small", "2m") as small:
        dist = Dist(small / "root")
        dist.ok("content", "ingest", "--ref", "r", input=b"first")
        dist.ok("leases", "create", "--id", "before")
        filler = fill(small)  # every free block: SQLite cannot grow its log
        result = dist("leases", "create", "--id", "one-too-many", "--label", "x=" + "y" * 4000)
        assert result.code == 1
        assert_one_error(result, f"dist: error: store {small / 'root' / 'metadata.db'}: ")
        assert "internal error" not in result.stderr
        filler.unlink()
        assert dist.ok("leases", "ls", "-q").lines == ["before"]
    damaged = tmp_path / "damaged"
    Dist(damaged).ok("leases", "create", "--id", "x")
    os.truncate(damaged / "metadata.db", 5000)
    for wal in damaged.glob("metadata.db-*"):
        wal.unlink()
    result = Dist(damaged)("images")
    assert result.code == 1 and result.stdout == ""
    assert result.stderr == (f"dist: error: store {damaged / 'metadata.db'}: database disk image is malformed "
                             "(the metadata database is damaged)\n")


@pytest.mark.parametrize("args", [
    ["namespaces", "label", "\udcff", "k=v"], ["namespaces", "rm", ".hidden", "ok"], ["leases", "rm", "../x"],
    ["leases", "rm", "\udcff"], ["snapshot", "rm", "\udcff"], ["snapshot", "usage", "\udcff"],
    ["snapshot", "prepare", "r\udcff"], ["snapshot", "mounts", "/mnt", "\udcff"],
    ["content", "ingest", "--ref", "r\udcff"]])
def test_malformed_or_non_utf8_names_are_usage_errors(dist, args):
    """Bytes that are not UTF-8 (surrogates to Python) and identifiers outside SPEC's grammar are
    exit 2 before anything is looked up, never 'internal error' or 'not found'."""
    dist.ok("namespaces", "create", "ok")
    dist.ok("snapshot", "ls")  # the snapshotter's directories, made on first use
    before = store_fingerprint(dist.root)
    result = dist(*args, input=b"")
    assert result.code == 2 and result.stdout == "", result.stderr
    assert_one_error(result)
    assert "internal error" not in result.stderr
    assert store_fingerprint(dist.root) == before


@pytest.mark.parametrize("option", ["--root", "--state"])
def test_an_empty_root_or_state_option_is_a_usage_error_not_the_system_store(dist, option):
    """``dist --root "$R" rmi x`` with R unset must not act on /var/lib/dist."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("DIST_ROOT", "DIST_STATE")}
    r = subprocess.run([sys.executable, "-m", "dist_tool", option, "", "images", "-q"], capture_output=True,
                       text=True, env=env)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", f"dist: error: {option}: must not be empty\n")


@pytest.mark.parametrize(("args", "error"), [
    (["content", "ingest", "--ref", "r", "--expected-digest", ""], "digest: malformed digest"),
    (["content", "ingest", "--ref", "r", "--expected-size", "\u0661\u0662"], "--expected-size \u0661\u0662: must be a"),
    (["content", "ingest", "--ref", "r", "--expected-size", "1_0"], "--expected-size 1_0: must be a number"),
    (["images", "import", ""], "archive: must not be empty (- reads stdin)"),
    (["images", "import", "/dev/null", "--config-cmd", "/bin/sh"], "--config-cmd /bin/sh: applies to --rootfs"),
    (["images", "import", "--rootfs", "/nonexistent", "--platform", "linux/arm64"],
     "--platform linux/arm64: does not apply"),
    (["images", "import", "--rootfs", "/nonexistent", "--all-platforms"], "--all-platforms: does not apply"),
    (["images", "export", "out.tar", "busybox", "--platform", ""], "--platform: must not be empty"),
    (["pull", "--platform", "", "localhost:5000/x"], "--platform: must not be empty"),
])
def test_empty_or_ignored_option_values_are_usage_errors(dist, args, error):
    """An option that would be silently dropped (empty, or meaningless with another) is exit 2:
    a script that passes it expects it to act."""
    result = dist(*args, input=b"")
    assert result.code == 2 and result.stdout == ""
    assert result.stderr.startswith(f"dist: error: {error}"), result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs")
def test_a_full_disk_during_an_import_is_the_stores_error_not_the_archives(tmp_path: Path, umoci_image) -> None:

    from helpers import Dist

    with tmpfs(tmp_path / "small", "1m") as small:
        dist = Dist(small / "root")
        dist.ok("images")
        assert umoci_image.oci_archive.stat().st_size > 1 << 20
        result = dist("images", "import", "--no-unpack", "--progress", "none", str(umoci_image.oci_archive))
        assert result.code == 1
        assert_one_error(result, "bytes and the store's file system has")  # known before writing
        assert "dist: error: archive" not in result.stderr and "internal error" not in result.stderr
        assert dist.ok("images", "-q").lines == []


def test_an_archive_header_larger_than_a_mebibyte_is_refused_not_read(dist, tmp_path):
    """tarfile reads a PAX header whole: a few MB of gzip could hold gigabytes of it. Refused
    at 1 MiB, as Go's archive/tar refuses it, with the store as it was."""
    import gzip

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("index.json")
        info.pax_headers = {"comment": "A" * (2 << 20)}
        tar.addfile(info, io.BytesIO(b""))
    archive = tmp_path / "pax.tar.gz"
    archive.write_bytes(gzip.compress(raw.getvalue()))
    dist.ok("images")
    before = store_fingerprint(dist.root)
    result = dist("images", "import", str(archive), "--name", "x")
    assert result.code == 1
    assert_one_error(result, "a tar header is larger than 1048576 bytes")
    assert store_fingerprint(dist.root) == before


def test_an_archive_naming_a_schema_1_manifest_says_so(dist, imported, tmp_path):
    manifest = json.dumps({"schemaVersion": 1, "name": "old", "tag": "1", "fsLayers": [], "history": []}).encode()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    write_layout(tmp_path / "old.tar", {digest: manifest}, [{
        "mediaType": "application/vnd.docker.distribution.manifest.v1+prettyjws", "digest": digest,
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "docker.io/library/old:1"}}])
    before = store_fingerprint(dist.root)
    result = dist("images", "import", "--progress", "none", str(tmp_path / "old.tar"))
    assert (result.code, result.stderr) == (1, "dist: error: image docker.io/library/old:1: it is a Docker schema 1"
                                               " manifest, which dist does not support (push it again with a current"
                                               " tool)\n")
    assert sans_allocations(store_fingerprint(dist.root)) == sans_allocations(before)


def test_a_long_label_is_named_short_in_its_error(dist, imported):
    result = dist("images", "label", imported.name, "k=" + "v" * 4100)
    assert result.code == 2
    assert result.stderr.startswith("dist: error: label k=vvv") and "(4102 characters)" in result.stderr
    assert len(result.stderr) < 400


def _sparse_archive(path) -> None:
    """One PAX GNU sparse 1.0 member: a few hundred bytes that stand for 2 GiB of a blob."""
    name = "blobs/sha256/" + "cd" * 32
    info = tarfile.TarInfo(f"GNUSparseFile.0/{'cd' * 32}")
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": name,
                        "GNU.sparse.realsize": str(2 << 30)}
    data = b"1\n2147483647\n1\n".ljust(512, b"\0") + b"x".ljust(512, b"\0")
    info.size = len(data)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(data))


def _huge_header_archive(path) -> None:
    """A member whose header claims 300 TiB: what a gzip bomb's header says, in 5 KB."""
    info = tarfile.TarInfo("blobs/sha256/" + "ab" * 32)
    info.size = 300 << 40
    path.write_bytes(info.tobuf(format=tarfile.PAX_FORMAT) + b"\0" * 4096)


def _header_chain_archive(path) -> None:
    """20,000 extended headers in a row before the first member: tarfile reads them by recursion."""
    one = tarfile.TarInfo("x")
    one.pax_headers = {"comment": "c"}
    block = one.tobuf(format=tarfile.PAX_FORMAT)[:1024]  # the x header and its record, no member
    path.write_bytes(block * 20000 + b"\0" * 1024)


@pytest.mark.parametrize(("build", "why"), [
    (_sparse_archive, "archive {archive}: member blobs/sha256/" + "cd" * 32 + ": a sparse file"),
    (_huge_header_archive,
     "blob sha256:" + "ab" * 32 + ": needs 329853488332800 bytes and the store's file system has "),
    (_header_chain_archive, "archive {archive}: corrupt tar (too many extended headers in a row)"),
], ids=["sparse-member", "header-claims-300-tib", "header-chain-first"])
def test_an_archive_that_would_expand_past_the_disk_is_refused_before_writing(dist, tmp_path, build, why):
    """The sparse member wrote 2 GB (any size its header named) and the 300 TiB one would have
    written until the disk was full, before either was found wrong; the header chain was an
    internal error."""
    archive = tmp_path / "hostile.tar"
    build(archive)
    dist.ok("images")
    before = store_fingerprint(dist.root)
    result = dist("images", "import", "--progress", "none", str(archive))
    assert result.code == 1 and result.stderr.startswith("dist: error: " + why.format(archive=archive)), result.stderr
    assert_one_error(result)
    assert store_fingerprint(dist.root) == before
    assert dist.ok("content", "active", "-q").lines == []


def test_an_archive_member_name_cannot_forge_lines_on_stderr(dist, tmp_path):
    """A docker-archive member is named in progress lines: its newline and escape sequence made
    a fake 'dist: error:' line that cleared the terminal; a non-UTF-8 name failed the import."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("x\ndist: error: \x1b[2Jfake.tar", "\udcff.tar"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"{}"))
        info = tarfile.TarInfo("manifest.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"[]"))
    archive = tmp_path / "names.tar"
    archive.write_bytes(raw.getvalue())
    result = dist("images", "import", "--progress", "plain", str(archive))
    assert result.code == 1 and result.stderr.splitlines() == [
        "x\\ndist: error: \\x1b[2Jfake.tar: done", "\\xff.tar: done",
        f"dist: error: archive {archive}: lists no images"]


def test_sigterm_undoes_an_import_as_ctrl_c_does(dist, tmp_path):
    """timeout, systemctl stop and docker stop send SIGTERM: it killed dist outright and left the
    partial ingest (gigabytes, for a big layer) and the import's lease for a later gc."""
    import signal
    import subprocess
    import sys
    import threading
    import time

    dist.ok("images")
    before = store_fingerprint(dist.root)
    fifo = tmp_path / "archive"
    os.mkfifo(fifo)
    env = {**os.environ, "DIST_ROOT": str(dist.root), "DIST_STATE": str(dist.state)}
    importing = subprocess.Popen([sys.executable, "-m", "dist_tool", "images", "import", "--progress", "none",
                                  str(fifo)], stderr=subprocess.PIPE, env=env)
    done = threading.Event()

    def feed() -> None:
        with open(fifo, "wb") as f:
            head = tarfile.TarInfo("blobs/sha256/" + "ab" * 32)
            head.size = 64 << 20
            f.write(head.tobuf(format=tarfile.PAX_FORMAT) + b"\0" * (4 << 20))
            f.flush()
            done.wait(60)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        deadline = time.monotonic() + 30
        while not dist.ok("content", "active", "-q").lines and time.monotonic() < deadline:
            time.sleep(0.05)
        assert dist.ok("content", "active", "-q").lines == ["import-sha256:" + "ab" * 32]
        importing.send_signal(signal.SIGTERM)
        assert importing.wait(timeout=30) == 143
    finally:
        done.set()
        feeder.join()
        importing.stderr.close()
    assert dist.ok("content", "active", "-q").lines == [] and dist.ok("leases", "-q").lines == []
    assert sans_allocations(store_fingerprint(dist.root)) == sans_allocations(before)


def test_a_store_from_a_newer_dist_is_refused_for_writes_and_gc_too(dist, imported, busybox_rootfs):
    """Reads were refused, but import, rmi, gc and leases create wrote to it: a newer dist's tables
    may keep blobs this one cannot see, and its gc would have swept them."""
    import sqlite3

    from dist_tool.store.metadata import SCHEMA_VERSION

    db = sqlite3.connect(dist.root / "metadata.db")
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    before = store_fingerprint(dist.root)
    for args in (["images"], ["images", "import", "--rootfs", str(busybox_rootfs), "--name", "new"],
                 ["rmi", imported.name], ["gc"], ["leases", "create", "--id", "l"], ["namespaces", "create", "n"]):
        result = dist(*args)
        assert result.code == 1, args
        assert result.stderr.endswith(f"schema version 99 is newer than this dist ({SCHEMA_VERSION})\n"), args
    assert store_fingerprint(dist.root) == before


@pytest.mark.parametrize("damage", ["DROP TABLE images", "PRAGMA user_version = 1"],
                         ids=["table-dropped", "version-lowered"])
def test_tables_unlike_the_schema_version_are_a_damaged_store_not_a_bug(dist, imported, damage):
    """'internal error: OperationalError: no such table: images', or '... table snapshots already
    exists' from the migrations a lowered version reran."""
    import sqlite3

    db = sqlite3.connect(dist.root / "metadata.db")
    db.execute(damage)
    db.commit()
    db.close()
    for args in (["images"], ["gc"]):
        result = dist(*args)
        assert result.code == 1 and result.stderr.startswith(f"dist: error: store {dist.root / 'metadata.db'}: ")
        assert result.stderr.endswith(" (the metadata database is damaged)\n"), result.stderr


def test_a_snapshotter_cache_that_cannot_be_written_is_only_a_cache(dist):
    """A directory at snapshots/default-snapshotter made every command fail, each leaving a
    default-snapshotter.PID file behind."""
    dist.ok("info")
    cache = dist.root / "snapshots" / "default-snapshotter"
    cache.unlink()
    cache.mkdir()
    for _ in range(2):
        assert dist.ok("info", "--json").json["snapshotter"] in ("overlayfs", "native")
    assert sorted(p.name for p in cache.parent.iterdir() if p.name.startswith("default-snapshotter")) == [
        "default-snapshotter"]


def _docker_archive_with_manifest(archive: Path, out: Path, manifest: bytes) -> Path:
    """``archive`` (a docker-save tar) with its manifest.json replaced by ``manifest``."""
    return _copied_tar(archive, out, lambda m: [] if m.name.lstrip("./") == "manifest.json" else None,
                       append={"manifest.json": manifest})


def test_a_docker_manifest_nested_too_deeply_is_bad_content(dist, imported, tmp_path):
    """json's decoder recurses per level: a manifest.json of [[[[… was an internal RecursionError."""
    archive = _docker_archive_with_manifest(imported.docker_archive, tmp_path / "deep.tar",
                                            b"[" * 100_000 + b"]" * 100_000)
    before = store_fingerprint(dist.root)
    result = dist("images", "import", "--no-unpack", str(archive))
    assert result.code == 1, result.stderr
    assert_one_error(result, "archive manifest.json: JSON nested too deeply")
    assert store_fingerprint(dist.root) == before


@pytest.mark.parametrize("field,value", [
    ("RepoTags", "docker.io/library/one:1"),  # was iterated: the name "-" of its one-letter "names"
    ("RepoTags", {"docker.io/library/one:1": 1}),  # was imported under the key's name
    ("RepoTags", ["docker.io/library/one:1", 7]),  # the 7 was dropped without a word
    ("Layers", [{"digest": "sha256:00"}]),  # was named by its Python repr
], ids=["tags-string", "tags-object", "tags-number", "layers-object"])
def test_docker_manifest_fields_of_the_wrong_type_are_named(dist, imported, tmp_path, field, value):
    with tarfile.open(imported.docker_archive) as src:
        entry = json.loads(src.extractfile("manifest.json").read())[0]
    entry[field] = value
    archive = _docker_archive_with_manifest(imported.docker_archive, tmp_path / "typed.tar",
                                            json.dumps([entry]).encode())
    before = store_fingerprint(dist.root)
    result = dist("images", "import", "--no-unpack", str(archive))
    assert result.code == 1, result.stderr
    assert_one_error(result, f"archive manifest.json[0] {field}: not a list of strings")
    assert store_fingerprint(dist.root) == before
    assert "docker.io/library/one:1" not in dist.ok("images", "-q").lines


@pytest.mark.parametrize("packer", ["bzip2", "xz"])
def test_a_docker_archive_layer_in_a_compression_no_layer_holds_is_refused_at_import(dist, imported, tmp_path,
                                                                                     packer):
    """dist types a docker-save layer by its first bytes: a bzip2 or xz one was typed a plain tar, so
    --no-unpack imported an image whose every use failed with "not a tar archive (invalid header)"."""
    import bz2
    import lzma

    with tarfile.open(imported.docker_archive) as src:
        entry = json.loads(src.extractfile("manifest.json").read())[0]
        first = entry["Layers"][0]
        packed = (bz2.compress if packer == "bzip2" else lzma.compress)(src.extractfile(first).read())
    out = _copied_tar(imported.docker_archive, tmp_path / "packed.tar",
                      lambda m: [_file_member(first, packed)] if m.name == first else None)
    before = store_fingerprint(dist.root)
    result = dist("images", "import", "--no-unpack", str(out))
    assert result.code == 1, result.stderr
    digest = "sha256:" + hashlib.sha256(packed).hexdigest()
    assert_one_error(result, f"layer {digest}: {packer}-compressed (manifest.json[0] {first}): a layer is a plain, "
                             "gzip or zstd tar")
    assert store_fingerprint(dist.root) == before


def test_the_names_of_an_archives_links_are_bounded(dist, tmp_path):
    """Links are held by name until manifest.json is read: a 7 MB gzip of a million symlink headers
    held 1 GB. Past the bound the archive is refused while it streams."""
    import gzip

    bound = 8 * 1024 * 1024  # store.limits.MAX_ARCHIVE_LINK_BYTES
    archive = tmp_path / "links.tar.gz"
    target = "t" * (100 * 1024)
    with gzip.open(archive, "wb") as gz, tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for i in range(bound // len(target) + 2):
            info = tarfile.TarInfo(f"{i}/layer.tar")
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    assert archive.stat().st_size < 1 << 20
    dist.ok("images")
    before = store_fingerprint(dist.root)
    result = dist("images", "import", "--progress", "none", str(archive))
    assert result.code == 1, result.stderr
    assert_one_error(result, f"archive {archive}: the names of its links exceed {bound} bytes")
    assert store_fingerprint(dist.root) == before
