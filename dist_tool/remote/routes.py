"""The routes of ``dist serve``: each one call on the request's Session's stores.

A route is ``fn(handler, session, query, **url_parts)`` registered with ``@route``; the
handler (``server.Handler``) reads bodies and writes replies. README ("dist serve") lists them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from dist_tool import validate
from dist_tool.errors import DataError, InvalidArgument
from dist_tool.oci import Descriptor
from dist_tool.remote import wire
from dist_tool.remote.wire import Fields
from dist_tool.store.api import Container, Lease
from dist_tool.store.limits import COPY_CHUNK
from dist_tool.validate import decimal, identifier

MAX_READ_LIMIT = 64 * 1024 * 1024
TEMPORARY_LEASE_SECONDS = 24 * 3600  # containerd's client.WithLease default expiry

Route = tuple[str, "re.Pattern[str]", Callable]
ROUTES: list[Route] = []


def route(method: str, pattern: str):
    def register(fn):
        ROUTES.append((method, re.compile(f"^{wire.PREFIX}{pattern}$"), fn))
        return fn
    return register


def _checked_image(image):
    """What the CLI checks before it asks the store, checked again for any client: a name that is
    no reference at all ('BAD'), or one spelled short ('busybox'), could never be removed by rmi,
    which normalises what it is given."""
    from dist_tool import reference

    canonical = reference.normalize(image.name)
    if canonical != image.name:  # rmi and every other command look names up by their canonical form
        raise InvalidArgument("image", image.name, f"is not a canonical name (it would be {canonical})")
    validate.labels(image.labels)
    return image


def _checked_container(s, container: Container) -> Container:
    """A snapshotter the store does not have made a record that ``container rm`` (even -f) could
    never remove: it looks the snapshotter up to remove the container's snapshot. A lastExit that
    is not ``{"status": int, "exitedAt": time}`` made ``container info`` an internal error."""
    identifier("container id", container.id)
    validate.labels(container.labels)
    validate.runtime_name(container.runtime_name)
    if container.snapshotter:
        s.known_snapshotter(container.snapshotter)
    if container.last_exit is not None:
        last_exit = Fields(container.last_exit, "container.lastExit")
        last_exit.get("status", int)
        validate.timestamp("container.lastExit", "exitedAt", last_exit.get("exitedAt", (int, float)))
    return container


def _one(q: dict, key: str, default=None):
    values = q.get(key)
    return values[0] if values else default


def _count(q: dict, key: str, default: int | None = None) -> int | None:
    """A byte count or offset in the query string."""
    raw = _one(q, key)
    if raw is None:
        return default
    value = decimal(raw)
    if value is None:
        raise InvalidArgument("query", key, f"{raw!r} is not a number of bytes")
    return value


def _json(raw: str, what: str, which: str) -> object:
    """JSON a request carries outside its body: in the query string, in a trailer."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidArgument(what, which, "is not JSON") from None


def _same_as_route(kind: str, value: str, field: str, route_value: str) -> None:
    """A record in a request body must be the one the URL names."""
    if value != route_value:
        raise InvalidArgument(kind, value, f"does not match the route's {field} {route_value}")


def _lease_arg(q: dict, s) -> tuple[str, str] | None:
    raw = _one(q, "lease")
    if not raw:
        return None
    ns, _, lease_id = raw.partition("/")
    return _own_lease(s, ns, lease_id)


def _own_lease(s, namespace: str, lease_id: str) -> tuple[str, str]:
    """A lease a request names: a valid ID in the request's own namespace (its Dist-Namespace)."""
    if namespace != s.namespace:
        raise InvalidArgument("lease", f"{namespace}/{lease_id}", f"is not in the request's namespace {s.namespace}")
    return namespace, identifier("lease id", lease_id)


@route("GET", "/version")
def _version(h, s, q):
    from dist_tool import __version__

    h.reply(200, {"version": __version__, "api": wire.API_VERSION})


# images -----------------------------------------------------------------

@route("GET", "/images")
def _images_list(h, s, q):
    if _one(q, "scope") == "all":
        h.reply(200, [{"namespace": ns, "image": wire.image_to(i)} for ns, i in s.images.all_namespaces()])
    else:
        h.reply(200, [wire.image_to(i) for i in s.images.list(*q.get("filter", []))])


@route("GET", "/images/(?P<name>[^/]+)")
def _images_get(h, s, q, name):
    h.reply(200, wire.image_to(s.images.get(name)))


@route("POST", "/images")
def _images_create(h, s, q):
    h.reply(201, wire.image_to(s.images.create(_checked_image(wire.image_from(h.body())))))


@route("PUT", "/images/(?P<name>[^/]+)")
def _images_put(h, s, q, name):
    image = _checked_image(wire.image_from(h.body()))
    _same_as_route("image", image.name, "name", name)
    h.reply(200, wire.image_to(s.images.put(image)))


