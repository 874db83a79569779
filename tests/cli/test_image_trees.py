"""Index shapes other tools write, and a store with one corrupt manifest: through the real CLI.

Indexes built here: a child manifest without a ``platform`` (the OCI image spec makes it
optional; containerd keeps such children), an index inside an index, and two platforms of which
only one is the host's.
"""

from __future__ import annotations

import os

import pytest
from layerkit import compress, file, image_blobs, index_blob, layer, sha256, write_layout

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
AMD64 = {"architecture": "amd64", "os": "linux"}
ARM64 = {"architecture": "arm64", "os": "linux", "variant": "v8"}


def _image(text: str, platform: dict) -> tuple[dict[str, bytes], dict]:
    """One image's blobs (the config first, as image_blobs lists them) and manifest descriptor."""
    tar = layer([file("etc/which", text.encode())])
    return image_blobs([compress(tar, "gzip")], [sha256(tar)], platform)


def _named(desc: dict, name: str) -> dict:
    return {**desc, "annotations": {"org.opencontainers.image.ref.name": name}}


def test_an_index_child_without_a_platform_is_read_from_its_config(dist, tmp_path):
    amd, amd_manifest = _image("amd64", AMD64)
    arm, arm_manifest = _image("arm64", ARM64)
    data, index = index_blob([arm_manifest, amd_manifest])  # neither names its platform
    write_layout(tmp_path / "a.tar", {**amd, **arm, index["digest"]: data}, [_named(index, "example.com/np:1")])
    dist.ok("images", "import", str(tmp_path / "a.tar"))
    [image] = dist.ok("images", "--json").json
    assert image["platforms"] == ["linux/amd64", "linux/arm64/v8"] and image["complete"] is True
    assert image["unpackedSize"] is not None  # the host's (amd64) manifest was unpacked
    assert dist.ok("images", "check", "--json").json[0]["complete"] is True


def test_platforms_come_through_a_nested_index(dist, tmp_path):
    amd, amd_manifest = _image("amd64", AMD64)
    arm, arm_manifest = _image("arm64", ARM64)
    inner_data, inner = index_blob([{**amd_manifest, "platform": AMD64}, {**arm_manifest, "platform": ARM64}],
                                   DOCKER_LIST)
    outer_data, outer = index_blob([inner])
    write_layout(tmp_path / "n.tar", {**amd, **arm, inner["digest"]: inner_data, outer["digest"]: outer_data},
                 [_named(outer, "example.com/nested:1")])
    dist.ok("images", "import", "--no-unpack", str(tmp_path / "n.tar"))
    assert dist.ok("images", "--json").json[0]["platforms"] == ["linux/amd64", "linux/arm64/v8"]


def _two_platforms(path, name: str) -> tuple[dict[str, bytes], dict]:
    """An archive of one index naming linux/amd64 and linux/arm64/v8; the arm64 image's blobs
    and manifest descriptor."""
    amd, amd_manifest = _image("amd64", AMD64)
    arm, arm_manifest = _image("arm64", ARM64)
    data, index = index_blob([{**amd_manifest, "platform": AMD64}, {**arm_manifest, "platform": ARM64}])
    write_layout(path, {**amd, **arm, index["digest"]: data}, [_named(index, name)])
    return arm, arm_manifest


def test_unpacked_size_counts_a_foreign_platform_unpacked(dist, tmp_path):
    _two_platforms(tmp_path / "m.tar", "example.com/m:1")
    dist.ok("images", "import", "--platform", "linux/arm64", str(tmp_path / "m.tar"))
    assert len(dist.ok("snapshot", "ls", "-q").lines) == 1
    assert dist.ok("images", "--json").json[0]["unpackedSize"] > 0  # was null: only the host's chain counted


