"""One contract, both snapshotters (CONVENTIONS G12): prepare, view, commit, remove, stat, list,
usage, mounts, update — and what a crash can leave behind."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from layerkit import mounted, overlay_supported

from dist_tool.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from dist_tool.store.api import SnapshotInfo
from dist_tool.store.metadata import MIGRATIONS, SCHEMA_VERSION, Metadata
from dist_tool.store.snapshots import SnapshotJanitor, disk_usage
from dist_tool.store.snapshots.native import NativeSnapshotter
from dist_tool.store.snapshots.overlay import OverlaySnapshotter

NO_OVERLAY = overlay_supported()
IMPLEMENTATIONS = {"overlayfs": OverlaySnapshotter, "native": NativeSnapshotter}


@pytest.fixture(params=[pytest.param("overlayfs", marks=pytest.mark.skipif(bool(NO_OVERLAY), reason=str(NO_OVERLAY))),
                        "native"])
def sn(request, tmp_path: Path):
    meta = Metadata(str(tmp_path / "root"))
    yield IMPLEMENTATIONS[request.param](str(tmp_path / "root"), meta, "default")
    meta.close()


def tree_of(sn, key: str) -> Path:
    """Where a snapshot's own files are written (the bind source or the overlay upperdir)."""
    mount = sn.mounts(key)[0]
    if mount.type == "bind":
        return Path(mount.source)
    return Path(next(o for o in mount.options if o.startswith("upperdir=")).partition("=")[2])


def base(sn, name: str = "base", files: dict[str, bytes] | None = None) -> str:
    sn.prepare(f"{name}-active")
    for rel, data in (files or {"etc/motd": b"hello\n"}).items():
        path = tree_of(sn, f"{name}-active") / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    sn.commit(name, f"{name}-active")
    return name


def test_prepare_commit_stat(sn) -> None:
    mounts = sn.prepare("a", labels={"x": "1"})
    assert mounts[0].type == "bind" and "rw" in mounts[0].options
    info = sn.stat("a")
    assert (info.kind, info.parent, dict(info.labels)) == ("active", None, {"x": "1"})
    (tree_of(sn, "a") / "f").write_bytes(b"data")
    sn.commit("c", "a", labels={"y": "2"})
    with pytest.raises(NotFound):
        sn.stat("a")
    committed = sn.stat("c")
    assert (committed.kind, dict(committed.labels)) == ("committed", {"x": "1", "y": "2"})
    assert sn.usage("c").inodes == 1 and sn.usage("c").size >= 4
    assert [i.key for i in sn.list()] == ["c"]


@pytest.mark.parametrize(("call", "error"), [
    (lambda sn: sn.prepare("base"), AlreadyExists),
    (lambda sn: sn.prepare("x", "missing"), NotFound),
    (lambda sn: sn.view("x", "missing"), NotFound),
    (lambda sn: sn.commit("base", "act"), AlreadyExists),
    (lambda sn: sn.commit("x", "base"), Conflict),
    (lambda sn: sn.prepare("x", "act"), InvalidArgument),
    (lambda sn: sn.remove("missing"), NotFound),
    (lambda sn: sn.remove("base"), Conflict),
    (lambda sn: sn.stat("missing"), NotFound),
    (lambda sn: sn.prepare(""), InvalidArgument),
], ids=["exists", "parent-missing", "view-parent-missing", "commit-onto-existing", "commit-committed",
        "parent-active", "rm-missing", "rm-with-child", "stat-missing", "empty-key"])
def test_errors_change_nothing(sn, call, error) -> None:
    base(sn)
    sn.prepare("act", "base")
    before = [(i.key, i.kind, i.parent) for i in sn.list()]
    dirs = sorted(os.listdir(sn.dirs.base))
    with pytest.raises(error):
        call(sn)
    assert [(i.key, i.kind, i.parent) for i in sn.list()] == before
    assert sorted(os.listdir(sn.dirs.base)) == dirs


