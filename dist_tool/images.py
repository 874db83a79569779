"""Image use cases: list (packed size, platforms, completeness), tag, label, delete + gc,
inspect and check. Every size and tree here is a handler over ``walk``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from dist_tool import oci, platforms, reference, validate
from dist_tool.errors import AlreadyExists, DistError, NotFound
from dist_tool.oci import Descriptor
from dist_tool.store.api import Image
from dist_tool.walk import (
    ChildrenCache,
    SkipChildren,
    config_platform,
    reachable,
    read_document,
    require_present,
    walk,
)


class ImageView:
    """One stored image and what the walker found about it, shaped by ``to_json`` for SPEC."""

    __slots__ = ("image", "size", "unique_size", "complete", "platforms", "unpacked_size")

    def __init__(self, image: Image, size: int, unique_size: int, complete: bool, platforms: list[str],
                 unpacked_size: int | None = None) -> None:
        self.image, self.size, self.unique_size = image, size, unique_size
        self.complete, self.platforms, self.unpacked_size = complete, platforms, unpacked_size

    def to_json(self) -> dict:
        t = self.image.target
        return {"name": self.image.name,
                "target": {"mediaType": t.media_type, "digest": t.digest, "size": t.size},
                "size": self.size, "complete": self.complete, "uniqueSize": self.unique_size,
                "unpackedSize": self.unpacked_size, "platforms": self.platforms,
                "labels": dict(self.image.labels),
                "createdAt": self.image.created_at, "updatedAt": self.image.updated_at}


class Catalog:
    """Caches for one command: parsed manifests by digest and reachability by target."""

    def __init__(self, content: object, present: dict[str, int]) -> None:
        self.content, self.present = content, present
        self.cache = ChildrenCache()
        self._reach: dict[str, dict[str, int]] = {}
        self._platforms: dict[str, list[str]] = {}
        self._complete: dict[str, bool] = {}

    def reach(self, target: Descriptor) -> dict[str, int]:
        """The present blobs under ``target``; past a manifest that cannot be read, whose image
        is then incomplete (``complete``), and ``images check`` says why."""
        if target.digest not in self._reach:
            try:
                self._reach[target.digest] = reachable(self.content, target, self.present.__contains__,
                                                       self.cache, tolerant=True)
            except DistError:  # a tree that loops or is too deep
                self._reach[target.digest] = {}
        return self._reach[target.digest]

    def complete(self, target: Descriptor) -> bool:
        if target.digest not in self._complete:
            try:
                self._complete[target.digest] = require_present(
                    self.content, target, platforms.matcher(platforms.host()), self.present.__contains__,
                    self.cache).complete
            except DistError:
                self._complete[target.digest] = False
        return self._complete[target.digest]

    def platforms_of(self, target: Descriptor) -> list[str]:
        if target.digest not in self._platforms:
            self._platforms[target.digest] = self._find_platforms(target)
        return self._platforms[target.digest]

    def _find_platforms(self, target: Descriptor) -> list[str]:
        """The platforms of the manifests under ``target``, through nested indexes: as the index
        names them, else as a present manifest's config says (ctr's images.Platforms)."""
        found: list[platforms.Platform] = []

        def visit(desc: Descriptor) -> list[Descriptor]:
            if desc.digest not in self.present:
                raise SkipChildren
            try:
                if oci.is_index(desc.media_type):
                    kids = oci.index_children(read_document(self.content, desc, self.cache), desc.digest)
                    found.extend(platforms.Platform.from_dict(k.platform) for k in kids
                                 if k.platform and oci.is_manifest(k.media_type))
                    return [k for k in kids if oci.is_index(k.media_type)
                            or (oci.is_manifest(k.media_type) and not k.platform)]
                if oci.is_manifest(desc.media_type):
                    config = oci.manifest_children(read_document(self.content, desc, self.cache), desc.digest)[0]
                    if config.digest in self.present and config.media_type in oci.CONFIG_TYPES:
                        platform = config_platform(self.content, config)
                        if platform is not None:
                            found.append(platform)
            except DistError:
                pass  # an unreadable node names no platform; `images check` reports it
            raise SkipChildren

        try:
            walk(visit, [target])
        except DistError:
            pass
        return platforms.format_all(found)


def catalog(session) -> Catalog:
    return Catalog(session.content, session.content.present())


def list_images(session, filters: Sequence[str] = ()) -> list[ImageView]:
    """Images of the session's namespace with packed size, uniqueSize, platforms, completeness.

    ``uniqueSize`` counts the blobs reachable from no other image name in any
    namespace: what ``rmi`` of this name alone would free.
    """
    everything = list(session.images.all_namespaces())  # one query serves the selection and the refcounts
    if filters:
        selected = session.images.list(*filters)
    else:
        selected = [image for ns, image in everything if ns == session.namespace]
    if not selected:
        return []
    cat = catalog(session)
    names_per_target: Counter[str] = Counter()
    targets: dict[str, Descriptor] = {}
    for _, image in everything:
        names_per_target[image.target.digest] += 1
        targets[image.target.digest] = image.target
    holders: Counter[str] = Counter()
    for digest, count in names_per_target.items():
        for blob in cat.reach(targets[digest]):
            holders[blob] += count
    facts_of: dict[str, tuple[int, int, bool, list[str]]] = {}  # 1,001 names often share a few targets
    views = []
    for image in selected:
        facts = facts_of.get(image.target.digest)
        if facts is None:
            reach = cat.reach(image.target)
            facts = facts_of[image.target.digest] = (
                sum(reach.values()), sum(size for blob, size in reach.items() if holders[blob] <= 1),
                cat.complete(image.target), cat.platforms_of(image.target))
        views.append(ImageView(image, *facts))
    from dist_tool.chains import unpacked_sizes

    unpacked = unpacked_sizes(session, [v.image.target for v in views], cat.present, cat.cache)
    for view in views:
        view.unpacked_size = unpacked.get(view.image.target.digest)
    return views


def tag(session, source: str, targets: Iterable[str], force: bool = False) -> list[str]:
    source_name = reference.normalize(source)
    names = [reference.normalize(t) for t in targets]
    done = []
    store = session.images  # opened first: opening repairs a crash's layout index in its own transaction
    with session.transaction():
        # Read in the transaction that writes: an rmi of the source that commits first (and then
        # collects its content) makes this NotFound, never a name pointing at collected blobs.
        src = store.get(source_name)
        for name in names:
            if force:
                store.put(Image(name, src.target, src.labels))
            else:
                try:  # create, not get-then-put: the check and the write are one store call
                    store.create(Image(name, src.target, src.labels))
                except AlreadyExists:
                    raise AlreadyExists("image", name, "already exists (use --force to move it)") from None
            done.append(name)
    return done


def label(session, name: str, pairs: Sequence[str]) -> dict[str, str]:
    updates = validate.label_args(pairs)
    with session.transaction():
        image = session.images.get(reference.normalize(name))
        labels = validate.apply_labels(image.labels, updates)
        if updates:
            # One field path per key: the store merges them, so a concurrent label of other keys
            # (another process, or another client of dist serve) is kept.
            image = session.images.update(Image(image.name, image.target, labels),
                                          *(f"labels.{k}" for k in updates))
    return dict(image.labels)


def remove(session, names: Sequence[str], force: bool = False):
    """Deletes each name, keeps going past errors, collects garbage, then returns the first error."""
    from dist_tool.gc import remove_each

    def remove_one(raw: str) -> str:
        name = reference.normalize(raw)
        session.images.delete(name)
        return name

    return remove_each(session, names, remove_one, force)


def resolve(session, name: str) -> Image:
    return session.images.get(reference.normalize(name))


def inspect(session, name: str) -> dict:
    """The descriptor tree under an image: each node's type, digest, size and presence."""
    image = resolve(session, name)
    cat = catalog(session)
    from dist_tool.walk import children

    kids_of = children(session.content, cat.cache)

    def node(desc: Descriptor, depth: int) -> dict:
        out = {"mediaType": desc.media_type, "digest": desc.digest, "size": desc.size,
               "present": desc.digest in cat.present}
        if desc.platform:
            out["platform"] = str(platforms.Platform.from_dict(desc.platform))
        kids: list[Descriptor] = []
        if out["present"] and depth < 16:
            try:
                kids = kids_of(desc)
            except DistError as e:  # the tree is shown with the node that cannot be read
                out["problem"] = e.why or str(e)
        out["children"] = [node(k, depth + 1) for k in kids]
        return out

    return node(image.target, 0)


