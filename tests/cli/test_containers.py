"""dist container create/ls/info/label/rm through the real entry point: SPEC's fields, the spec
against the image config, exit codes, namespaces, and what rm and rmi leave behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import Dist, make_busybox_rootfs, need, store_fingerprint

LS_KEYS = {"id", "image", "runtime", "snapshotter", "snapshotKey", "labels", "createdAt", "updatedAt"}
BUSYBOX = "docker.io/library/busybox:latest"
PASSWD_EXTRA = "bob:x:1000:1000:bob:/home/bob:/bin/sh\nwww:x:33:34::/var/www:/bin/false\n"
GROUP_EXTRA = "bob:x:1000:\nwww:x:34:\nstaff:x:50:bob,www\naudio:x:63:bob\n"


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory) -> Path:
    path = make_busybox_rootfs(tmp_path_factory.mktemp("ctr") / "rootfs")
    with open(path / "etc" / "passwd", "a") as f:
        f.write(PASSWD_EXTRA)
    with open(path / "etc" / "group", "a") as f:
        f.write(GROUP_EXTRA)
    (path / "srv").mkdir()
    return path


@pytest.fixture(scope="module")
def configured_archive(tmp_path_factory, rootfs) -> tuple[Path, dict]:
    """An image whose config sets every field a container takes: Entrypoint, Cmd, Env, WorkingDir,
    User, and Labels."""
    need("umoci")
    need("skopeo")
    base = tmp_path_factory.mktemp("configured")
    layout, layer = base / "layout", base / "layer.tar"
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("umoci", "init", "--layout", str(layout))
    run("umoci", "new", "--image", f"{layout}:t")
    run("tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(layer), ".")
    run("umoci", "raw", "add-layer", "--image", f"{layout}:t", str(layer))
    run("umoci", "config", "--image", f"{layout}:t", "--os", "linux", "--config.entrypoint", "/bin/sh",
        "--config.cmd", "-c", "--config.cmd", "echo from-image", "--config.env", "PATH=/bin:/usr/bin",
        "--config.env", "MODE=image", "--config.env", "KEEP=1", "--config.workingdir", "/srv",
        "--config.user", "www", "--config.label", "app=image", "--config.label", "tier=base")
    archive = base / "configured.tar"
    run("skopeo", "copy", "-q", f"oci:{layout}:t", f"oci-archive:{archive}:docker.io/library/configured:1")
    index = json.loads((layout / "index.json").read_text())
    blob = lambda d: json.loads((layout / "blobs" / "sha256" / d.split(":")[1]).read_text())  # noqa: E731
    manifest = blob(index["manifests"][0]["digest"])
    return archive, blob(manifest["config"]["digest"])["config"]


@pytest.fixture(scope="module")
def template(tmp_path_factory, rootfs) -> Path:
    """A store holding the busybox image (unpacked), imported once and copied for each test."""
    root = tmp_path_factory.mktemp("template") / "root"
    Dist(root).ok("images", "import", "--rootfs", str(rootfs), "--name", "busybox", "--config-cmd", "/bin/sh")
    return root


@pytest.fixture
def bb(dist, template):
    shutil.copytree(template, dist.root, symlinks=True)
    return dist


def ls(dist, *filters) -> list[dict]:
    return dist.ok("container", "ls", "--json", *filters).json


def info(dist, cid: str, *extra: str) -> dict:
    return dist.ok("container", "info", cid, "--json", *extra).json


def test_create_ls_info_with_spec_fields(bb):
    assert bb.ok("container", "create", "busybox", "web", "--label", "app=web", "--label", "tier=front").lines == \
        ["web"]
    [record] = ls(bb)
    assert set(record) == LS_KEYS
    assert record["id"] == "web" and record["image"] == BUSYBOX
    assert record["runtime"] == {"name": "io.containerd.runc.v2", "options": {}}
    assert record["snapshotKey"] == "web" and record["snapshotter"]
    assert record["labels"] == {"app": "web", "tier": "front"}
    assert record["createdAt"] == record["updatedAt"] and record["createdAt"].endswith("Z")
    full = info(bb, "web")
    assert set(full) >= LS_KEYS | {"spec", "lastExit"} and full["lastExit"] is None
    assert full["spec"]["process"]["args"] == ["/bin/sh"]
    assert full["spec"]["root"] == {"path": "rootfs", "readonly": False}
    assert bb.ok("containers", "-q").lines == ["web"] and bb.ok("c", "ls", "-q").lines == ["web"]
    table = bb.ok("c").lines
    assert table[0].split() == ["ID", "IMAGE", "RUNTIME", "LABELS", "CREATED"] and table[1].startswith("web ")
    assert "SPEC:" in bb.ok("c", "info", "web").stdout


def test_everything_after_double_dash_is_the_command(bb):
    bb.ok("container", "create", "busybox", "web", "--", "sh", "-c", "echo hi", "--label", "x=y")
    spec = info(bb, "web")["spec"]
    assert spec["process"]["args"] == ["sh", "-c", "echo hi", "--label", "x=y"]
    assert info(bb, "web")["labels"] == {}


def test_every_override_lands_in_the_spec(bb, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    bb.ok("c", "create", "busybox", "web", "--env", "A=1", "--env", "PATH=/bin", "--cwd", "/tmp",
          "--user", "bob", "--mount", f"type=bind,src={data},dst=/data,options=ro:rbind", "--net-host",
          "--read-only", "--tty", "--runtime", "io.containerd.runsc.v1", "--entrypoint", "/bin/echo",
          "--", "hello")
    full = info(bb, "web")
    p = full["spec"]["process"]
    assert p["args"] == ["/bin/echo", "hello"]
    assert p["env"] == ["PATH=/bin", "A=1", "TERM=xterm"]
    assert p["cwd"] == "/tmp" and p["terminal"] is True
    assert p["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [1000, 50, 63]}
    assert full["spec"]["root"]["readonly"] is True
    assert {"destination": "/data", "type": "bind", "source": str(data), "options": ["ro", "rbind"]} in \
        full["spec"]["mounts"]
    assert "network" not in [n["type"] for n in full["spec"]["linux"]["namespaces"]]
    assert full["runtime"]["name"] == "io.containerd.runsc.v1"
    bb.ok("c", "create", "busybox", "plain")
    assert "network" in [n["type"] for n in info(bb, "plain")["spec"]["linux"]["namespaces"]]


def test_spec_follows_the_image_config_field_by_field(dist, configured_archive):
    archive, config = configured_archive
    dist.ok("images", "import", str(archive))
    dist.ok("c", "create", "configured:1", "web")
    p = info(dist, "web")["spec"]["process"]
    assert p["args"] == config["Entrypoint"] + config["Cmd"] == ["/bin/sh", "-c", "echo from-image"]
    assert p["env"] == config["Env"] == ["PATH=/bin:/usr/bin", "MODE=image", "KEEP=1"]
    assert p["cwd"] == config["WorkingDir"] == "/srv"
    assert config["User"] == "www" and p["user"] == {"uid": 33, "gid": 34, "additionalGids": [34, 50]}
    # -- ARG replaces Cmd and keeps Entrypoint; --env replaces one key; --user replaces User
    dist.ok("c", "create", "configured:1", "two", "--env", "MODE=cli", "--user", "0", "--", "-c", "echo cli")
    p = info(dist, "two")["spec"]["process"]
    assert p["args"] == ["/bin/sh", "-c", "echo cli"]
    assert p["env"] == ["PATH=/bin:/usr/bin", "MODE=cli", "KEEP=1"]
    assert p["user"] == {"uid": 0, "gid": 0, "additionalGids": [0]}
    # --entrypoint replaces the Entrypoint and drops the image's Cmd; '' clears it
    dist.ok("c", "create", "configured:1", "three", "--entrypoint", "/bin/true")
    assert info(dist, "three")["spec"]["process"]["args"] == ["/bin/true"]
    dist.ok("c", "create", "configured:1", "four", "--entrypoint", "", "--", "/bin/echo", "x")
    assert info(dist, "four")["spec"]["process"]["args"] == ["/bin/echo", "x"]
    r = dist("c", "create", "configured:1", "five", "--entrypoint", "")
    assert r.code == 2 and "no command" in r.stderr


def test_a_container_starts_with_its_image_configs_labels(dist, configured_archive):
    """ctr's WithImageConfigLabels, docker's label inheritance: --label overrides one, K= drops it."""
    archive, config = configured_archive
    assert config["Labels"] == {"app": "image", "tier": "base"}
    dist.ok("images", "import", str(archive))
    dist.ok("c", "create", "configured:1", "web")
    assert info(dist, "web")["labels"] == {"app": "image", "tier": "base"}
    dist.ok("c", "create", "configured:1", "two", "--label", "app=web", "--label", "tier=", "--label", "x=1")
    assert info(dist, "two")["labels"] == {"app": "web", "x": "1"}
    assert dist.ok("c", "ls", "-q", 'labels."tier"==base').lines == ["web"]


def test_create_unpacks_an_image_imported_without_unpacking(dist, rootfs):
    """--user is resolved from the layer blobs before the unpack, then create unpacks."""
    dist.ok("images", "import", "--no-unpack", "--rootfs", str(rootfs), "--name", "busybox", "--config-cmd",
            "/bin/sh")
    assert snapshots(dist) == []
    dist.ok("c", "create", "busybox", "web", "--user", "www:audio")
    assert info(dist, "web")["spec"]["process"]["user"] == {"uid": 33, "gid": 63, "additionalGids": [63]}
    kinds = {s["key"]: s["kind"] for s in snapshots(dist)}
    assert kinds.pop("web") == "active" and list(kinds.values()) == ["committed"]
    assert dist.ok("leases", "ls", "-q").stdout == ""  # the create's lease ended with it


def test_create_and_run_show_their_unpack_as_progress_on_stderr(dist, rootfs):
    # SPEC: unpacking is a long transfer that takes --progress, plain lines on stderr off a terminal; an
    # image imported --no-unpack was unpacked by create and run with no option and not a line (CI saw nothing)
    dist.ok("images", "import", "--no-unpack", "--rootfs", str(rootfs), "--name", "busybox", "--config-cmd",
            "/bin/sh")
    created = dist.ok("c", "create", "--progress", "plain", "busybox", "web")
    assert created.stdout == "web\n" and created.stderr.startswith("unpack sha256:"), created.stderr
    assert "unpacked" in created.stderr
    dist.ok("c", "rm", "web")
    dist.ok("rmi", "busybox")  # its layers go with it: run must unpack again
    dist.ok("images", "import", "--no-unpack", "--rootfs", str(rootfs), "--name", "busybox", "--config-cmd",
            "/bin/sh")
    assert dist.ok("snapshot", "ls", "-q").stdout == ""
    ran = dist.ok("run", "--rm", "--progress", "plain", "busybox", "once", "--", "echo", "hi")
    assert ran.stdout == "hi\n" and ran.stderr.startswith("unpack sha256:"), ran.stderr
    assert dist("c", "create", "--progress", "bogus", "busybox", "web").code == 2


@pytest.mark.parametrize("user, expected", [
    ("bob", {"uid": 1000, "gid": 1000, "additionalGids": [1000, 50, 63]}),
    ("www:audio", {"uid": 33, "gid": 63, "additionalGids": [63]}),
    ("1000", {"uid": 1000, "gid": 1000, "additionalGids": [1000, 50, 63]}),
    ("4321:99", {"uid": 4321, "gid": 99, "additionalGids": [99]}),
], ids=["name", "name-group", "uid-in-passwd", "numeric"])
def test_user_resolution_from_the_image_passwd(bb, user, expected):
    bb.ok("c", "create", "busybox", "web", "--user", user)
    assert info(bb, "web")["spec"]["process"]["user"] == expected


@pytest.mark.parametrize("args, code, line", [
    (("busybox", "bad-"), 2, "dist: error: container id bad-: must be letters and digits, separated by single "
                             "'.', '_' or '-'"),
    (("busybox", "a" * 77), 2, f"dist: error: container id {'a' * 77}: must be at most 76 characters"),
    (("busybox", "a..b"), 2, None),
    (("busybox", "web", "--label", "novalue"), 2, "dist: error: label novalue: expected KEY=VALUE"),
    (("busybox", "web", "--env", "=x"), 2, "dist: error: env =x: expected KEY=VALUE"),
    (("busybox", "web", "--cwd", "rel"), 2, "dist: error: cwd rel: must be an absolute path"),
    (("busybox", "web", "--mount", "type=bind,src=/tmp"), 2, None),
    (("busybox", "web", "--user", "a:"), 2, None),
    (("busybox", "web", "--runtime", ""), 2, None),
    (("nothere", "web"), 3, "dist: error: image docker.io/library/nothere:latest: not found"),
    (("busybox", "web", "--user", "ghost"), 3, "dist: error: user ghost: no such user in the image's /etc/passwd"),
    (("busybox", "web", "--mount", "type=bind,src=/no/such/dir,dst=/x"), 3, None),
    # Not UTF-8 (surrogates to Python): the spec's JSON would carry U+FFFD, and runc would enter,
    # run or pass other bytes than were given.
    (("busybox", "web", "--cwd", "/tmp/\udcff"), 2, "dist: error: cwd /tmp/\\xff: is not valid UTF-8"),
    (("busybox", "web", "--", "/bin/echo", "\udcff"), 2, "dist: error: argument \\xff: is not valid UTF-8"),
    (("busybox", "web", "--entrypoint", "/bin/\udcff"), 2,
     "dist: error: entrypoint /bin/\\xff: is not valid UTF-8"),
    (("busybox", "web", "--user", "\udcff"), 2, "dist: error: user \\xff: is not valid UTF-8"),
], ids=["trailing-dash", "77-chars", "double-dot", "label", "env", "cwd", "mount", "user-format", "runtime",
        "no-image", "no-user", "no-mount-source", "cwd-not-utf8", "arg-not-utf8", "entrypoint-not-utf8",
        "user-not-utf8"])
def test_bad_create_exits_and_changes_nothing(bb, args, code, line):
    before = store_fingerprint(bb.root)
    r = bb("c", "create", *args)
    assert r.code == code, r.stderr
    if line:
        assert r.stderr.splitlines()[0] == line
    assert store_fingerprint(bb.root) == before


def test_duplicate_is_exit_4_and_keeps_the_first(bb):
    bb.ok("c", "create", "busybox", "web", "--label", "n=1")
    before = store_fingerprint(bb.root)
    r = bb("c", "create", "busybox", "web", "--label", "n=2")
    assert r.code == 4 and r.stderr.startswith("dist: error: container web: already exists")
    assert store_fingerprint(bb.root) == before
    assert ls(bb)[0]["labels"] == {"n": "1"}


def test_a_create_that_loses_to_another_of_its_id_names_the_container(bb, monkeypatch):
    """Two creates (or runs) of one ID at once: the one that looked for the container before the
    other inserted it found the other's snapshot next and said "snapshot ID: already exists"."""
    from dist_tool import containers
    from dist_tool.errors import AlreadyExists
    from dist_tool.session import Session

    looked = containers._refuse_existing
    raced = []

    def looked_then_raced(session, container_id):
        looked(session, container_id)
        if not raced:
            raced.append(bb.ok("c", "create", "busybox", container_id))

    monkeypatch.setattr(containers, "_refuse_existing", looked_then_raced)
    session = Session(root=str(bb.root), state=str(bb.state))
    try:
        with pytest.raises(AlreadyExists) as raised:
            containers.create(session, "busybox", "twin", containers.CreateOptions())
    finally:
        session.close()
    assert raced and str(raised.value) == "container twin: already exists"
    assert [c["id"] for c in ls(bb)] == ["twin"]