def test_child_sees_parent_and_writes_apart(sn, tmp_path: Path) -> None:
    base(sn, files={"etc/motd": b"base\n", "etc/keep": b"k"})
    mounts = sn.prepare("child", "base")
    if sn.name == "native":
        assert (tree_of(sn, "child") / "etc" / "motd").read_bytes() == b"base\n"  # a copy
    else:
        assert mounts[0].type == "overlay"
        opts = dict(o.split("=", 1) for o in mounts[0].options)
        assert opts["lowerdir"] == sn.dirs.fs(sn.chain("base")[0][1])
        assert set(opts) == {"lowerdir", "upperdir", "workdir"}
    (tree_of(sn, "child") / "new").write_bytes(b"n")
    sn.commit("top", "child")
    assert not (Path(sn.dirs.fs(sn.chain("base")[0][1])) / "new").exists()  # the parent is untouched
    view = sn.view("v", "top")
    assert "ro" in view[0].options or view[0].type == "overlay"
    assert sn.stat("v").kind == "view"
    if sn.name == "overlayfs":
        opts = dict(o.split("=", 1) for o in view[0].options)
        top_fs, base_fs = (sn.dirs.fs(i) for _, i in sn.chain("top"))
        assert opts == {"lowerdir": f"{top_fs}:{base_fs}"}  # top first
        with mounted(view, tmp_path / "mnt") as mnt:
            assert (mnt / "etc" / "motd").read_bytes() == b"base\n" and (mnt / "new").read_bytes() == b"n"
    assert [i.key for i in sn.list("kind==committed")] == ["base", "top"]


def test_remove_child_then_parent_frees_directories(sn) -> None:
    base(sn)
    sn.prepare("child", "base")
    ids = [i for _, i in sn.chain("child")]
    with pytest.raises(Conflict, match="child"):
        sn.remove("base")
    sn.remove("child")
    sn.remove("base")
    assert sn.list() == []
    assert not any(os.path.exists(sn.dirs.path(i)) for i in ids)
    assert os.listdir(sn.dirs.trash_dir) == []
    sn.prepare("again")
    assert sn.chain("again")[0][1] > max(ids)  # ids are never reused


def test_remove_inside_a_callers_transaction_deletes_the_tree_after_the_lock_is_released(sn) -> None:
    """``container rm`` removes its snapshot inside its own transaction: the tree must stay in
    place until that commits (a crash before leaves record and tree as they were) and be deleted
    only once the write lock is free (deleting a big tree takes seconds)."""
    sn.prepare("work")
    path = sn.dirs.path(sn.chain("work")[0][1])
    (tree_of(sn, "work") / "f").write_bytes(b"data")
    with sn.meta.write():
        sn.remove("work")
        assert os.path.isfile(os.path.join(path, "fs", "f"))  # not yet trashed, let alone deleted
    assert not os.path.exists(path)
    assert os.listdir(sn.dirs.trash_dir) == []


def test_remove_in_a_transaction_that_fails_keeps_record_and_tree(sn) -> None:
    sn.prepare("work")
    (tree_of(sn, "work") / "f").write_bytes(b"data")
    with pytest.raises(RuntimeError), sn.meta.write():
        sn.remove("work")
        raise RuntimeError("the caller's next step failed")
    assert sn.stat("work").kind == "active"
    assert (tree_of(sn, "work") / "f").read_bytes() == b"data"


def test_commit_refuses_a_key_a_container_uses(sn) -> None:
    """The container would be left naming a snapshot that no longer exists, and gc would then
    remove the committed one under a running task."""
    sn.prepare("web")
    now = 0.0
    with sn.meta.write() as conn:
        conn.execute("INSERT INTO containers (namespace, id, image, runtime_name, runtime_options, spec, snapshotter, "
                     "snapshot_key, labels, extensions, created_at, updated_at) "
                     "VALUES ('default', 'web', 'x', 'io.containerd.runc.v2', '{}', '{}', ?, 'web', '{}', '{}', ?, ?)",
                     (sn.name, now, now))
    with pytest.raises(Conflict, match="in use by container web"):
        sn.commit("saved", "web")
    assert sn.stat("web").kind == "active"
    with pytest.raises(NotFound):
        sn.stat("saved")