def check(session, names: Sequence[str], verify: bool = False) -> tuple[list[dict], NotFound | None]:
    """Complete/incomplete per image for the host platform; with ``verify``, re-hash its blobs.

    A name that does not exist does not stop the others (as ``rmi A B``): the first such error
    is returned with the records, for the caller to raise once it has shown them."""
    absent: NotFound | None = None
    if names:
        selected = []
        for ref in [reference.normalize(n) for n in names]:  # a malformed one fails before any work
            try:
                selected.append(session.images.get(ref))
            except NotFound as e:
                absent = absent or e
    else:
        selected = session.images.list()
    cat = catalog(session)
    verified: dict[str, str | None] = {}
    out = []
    for image in selected:
        try:
            req = require_present(session.content, image.target, platforms.matcher(platforms.host()),
                                  cat.present.__contains__, cat.cache)
            missing = [d.digest for d in req.missing]
            complete, required = req.complete, req.required
        except DistError as e:
            missing, complete, required = [], False, 0
            problem = str(e)
        else:
            problem = None if req.matched else f"no manifest for {platforms.host()}"
        record = {"name": image.name, "complete": complete, "missing": missing,
                  "present": required - len(missing), "required": required}
        if problem:
            record["problem"] = problem
        if verify:
            corrupt = []
            for digest in sorted(cat.reach(image.target)):
                if digest not in verified:
                    verified[digest] = session.content.verify(digest)
                if verified[digest]:
                    corrupt.append({"digest": digest, "problem": verified[digest]})
            record["corrupt"] = corrupt
        out.append(record)
    return out, absent
