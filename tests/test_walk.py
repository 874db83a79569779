"""The walker and its handlers over an in-memory provider: order, sharing, platforms, loops, depth."""

from __future__ import annotations

import hashlib
import json

import pytest

from dist_tool import oci, platforms
from dist_tool.errors import DataError, NotFound
from dist_tool.oci import Descriptor
from dist_tool.walk import (
    ChildrenCache,
    children,
    filter_platforms,
    platform_manifests,
    reachable,
    require_present,
    walk,
)


class MemoryProvider:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.reads = 0

    def add(self, data: bytes | dict, media_type: str, platform: dict | None = None) -> Descriptor:
        raw = json.dumps(data).encode() if isinstance(data, dict) else data
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        self.blobs[digest] = raw
        return Descriptor(media_type, digest, len(raw), platform)

    def read_blob(self, digest: str, limit: int) -> bytes:
        self.reads += 1
        if digest not in self.blobs:
            raise NotFound("blob", digest, "not found")
        return self.blobs[digest]

    def open_blob(self, digest):  # pragma: no cover - the walker never streams
        raise NotImplementedError


def image(provider: MemoryProvider, arch: str, layers: list[bytes]) -> Descriptor:
    config = provider.add({"architecture": arch, "os": "linux"}, oci.MEDIA_OCI_CONFIG)
    layer_descs = [provider.add(data, oci.MEDIA_OCI_LAYER) for data in layers]
    manifest = {"schemaVersion": 2, "mediaType": oci.MEDIA_OCI_MANIFEST, "config": config.to_json(),
                "layers": [x.to_json() for x in layer_descs]}
    return provider.add(manifest, oci.MEDIA_OCI_MANIFEST, {"os": "linux", "architecture": arch})


def index_of(provider: MemoryProvider, manifests: list[Descriptor]) -> Descriptor:
    return provider.add({"schemaVersion": 2, "mediaType": oci.MEDIA_OCI_INDEX,
                         "manifests": [m.to_json() for m in manifests]}, oci.MEDIA_OCI_INDEX)


@pytest.fixture
def tree():
    p = MemoryProvider()
    amd = image(p, "amd64", [b"shared layer", b"amd64 layer"])
    arm = image(p, "arm64", [b"shared layer", b"arm64 layer"])
    return p, index_of(p, [amd, arm]), amd, arm


def test_walk_visits_children_in_order_and_each_digest_once(tree):
    p, idx, amd, arm = tree
    seen = []

    def handler(desc):
        seen.append(desc.digest)
        return children(p)(desc)

    walk(handler, [idx, idx])
    assert seen[0] == idx.digest and seen[1] == amd.digest
    assert len(seen) == len(set(seen)) == 1 + 2 + 2 + 3  # index, 2 manifests, 2 configs, 3 distinct layers


def test_reachable_counts_distinct_present_blobs(tree):
    p, idx, amd, arm = tree
    found = reachable(p, idx, p.blobs.__contains__)
    assert sum(found.values()) == sum(len(b) for b in p.blobs.values())
    missing = next(d for d, b in p.blobs.items() if b == b"arm64 layer")
    del p.blobs[missing]
    assert missing not in reachable(p, idx, p.blobs.__contains__)


def test_filter_platforms_and_platform_manifests(tree):
    p, idx, amd, arm = tree
    host = platforms.matcher(platforms.parse("linux/arm64"))
    assert [d.digest for d in filter_platforms(children(p), host)(idx)] == [arm.digest]
    assert [d.digest for d in platform_manifests(p, idx, host)] == [arm.digest]
    assert [d.digest for d in platform_manifests(p, amd, host)] == [amd.digest]  # a lone manifest is itself


def test_platform_less_extras_of_unknown_type_are_not_the_platforms():
    """SPEC: a platform needs its indexes, manifest, config and layers; an unnamed blob of an
    unknown type (an index's attachment) is stored and counted in SIZE, never required."""
    p = MemoryProvider()
    amd = image(p, "amd64", [b"amd64 layer"])
    extra = p.add(b"an attachment", "application/x-unknown")
    nested = index_of(p, [image(p, "amd64", [b"nested layer"])])
    named = index_of(p, [amd, extra, Descriptor(nested.media_type, nested.digest, nested.size)])
    host = platforms.matcher(platforms.parse("linux/amd64"))
    assert [d.digest for d in filter_platforms(children(p), host)(named)] == [amd.digest, nested.digest]
    del p.blobs[extra.digest]
    assert require_present(p, named, host, p.blobs.__contains__).complete
    unnamed = index_of(p, [Descriptor(amd.media_type, amd.digest, amd.size), extra])  # names no platform
    assert [d.digest for d in filter_platforms(children(p), host)(unnamed)] == [amd.digest]
    assert require_present(p, unnamed, host, p.blobs.__contains__).complete
    every = filter_platforms(children(p), platforms.any_platform)(named)  # --all-platforms: everything
    assert [d.digest for d in every] == [amd.digest, extra.digest, nested.digest]
    assert not require_present(p, named, platforms.any_platform, p.blobs.__contains__).complete


