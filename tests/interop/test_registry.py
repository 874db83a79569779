"""dist pull and dist push against Debian's docker-registry (distribution 2.8) on 127.0.0.1.

One registry per session without auth, one behind htpasswd basic auth, one with token auth
from an in-test token server (a real bearer flow: the registry verifies the JWTs it is given);
a façade in front of the plain registry stands in for a slow, failing or lying network.
Every failure checks the store (G12).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from helpers import Dist, need, sans_allocations, store_fingerprint
from registry_support import REGISTRY_BIN, Facade, RawHTTPServer, Registry, TokenServer, htpasswd_auth

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(REGISTRY_BIN is None, reason="docker-registry is not installed (apt-get install "
                       "docker-registry): these tests talk to a real registry"),
]

USER, PASSWORD = "alice", "s3cret-Pa55"
MUTATING = ("POST", "PUT", "PATCH", "DELETE")


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    reg = Registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory):
    need("htpasswd")
    base = tmp_path_factory.mktemp("registry-basic")
    reg = Registry(base, htpasswd_auth(base, USER, PASSWORD))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory):
    need("openssl")
    base = tmp_path_factory.mktemp("registry-token")
    tokens = TokenServer(base, USER, PASSWORD)
    reg = Registry(base, tokens.registry_auth())
    reg.tokens = tokens
    yield reg
    reg.stop()
    tokens.stop()


@pytest.fixture
def facade(registry):
    f = Facade(registry.addr)
    yield f
    f.stop()


@pytest.fixture(scope="session")
def src(tmp_path_factory, busybox_rootfs) -> Dist:
    """A store holding the images the tests push: small (busybox) and big (one 6 MiB random layer)."""
    base = tmp_path_factory.mktemp("src")
    store = Dist(base / "root")
    store.ok("images", "import", "--no-unpack", "--rootfs", str(busybox_rootfs), "--name", "small:1",
             "--config-cmd", "/bin/sh")
    big = base / "big-rootfs"
    big.mkdir()
    (big / "random.bin").write_bytes(os.urandom(6 << 20))
    store.ok("images", "import", "--no-unpack", "--rootfs", str(big), "--name", "big:1")
    return store


@pytest.fixture(scope="session")
def multi(tmp_path_factory, busybox_rootfs, registry) -> dict:
    """An OCI index (linux/amd64 busybox + linux/arm64 placeholder) built with umoci, pushed by skopeo."""
    need("umoci")
    need("skopeo")
    base = tmp_path_factory.mktemp("multi")
    layout = base / "layout"
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("umoci", "init", "--layout", str(layout))
    blobs = layout / "blobs" / "sha256"
    descs = []
    for arch, root in (("amd64", busybox_rootfs), ("arm64", None)):
        if root is None:
            root = base / f"root-{arch}"
            (root / "etc").mkdir(parents=True)
            (root / "etc" / "platform").write_text(f"linux/{arch}\n")
        tar = base / f"{arch}.tar"
        run("tar", "-C", str(root), "--numeric-owner", "-cf", str(tar), ".")
        run("umoci", "new", "--image", f"{layout}:{arch}")
        run("umoci", "raw", "add-layer", "--image", f"{layout}:{arch}", str(tar))
        run("umoci", "config", "--image", f"{layout}:{arch}", "--os", "linux", "--architecture", arch,
            "--config.cmd", "/bin/sh")
        index = json.loads((layout / "index.json").read_text())
        desc = next(m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == arch)
        descs.append({"mediaType": desc["mediaType"], "digest": desc["digest"], "size": desc["size"],
                      "platform": {"architecture": arch, "os": "linux"}})
    index_blob = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                             "manifests": descs}).encode()
    index_digest = "sha256:" + hashlib.sha256(index_blob).hexdigest()
    (blobs / index_digest.split(":")[1]).write_bytes(index_blob)
    index = json.loads((layout / "index.json").read_text())
    index["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": index_digest,
                               "size": len(index_blob), "annotations": {"org.opencontainers.image.ref.name": "all"}})
    (layout / "index.json").write_text(json.dumps(index))
    ref = f"{registry.addr}/multi:1"
    run("skopeo", "copy", "-q", "--all", "--dest-tls-verify=false", f"oci:{layout}:all", f"docker://{ref}")
    per_arch = {}
    for d in descs:
        manifest = json.loads((blobs / d["digest"].split(":")[1]).read_text())
        per_arch[d["platform"]["architecture"]] = [d["digest"], manifest["config"]["digest"],
                                                   *[x["digest"] for x in manifest["layers"]]]
    return {"ref": ref, "index": index_digest, "blobs": per_arch}


def image(store: Dist, name: str) -> dict:
    [found] = [i for i in store.ok("images", "--json").json if i["name"] == name]
    return found


def tree_digests(store: Dist, name: str) -> list[str]:
    def visit(node):
        return [node["digest"], *[d for kid in node.get("children", []) for d in visit(kid)]]
    return visit(store.ok("images", "inspect", "--json", name).json)


def blobs(store: Dist) -> set[str]:
    return set(store.ok("content", "ls", "-q").lines)


def visible(store: Dist) -> dict:
    """What a user sees of a store (the snapshotter's id counter and work directories aside)."""
    return {what: store.ok(*args, "--json").json for what, args in {
        "images": ("images",), "content": ("content", "ls"), "active": ("content", "active"),
        "snapshots": ("snapshot", "ls"), "leases": ("leases", "ls")}.items()}


def one_error(result) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("dist: error: ")]
    assert len(errors) == 1 and result.stderr.splitlines()[-1] == errors[0], result.stderr
    return errors[0]


def writes(reg: Registry, since: int, repo: str) -> list[tuple[str, str, int]]:
    return [r for r in reg.requests(since) if r[0] in MUTATING and f"/v2/{repo}/" in r[1]]


# ---------------------------------------------------------------- round trips


