"""Interop with the real tools: archives written by umoci + skopeo import unchanged, and what dist
writes (exports, and ROOT/content itself) is read by skopeo and umoci."""

from __future__ import annotations

import json
import subprocess
import tarfile

import pytest
from helpers import need

pytestmark = pytest.mark.interop


def _show(dist, name):
    [image] = [i for i in dist.ok("images", "--json").json if i["name"] == name]
    return image


def _manifest(dist, digest):
    return json.loads(dist.ok("content", "get", digest).stdout)


def test_oci_archive_imports_with_the_same_digests_and_size(dist, umoci_image):
    out = dist.ok("images", "import", "--no-unpack", str(umoci_image.oci_archive))
    assert out.lines == [umoci_image.name]
    image = _show(dist, umoci_image.name)
    assert image["target"]["digest"] == umoci_image.manifest_digest
    manifest = _manifest(dist, image["target"]["digest"])
    assert manifest["config"]["digest"] == umoci_image.config_digest
    assert [x["digest"] for x in manifest["layers"]] == umoci_image.layer_digests
    assert image["size"] == umoci_image.packed_size
    assert image["uniqueSize"] == umoci_image.packed_size
    assert image["platforms"] == ["linux/amd64"]
    assert image["complete"] is True


def test_docker_archive_imports_with_the_archives_config_and_layer_digests(dist, umoci_image):
    with tarfile.open(umoci_image.docker_archive) as tar:
        [entry] = json.load(tar.extractfile("manifest.json"))
        layer_files = entry["Layers"]
        config_file = entry["Config"]
    out = dist.ok("images", "import", "--no-unpack", str(umoci_image.docker_archive))
    assert out.lines == [umoci_image.name]
    image = _show(dist, umoci_image.name)
    assert image["target"]["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    manifest = _manifest(dist, image["target"]["digest"])
    assert manifest["config"]["digest"] == "sha256:" + config_file.removesuffix(".json").split("/")[-1]
    # docker-archive layers are the uncompressed tars: their digests are the image's diff_ids
    assert [x["digest"] for x in manifest["layers"]] == umoci_image.diff_ids
    assert len(layer_files) == len(umoci_image.diff_ids)
    config = json.loads(dist.ok("content", "get", manifest["config"]["digest"]).stdout)
    assert config["rootfs"]["diff_ids"] == umoci_image.diff_ids
    sizes = image["target"]["size"] + manifest["config"]["size"] + sum(x["size"] for x in manifest["layers"])
    assert image["size"] == sizes


def test_gzip_compressed_archive_imports(dist, umoci_image, tmp_path):
    gz = tmp_path / "image.tar.gz"
    subprocess.run(f"gzip -c {umoci_image.oci_archive} > {gz}", shell=True, check=True)
    dist.ok("images", "import", "--no-unpack", str(gz))
    assert _show(dist, umoci_image.name)["target"]["digest"] == umoci_image.manifest_digest


def test_import_from_stdin(dist, umoci_image):
    out = dist.ok("images", "import", "--no-unpack", "-", input=umoci_image.oci_archive.read_bytes())
    assert out.lines == [umoci_image.name]


def test_export_is_read_by_skopeo_and_umoci_with_digests_unchanged(dist, imported, tmp_path):
    out = tmp_path / "export.tar"
    dist.ok("images", "export", str(out), imported.name)
    inspected = json.loads(subprocess.run(["skopeo", "inspect", "--raw", f"oci-archive:{out}"],
                                          check=True, capture_output=True).stdout)
    assert inspected == imported.manifest
    digest = subprocess.run(["skopeo", "inspect", "--format", "{{.Digest}}", f"oci-archive:{out}"],
                            check=True, capture_output=True, text=True).stdout.strip()
    assert digest == imported.manifest_digest
    layout = tmp_path / "layout"
    layout.mkdir()
    subprocess.run(["tar", "-xf", str(out), "-C", str(layout)], check=True)  # GNU tar: one more reader of the export
    index = json.loads((layout / "index.json").read_text())
    [desc] = index["manifests"]
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == imported.name
    assert desc["annotations"]["io.containerd.image.name"] == imported.name
    listed = subprocess.run(["umoci", "ls", "--layout", str(layout)], check=True, capture_output=True, text=True)
    assert imported.name in listed.stdout.split()
    stat = subprocess.run(["umoci", "stat", "--json", "--image", f"{layout}:{imported.name}"],
                          check=True, capture_output=True, text=True)
    assert len(json.loads(stat.stdout)["history"]) >= 1


def test_an_image_named_twice_is_exported_once_for_skopeo(dist, imported, tmp_path):
    """skopeo's oci-archive: without a name refused an index listing one image twice."""
    out = tmp_path / "twice.tar"
    short = imported.name.removeprefix("docker.io/library/")
    dist.ok("images", "export", str(out), imported.name, short, imported.name)
    digest = subprocess.run(["skopeo", "inspect", "--format", "{{.Digest}}", f"oci-archive:{out}"],
                            check=True, capture_output=True, text=True).stdout.strip()
    assert digest == imported.manifest_digest
    with tarfile.open(out) as tar:
        index = json.loads(tar.extractfile("index.json").read())
        docker = json.loads(tar.extractfile("manifest.json").read())
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == [imported.name]
    assert [entry["RepoTags"] for entry in docker] == [[imported.name]]


def test_export_reimports_identically(dist, imported, tmp_path):
    out = tmp_path / "round.tar"
    dist.ok("images", "export", str(out), imported.name)
    first = out.read_bytes()
    dist.ok("images", "export", str(out), imported.name)
    assert out.read_bytes() == first, "export is reproducible"
    dist.ok("rmi", imported.name)
    assert dist.ok("content", "ls", "-q").lines == []
    dist.ok("images", "import", "--no-unpack", str(out))
    assert _show(dist, imported.name)["target"]["digest"] == imported.manifest_digest


def test_root_content_is_an_oci_layout_for_skopeo_and_umoci(dist, imported):
    need("umoci")
    layout = dist.root / "content"
    digest = subprocess.run(["skopeo", "inspect", "--format", "{{.Digest}}", f"oci:{layout}:{imported.name}"],
                            check=True, capture_output=True, text=True).stdout.strip()
    assert digest == imported.manifest_digest
    listed = subprocess.run(["umoci", "ls", "--layout", str(layout)], check=True, capture_output=True, text=True)
    assert listed.stdout.split() == [imported.name]
    dist.ok("images", "tag", imported.name, "example.com/other:2")
    listed = subprocess.run(["umoci", "ls", "--layout", str(layout)], check=True, capture_output=True, text=True)
    assert sorted(listed.stdout.split()) == sorted([imported.name, "example.com/other:2"])


def test_skopeo_copies_into_an_archive_that_dist_imports_after_export(dist, imported, tmp_path):
    """skopeo reads dist's export and writes a docker-archive that dist imports again."""
    exported = tmp_path / "e.tar"
    dist.ok("images", "export", str(exported), imported.name)
    docker = tmp_path / "d.tar"
    subprocess.run(["skopeo", "copy", "-q", f"oci-archive:{exported}", f"docker-archive:{docker}:x/y:z"],
                   check=True, capture_output=True)
    dist.ok("images", "import", "--no-unpack", str(docker))
    assert "docker.io/x/y:z" in dist.ok("images", "-q").lines