@route("PATCH", "/images/(?P<name>[^/]+)")
def _images_update(h, s, q, name):
    body = Fields(h.body(), "request body")
    image = _checked_image(wire.image_from(body.get("image", dict)))
    _same_as_route("image", image.name, "name", name)
    h.reply(200, wire.image_to(s.images.update(image, *body.string_list("fieldpaths"))))


@route("DELETE", "/images/(?P<name>[^/]+)")
def _images_delete(h, s, q, name):
    s.images.delete(name)
    h.reply(204, None)


# content ----------------------------------------------------------------

@route("GET", "/content/blobs")
def _content_list(h, s, q):
    if _one(q, "view") == "present":
        h.reply(200, s.content.present())
    else:
        h.reply(200, [i.to_json() for i in s.content.list()])


@route("GET", "/content/blobs/(?P<digest>[^/]+)/info")
def _content_info(h, s, q, digest):
    h.reply(200, s.content.info(digest).to_json())


@route("GET", "/content/blobs/(?P<digest>[^/]+)")
def _content_read(h, s, q, digest):
    limit = _count(q, "limit")
    if limit is not None:
        data = s.content.read_blob(digest, min(limit, MAX_READ_LIMIT))
        h.reply_bytes(200, data)
        return
    h.send_blob(s.content, digest)


@route("PATCH", "/content/blobs/(?P<digest>[^/]+)")
def _content_labels(h, s, q, digest):
    labels = Fields(h.body(), "request body").strings("labels")
    h.reply(200, s.content.update_labels(digest, labels).to_json())


@route("DELETE", "/content/blobs/(?P<digest>[^/]+)")
def _content_delete(h, s, q, digest):
    s.content.delete(digest)
    h.reply(204, None)


@route("POST", "/content/blobs/(?P<digest>[^/]+)/verify")
def _content_verify(h, s, q, digest):
    h.reply(200, {"digest": digest, "problem": s.content.verify(digest)})


@route("POST", "/content/blobs/(?P<digest>[^/]+)/lease")
def _content_add_to_lease(h, s, q, digest):
    body = Fields(h.body(), "request body")
    lease = _own_lease(s, body.text("namespace"), body.text("id"))
    h.reply(200, {"present": s.content.add_to_lease(digest, lease)})


@route("GET", "/content/ingests")
def _ingests(h, s, q):
    h.reply(200, [i.to_json() for i in s.content.ingests()])


@route("DELETE", "/content/ingests/(?P<ref>[^/]+)")
def _ingest_abort(h, s, q, ref):
    s.content.abort_ingest(ref)
    h.reply(204, None)


@route("PUT", "/content/ingests/(?P<ref>[^/]+)")
def _ingest_write(h, s, q, ref):
    """The chunked body streams into the ingest. ``mode=stream`` (default): the whole blob, resumed
    and verified as ``content ingest`` does. ``mode=append``: bytes from ``offset`` on, committed
    when the ``Dist-Commit`` trailer (JSON: size, digest, labels) arrives, else left resumable."""
    body = h.chunked()
    lease = _lease_arg(q, s)
    labels = wire.string_map(_json(_one(q, "labels", "{}"), "query", "labels"), "query", "labels")
    size = _count(q, "size")
    digest = _one(q, "digest")
    mode = _one(q, "mode", "stream")
    if mode not in ("stream", "append"):
        raise InvalidArgument("query", "mode", f"{mode!r}: expected stream or append")
    if mode == "stream":
        digest = s.content.ingest(ref, body, size=size, digest=digest, labels=labels, lease=lease,
                                  wait=_one(q, "wait") == "1", keep_partial=_one(q, "keep_partial", "1") == "1")
        h.reply(200, {"digest": digest})
        return
    expected = _json(_one(q, "expected", "null"), "query", "expected")
    expected = Descriptor.from_json(expected, "expected") if expected else None
    offset = _count(q, "offset", 0)
    # The answer goes out only after the writer is closed: a client that reads the ingest's status
    # next must see its bytes flushed and its lock released.
    with s.content.writer(ref, expected, lease=lease, wait=_one(q, "wait") == "1", digest=digest) as w:
        if offset < w.offset:
            w.truncate(offset)
        elif offset > w.offset:
            raise DataError("ingest", ref, f"holds {w.offset} bytes, the upload starts at {offset}")
        if expected is not None:
            w.check_room(expected.size)
        while chunk := body.read(COPY_CHUNK):
            w.write(chunk)
        commit = body.trailers.get(wire.COMMIT_TRAILER.lower())
        if commit is None:
            answer = {"offset": w.offset}
        else:
            args = Fields(_json(commit, "trailer", wire.COMMIT_TRAILER), wire.COMMIT_TRAILER)
            answer = {"digest": w.commit(args.get("size", int, None), args.text("digest", None),
                                         args.strings("labels")),
                      "offset": w.offset}
    h.reply(200, answer)


# containers -------------------------------------------------------------