@pytest.fixture
def corrupt_store(dist, tmp_path):
    """Two images in two namespaces; the arm64 manifest of the first is then corrupted."""
    arm, arm_manifest = _two_platforms(tmp_path / "m.tar", "example.com/m:1")
    dist.ok("images", "import", "--no-unpack", "--all-platforms", str(tmp_path / "m.tar"))
    other, other_manifest = _image("other", AMD64)
    write_layout(tmp_path / "o.tar", other, [_named(other_manifest, "example.com/other:1")])
    dist.ok("-n", "other", "images", "import", "--no-unpack", str(tmp_path / "o.tar"))
    dist.ok("images", "import", "--no-unpack", "--name", "example.com/spare:1", str(tmp_path / "o.tar"))
    path = dist.root / "content" / "blobs" / "sha256" / arm_manifest["digest"][7:]
    os.chmod(path, 0o644)
    path.write_bytes(b"}" + path.read_bytes()[1:])
    return {"arm_config": next(iter(arm)),  # image_blobs lists the config first
            "arm_manifest": arm_manifest["digest"]}


def test_one_corrupt_manifest_does_not_hide_the_other_images(dist, corrupt_store):
    """Every `dist images`, in every namespace, failed with the corrupt manifest's error."""
    assert dist.ok("-n", "other", "images", "-q").lines == ["example.com/other:1"]
    views = {v["name"]: v for v in dist.ok("images", "--json").json}
    assert views["example.com/spare:1"]["complete"] is True and views["example.com/spare:1"]["size"] > 0
    assert views["example.com/m:1"]["size"] > 0  # what it can reach
    check = {c["name"]: c for c in dist("images", "check", "--json").json}
    assert check["example.com/spare:1"]["complete"] is True
    tree = dist.ok("images", "inspect", "example.com/m:1", "--json").json
    broken = next(c for c in tree["children"] if c["digest"] == corrupt_store["arm_manifest"])
    assert "not valid JSON" in broken["problem"] and broken["children"] == []


def test_gc_collects_nothing_while_a_manifest_an_image_needs_cannot_be_read(dist, corrupt_store):
    """gc took the children of an unreadable manifest for garbage: the arm64 config and layer
    of an image still stored went, and repairing the manifest could not bring them back."""
    r = dist.ok("gc", "--dry-run", "--json")
    assert r.json["removed"]["content"] == [] and r.json["unreadable"] == [corrupt_store["arm_manifest"]]
    r = dist.ok("rmi", "example.com/spare:1")
    assert "nothing collected: manifest " + corrupt_store["arm_manifest"] in r.stderr
    present = set(dist.ok("content", "ls", "-q").lines)
    assert corrupt_store["arm_config"] in present
    dist.ok("rmi", "example.com/m:1")  # the image that needs it goes: everything is collectable again
    assert corrupt_store["arm_config"] not in set(dist.ok("content", "ls", "-q").lines)


def _two_images(tmp_path, first: str, second: str):
    a, a_manifest = _image("a", AMD64)
    b, b_manifest = _image("b", AMD64)
    path = tmp_path / "two.tar"
    write_layout(path, {**a, **b}, [_named(a_manifest, first), _named(b_manifest, second)])
    return path


def test_name_for_an_archive_of_several_named_images_is_refused(dist, tmp_path):
    """--name was silently ignored."""
    path = _two_images(tmp_path, "example.com/a:1", "example.com/b:1")
    r = dist("images", "import", "--name", "example.com/mine:1", str(path))
    assert r.code == 2 and "--name example.com/mine:1: the archive holds 2 images" in r.stderr, r.stderr
    assert dist.ok("images", "-q").lines == [] and dist.ok("content", "ls", "-q").lines == []


def test_one_name_for_two_images_in_an_archive_is_refused(dist, tmp_path):
    """The last one silently won, and the name was printed twice."""
    r = dist("images", "import", str(_two_images(tmp_path, "example.com/same:1", "example.com/same:1")))
    assert r.code == 1 and "archive docker.io" not in r.stderr and "names two different images" in r.stderr
    assert dist.ok("images", "-q").lines == [] and dist.ok("content", "ls", "-q").lines == []