def test_round_trip_push_rmi_pull_keeps_every_digest(registry, src, dist):
    ref = f"{registry.addr}/round/trip:1"
    pushed = src.ok("push", "--plain-http", "--progress", "none", ref, "small:1")
    want = image(src, "docker.io/library/small:1")["target"]["digest"]
    assert pushed.lines == [f"{ref}@{want}"]
    expected_tree = tree_digests(src, "docker.io/library/small:1")

    first = dist.ok("pull", "--plain-http", "--no-unpack", "--progress", "plain", ref)
    assert image(dist, ref)["target"]["digest"] == want
    assert tree_digests(dist, ref) == expected_tree
    # plain progress: one line per blob stored, the manifest's included
    assert sorted(line.split()[0] for line in first.stderr.splitlines() if line.endswith(": done")) == [
        "config", "layer", "manifest"]
    dist.ok("push", "--plain-http", ref)  # push what was pulled: nothing changes
    dist.ok("rmi", ref)
    assert blobs(dist) == set()
    out = dist.ok("pull", "--plain-http", "--no-unpack", "--progress", "none", ref)
    assert out.lines == [ref]
    assert tree_digests(dist, ref) == expected_tree
    assert dist.ok("images", "check", "--json", ref).json[0]["complete"] is True

    by_digest = f"{registry.addr}/round/trip@{want}"
    assert dist.ok("pull", "--plain-http", "--no-unpack", by_digest).lines == [by_digest]
    assert image(dist, by_digest)["target"]["digest"] == want


def test_second_push_uploads_nothing_and_other_repositories_mount(registry, src):
    ref = f"{registry.addr}/twice:1"
    src.ok("push", "--plain-http", ref, "small:1")
    mark = registry.mark()
    src.ok("push", "--plain-http", ref, "small:1")
    again = registry.requests(mark)
    assert again and not [r for r in again if r[0] in MUTATING], again

    mark = registry.mark()
    src.ok("push", "--plain-http", f"{registry.addr}/twice:2", "small:1")
    assert [(m, u.split("/")[-1]) for m, u, _ in writes(registry, mark, "twice")] == [("PUT", "2")]

    mark = registry.mark()
    src.ok("push", "--plain-http", f"{registry.addr}/elsewhere:1", "small:1")
    posts = writes(registry, mark, "elsewhere")
    mounts = [u for m, u, status in posts if m == "POST" and "mount=" in u and status == 201]
    assert len(mounts) == 2, posts  # config and layer, mounted from twice
    assert [u for m, u, _ in posts if m == "PUT" and "/blobs/" in u] == []


@pytest.mark.parametrize("status", [401, 403, 404])
def test_a_refused_mount_falls_back_to_an_upload(registry, src, facade, dist, status):
    """A source label can be stale or name a private repository: the mount's refusal is not the
    push's failure (containerd's pusher re-POSTs without mount/from)."""
    first, second = f"{facade.addr}/refused-{status}/a:1", f"{facade.addr}/refused-{status}/b:1"
    src.ok("push", "--plain-http", first, "small:1")  # records the blobs as being in refused-N/a
    facade.refuse["mount="] = status
    mark = len(facade.log)
    src.ok("push", "--plain-http", second, "small:1")
    sent = [(m, p.split("?")[0].rsplit("/", 3)[-3:]) for m, p, _ in facade.log[mark:]
            if m in MUTATING and "/blobs/" in p]
    mounts = [p for m, p, _ in facade.log[mark:] if "mount=" in p]
    assert len(mounts) == 2 and all(f"from=refused-{status}%2Fa" in p for p in mounts), mounts
    assert [m for m, _ in sent].count("PUT") == 2, sent  # config and layer, uploaded after all
    ref = f"{registry.addr}/refused-{status}/b:1"
    dist.ok("pull", "--plain-http", "--no-unpack", ref)
    assert tree_digests(dist, ref) == tree_digests(src, "docker.io/library/small:1")


def test_pull_unpacks_the_host_platform_unless_told_not_to(registry, src, dist):
    ref = f"{registry.addr}/unpacked:1"
    src.ok("push", "--plain-http", ref, "small:1")
    dist.ok("pull", "--plain-http", "--no-unpack", ref)
    assert image(dist, ref)["unpackedSize"] is None
    dist.ok("pull", "--plain-http", ref)
    assert image(dist, ref)["unpackedSize"] > 0
    assert [s["kind"] for s in dist.ok("snapshot", "ls", "--json").json] == ["committed"]


def _layout_with_wrong_diff_id(base: Path) -> Path:
    """An OCI layout whose config lists a diff_id its layer does not have."""
    import gzip
    import io
    import tarfile

    layout = base / "bad-layout"
    blobs_dir = layout / "blobs" / "sha256"
    blobs_dir.mkdir(parents=True)

    def put(data: bytes) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (blobs_dir / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"hello\n"))
    layer = put(gzip.compress(raw.getvalue(), mtime=0))
    config = put(json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [f"sha256:{'1' * 64}"]}}).encode())
    manifest = put(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                           **layer}]}).encode())
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest,
         "annotations": {"org.opencontainers.image.ref.name": "bad"}}]}))
    return layout


def test_a_pull_whose_unpack_fails_leaves_the_store_as_it_was(registry, src, dist, tmp_path):
    need("skopeo")
    layout = _layout_with_wrong_diff_id(tmp_path)
    ref = f"{registry.addr}/bad-diff-id:1"
    subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:bad", f"docker://{ref}"],
                   check=True, capture_output=True)
    dist.ok("images", "import", "--rootfs", str(src.root.parent / "big-rootfs"), "--name", "keep")
    before = visible(dist)
    result = dist("pull", "--plain-http", ref)
    assert result.code == 1 and "diff" in one_error(result).lower(), result.stderr
    assert visible(dist) == before
    dist.ok("pull", "--plain-http", "--no-unpack", ref)  # the content itself is fine