def test_a_directory_left_by_a_crash_before_commit_does_not_block_the_next_snapshot(sn) -> None:
    """kill -9 between install's rename and COMMIT: <id> stays without a row, and the id counter
    rolled back with the transaction, so the next snapshot is given the same id."""
    sn.prepare("first")
    leftover = Path(sn.dirs.path(sn.chain("first")[0][1] + 1))
    (leftover / "fs").mkdir(parents=True)
    (leftover / "fs" / "stale").write_bytes(b"from the killed process")
    sn.prepare("second")
    assert sn.chain("second")[0][1] == int(leftover.name)
    assert list((leftover / "fs").iterdir()) == []


def test_usage_counts_hard_links_once(sn) -> None:
    sn.prepare("a")
    root = tree_of(sn, "a")
    (root / "big").write_bytes(b"x" * 65536)
    os.link(root / "big", root / "link")
    (root / "d").mkdir()
    usage = sn.usage("a")
    assert usage.inodes == 2 and 65536 <= usage.size < 2 * 65536
    assert usage == disk_usage(str(root))


def test_update_labels_and_parent(sn) -> None:
    base(sn)
    sn.prepare("act", labels={"a": "1", "b": "2"})
    info = sn.update(SnapshotInfo("act", None, "active", {"a": "9"}), "labels.a", "labels.b")
    assert dict(info.labels) == {"a": "9"}
    if sn.layers_independent:
        assert sn.update(SnapshotInfo("act", "base", "active"), "parent").parent == "base"
        with pytest.raises(InvalidArgument):
            sn.update(SnapshotInfo("base", "act", "committed"), "parent")
    else:
        with pytest.raises(InvalidArgument):
            sn.update(SnapshotInfo("act", "base", "active"), "parent")


def test_stage_fills_outside_the_write_lock_and_install_joins_the_callers_transaction(sn, monkeypatch) -> None:
    base(sn, files={"etc/motd": b"base\n"})
    populate = sn._populate
    held = []

    def watched(path, parent_id, kind):
        held.append(sn.meta._write_depth)  # native copies the parent's whole tree here
        populate(path, parent_id, kind)

    monkeypatch.setattr(sn, "_populate", watched)
    staged = sn.stage("base")
    assert held == [0] and os.path.isdir(staged.path)
    with sn.meta.write() as conn:
        conn.execute("CREATE TABLE caller (x)")  # the caller's own write, in the same transaction
        sn.install(staged, "child", labels={"k": "v"})
    assert not os.path.exists(staged.path)
    info = sn.stat("child")
    assert (info.kind, info.parent, dict(info.labels)) == ("active", "base", {"k": "v"})
    own = tree_of(sn, "child")  # native: a full copy of the parent; overlayfs: an empty upper layer
    assert sorted(p.name for p in own.rglob("*")) == (["etc", "motd"] if sn.name == "native" else [])


def test_a_staged_snapshot_that_cannot_be_installed_leaves_nothing(sn) -> None:
    base(sn)
    staged = sn.stage("base")
    with pytest.raises(AlreadyExists):
        sn.install(staged, "base")
    assert not os.path.exists(staged.path) and os.listdir(sn.dirs.staging) == []
    assert [i.key for i in sn.list()] == ["base"]
    dropped = sn.stage(None)
    sn.discard(dropped)
    assert os.listdir(sn.dirs.staging) == []
    with pytest.raises(NotFound):
        sn.stage("missing")