@pytest.mark.parametrize("command", [("images", "import", "x.tar"), ("pull", "localhost:1/x:1")])
def test_a_platform_and_all_platforms_are_refused_together(dist, command):
    r = dist(*command, "--platform", "linux/arm64", "--all-platforms")
    assert r.code == 2 and "cannot be combined with --all-platforms" in r.stderr, r.stderr


def test_an_import_that_fails_in_its_unpack_leaves_no_namespace(dist, tmp_path):
    """SPEC: a failed command leaves the store as it was; the unpack's snapshot had created the
    namespace ("created on first write"), and its undo left the record."""
    from layerkit import oci_archive

    tar = layer([file("etc/x", b"x")])
    bad = oci_archive(tmp_path / "bad.tar", [tar], diff_ids=["sha256:" + "0" * 64])
    r = dist("-n", "fresh", "images", "import", str(bad.archive))
    assert r.code == 1 and "diff" in r.stderr, r.stderr
    assert "fresh" not in dist.ok("namespaces", "ls", "-q").lines
    dist.ok("namespaces", "create", "kept")
    assert dist("-n", "kept", "images", "import", str(bad.archive)).code == 1
    assert "kept" in dist.ok("namespaces", "ls", "-q").lines  # it was there before: it stays


def test_an_unnamed_extra_beside_named_platforms_is_not_required(dist, tmp_path):
    """An index that names its images' platforms plus an unnamed extra (an SBOM, a signature):
    a host-only import, pull and `complete` need only the host's manifest, as SPEC says."""
    amd, amd_manifest = _image("amd64", AMD64)
    _, extra_manifest = _image("sbom", ARM64)  # its blobs are left out of the archive
    data, index = index_blob([{**amd_manifest, "platform": AMD64}, extra_manifest])
    write_layout(tmp_path / "x.tar", {**amd, index["digest"]: data}, [_named(index, "example.com/x:1")])
    dist.ok("images", "import", str(tmp_path / "x.tar"))
    [image] = dist.ok("images", "--json").json
    assert image["complete"] is True and image["platforms"] == ["linux/amd64"]
    assert dist.ok("images", "check", "--json").json[0]["missing"] == []


def test_an_unnamed_manifest_whose_config_is_another_platform_is_not_required(dist, tmp_path):
    """An index that names no platforms, holding an arm64 manifest and config without its layer
    (what a host-only copy of the other platform leaves): the amd64 import needs only amd64's."""
    amd, amd_manifest = _image("amd64", AMD64)
    arm, arm_manifest = _image("arm64", ARM64)
    config, layer_blob = list(arm)[0], list(arm)[2]
    data, index = index_blob([arm_manifest, amd_manifest])
    blobs = {**amd, config: arm[config], arm_manifest["digest"]: arm[arm_manifest["digest"]], index["digest"]: data}
    assert layer_blob not in blobs
    write_layout(tmp_path / "p.tar", blobs, [_named(index, "example.com/partial:1")])
    dist.ok("images", "import", str(tmp_path / "p.tar"))
    [image] = dist.ok("images", "--json").json
    assert image["complete"] is True and image["unpackedSize"] is not None


def test_a_config_variant_that_is_not_a_string_names_no_variant(dist, tmp_path):
    tar = layer([file("etc/x", b"x")])
    blobs, manifest = image_blobs([compress(tar, "gzip")], [sha256(tar)],
                                  {"architecture": "amd64", "os": "linux", "variant": 7})
    data, index = index_blob([manifest])
    write_layout(tmp_path / "v.tar", {**blobs, index["digest"]: data}, [_named(index, "example.com/v:1")])
    dist.ok("images", "import", str(tmp_path / "v.tar"))
    assert dist.ok("images", "--json").json[0]["platforms"] == ["linux/amd64"]