def test_pull_of_present_blobs_fetches_no_blob_and_localhost_falls_back_to_http(registry, src, dist):
    ref = f"{registry.addr}/again:1"
    src.ok("push", "--plain-http", ref, "small:1")
    dist.ok("pull", "--plain-http", "--no-unpack", ref)
    mark = registry.mark()
    dist.ok("pull", "--no-unpack", ref)  # HTTPS first; a localhost registry without TLS gets plain HTTP
    assert [r for r in registry.requests(mark) if "/blobs/" in r[1]] == []
    # "Localhost" is a host (upper case is no repository's) and local in any case
    dist.ok("pull", "--no-unpack", f"Localhost:{registry.port}/again:1")


# ---------------------------------------------------------------- platforms


def test_multi_platform_pull_keeps_only_the_chosen_platform(multi, dist):
    arm, amd = set(multi["blobs"]["arm64"]), set(multi["blobs"]["amd64"])
    dist.ok("pull", "--plain-http", "--no-unpack", "--platform", "linux/amd64", multi["ref"])
    have = blobs(dist)
    assert amd | {multi["index"]} <= have and not arm & have
    assert image(dist, multi["ref"])["target"]["digest"] == multi["index"]

    dist.ok("pull", "--plain-http", "--no-unpack", "--platform", "linux/arm64", multi["ref"])
    assert arm | amd | {multi["index"]} == blobs(dist)


def test_a_platform_the_image_lacks_is_not_found_alike_for_pull_push_and_import(multi, dist, tmp_path):
    """Exit 3 naming the platform, as export says it (containerd: "no match for platform")."""
    line = f"dist: error: platform linux/s390x: {multi['ref']} has no manifest for it\n"
    pull = dist("pull", "--plain-http", "--no-unpack", "--progress", "none", "--platform", "linux/s390x",
                multi["ref"])
    assert (pull.code, pull.stderr) == (3, line)
    assert dist.ok("images", "-q").stdout == ""
    dist.ok("pull", "--plain-http", "--no-unpack", "--all-platforms", multi["ref"])
    push = dist("push", "--plain-http", "--platform", "linux/s390x", f"{multi['ref']}-copy", multi["ref"])
    assert (push.code, push.stderr) == (3, line)
    dist.ok("images", "export", str(tmp_path / "all.tar"), multi["ref"])
    again = Dist(tmp_path / "again")
    imported = again("images", "import", "--progress", "none", "--platform", "linux/s390x", str(tmp_path / "all.tar"))
    assert (imported.code, imported.stderr) == (3, line)
    assert again.ok("images", "-q").stdout == "" and again.ok("content", "ls", "-q").stdout == ""


def test_export_of_one_platform_of_an_index(multi, dist, tmp_path):
    dist.ok("pull", "--plain-http", "--no-unpack", "--all-platforms", multi["ref"])
    out = tmp_path / "arm.tar"
    dist.ok("images", "export", str(out), multi["ref"], "--platform", "linux/arm64")
    with tarfile.open(out) as tar:
        index = json.load(tar.extractfile("index.json"))
        names = set(tar.getnames())
    assert [m["digest"] for m in index["manifests"]] == [multi["blobs"]["arm64"][0]]
    assert {f"blobs/sha256/{d.split(':')[1]}" for d in multi["blobs"]["arm64"]} <= names
    assert not {f"blobs/sha256/{d.split(':')[1]}" for d in multi["blobs"]["amd64"]} & names
    r = dist("images", "export", str(tmp_path / "s390x.tar"), multi["ref"], "--platform", "linux/s390x")
    assert (r.code, r.stderr) == (3, f"dist: error: platform linux/s390x: {multi['ref']} has no manifest for it\n")
    r = dist("images", "export", str(tmp_path / "both.tar"), multi["ref"], "--platform", "linux/arm64",
             "--all-platforms")
    assert r.code == 2 and not (tmp_path / "both.tar").exists() and not (tmp_path / "s390x.tar").exists()


def test_all_platforms_pull_and_push_of_an_index(multi, registry, dist):
    dist.ok("pull", "--plain-http", "--no-unpack", "--all-platforms", multi["ref"])
    assert set(multi["blobs"]["arm64"]) | set(multi["blobs"]["amd64"]) | {multi["index"]} == blobs(dist)
    copy = f"{registry.addr}/multi-copy:1"
    dist.ok("push", "--plain-http", copy, multi["ref"])
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{copy}"],
                         check=True, capture_output=True).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == multi["index"]


def test_push_of_a_partly_pulled_index_needs_a_platform(multi, registry, dist):
    dist.ok("pull", "--plain-http", "--no-unpack", "--platform", "linux/amd64", multi["ref"])
    before = store_fingerprint(dist.root)
    whole = dist("push", "--plain-http", f"{registry.addr}/partial:1", multi["ref"])
    assert whole.code == 1 and "missing" in one_error(whole) and "--platform" in one_error(whole)
    assert store_fingerprint(dist.root) == before
    one = dist.ok("push", "--plain-http", "--platform", "linux/amd64", f"{registry.addr}/partial:1", multi["ref"])
    assert one.lines == [f"{registry.addr}/partial:1@{multi['blobs']['amd64'][0]}"]


# ---------------------------------------------------------------- skopeo both ways


