"""The descriptor walker and its handlers: every image feature is a handler over one walk.

A handler takes a descriptor and returns the descriptors to visit next (its
children, filtered as the feature needs). ``walk`` visits each digest once
(names share targets; images share layers) and refuses trees deeper than
``MAX_WALK_DEPTH`` or that loop back on themselves — content addressing makes
a loop impossible for verified content, but the walker does not assume it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from dist_tool import oci
from dist_tool.errors import DataError, DistError
from dist_tool.oci import Descriptor
from dist_tool.store.api import Provider
from dist_tool.store.limits import MAX_CONFIG_BYTES, MAX_INDEX_BYTES, MAX_MANIFEST_BYTES, MAX_WALK_DEPTH

Handler = Callable[[Descriptor], list[Descriptor]]
PlatformMatcher = Callable[[object], bool]


class SkipChildren(Exception):
    """Raised by a handler to stop the walk from descending below a descriptor."""


def walk(handler: Handler, roots: Iterable[Descriptor], max_depth: int = MAX_WALK_DEPTH) -> None:
    """Depth-first, children in order, each digest once per walk."""
    visited: set[str] = set()

    def visit(desc: Descriptor, path: tuple[str, ...]) -> None:
        if desc.digest in path:
            raise DataError("image", desc.digest, "descriptor tree contains itself")
        if len(path) >= max_depth:
            raise DataError("image", desc.digest, f"descriptor tree deeper than {max_depth}")
        if desc.digest in visited:
            return
        visited.add(desc.digest)
        try:
            kids = handler(desc)
        except SkipChildren:
            return
        for child in kids:
            visit(child, path + (desc.digest,))

    for root in roots:
        visit(root, ())


class ChildrenCache:
    """Parsed children by digest, shared by every walk of one command (1,001 names, few targets)."""

    __slots__ = ("children", "documents")

    def __init__(self) -> None:
        self.children: dict[str, list[Descriptor]] = {}
        self.documents: dict[str, dict] = {}


def read_document(provider: Provider, desc: Descriptor, cache: ChildrenCache | None = None) -> dict:
    """Reads and decodes a manifest or index (bounded), checking it is the type it claims."""
    if cache is not None and desc.digest in cache.documents:
        return cache.documents[desc.digest]
    limit = MAX_INDEX_BYTES if oci.is_index(desc.media_type) else MAX_MANIFEST_BYTES
    data = provider.read_blob(desc.digest, limit)
    what = oci.kind_of(desc.media_type)
    doc = oci.decode_json(data, what, desc.digest)
    declared = doc.get("mediaType")
    if declared and isinstance(declared, str) and oci.is_image_target(declared) \
            and oci.is_index(declared) != oci.is_index(desc.media_type):
        raise DataError(what, desc.digest, f"descriptor says {desc.media_type} but the blob is {declared}")
    if cache is not None:
        cache.documents[desc.digest] = doc
    return doc


def children(provider: Provider, cache: ChildrenCache | None = None) -> Handler:
    """The children of OCI and Docker schema-2 indexes and manifests; nothing below other types.

    Raises NotFound when an index or manifest is absent (see ``skip_missing``).
    """

    def handler(desc: Descriptor) -> list[Descriptor]:
        if cache is not None and desc.digest in cache.children:
            return cache.children[desc.digest]
        if oci.is_index(desc.media_type):
            kids = oci.index_children(read_document(provider, desc, cache), desc.digest)
        elif oci.is_manifest(desc.media_type):
            kids = oci.manifest_children(read_document(provider, desc, cache), desc.digest)
        else:
            return []
        if cache is not None:
            cache.children[desc.digest] = kids
        return kids

    return handler


def skip_missing(handler: Handler, present: Callable[[str], bool],
                 missing: list[Descriptor] | None = None) -> Handler:
    """Does not descend into absent blobs; records them in ``missing`` when given."""

    def wrapped(desc: Descriptor) -> list[Descriptor]:
        if not present(desc.digest):
            if missing is not None:
                missing.append(desc)
            raise SkipChildren
        return handler(desc)

    return wrapped


def filter_platforms(handler: Handler, matcher: PlatformMatcher) -> Handler:
    """Keeps only an index's manifests whose platform matches, and the nested indexes it names no
    platform for. Manifests without a platform are kept only when no manifest of the index
    matches by its platform: an index that names no platforms is read as containerd reads it
    (each manifest's config says which it is; ``chains.image_layers`` checks it), while one that
    names them keeps its unnamed extras (an SBOM, a signature) out of a host-only pull and out
    of ``complete``, as SPEC asks. A matcher that takes no platform (``--all-platforms``) keeps
    every child: those extras too, and children of an unknown type, which are no platform's
    (stored and counted in SIZE when present, as SPEC asks, but required and fetched only then)."""

    def wrapped(desc: Descriptor) -> list[Descriptor]:
        kids = handler(desc)
        if not oci.is_index(desc.media_type):
            return kids
        if matcher(None):
            return kids
        from dist_tool import platforms

        named = {k.digest for k in kids if k.platform is not None and matcher(platforms.Platform.from_dict(k.platform))}
        fallback = not any(oci.is_manifest(k.media_type) for k in kids if k.digest in named)
        return [k for k in kids if k.digest in named or (k.platform is None and (
            oci.is_index(k.media_type) or (fallback and oci.is_manifest(k.media_type))))]

    return wrapped


def tolerate(handler: Handler) -> Handler:
    """Goes on past a descriptor whose children cannot be read: one corrupt manifest must not
    hide every other image from a listing (``images check`` names it)."""

    def wrapped(desc: Descriptor) -> list[Descriptor]:
        try:
            return handler(desc)
        except DistError:
            raise SkipChildren from None

    return wrapped


def visitor(handler: Handler, visit: Callable[[Descriptor], None]) -> Handler:
    """Calls ``visit`` on every descriptor before descending."""

    def wrapped(desc: Descriptor) -> list[Descriptor]:
        visit(desc)
        return handler(desc)

    return wrapped


def reachable(provider: Provider, target: Descriptor, present: Callable[[str], bool],
              cache: ChildrenCache | None = None, tolerant: bool = False) -> dict[str, int]:
    """Every distinct blob reachable from ``target`` that is present, with its size. ``tolerant``:
    a manifest or index that cannot be read is walked past."""
    found: dict[str, int] = {}

    def record(desc: Descriptor) -> None:
        found[desc.digest] = desc.size

    handler = children(provider, cache)
    if tolerant:
        handler = tolerate(handler)
    walk(skip_missing(visitor(handler, record), present), [target])
    return found


def platform_manifests(provider: Provider, target: Descriptor, matcher: PlatformMatcher,
                       cache: ChildrenCache | None = None) -> list[Descriptor]:
    """The manifests under ``target`` for the matching platforms (a lone manifest is itself)."""
    found: list[Descriptor] = []

    def collect(desc: Descriptor) -> list[Descriptor]:
        if oci.is_manifest(desc.media_type):
            found.append(desc)
            raise SkipChildren
        return inner(desc)

    inner = filter_platforms(children(provider, cache), matcher)
    walk(collect, [target])
    return found


class Requirement:
    """What a platform of an image needs, and what of it is absent."""

    __slots__ = ("missing", "required", "matched")

    def __init__(self) -> None:
        self.missing: list[Descriptor] = []
        self.required = 0
        self.matched = False  # a manifest for the platform exists (a lone manifest always matches)

    @property
    def complete(self) -> bool:
        return self.matched and not self.missing


def config_platform(provider: Provider, config: Descriptor):
    """The platform an image config names, as it spells it (``linux/arm64/v8`` stays so, as in
    an index); None when it names none."""
    from dist_tool import platforms

    return platforms.of_config(oci.decode_json(provider.read_blob(config.digest, MAX_CONFIG_BYTES), "config",
                                               config.digest))


def _config_matches(provider: Provider, manifest: Descriptor, matcher: PlatformMatcher,
                    present: Callable[[str], bool], cache: ChildrenCache | None) -> bool:
    """Whether a manifest an index names no platform for is for ``matcher``'s platform, as its
    config says; True when that cannot be told (no config, or one that names no platform)."""
    from dist_tool import platforms

    config = oci.manifest_children(read_document(provider, manifest, cache), manifest.digest)[0]
    if config.media_type not in oci.CONFIG_TYPES or not present(config.digest):
        return True
    found = config_platform(provider, config)
    return found is None or matcher(platforms.normalize(found))


def require_present(provider: Provider, target: Descriptor, matcher: PlatformMatcher,
                    present: Callable[[str], bool], cache: ChildrenCache | None = None,
                    sizes: Mapping[str, int] | None = None) -> Requirement:
    """Walks the indexes and manifests on the way to the platform(s), then configs and layers.

    With ``sizes`` (digest → stored size), a descriptor whose size disagrees with the blob it
    names is a DataError: a manifest must not lie about what it references.
    """
    req = Requirement()

    def check(desc: Descriptor) -> list[Descriptor]:
        if desc.platform is None and desc.digest != target.digest and oci.is_manifest(desc.media_type) \
                and present(desc.digest) and not _config_matches(provider, desc, matcher, present, cache):
            raise SkipChildren  # an unnamed manifest whose config names another platform
        req.required += 1
        if sizes is not None and desc.digest in sizes and sizes[desc.digest] != desc.size:
            raise DataError("blob", desc.digest,
                            f"size mismatch: descriptor says {desc.size} bytes, the blob has {sizes[desc.digest]}")
        if oci.is_manifest(desc.media_type):
            req.matched = True
        if not present(desc.digest):
            req.missing.append(desc)
            raise SkipChildren
        return inner(desc)

    inner = filter_platforms(children(provider, cache), matcher)
    walk(check, [target])
    return req
