"""containers: the domain's create, below the CLI (the CLI's cases are in tests/cli/test_containers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import Dist

from dist_tool import containers
from dist_tool.chains import chain_ids
from dist_tool.session import Session
from dist_tool.store.snapshots.native import NativeSnapshotter

IMG = "docker.io/library/umoci-test:1"


def test_native_create_copies_the_parent_tree_outside_the_write_lock(tmp_path: Path, umoci_image, monkeypatch):
    root = tmp_path / "root"
    Dist(root).ok("--snapshotter", "native", "images", "import", str(umoci_image.oci_archive))
    depths: list[int] = []
    populate = NativeSnapshotter._populate

    def watched(self, path, parent_id, kind):
        depths.append(self.meta._write_depth)  # other writers wait on the lock for as long as this copies
        populate(self, path, parent_id, kind)

    monkeypatch.setattr(NativeSnapshotter, "_populate", watched)
    s = Session(root=str(root), state=str(tmp_path / "state"), snapshotter_name="native")
    try:
        created = containers.create(s, IMG, "c1", containers.CreateOptions())
        assert depths == [0]
        assert (created.snapshot_key, s.snapshotter.stat("c1").kind) == ("c1", "active")
        assert s.snapshotter.stat("c1").parent == chain_ids(umoci_image.diff_ids)[-1]
    finally:
        s.close()


def test_image_labels_keep_only_what_a_label_can_hold():
    config = {"config": {"Labels": {"app": "web", "empty": "", "": "no-key", "a=b": "eq", "n": 1,
                                    "big": "x" * 4094, "fits": "y" * 4092}}}
    assert containers.image_labels(config) == {"app": "web", "fits": "y" * 4092}
    assert containers.image_labels({"config": {"Labels": None}}) == {}
    assert containers.image_labels({"config": "not a map"}) == {}
    assert containers.image_labels({}) == {}


def _create_losing_to_rmi(tmp_path: Path, umoci_image) -> None:
    """A create of an imported, not unpacked image, made while (a hook of the caller's) an rmi
    wins the race: it fails by the image's name and leaves no container."""
    from dist_tool.errors import NotFound

    root = tmp_path / "root"
    Dist(root).ok("images", "import", "--no-unpack", str(umoci_image.oci_archive))
    s = Session(root=str(root), state=str(tmp_path / "state"))
    try:
        with pytest.raises(NotFound) as failed:
            containers.create(s, IMG, "c1", containers.CreateOptions())
        assert str(failed.value) == f"image {IMG}: removed or replaced while the container was being created"
        assert [c.id for c in s.containers.list()] == []
    finally:
        s.close()


def test_a_create_that_loses_to_rmi_before_its_spec_names_the_image(tmp_path: Path, umoci_image, monkeypatch):
    """The same race a step earlier: the image's config or its layers (read for /etc/passwd) gone
    said "incomplete: ... is not in the content store", blaming the store."""
    looked_up = containers.image_rootfs

    def after_an_rmi(session, image):
        session.images.delete(IMG)
        session.collect_garbage()
        return looked_up(session, image)

    monkeypatch.setattr(containers, "image_rootfs", after_an_rmi)
    _create_losing_to_rmi(tmp_path, umoci_image)


def test_a_create_that_loses_to_rmi_names_the_image(tmp_path: Path, umoci_image, monkeypatch):
    """An rmi whose gc takes a layer mid-unpack fails the create: by the image's name, not by
    the blob or parent snapshot it happened to miss."""
    from dist_tool import unpack
    from dist_tool.errors import NotFound

    def rmi_wins(session, target, **kw):
        session.images.delete(IMG)
        raise NotFound("blob", "sha256:" + "0" * 64, "not found")

    monkeypatch.setattr(unpack, "unpack_target", rmi_wins)
    _create_losing_to_rmi(tmp_path, umoci_image)