def test_skopeo_reads_what_dist_pushed(registry, src, tmp_path):
    need("skopeo")
    ref = f"{registry.addr}/for-skopeo:1"
    src.ok("push", "--plain-http", ref, "small:1")
    want = image(src, "docker.io/library/small:1")["target"]["digest"]
    digest = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}", f"docker://{ref}"],
                            check=True, capture_output=True, text=True).stdout.strip()
    assert digest == want
    out = tmp_path / "oci"
    subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"oci:{out}:x"],
                   check=True, capture_output=True)
    index = json.loads((out / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [want]


def test_dist_pulls_a_docker_schema2_image_skopeo_pushed(registry, dist, umoci_image):
    need("skopeo")
    ref = f"{registry.addr}/from-skopeo:v2s2"
    subprocess.run(["skopeo", "copy", "-q", "--format", "v2s2", "--dest-tls-verify=false",
                    f"oci:{umoci_image.layout}:t", f"docker://{ref}"], check=True, capture_output=True)
    digest = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}", f"docker://{ref}"],
                            check=True, capture_output=True, text=True).stdout.strip()
    dist.ok("pull", "--plain-http", "--no-unpack", ref)
    pulled = image(dist, ref)
    assert pulled["target"]["digest"] == digest
    assert pulled["target"]["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert pulled["complete"] is True


# ---------------------------------------------------------------- errors


def test_missing_references_exit_3_and_leave_the_store_alone(registry, src, dist):
    dist.ok("images", "import", "--no-unpack", "--rootfs", str(src.root.parent / "big-rootfs"), "--name", "keep")
    before = store_fingerprint(dist.root)
    for ref in (f"{registry.addr}/round/nope:1", f"{registry.addr}/never-pushed:1",
                f"{registry.addr}/round/trip@sha256:{'0' * 64}"):
        result = dist("pull", "--plain-http", "--no-unpack", ref)
        assert result.code == 3, result.stderr
        assert one_error(result) .startswith(f"dist: error: image {ref}: not found in registry {registry.addr}")
    local = dist("push", "--plain-http", f"{registry.addr}/x:1", "docker.io/library/absent:1")
    assert local.code == 3 and "absent" in one_error(local)
    assert store_fingerprint(dist.root) == before


SCHEMA1 = json.dumps({"schemaVersion": 1, "name": "old", "tag": "1", "architecture": "amd64",
                      "fsLayers": [{"blobSum": "sha256:" + "a" * 64}],
                      "history": [{"v1Compatibility": "{}"}]}).encode()


@pytest.mark.parametrize("content_type", ["application/vnd.docker.distribution.manifest.v1+prettyjws",
                                          "application/json"])
def test_a_schema_1_manifest_is_refused_by_name(facade, dist, content_type):
    facade.canned["/old/manifests/1"] = (content_type, SCHEMA1)
    ref = f"{facade.addr}/old:1"
    result = dist("pull", "--plain-http", ref)
    assert (result.code, one_error(result)) == (1, f"dist: error: image {ref}: it is a Docker schema 1 manifest,"
                                                   " which dist does not support (push it again with a current tool)")
    assert dist.ok("content", "ls", "-q").stdout == "" and dist.ok("content", "active", "-q").stdout == ""


def test_unreachable_registry_is_exit_1(dist):
    result = dist("pull", "--plain-http", "--no-unpack", "127.0.0.1:1/x:1")
    assert result.code == 1 and "127.0.0.1:1" in one_error(result)


def test_a_registry_that_lies_about_a_blob_fails_the_pull_and_stores_nothing(registry, src, facade, dist):
    ref = f"{registry.addr}/liar:1"
    src.ok("push", "--plain-http", ref, "small:1")
    manifest = json.loads(src.ok("content", "get", image(src, "docker.io/library/small:1")["target"]["digest"]).stdout)
    layer = manifest["layers"][0]["digest"]
    dist.ok("images", "import", "--no-unpack", "--rootfs", str(src.root.parent / "big-rootfs"), "--name", "keep")
    before = store_fingerprint(dist.root)
    facade.corrupt.add(layer)
    result = dist("pull", "--plain-http", "--no-unpack", f"{facade.addr}/liar:1")
    assert result.code == 1
    assert f"blob {layer}: digest mismatch" in one_error(result)
    assert store_fingerprint(dist.root) == before
    assert dist.ok("content", "active", "--json").json == []


def test_a_manifest_that_does_not_match_its_digest_is_refused(registry, src, facade, dist):
    ref = f"{registry.addr}/liar2:1"
    src.ok("push", "--plain-http", ref, "small:1")
    digest = image(src, "docker.io/library/small:1")["target"]["digest"]
    facade.corrupt.update({digest, "1"})
    by_digest = dist("pull", "--plain-http", "--no-unpack", f"{facade.addr}/liar2@{digest}")
    assert by_digest.code == 1
    assert one_error(by_digest).startswith(f"dist: error: manifest {digest}: registry {facade.addr} sent content "
                                           "that hashes to sha256:")
    by_tag = dist("pull", "--plain-http", "--no-unpack", f"{facade.addr}/liar2:1")
    assert by_tag.code == 1 and f"registry {facade.addr} says {digest} but its content hashes to" in one_error(by_tag)
    assert blobs(dist) == set()


@pytest.mark.parametrize("location, why", [
    ("/v2/loop/blobs/{layer}", "more than 10 redirects (the last to http://{facade}"),
    ("ftp://u:pw@127.0.0.1:1/{layer}?sig=SECRET", "redirected to ftp://127.0.0.1:1, which is not HTTP(S)"),
], ids=["loop", "ftp"])
def test_a_blob_that_fails_before_its_first_byte_leaves_no_ingest(registry, src, facade, dist, location, why):
    """A download that never got a byte (a redirect loop, a redirect to ftp://) has nothing to
    resume: like a cancelled one, it leaves no empty ingest behind for `content active` to list."""
    ref = f"{registry.addr}/loop:1"
    src.ok("push", "--plain-http", ref, "small:1")
    manifest = json.loads(src.ok("content", "get", image(src, "docker.io/library/small:1")["target"]["digest"]).stdout)
    layer = manifest["layers"][0]["digest"]
    facade.redirect[layer] = location.format(layer=layer)
    dist.ok("images", "import", "--no-unpack", "--rootfs", str(src.root.parent / "big-rootfs"), "--name", "keep")
    before = store_fingerprint(dist.root)
    result = dist("pull", "--plain-http", "--no-unpack", f"{facade.addr}/loop:1")
    assert result.code == 1
    assert one_error(result).startswith(f"dist: error: registry {facade.addr}: {why.format(facade=facade.addr)}")
    assert "SECRET" not in result.stderr and "pw@" not in result.stderr
    assert dist.ok("content", "active", "--json").json == []
    assert store_fingerprint(dist.root) == before


def test_5xx_answers_are_retried(registry, src, facade, dist):
    ref = f"{registry.addr}/flaky:1"
    src.ok("push", "--plain-http", ref, "small:1")
    facade.fail["/manifests/1"] = 2
    dist.ok("pull", "--plain-http", "--no-unpack", f"{facade.addr}/flaky:1")
    assert [m for m, p, _ in facade.log if p.endswith("/manifests/1")] == ["GET"] * 3


def test_an_rmi_during_a_push_takes_none_of_what_it_sends(facade, dist, tmp_path):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    (rootfs / "random.bin").write_bytes(os.urandom(1 << 20))  # blobs the registry cannot have yet
    dist.ok("images", "import", "--no-unpack", "--rootfs", str(rootfs), "--name", "leaving:1")
    facade.hold.add("/blobs/uploads/")
    cmd = [sys.executable, "-m", "dist_tool", "--root", str(dist.root), "--state", str(dist.state),
           "push", "--plain-http", "--progress", "none", f"{facade.addr}/leaving:1", "leaving:1"]
    push = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert facade.held.wait(30), "the push never started an upload"
        assert "freed" in dist.ok("rmi", "leaving:1").stdout + dist.ok("gc").stdout
    finally:
        facade.release.set()
        out, err = push.communicate(timeout=60)
    assert (push.returncode, err) == (0, ""), err
    pulled = Dist(tmp_path / "again")
    pulled.ok("pull", "--plain-http", "--no-unpack", out.strip())
    assert pulled.ok("images", "check", "--verify", "--json").json[0]["complete"]
    dist.ok("gc")  # the push's lease ended with it: the next collection frees what it held
    assert dist.ok("content", "ls", "-q").stdout == ""


# ---------------------------------------------------------------- resume


def _ingest_sizes(root: Path) -> list[int]:
    return [p.stat().st_size for p in (root / "content" / "ingest").glob("*/data")]


def _committed(root: Path, digest: str) -> bool:
    import sqlite3

    db = root / "metadata.db"
    if not db.exists():
        return False
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT 1 FROM blobs WHERE digest = ?", (digest,)).fetchone() is not None
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


def test_a_pull_killed_half_way_resumes_without_refetching(registry, src, facade, dist):
    ref = f"{registry.addr}/resume:1"
    src.ok("push", "--plain-http", ref, "big:1")
    manifest = json.loads(src.ok("content", "get", image(src, "docker.io/library/big:1")["target"]["digest"]).stdout)
    layer = manifest["layers"][0]
    config = manifest["config"]["digest"]
    facade.stall[layer["digest"]] = 2 << 20
    cmd = [sys.executable, "-m", "dist_tool", "--root", str(dist.root), "--state", str(dist.state),
           "pull", "--plain-http", "--no-unpack", "--progress", "none", f"{facade.addr}/resume:1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while max(_ingest_sizes(dist.root), default=0) < 2 << 20 or not _committed(dist.root, config):
            assert proc.poll() is None and time.monotonic() < deadline, "the pull never got half-way"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    held = max(_ingest_sizes(dist.root))
    assert 0 < held < layer["size"]
    active = dist.ok("content", "active", "--json").json
    assert [(a["ref"], a["offset"]) for a in active] == [(f"pull-{layer['digest']}", held)]

    facade.release.set()
    del facade.stall[layer["digest"]]
    first = len(facade.log)
    dist.ok("pull", "--plain-http", "--no-unpack", f"{facade.addr}/resume:1")
    again = facade.log[first:]
    blob_gets = [(p.rsplit("/", 1)[-1], rng) for m, p, rng in again if m == "GET" and "/blobs/" in p]
    assert blob_gets == [(layer["digest"], f"bytes={held}-")], again
    assert config not in {p.rsplit("/", 1)[-1] for _, p, _ in again}
    assert tree_digests(dist, f"{facade.addr}/resume:1") == tree_digests(src, "docker.io/library/big:1")
    assert dist.ok("content", "active", "--json").json == []


def test_a_pull_whose_blob_keeps_breaking_off_keeps_what_came_for_the_next(registry, src, facade, dist):
    """Every GET of the layer breaks off after 256 KiB (the connection closes, the body short of
    its Content-Length). The pull asks for the rest with Range each time and gives up after its
    attempts; what came stays an ingest, as a killed pull's does, and the next pull asks only for
    the rest. Taken for a lying registry, those bytes were thrown away (README: partial downloads
    stay resumable ingests)."""
    from dist_tool.remote.registry import MAX_ATTEMPTS

    src.ok("push", "--plain-http", f"{registry.addr}/breaks:1", "big:1")
    manifest = json.loads(src.ok("content", "get", image(src, "docker.io/library/big:1")["target"]["digest"]).stdout)
    layer = manifest["layers"][0]
    piece = 256 << 10
    assert layer["size"] > MAX_ATTEMPTS * piece
    facade.release.set()  # a stalled GET ends at once: its connection closes after `piece` bytes
    facade.stall[layer["digest"]] = piece
    failed = dist("pull", "--plain-http", "--no-unpack", "--progress", "none", f"{facade.addr}/breaks:1")
    assert failed.code == 1
    assert failed.stderr == (f"dist: error: blob {layer['digest']}: registry {facade.addr} sent "
                             f"{MAX_ATTEMPTS * piece} of {layer['size']} bytes\n")
    active = dist.ok("content", "active", "--json").json
    assert [(a["ref"], a["offset"]) for a in active] == [(f"pull-{layer['digest']}", MAX_ATTEMPTS * piece)]
    assert dist.ok("images", "-q").lines == []

    del facade.stall[layer["digest"]]
    first = len(facade.log)
    dist.ok("pull", "--plain-http", "--no-unpack", f"{facade.addr}/breaks:1")
    layer_gets = [rng for m, p, rng in facade.log[first:] if m == "GET" and p.endswith(layer["digest"])]
    assert layer_gets == [f"bytes={MAX_ATTEMPTS * piece}-"]  # the config, collected with the failure, came again
    assert tree_digests(dist, f"{facade.addr}/breaks:1") == tree_digests(src, "docker.io/library/big:1")
    assert dist.ok("content", "active", "--json").json == []


def _pushed_layer_left_in_an_ingest(registry, src, dist, name: str, keep: float) -> tuple[dict, bytes]:
    """Pushes big:1 as NAME and leaves the first ``keep`` of its layer in ``dist``'s ingest for
    that layer, as a pull killed there would; returns the layer's descriptor and bytes."""
    from dist_tool.store.content import LocalContentStore
    from dist_tool.store.metadata import Metadata

    src.ok("push", "--plain-http", f"{registry.addr}/{name}", "big:1")
    manifest = json.loads(src.ok("content", "get", image(src, "docker.io/library/big:1")["target"]["digest"]).stdout)
    layer = manifest["layers"][0]
    data = subprocess.run([sys.executable, "-m", "dist_tool", "--root", str(src.root), "content", "get",
                           layer["digest"]], capture_output=True, check=True).stdout
    meta = Metadata(str(dist.root))
    with LocalContentStore(str(dist.root), meta).writer(f"pull-{layer['digest']}") as writer:
        writer.write(data[: int(len(data) * keep)])
    meta.close()
    return layer, data


def test_a_pull_killed_after_the_last_byte_verifies_what_it_has(registry, src, facade, dist):
    """A kill between the last byte and the commit leaves a whole blob in the ingest: the next
    pull verifies and commits it (no Range past the end, which a registry answers with 416)."""
    layer, data = _pushed_layer_left_in_an_ingest(registry, src, dist, "whole:1", keep=1.0)
    assert dist.ok("content", "active", "--json").json[0]["offset"] == layer["size"]
    first = len(facade.log)
    dist.ok("pull", "--plain-http", "--no-unpack", f"{facade.addr}/whole:1")
    again = facade.log[first:]
    assert layer["digest"] not in {p.rsplit("/", 1)[-1] for m, p, _ in again if m == "GET"}, again
    assert tree_digests(dist, f"{facade.addr}/whole:1") == tree_digests(src, "docker.io/library/big:1")
    assert dist.ok("content", "active", "--json").json == []


def test_a_resume_answered_from_the_wrong_byte_starts_the_blob_again(registry, src, facade, dist):
    """A registry (or a proxy) that answers a Range with bytes from elsewhere gets one more,
    plain GET: the partial ingest is neither trusted nor left for every later pull to trip on."""
    layer, data = _pushed_layer_left_in_an_ingest(registry, src, dist, "wrongrange:1", keep=0.5)
    facade.wrong_range.add(layer["digest"])
    first = len(facade.log)
    dist.ok("pull", "--plain-http", "--no-unpack", f"{facade.addr}/wrongrange:1")
    gets = [rng for m, p, rng in facade.log[first:] if m == "GET" and p.endswith(layer["digest"])]
    assert gets == [f"bytes={len(data) // 2}-", None]
    assert tree_digests(dist, f"{facade.addr}/wrongrange:1") == tree_digests(src, "docker.io/library/big:1")
    assert dist.ok("content", "active", "--json").json == []


# ---------------------------------------------------------------- auth


def test_basic_auth(basic_registry, src, dist, tmp_path):
    ref = f"{basic_registry.addr}/private:1"
    anonymous = src("push", "--plain-http", ref, "small:1")
    assert anonymous.code == 1
    assert one_error(anonymous) == (f"dist: error: image {ref}: 401 Unauthorized from {basic_registry.addr}: "
                                    "authentication required")
    wrong = src("push", "--plain-http", "--user", f"{USER}:not-{PASSWORD}", ref, "small:1")
    assert wrong.code == 1 and "credentials rejected" in one_error(wrong)
    assert f"not-{PASSWORD}" not in wrong.stderr + wrong.stdout
    src.ok("push", "--plain-http", "--user", f"{USER}:{PASSWORD}", ref, "small:1")

    # the password on stdin (not a terminal)
    dist.ok("pull", "--plain-http", "--no-unpack", "--user", USER, ref, input=f"{PASSWORD}\n".encode())
    dist.ok("rmi", ref)

    # the Docker config: auths
    config = tmp_path / "docker"
    config.mkdir()
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {basic_registry.addr: {"auth": token}}}))
    dist.ok("pull", "--plain-http", "--no-unpack", ref, env={"DOCKER_CONFIG": str(config)})
    dist.ok("rmi", ref)
    (config / "config.json").write_text(json.dumps({"auths": {basic_registry.addr: {"auth": token}}})[:-1])
    broken = dist("pull", "--plain-http", "--no-unpack", ref, env={"DOCKER_CONFIG": str(config)})
    assert broken.code == 1
    assert one_error(broken).startswith(f"dist: error: Docker config {config}/config.json: not valid JSON (line 1,")
    assert token not in broken.stderr

    # the Docker config: a credential helper
    helper_dir = tmp_path / "bin"
    helper_dir.mkdir()
    helper = helper_dir / "docker-credential-disttest"
    helper.write_text(f"#!/bin/sh\nread server\n[ \"$server\" = {basic_registry.addr} ] || exit 1\n"
                      f"printf '{{\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'\n")
    helper.chmod(0o755)
    (config / "config.json").write_text(json.dumps({"credHelpers": {basic_registry.addr: "disttest"}}))
    env = {"DOCKER_CONFIG": str(config), "PATH": f"{helper_dir}:{os.environ['PATH']}"}
    out = dist.ok("pull", "--plain-http", "--no-unpack", ref, env=env)
    assert PASSWORD not in out.stderr + out.stdout