@route("GET", "/containers")
def _containers_list(h, s, q):
    h.reply(200, [wire.container_to(c)
                  for c in s.containers.list(*q.get("filter", []), with_spec=_one(q, "spec") == "1")])


@route("GET", "/containers/(?P<cid>[^/]+)")
def _containers_get(h, s, q, cid):
    h.reply(200, wire.container_to(s.containers.get(cid)))


@route("POST", "/containers")
def _containers_create(h, s, q):
    h.reply(201, wire.container_to(s.containers.create(_checked_container(s, wire.container_from(h.body())))))


@route("PATCH", "/containers/(?P<cid>[^/]+)")
def _containers_update(h, s, q, cid):
    body = Fields(h.body(), "request body")
    c: Container = _checked_container(s, wire.container_from(body.get("container", dict)))
    _same_as_route("container", c.id, "id", cid)
    h.reply(200, wire.container_to(s.containers.update(c, *body.string_list("fieldpaths"))))


@route("DELETE", "/containers/(?P<cid>[^/]+)")
def _containers_delete(h, s, q, cid):
    s.containers.delete(cid)
    h.reply(204, None)


# leases -----------------------------------------------------------------

@route("GET", "/leases")
def _leases_list(h, s, q):
    h.reply(200, [wire.lease_to(x) for x in s.leases.list(*q.get("filter", []))])


@route("GET", "/leases/(?P<lid>[^/]+)")
def _leases_get(h, s, q, lid):
    h.reply(200, wire.lease_to(s.leases.get(lid)))


@route("POST", "/leases")
def _leases_create(h, s, q):
    # The owner is what the server sees, never what the body says: a pid the client names means
    # nothing in the server's /proc once the client runs in another pid namespace or on another host.
    body = {k: v for k, v in h.body().items() if k not in ("ownerPid", "ownerStart")}
    lease: Lease = wire.lease_from(body)
    identifier("lease id", lease.id)
    validate.labels(lease.labels)
    if lease.expires_at is not None:  # 1e308 made every `leases ls`, local ones too, an internal error
        validate.timestamp("lease", "expiresAt", lease.expires_at)
    operation = Fields(body, "lease").get("temporary", bool, False)
    if operation:
        lease = _owned_by_the_client(h, lease)
    h.reply(201, wire.lease_to(s.leases.create(lease, operation=operation)))


def _owned_by_the_client(h, lease: Lease) -> Lease:
    """An operation's lease ends with its client: on a unix socket the kernel names the client's
    process as the server's pid namespace sees it (SO_PEERCRED), and gc expires the lease once that
    process is gone. A client with no pid the server can watch (over TCP, or in a pid namespace the
    server cannot see into) gets an expiry of TEMPORARY_LEASE_SECONDS instead, as a containerd
    client's lease has, unless it deletes the lease first."""
    import time

    from dist_tool.proc import process_start

    pid = h.peer_pid()
    start = process_start(pid) if pid else None
    if start:
        return lease._replace(owner_pid=pid, owner_start=start)
    expires = time.time() + TEMPORARY_LEASE_SECONDS
    return lease._replace(expires_at=min(expires, lease.expires_at or expires))


@route("DELETE", "/leases/(?P<lid>[^/]+)")
def _leases_delete(h, s, q, lid):
    s.leases.delete(lid)
    h.reply(204, None)


@route("GET", "/leases/(?P<lid>[^/]+)/resources")
def _leases_resources(h, s, q, lid):
    h.reply(200, [wire.resource_to(r) for r in s.leases.resources(lid)])


@route("POST", "/leases/(?P<lid>[^/]+)/resources")
def _leases_add_resource(h, s, q, lid):
    resource = wire.resource_from(h.body())
    if resource.kind not in wire.RESOURCE_KINDS:
        raise InvalidArgument("lease resource kind", resource.kind, f"expected one of {', '.join(wire.RESOURCE_KINDS)}")
    s.leases.add_resource(identifier("lease id", lid), resource)
    h.reply(204, None)


# the rest ---------------------------------------------------------------

@route("POST", "/gc")
def _gc(h, s, q):
    body = Fields(h.body(), "request body")
    only = body.string_list("only", None)
    result = s.collect_garbage(dry_run=body.get("dryRun", bool, False), only=set(only) if only is not None else None)
    h.reply(200, result.to_json())


@route("POST", "/unpack")
def _unpack(h, s, q):
    body = Fields(h.body(), "request body")
    keep = body.string_list("keep", None)
    if keep is not None and len(keep) != 2:
        raise InvalidArgument("request body", "keep", "is not a [namespace, lease id] pair")
    top = s.unpack_target(Descriptor.from_json(body.get("target", dict), "target"),
                          platform=body.text("platform", None), keep=tuple(keep) if keep else None)
    h.reply(200, {"chain": top})


@route("GET", "/snapshots/unpacked-sizes")
def _unpacked_sizes(h, s, q):
    h.reply(200, s.unpacked_snapshot_sizes(_one(q, "snapshotter")))
