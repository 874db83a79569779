"""OCI and Docker schema-2 media types, descriptors, and bounded JSON decoding.

Pure: no I/O. Everything that reads a manifest goes through ``decode_json``
so that a hostile blob can neither exhaust memory (callers read at most a
named limit) nor smuggle a non-object where an object is required.
"""


import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from dist_tool.errors import DataError

OCI_LAYOUT_VERSION = "1.0.0"

MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MEDIA_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MEDIA_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MEDIA_DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
MEDIA_DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
SCHEMA1_TYPES = frozenset({MEDIA_DOCKER_SCHEMA1_SIGNED, "application/vnd.docker.distribution.manifest.v1+json"})

INDEX_TYPES = frozenset({MEDIA_OCI_INDEX, MEDIA_DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = frozenset({MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({MEDIA_OCI_CONFIG, MEDIA_DOCKER_CONFIG})
LAYER_TYPES = frozenset({
    MEDIA_OCI_LAYER, MEDIA_OCI_LAYER_GZIP, MEDIA_OCI_LAYER_ZSTD,
    MEDIA_DOCKER_LAYER, MEDIA_DOCKER_LAYER_GZIP, MEDIA_DOCKER_FOREIGN_LAYER_GZIP,
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
})

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"


def is_index(media_type: str) -> bool:
    return media_type in INDEX_TYPES


def is_manifest(media_type: str) -> bool:
    return media_type in MANIFEST_TYPES


def is_image_target(media_type: str) -> bool:
    """An image name may point only at a manifest or an index (SPEC: unknown targets are refused)."""
    return media_type in INDEX_TYPES or media_type in MANIFEST_TYPES


def unsupported_target(media_type: str) -> str:
    """Why an image name cannot point at this: the words of a DataError."""
    if media_type in SCHEMA1_TYPES:
        # containerd 2 refuses them too: there is no config, and no diff_ids to unpack by
        return "it is a Docker schema 1 manifest, which dist does not support (push it again with a current tool)"
    return f"unsupported target media type {media_type!r}"


def kind_of(media_type: str) -> str:
    """A short word for tables and ``gc --explain``: index, manifest, config, layer or blob."""
    if media_type in INDEX_TYPES:
        return "index"
    if media_type in MANIFEST_TYPES:
        return "manifest"
    if media_type in CONFIG_TYPES:
        return "config"
    if media_type in LAYER_TYPES or "layer" in media_type:
        return "layer"
    return "blob"


_NO_ANNOTATIONS: Mapping[str, str] = MappingProxyType({})


class Descriptor(NamedTuple):
    """An OCI content descriptor: what a blob is, its digest and its size."""

    media_type: str
    digest: str
    size: int
    platform: dict[str, Any] | None = None
    annotations: Mapping[str, str] = _NO_ANNOTATIONS
    urls: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            out["platform"] = dict(self.platform)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.urls:
            out["urls"] = list(self.urls)
        return out

    @classmethod
    def from_json(cls, raw: Any, where: str = "descriptor") -> "Descriptor":
        """Parses and checks one descriptor; anything malformed is a DataError naming ``where``."""
        if not isinstance(raw, Mapping):
            raise DataError(where, "", "descriptor is not a JSON object")
        media_type = raw.get("mediaType", "")
        digest = raw.get("digest")
        size = raw.get("size")
        if not isinstance(media_type, str):
            raise DataError(where, "", "mediaType is not a string")
        if not isinstance(digest, str) or not _valid_digest(digest):
            raise DataError(where, str(digest), "malformed digest")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < 2**63:
            raise DataError(where, digest, f"invalid size {size!r}")
        platform = raw.get("platform")
        if platform is not None and not isinstance(platform, Mapping):
            raise DataError(where, digest, "platform is not an object")
        annotations = raw.get("annotations") or {}
        if not isinstance(annotations, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        ):
            raise DataError(where, digest, "annotations are not a map of strings")
        urls = raw.get("urls") or ()
        if not isinstance(urls, list | tuple) or not all(isinstance(u, str) for u in urls):
            raise DataError(where, digest, "urls is not a list of strings")
        return cls(media_type, digest, size, dict(platform) if platform else None,
                   dict(annotations), tuple(urls))

    def without_annotations(self) -> "Descriptor":
        return Descriptor(self.media_type, self.digest, self.size, self.platform)


def _valid_digest(digest: str) -> bool:
    algorithm, _, hexpart = digest.partition(":")
    if algorithm == "sha256":
        return len(hexpart) == 64 and all(c in "0123456789abcdef" for c in hexpart)
    if algorithm == "sha512":
        return len(hexpart) == 128 and all(c in "0123456789abcdef" for c in hexpart)
    return False


def decode_json(data: bytes, what: str, which: str = "") -> dict[str, Any]:
    """Decodes a JSON object; invalid JSON or a non-object is a DataError naming the blob."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(what, which, f"not valid JSON ({e.__class__.__name__})") from None
    except RecursionError:  # json's decoder recurses once per level: [[[[… is a hostile document
        raise DataError(what, which, "JSON nested too deeply") from None
    if not isinstance(doc, dict):
        raise DataError(what, which, "not a JSON object")
    return doc


def detect_media_type(doc: Mapping[str, Any]) -> str:
    """The media type a manifest or index declares, or infers from its shape (like containerd)."""
    media_type = doc.get("mediaType")
    if isinstance(media_type, str) and media_type:
        return media_type
    if doc.get("schemaVersion") == 1:
        return MEDIA_DOCKER_SCHEMA1_SIGNED
    if "manifests" in doc:
        return MEDIA_OCI_INDEX
    if "config" in doc and "layers" in doc:
        return MEDIA_OCI_MANIFEST
    return ""


def manifest_children(doc: Mapping[str, Any], digest: str) -> list[Descriptor]:
    """A manifest's children: its config, then its layers."""
    config = doc.get("config")
    layers = doc.get("layers", [])
    if config is None or not isinstance(layers, list):
        raise DataError("manifest", digest, "missing config or layers")
    return [Descriptor.from_json(config, f"manifest {digest} config")] + [
        Descriptor.from_json(layer, f"manifest {digest} layer") for layer in layers
    ]


def index_children(doc: Mapping[str, Any], digest: str) -> list[Descriptor]:
    manifests = doc.get("manifests")
    if not isinstance(manifests, list):
        raise DataError("index", digest, "missing manifests")
    return [Descriptor.from_json(m, f"index {digest} manifest") for m in manifests]


def encode_json(doc: Mapping[str, Any]) -> bytes:
    """Canonical-enough JSON for blobs dist writes itself (no spaces, keys in insertion order)."""
    return json.dumps(doc, separators=(",", ":")).encode()
