"""Chain IDs and the layers of an image's platform: what unpacking, container create and the
image listing share, in a module light enough for ``dist images`` to import."""

from collections.abc import Sequence
from typing import NamedTuple

from dist_tool import oci, platforms
from dist_tool.errors import DataError, DistError
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
    manifests = platform_manifests(content, target, match, cache)
    if not manifests:
        return None
    manifest = manifests[0]
    kids = oci.manifest_children(read_document(content, manifest, cache), manifest.digest)
    config, layers = kids[0], kids[1:]
    if config.media_type not in oci.CONFIG_TYPES:
        return None
    doc = oci.decode_json(content.read_blob(config.digest, MAX_CONFIG_BYTES), "config", config.digest)
    if manifest.digest == target.digest and not any_platform and doc.get("architecture") and doc.get("os"):
        # A lone manifest has no platform in its descriptor: its config says which it is.
        found = platforms.Platform(str(doc["os"]), str(doc["architecture"]), doc.get("variant") or None)
        if not platforms.matcher(want)(platforms.normalize(found)):
            return None
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


def unpacked_sizes(session, targets: Sequence[Descriptor],
                   cache: ChildrenCache | None = None) -> dict[str, int | None]:
    """Disk usage of each target's unpacked chain (host platform) in the session's snapshotter;
    None where it is not unpacked. One query, and one config read per distinct target."""
    sizes = session.unpacked_snapshot_sizes()
    out: dict[str, int | None] = {t.digest: None for t in targets}
    if not sizes:
        return out  # nothing unpacked (the session probes no default snapshotter for that)
    cache = cache or ChildrenCache()
    for target in {t.digest: t for t in targets}.values():  # 1,000 names of one image: one read
        try:
            plan = image_layers(session.content, target, cache=cache)
        except DistError:
            continue
        if plan is None or not plan.layers:
            continue
        chain = plan.chain
        if chain[-1] in sizes:
            out[target.digest] = sum(sizes.get(c, 0) for c in chain)
    return out