def test_all_platforms_keeps_an_indexs_platform_less_manifests():
    """An index that names platforms keeps its unnamed manifests (a signature, an SBOM) out of a
    one-platform walk; --all-platforms means all of them, as containerd's FilterPlatforms keeps them."""
    p = MemoryProvider()
    amd = image(p, "amd64", [b"amd64 layer"])
    unnamed = image(p, "arm64", [b"unnamed layer"])
    idx = index_of(p, [amd, Descriptor(unnamed.media_type, unnamed.digest, unnamed.size)])
    host = platforms.matcher(platforms.parse("linux/amd64"))
    assert [d.digest for d in filter_platforms(children(p), host)(idx)] == [amd.digest]
    every = filter_platforms(children(p), platforms.any_platform)(idx)
    assert [d.digest for d in every] == [amd.digest, unnamed.digest]
    assert platform_manifests(p, idx, platforms.any_platform) == every
    del p.blobs[next(d for d, b in p.blobs.items() if b == b"unnamed layer")]
    assert require_present(p, idx, host, p.blobs.__contains__).complete
    assert not require_present(p, idx, platforms.any_platform, p.blobs.__contains__).complete


def test_require_present_for_one_platform(tree):
    p, idx, amd, arm = tree
    del p.blobs[next(d for d, b in p.blobs.items() if b == b"arm64 layer")]
    amd_req = require_present(p, idx, platforms.matcher(platforms.parse("linux/amd64")), p.blobs.__contains__)
    assert amd_req.complete and amd_req.required == 5
    arm_req = require_present(p, idx, platforms.matcher(platforms.parse("linux/arm64")), p.blobs.__contains__)
    assert not arm_req.complete and len(arm_req.missing) == 1
    none = require_present(p, idx, platforms.matcher(platforms.parse("linux/s390x")), p.blobs.__contains__)
    assert not none.matched and not none.complete


def test_require_present_checks_sizes(tree):
    p, idx, amd, arm = tree
    sizes = {d: len(b) for d, b in p.blobs.items()}
    sizes[amd.digest] += 1
    with pytest.raises(DataError, match="size mismatch"):
        require_present(p, idx, platforms.any_platform, p.blobs.__contains__, sizes=sizes)


def test_a_loop_is_refused():
    p = MemoryProvider()
    loop = Descriptor(oci.MEDIA_OCI_INDEX, "sha256:" + "1" * 64, 10)
    p.blobs[loop.digest] = json.dumps({"manifests": [loop.to_json()]}).encode()
    with pytest.raises(DataError, match="contains itself"):
        walk(children(p), [loop])


def test_depth_is_bounded():
    p = MemoryProvider()
    desc = image(p, "amd64", [b"x"])
    for _ in range(20):
        desc = index_of(p, [desc])
    with pytest.raises(DataError, match="deeper than"):
        walk(children(p), [desc])


def test_descriptor_type_must_match_the_blob(tree):
    p, idx, amd, arm = tree
    lying = Descriptor(oci.MEDIA_OCI_MANIFEST, idx.digest, idx.size)
    with pytest.raises(DataError, match="descriptor says"):
        children(p)(lying)


def test_cache_reads_each_document_once(tree):
    p, idx, amd, arm = tree
    cache = ChildrenCache()
    for _ in range(50):
        reachable(p, idx, p.blobs.__contains__, cache)
    assert p.reads == 3  # index and two manifests, once each


@pytest.mark.parametrize("doc,needle", [
    (b"not json", "not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({"config": {"digest": "sha256:xyz", "size": 1}, "layers": []}).encode(), "malformed digest"),
    (json.dumps({"config": {"digest": "sha256:" + "a" * 64, "size": -1}, "layers": []}).encode(), "invalid size"),
    (json.dumps({"config": {"digest": "sha256:" + "a" * 64, "size": 2**63}, "layers": []}).encode(), "invalid size"),
    (json.dumps({"config": {"digest": "sha256:" + "a" * 64, "size": 1, "urls": "http://x"}, "layers": []}).encode(),
     "urls is not a list of strings"),
    (json.dumps({"config": {"digest": "sha256:" + "a" * 64, "size": 1, "urls": [1]}, "layers": []}).encode(),
     "urls is not a list of strings"),
    (json.dumps({"layers": []}).encode(), "missing config"),
], ids=["text", "list", "bad-digest", "negative-size", "huge-size", "urls-string", "urls-numbers", "no-config"])
def test_malformed_manifests_are_data_errors(doc, needle):
    p = MemoryProvider()
    desc = p.add(doc, oci.MEDIA_OCI_MANIFEST)
    with pytest.raises(DataError, match=needle):
        children(p)(desc)