def test_label_set_and_remove_keep_created_at(bb):
    bb.ok("c", "create", "busybox", "web", "--label", "app=web")
    first = ls(bb)[0]
    time.sleep(0.01)
    assert bb.ok("c", "label", "web", "tier=front", "app=").lines == ["tier=front"]
    assert bb.ok("c", "label", "web", "--json").json == {"tier": "front"}
    after = ls(bb)[0]
    assert after["labels"] == {"tier": "front"}
    assert after["createdAt"] == first["createdAt"] and after["updatedAt"] > first["updatedAt"]
    assert bb("c", "label", "nope", "a=b").code == 3
    assert bb("c", "label", "web", "=b").code == 2


def test_filters(bb):
    bb.ok("images", "tag", "busybox", "alpine:3")
    bb.ok("c", "create", "busybox", "web", "--label", "app=web")
    bb.ok("c", "create", "busybox", "x", "--label", "app=db")
    bb.ok("c", "create", "alpine:3", "y", "--label", "app=web")
    ids = lambda *f: [c["id"] for c in ls(bb, *f)]  # noqa: E731
    assert ids('labels."app"==web') == ["web", "y"]
    assert ids("image~=busybox") == ["web", "x"]
    assert ids("id==x") == ["x"]
    assert ids("image~=busybox,labels.app==web") == ["web"]
    assert ids("id==x", "id==y") == ["x", "y"]
    assert bb.ok("c", "ls", "-q", "labels.app==db").lines == ["x"]
    r = bb("c", "ls", "labels.app=web")
    assert r.code == 2 and r.stderr.startswith("dist: error: filter labels.app=web:")


