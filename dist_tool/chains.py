"""Chain IDs and the layers of an image's platform: what unpacking, container create and the
image listing share, in a module light enough for ``dist images`` to import."""

from collections.abc import Container, Sequence
from typing import NamedTuple

from dist_tool import oci, platforms
from dist_tool.errors import DataError, DistError, NotFound
from dist_tool.oci import Descriptor
from dist_tool.store.limits import MAX_CONFIG_BYTES
from dist_tool.walk import ChildrenCache, platform_manifests, read_document


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """OCI image-spec: ChainID(L0) = DiffID(L0); ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln))."""
    out: list[str] = []
    for diff_id in diff_ids:
        if out:
            import hashlib  # loads OpenSSL (about 4 ms): a one-layer chain is its diff ID, no hashing

            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
        else:
            out.append(diff_id)
    return out


class Layers(NamedTuple):
    """What unpacking (or running) one platform of an image needs."""

    manifest: Descriptor
    layers: list[Descriptor]
    diff_ids: list[str]
    config: dict  # the decoded image config

    @property
    def chain(self) -> list[str]:
        return chain_ids(self.diff_ids)


def image_layers(content, target: Descriptor, platform: platforms.Platform | None = None,
                 cache: ChildrenCache | None = None, any_platform: bool = False) -> Layers | None:
    """The layers and diff IDs of ``target`` for ``platform`` (the host's by default; the first
    manifest of any platform with ``any_platform``).

    None when the image has no manifest for the platform or is not a container
    image (its config is not an image config). DataError when layers and
    diff IDs disagree; NotFound when the manifest or config is absent.
    """
    cache = cache or ChildrenCache()
    want = platform or platforms.host()
    match = platforms.any_platform if any_platform else platforms.matcher(want)
    for manifest in platform_manifests(content, target, match, cache):
        unnamed = manifest.platform is None  # a lone manifest, or an index child without a platform
        try:
            kids = oci.manifest_children(read_document(content, manifest, cache), manifest.digest)
            config, layers = kids[0], kids[1:]
            if config.media_type not in oci.CONFIG_TYPES:
                continue  # not a container image (an artifact, an attestation)
            doc = oci.decode_json(content.read_blob(config.digest, MAX_CONFIG_BYTES), "config", config.digest)
        except NotFound:
            if unnamed and manifest.digest != target.digest:
                continue  # maybe another platform's manifest, imported without its blobs
            raise
        found = platforms.of_config(doc) if unnamed and not any_platform else None
        if found is not None and not platforms.matcher(want)(platforms.normalize(found)):
            continue  # its descriptor names no platform, and its config names another
        return _layers(manifest, layers, config, doc)
    return None


def _layers(manifest: Descriptor, layers: list[Descriptor], config: Descriptor, doc: dict) -> Layers:
    rootfs = doc.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise DataError("config", config.digest, "has no rootfs.diff_ids list")
    if len(diff_ids) != len(layers):
        raise DataError("config", config.digest,
                        f"lists {len(diff_ids)} diff_ids for the manifest's {len(layers)} layers")
    for layer in layers:
        if oci.kind_of(layer.media_type) != "layer":
            raise DataError("layer", layer.digest, f"cannot unpack media type {layer.media_type}")
    return Layers(manifest, layers, list(diff_ids), doc)


def every_chain(content, target: Descriptor, present: Container[str], cache: ChildrenCache) -> list[list[str]]:
    """The chain IDs of each manifest under ``target``, any platform, whose manifest and config
    are present: what an unpack of any of its platforms can have made."""
    if target.digest not in present:
        return []
    try:
        manifests = platform_manifests(content, target, platforms.any_platform, cache)
    except DistError:
        return []
    out = []
    for manifest in manifests:
        if manifest.digest not in present:
            continue
        try:
            plan = image_layers(content, manifest, cache=cache, any_platform=True)
        except DistError:
            continue
        if plan is not None and plan.layers:
            out.append(plan.chain)
    return out


def unpacked_sizes(session, targets: Sequence[Descriptor], present: Container[str],
                   cache: ChildrenCache | None = None) -> dict[str, int | None]:
    """Disk usage of each target's unpacked chains (of every platform unpacked) in the session's
    snapshotter, each snapshot once; None where none is unpacked. One query, and the manifests
    and configs of each distinct target read once."""
    sizes = session.unpacked_snapshot_sizes()
    out: dict[str, int | None] = {t.digest: None for t in targets}
    if not sizes:
        return out  # nothing unpacked (the session probes no default snapshotter for that)
    cache = cache or ChildrenCache()
    for target in {t.digest: t for t in targets}.values():  # 1,000 names of one image: one read
        unpacked = {key for chain in every_chain(session.content, target, present, cache) if chain[-1] in sizes
                    for key in chain}
        if unpacked:
            out[target.digest] = sum(sizes.get(key, 0) for key in unpacked)
    return out