def test_janitor_removes_crash_leftovers_only(sn) -> None:
    base(sn)
    keep = sn.chain("base")[0][1]
    orphan = Path(sn.dirs.path(keep + 50))
    (orphan / "fs").mkdir(parents=True)  # a directory renamed into place by a process killed before COMMIT
    dead = Path(sn.dirs.staging) / "999999999.1.abcd"
    (dead / "fs").mkdir(parents=True)
    live = Path(sn.dirs.new_staging())  # ours: this process is alive
    janitor = SnapshotJanitor(sn.root, sn.meta)
    leftovers = [f"snapshots/{sn.name}/{orphan.name}", f"snapshots/{sn.name}/staging/{dead.name}"]
    assert [path for path, _ in janitor.sweep(dry_run=True)] == leftovers and orphan.exists()
    assert [path for path, _ in janitor.sweep()] == leftovers
    assert not orphan.exists() and not dead.exists() and live.exists()
    assert os.path.isdir(sn.dirs.path(keep)) and os.listdir(sn.dirs.trash_dir) == []


def test_a_crash_leftover_an_install_moves_aside_is_left_for_gc_to_report(sn) -> None:
    """A directory at the id an install is handed (a process killed between its rename and COMMIT)
    went into the trash with the installer's mark, which the installer never deletes: every gc
    took it for a running removal's and neither reported nor removed it while the installer ran."""
    base(sn)
    next_id = sn.meta.connection().execute("SELECT last_id FROM snapshot_ids WHERE snapshotter = ?",
                                           (sn.name,)).fetchone()[0] + 1
    (Path(sn.dirs.path(next_id)) / "fs").mkdir(parents=True)
    sn.prepare("next", "base")
    janitor = SnapshotJanitor(sn.root, sn.meta)
    [(rel, _)] = janitor.trash_entries()
    assert rel.startswith(f"snapshots/{sn.name}/trash/{next_id}.")
    with sn.meta.write():
        leftovers = janitor.trash_entries(claim=True)
    assert [path for path, _ in janitor.sweep(leftovers=leftovers)] == [rel]
    assert os.listdir(sn.dirs.trash_dir) == [] and [i.key for i in sn.list()] == ["base", "next"]


def test_version_1_database_upgrades(tmp_path: Path) -> None:
    """A store written before snapshots existed (schema version 1) opens and gains the table."""
    root = tmp_path / "old"
    root.mkdir()
    conn = sqlite3.connect(root / "metadata.db")
    for migration in [m for m in MIGRATIONS if m.version == 1]:
        migration.apply(conn)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO namespaces (name, labels, created_at, updated_at) VALUES ('default', '{}', 1, 1)")
    conn.commit()
    conn.close()
    meta = Metadata(str(root))
    assert meta.schema_version() == SCHEMA_VERSION
    sn = NativeSnapshotter(str(root), meta, "default")
    sn.prepare("x")
    assert [i.key for i in sn.list()] == ["x"]
    with meta.read() as c:
        assert c.execute("SELECT name FROM namespaces").fetchall() == [("default",)]
    meta.close()


@pytest.fixture
def umask_077():
    old = os.umask(0o077)
    yield
    os.umask(old)


def test_a_new_tree_is_0755_whatever_the_umask(sn, umask_077) -> None:
    """Snapshots are shared by chain ID: the first caller's umask must not decide who may read "/"."""
    sn.prepare("first")
    assert (tree_of(sn, "first").stat().st_mode & 0o7777) == 0o755


def test_a_parent_removed_while_it_is_copied_is_not_found(tmp_path: Path, monkeypatch) -> None:
    """The native snapshotter copies the parent outside any lock; an rmi's gc removing the
    parent meanwhile made container create fail with exit 1 (a file not found) instead of 3."""
    from dist_tool.store.snapshots import native

    meta = Metadata(str(tmp_path / "root"))
    sn = NativeSnapshotter(str(tmp_path / "root"), meta, "default")
    try:
        base(sn, files={f"d/f{i}": b"x" for i in range(50)})
        real_copy = native.copy_tree

        def copy_while_removed(src: str, dst: str) -> None:
            sn.remove("base")  # its tree goes to the trash once the write lock is released
            real_copy(src, dst)

        monkeypatch.setattr(native, "copy_tree", copy_while_removed)
        with pytest.raises(NotFound, match="removed meanwhile"):
            sn.prepare("child", "base")
        assert [i.key for i in sn.list()] == []
        assert os.listdir(sn.dirs.staging) == []
    finally:
        meta.close()