def test_namespaces_isolate(bb):
    bb.ok("c", "create", "busybox", "web", "--label", "ns=default")
    other = lambda *a: bb(*a, env={"DIST_NAMESPACE": "other"})  # noqa: E731
    assert other("c", "create", "busybox", "web").code == 3  # images are per namespace too
    r = bb("-n", "other", "c", "ls", "--json")
    assert r.code == 0 and r.json == []
    assert bb("-n", "other", "c", "info", "web").code == 3
    assert bb("-n", "other", "c", "rm", "web").code == 3
    assert [c["id"] for c in ls(bb)] == ["web"]


def test_namespaces_hold_the_same_id_apart(bb, rootfs):
    bb.ok("-n", "other", "images", "import", "--rootfs", str(rootfs), "--name", "busybox", "--config-cmd", "/bin/sh")
    bb.ok("c", "create", "busybox", "web", "--label", "ns=default")
    bb.ok("-n", "other", "c", "create", "busybox", "web", "--label", "ns=other")
    assert bb.ok("-n", "other", "c", "ls", "--json").json[0]["labels"] == {"ns": "other"}
    bb.ok("-n", "other", "c", "rm", "web")
    assert ls(bb)[0]["labels"] == {"ns": "default"}
    assert bb("namespaces", "rm", "default").code == 4  # holds a container