def test_a_401_without_a_challenge_says_the_credentials_were_never_offered(registry, src, facade, dist, tmp_path):
    """Nothing asked for the credentials, so none were sent; "credentials rejected" sent people to
    check a password the registry never saw."""
    ref = f"{facade.addr}/nochallenge:1"
    src.ok("push", "--plain-http", f"{registry.addr}/nochallenge:1", "small:1")
    facade.refuse["/nochallenge/"] = 401
    (tmp_path / "config.json").write_text(json.dumps({"auths": {facade.addr: {
        "auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}}))
    expected = (f"dist: error: image {ref}: 401 Unauthorized from {facade.addr}: no WWW-Authenticate challenge "
                "came with it, so the credentials were not offered (the registry refused anonymous access)")
    for args, env in ((("--user", f"{USER}:{PASSWORD}"), None), ((), {"DOCKER_CONFIG": str(tmp_path)})):
        failed = dist("pull", "--plain-http", "--no-unpack", *args, ref, env=env)
        assert failed.code == 1 and one_error(failed) == expected
        assert PASSWORD not in failed.stderr
    anonymous = dist("pull", "--plain-http", "--no-unpack", ref, env={"DOCKER_CONFIG": str(tmp_path / "none")})
    assert one_error(anonymous) == f"dist: error: image {ref}: 401 Unauthorized from {facade.addr}: " \
                                   "authentication required"


def test_user_without_password_and_stdin_at_its_end_is_a_usage_error(basic_registry, src, dist):
    """No password was given: sending "" got a misleading "credentials rejected" from the registry."""
    ref = f"{basic_registry.addr}/private-stdin:1"
    src.ok("push", "--plain-http", "--user", f"{USER}:{PASSWORD}", ref, "small:1")
    mark = basic_registry.mark()
    ended = dist("pull", "--plain-http", "--no-unpack", "--user", USER, ref, input=b"")
    assert ended.code == 2
    assert one_error(ended) == f"dist: error: --user {USER}: no :PASS given and stdin ended before a password line"
    assert basic_registry.requests(mark) == []  # asked for nothing
    # a last line without its newline is the password
    dist.ok("pull", "--plain-http", "--no-unpack", "--user", USER, ref, input=PASSWORD.encode())


def test_ctrl_d_at_the_password_prompt_is_the_same_usage_error(basic_registry, dist):
    """^D at getpass's prompt ended dist with status 130 and no word, as if interrupted."""
    import pty
    import select

    argv = [sys.executable, "-m", "dist_tool", "--root", str(dist.root), "--state", str(dist.state), "pull",
            "--plain-http", "--no-unpack",
            "--user", USER, f"{basic_registry.addr}/private:1"]
    env = {**os.environ, "DIST_NAMESPACE": "default", "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("DIST_ADDRESS", None)
    pid, master = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execvpe(argv[0], argv, env)
    out = b""
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child is gone
                    break
                if not chunk:
                    break
                if b"Password for" not in out and b"Password for" in out + chunk:
                    os.write(master, b"\x04")
                out += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(master)
    assert os.waitstatus_to_exitcode(status) == 2, out
    assert f"dist: error: --user {USER}: no :PASS given and stdin ended before a password line".encode() in out


def test_token_auth(token_registry, src, dist):
    ref = f"{token_registry.addr}/tokens/app:1"
    tokens = token_registry.tokens
    anonymous = src("push", "--plain-http", ref, "small:1")
    assert anonymous.code == 1 and "401 Unauthorized" in one_error(anonymous)
    src.ok("push", "--plain-http", "--user", f"{USER}:{PASSWORD}", ref, "small:1")
    assert (USER, ["repository:tokens/app:pull,push"]) in tokens.requests
    wrong = src("push", "--plain-http", "--user", f"{USER}:nope", f"{token_registry.addr}/tokens/app:2", "small:1")
    assert wrong.code == 1 and "401 from token server" in one_error(wrong) and "nope" not in wrong.stderr

    tokens.requests.clear()
    dist.ok("pull", "--plain-http", "--no-unpack", ref)  # anonymous pulls get a pull token
    assert tokens.requests == [(None, ["repository:tokens/app:pull"])]
    assert image(dist, ref)["target"]["digest"] == image(src, "docker.io/library/small:1")["target"]["digest"]


@pytest.mark.parametrize(("status", "user"), [(404, ""), (400, ""), (405, USER)])
def test_an_identity_token_gets_its_token_by_get_from_a_token_server_without_post(
        token_registry, src, dist, tmp_path, status, user):
    """The OAuth2 POST refused as containerd expects of GCR (404), ACR (400) or a server that
    knows the user (405): dist failed "token server answered 404" instead of asking by GET."""
    tokens = token_registry.tokens
    ref = f"{token_registry.addr}/identity/app:1"
    src.ok("push", "--plain-http", "--user", f"{USER}:{PASSWORD}", ref, "small:1")
    (tmp_path / "config.json").write_text(json.dumps({"auths": {token_registry.addr: {
        "identitytoken": "refresh-7q", **({"username": user, "password": ""} if user else {})}}}))
    tokens.post_status, tokens.identity_token, tokens.posts = status, "refresh-7q", 0
    tokens.requests.clear()
    try:
        out = dist.ok("pull", "--plain-http", "--no-unpack", ref, env={"DOCKER_CONFIG": str(tmp_path)})
    finally:
        tokens.post_status, tokens.identity_token = 501, None
    assert tokens.posts == 1 and (USER, ["repository:identity/app:pull"]) in tokens.requests
    assert "refresh-7q" not in out.stderr + out.stdout
    assert image(dist, ref)["target"]["digest"] == image(src, "docker.io/library/small:1")["target"]["digest"]


def test_an_identity_token_is_not_sent_by_get_when_the_post_fails_otherwise(token_registry, src, dist, tmp_path):
    """501 (no such method) is not one of containerd's fallback statuses: it is the error."""
    ref = f"{token_registry.addr}/identity/app:2"
    src.ok("push", "--plain-http", "--user", f"{USER}:{PASSWORD}", ref, "small:1")
    (tmp_path / "config.json").write_text(json.dumps({"auths": {token_registry.addr: {"identitytoken": "r-8"}}}))
    failed = dist("pull", "--plain-http", "--no-unpack", ref, env={"DOCKER_CONFIG": str(tmp_path)})
    assert failed.code == 1
    assert one_error(failed) == (f"dist: error: registry {token_registry.addr}: token server "
                                 f"{token_registry.tokens.realm.rsplit('/', 1)[0]} answered 501")


def test_a_token_refused_for_the_mount_source_falls_back_to_an_upload(token_registry, src, dist):
    """An auth service may refuse a token that adds pull on the source repository (private,
    or the label is stale): the push asks for its own repository's scope alone and uploads."""
    tokens = token_registry.tokens
    user = ("--user", f"{USER}:{PASSWORD}")
    src.ok("push", "--plain-http", *user, f"{token_registry.addr}/mount/a:1", "small:1")
    ref = f"{token_registry.addr}/mount/b:1"
    tokens.refuse_many = True
    tokens.requests.clear()
    mark = token_registry.mark()
    try:
        pushed = src.ok("push", "--plain-http", *user, ref, "small:1")
    finally:
        tokens.refuse_many = False
    assert pushed.lines == [f"{ref}@{image(src, 'docker.io/library/small:1')['target']['digest']}"]
    assert (USER, ["repository:mount/b:pull,push", "repository:mount/a:pull"]) in tokens.requests
    puts = [u for m, u, status in writes(token_registry, mark, "mount/b")
            if m == "PUT" and "/blobs/" in u and status == 201]
    assert len(puts) == 2, token_registry.requests(mark)  # config and layer, uploaded
    dist.ok("pull", "--plain-http", "--no-unpack", *user, ref)
    assert tree_digests(dist, ref) == tree_digests(src, "docker.io/library/small:1")


def test_a_layer_larger_than_the_free_space_is_refused_before_a_byte(facade, dist):
    """The registry's descriptor says how big a layer is: a pull wrote until the disk was full
    (for every process on it) before finding out."""
    import hashlib

    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "c" * 64]}}).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    huge = "sha256:" + "d" * 64
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": config_digest, "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": huge, "size": 300 << 40}]}).encode()
    facade.canned["/huge/manifests/1"] = ("application/vnd.oci.image.manifest.v1+json", manifest)
    facade.canned[f"/huge/blobs/{config_digest}"] = ("application/octet-stream", config)
    dist.ok("images")
    before = store_fingerprint(dist.root)
    result = dist("pull", "--plain-http", "--progress", "none", f"{facade.addr}/huge:1")
    assert result.code == 1
    assert one_error(result).startswith(f"dist: error: blob {huge}: needs {300 << 40} bytes and the store's file "
                                        "system has ")
    assert not any(f"/blobs/{huge}" in path for _, path, _ in facade.log)
    assert dist.ok("content", "active", "-q").lines == [] and dist.ok("leases", "-q").lines == []
    assert sans_allocations(store_fingerprint(dist.root)) == sans_allocations(before)


class SlowRegistry(RawHTTPServer):
    """A registry that has nothing, refuses the PUT of the blob ``refused`` with 400 at once and
    reads every other blob's PUT slowly (64 KiB per 0.1 s); counts the body bytes it read."""

    def __init__(self, refused: str) -> None:
        self.refused = refused
        self.read = 0
        super().__init__()

    def answer(self, conn, body, method: bytes, target: bytes, length: int) -> bool:
        if method == b"POST":
            answer = b"202 Accepted\r\nLocation: /v2/slow/blobs/uploads/u"
        elif method == b"PUT" and self.refused.encode() in target:
            answer = b"400 Bad Request"
        elif method == b"PUT":
            while length > 0:
                got = body.read(min(length, 64 << 10))
                if not got:
                    return False
                self.read += len(got)
                length -= len(got)
                time.sleep(0.1)
            answer = b"201 Created"
        else:
            answer = b"404 Not Found"
        body.read(length)
        conn.sendall(b"HTTP/1.1 " + answer + b"\r\nContent-Length: 0\r\n\r\n")
        return True


def test_a_failed_upload_stops_the_others_of_the_push(src):
    """The first failure did not cancel the rest: the push sent the whole 6 MiB layer to a slow
    registry (about 10 s here) before it said that the config had been refused."""
    config = src.ok("images", "inspect", "--json", "big:1").json["children"][0]["digest"]
    size = 6 << 20
    reg = SlowRegistry(config.split(":")[1])
    try:
        started = time.monotonic()
        failed = src("push", "--plain-http", f"{reg.addr}/slow:1", "big:1")
        took = time.monotonic() - started
    finally:
        reg.stop()
    assert failed.code == 1 and "answered 400 Bad Request" in one_error(failed)
    assert reg.read < size // 2 and took < 6, (reg.read, took)


def test_a_push_the_token_does_not_allow_is_access_denied_not_rejected_credentials(token_registry, src):
    """The token server accepted the credentials and granted pull only (someone else's repository):
    the registry's insufficient_scope was reported as "credentials rejected"."""
    tokens = token_registry.tokens
    ref = f"{token_registry.addr}/theirs/app:1"
    tokens.pull_only.add("theirs/app")
    try:
        denied = src("push", "--plain-http", "--user", f"{USER}:{PASSWORD}", ref, "small:1")
    finally:
        tokens.pull_only.discard("theirs/app")
    assert denied.code == 1
    assert one_error(denied) == (f"dist: error: image {ref}: 401 Unauthorized from {token_registry.addr}: "
                                 "access denied: the credentials were accepted, but not for "
                                 "repository:theirs/app:pull,push (insufficient_scope)")