def snapshots(dist) -> list[dict]:
    return dist.ok("snapshot", "ls", "--json").json


def test_rm_removes_record_and_snapshot(bb):
    bb.ok("c", "create", "busybox", "web")
    assert "web" in [s["key"] for s in snapshots(bb)]
    assert bb.ok("c", "rm", "web").lines == ["web"]
    assert ls(bb) == [] and "web" not in [s["key"] for s in snapshots(bb)]
    r = bb("c", "rm", "web")
    assert r.code == 3 and r.stderr.splitlines()[0] == "dist: error: container web: not found"
    assert bb("c", "rm", "-f", "web").code == 0


@pytest.mark.slow
def test_gc_dry_run_reports_the_trash_a_killed_rm_left_as_gc_then_removes_it(bb):
    """``container rm`` renames the snapshot's directory into the trash, then deletes it: killed in
    between, it left a tree that ``gc`` removed without a word and ``gc --dry-run`` never showed."""
    import signal
    import sqlite3

    bb.ok("c", "create", "busybox", "web")
    with sqlite3.connect(bb.root / "metadata.db") as conn:
        snapshotter, snapshot_id = conn.execute("SELECT snapshotter, id FROM snapshots WHERE key = 'web'").fetchone()
    written = bb.root / "snapshots" / snapshotter / str(snapshot_id) / "fs" / "srv"
    written.mkdir(exist_ok=True)
    for i in range(12_000):  # what a task wrote: enough that the delete is slow to finish
        (written / f"f{i}").write_bytes(b"x" * 5000)
    chain = [s["key"] for s in snapshots(bb) if s["kind"] == "committed"]
    bb.ok("rmi", "busybox")  # the chain now goes with the container, in the same gc as the trash
    trash = bb.root / "snapshots" / snapshotter / "trash"
    rm = subprocess.Popen([sys.executable, "-m", "dist_tool", "--root", str(bb.root), "--state", str(bb.state),
                           "c", "rm", "web"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    try:
        while not (trash.exists() and os.listdir(trash)):
            assert rm.poll() is None and time.monotonic() < deadline
    finally:
        rm.send_signal(signal.SIGKILL)
        rm.wait()
    [left] = os.listdir(trash)
    assert ls(bb) == []
    dry = bb.ok("gc", "--dry-run", "--json").json
    assert dry["removed"]["directories"] == [f"snapshots/{snapshotter}/trash/{left}"]
    assert [s["key"] for s in dry["removed"]["snapshots"]] == chain
    assert dry["bytesFreed"] >= 12_000 * 5000 and os.listdir(trash) == [left]
    text = bb.ok("gc", "--dry-run").lines
    assert f"would remove leftover directory snapshots/{snapshotter}/trash/{left}" in text
    assert dry["removed"]["content"] == [] and len(chain) == 1  # the blobs went with rmi
    assert text[-1].endswith("in 0 blobs (and 1 snapshot, 1 directory)")
    done = bb.ok("gc", "--json").json
    assert {**done, "dryRun": True} == dry and os.listdir(trash) == []


def test_a_containers_snapshot_cannot_be_committed_away(bb):
    bb.ok("c", "create", "busybox", "web")
    r = bb("snapshot", "commit", "saved", "web")
    assert r.code == 4 and r.stderr == "dist: error: snapshot web: in use by container web\n"
    assert {s["key"]: s["kind"] for s in snapshots(bb)}["web"] == "active"
    assert "saved" not in [s["key"] for s in snapshots(bb)]


def test_a_hand_committed_snapshot_is_a_gc_root(bb):
    """README: what `snapshot prepare|view|commit` make stays until `snapshot rm`."""
    chain = next(s["key"] for s in snapshots(bb) if s["kind"] == "committed")
    bb.ok("snapshot", "prepare", "work", chain)
    bb.ok("snapshot", "commit", "saved", "work", "--label", "app=x")
    labels = next(s["labels"] for s in snapshots(bb) if s["key"] == "saved")
    assert labels["app"] == "x" and "containerd.io/gc.root" in labels
    bb.ok("rmi", "busybox")
    bb.ok("gc")
    assert "saved" in [s["key"] for s in snapshots(bb)]


def test_snapshot_usage_tree_and_explain_report_what_exists_past_a_missing_key(bb):
    bb.ok("c", "create", "busybox", "web")
    keys = [s["key"] for s in snapshots(bb)]
    chain = next(k for k in keys if k != "web")
    r = bb("snapshot", "usage", "missing", "web", "-q")
    assert r.code == 3 and r.lines == ["web"] and r.stderr == "dist: error: snapshot missing: not found\n"
    for flags in ([], ["--json"]):  # nothing found: nothing on stdout (it was a bare header, or [])
        r = bb("snapshot", "usage", "missing", *flags)
        assert r.code == 3 and r.stdout == "", r.stdout
    assert bb.ok("snapshot", "tree", "-q").lines == [chain, "web"]
    r = bb("gc", "--explain", "missing", "web", "--json")
    assert r.code == 3 and [e["snapshot"] for e in r.json] == ["web"] and r.json[0]["kept"]
    assert r.stderr == "dist: error: blob or snapshot missing: not found\n"


def test_rm_keeps_going_and_reports_the_first_error(bb):
    bb.ok("c", "create", "busybox", "a")
    bb.ok("c", "create", "busybox", "b")
    r = bb("c", "rm", "a", "missing", "b")
    assert r.code == 3 and r.lines == ["a", "b"]
    assert ls(bb) == []


def test_rmi_of_an_image_in_use_keeps_its_chain_until_the_container_goes(bb):
    bb.ok("c", "create", "busybox", "web")
    chain = {s["key"] for s in snapshots(bb)} - {"web"}
    assert chain, "the image is unpacked: its chain is committed"
    bb.ok("rmi", "busybox")
    assert bb.ok("content", "ls", "--json").json == []  # the container does not keep the blobs
    assert {s["key"] for s in snapshots(bb)} == chain | {"web"}
    assert info(bb, "web")["image"] == BUSYBOX
    bb.ok("c", "rm", "web")
    assert snapshots(bb) == []
    assert bb.ok("content", "ls", "--json").json == []


@pytest.fixture
def fake_task(bb):
    """A live 'task' in SPEC's state layout: STATE/<ns>/<id>/shim.pid and init.pid name a sleep."""
    proc = subprocess.Popen(["sleep", "60"])
    d = bb.state / "default" / "web"
    d.mkdir(parents=True)
    start = open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()[19]
    (d / "shim.pid").write_text(f"{proc.pid} {start}\n")
    (d / "init.pid").write_text(f"{proc.pid}\n")
    yield proc
    proc.kill()
    proc.wait()


def test_rm_with_a_live_task_is_exit_4_unless_forced(bb, fake_task):
    bb.ok("c", "create", "busybox", "web")
    r = bb("c", "rm", "web")
    assert r.code == 4 and r.stderr.startswith("dist: error: container web: has a live task")
    assert [c["id"] for c in ls(bb)] == ["web"]
    assert bb.ok("c", "rm", "-f", "web").lines == ["web"]
    assert fake_task.wait(timeout=5) == -9
    assert ls(bb) == []


def test_40_concurrent_creates_all_land(bb):
    argv = [sys.executable, "-m", "dist_tool", "--root", str(bb.root), "--state", str(bb.state),
            "c", "create", "busybox"]
    env = {**os.environ, "DIST_NAMESPACE": "default"}

    def create(i: int) -> tuple[int, str]:
        p = subprocess.run([*argv, f"c{i:02d}", "--label", f"n={i}"], capture_output=True, text=True, env=env,
                           timeout=120)
        return p.returncode, p.stderr

    with ThreadPoolExecutor(40) as pool:
        results = list(pool.map(create, range(40)))
    assert [r for r in results if r[0] != 0] == []
    listed = ls(bb)
    assert [c["id"] for c in listed] == [f"c{i:02d}" for i in range(40)]
    assert all(c["labels"] == {"n": str(int(c["id"][1:]))} for c in listed)
    assert {f"c{i:02d}" for i in range(40)} <= {s["key"] for s in snapshots(bb)}


def test_a_lone_manifest_for_another_platform_is_shown_as_its_config_says_and_not_run(dist, tmp_path):
    """A lone manifest is the image, as containerd and docker pull it; its config names the
    platform (variant kept, as an index would show it), and create refuses what this host cannot run."""
    from layerkit import directory, layer, oci_archive

    from dist_tool.platforms import host

    foreign = [("arm64v8", {"os": "linux", "architecture": "arm64", "variant": "v8"}, "linux/arm64/v8"),
               ("riscv", {"os": "linux", "architecture": "riscv64"}, "linux/riscv64")]
    for tag, platform, shown in foreign:
        image = oci_archive(tmp_path / f"{tag}.tar", [layer([directory("etc")])], name=f"docker.io/library/lone:{tag}",
                            platform=platform)
        dist.ok("images", "import", "--no-unpack", str(image.archive))
        [view] = [i for i in dist.ok("images", "--json").json if i["name"] == image.name]
        assert view["platforms"] == [shown]
    r = dist("container", "create", "lone:riscv", "c1")
    assert r.code == 3
    assert r.stderr == ("dist: error: image docker.io/library/lone:riscv: "
                        f"has no manifest for {host()} (it is linux/riscv64)\n")
    assert dist.ok("container", "ls", "-q").lines == [] and dist.ok("snapshot", "ls", "-q").lines == []


def test_a_snapshot_key_in_use_is_refused_before_the_unpack(dist, rootfs):
    """The clash was found only after create had unpacked the image, whose chain stayed."""
    dist.ok("images", "import", "--no-unpack", "--rootfs", str(rootfs), "--name", "busybox", "--config-cmd",
            "/bin/sh")
    dist.ok("snapshot", "prepare", "taken")
    before = snapshots(dist)
    r = dist("c", "create", "busybox", "taken")
    assert r.code == 4 and "snapshot taken: already exists" in r.stderr, r.stderr
    assert snapshots(dist) == before
